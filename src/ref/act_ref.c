/*
 * act_ref.c — reference fused activation + quantization (the seed's
 * silu_and_mul_mxfp4_experts_quant, generalised to every activation and both gate/up layouts).
 *
 * The activation is evaluated in FP64 from the (exact) input values, rounded to FP32, then to
 * the activation dtype (SPEC §2: the intermediate rounding is part of the contract), and then
 * quantized. FP64 evaluation makes the FP32 value correctly rounded in all but vanishingly rare
 * cases, so a GPU backend can reproduce it bit for bit.
 */
#include <math.h>
#include <string.h>

#include "ref/mx_numerics.h"
#include "ref/ref.h"

static double sigmoid(double z) {
    return 1.0 / (1.0 + exp(-z));
}

static double gelu_tanh(double g) {
    const double sqrt_2_over_pi = 0.79788456080286535588; /* sqrt(2/pi) */
    return 0.5 * g * (1.0 + tanh(sqrt_2_over_pi * (g + 0.044715 * g * g * g)));
}

/* Activation of column i of row r, in FP64. `in` has 2*cols (gated) or cols columns. */
static double activation_value(const mxmoe_tensor* h, int64_t r, int64_t i, int64_t cols,
                               const mxmoe_act_params* p) {
    const void* d = h->data;
    mxmoe_dtype t = h->dtype;
    switch (p->activation) {
    case MXMOE_ACT_SILU:
        return mxmoe_load_float(d, t, r * cols + i) * sigmoid(mxmoe_load_float(d, t, r * cols + i));
    case MXMOE_ACT_GELU_TANH:
        return gelu_tanh(mxmoe_load_float(d, t, r * cols + i));
    case MXMOE_ACT_RELU2: {
        double v = mxmoe_load_float(d, t, r * cols + i);
        v = v > 0.0 ? v : (v == v ? 0.0 : v); /* NaN stays NaN */
        return v * v;
    }
    default:
        break;
    }
    int64_t gi = p->layout == MXMOE_GATE_UP_INTERLEAVED ? 2 * i : i;
    int64_t ui = p->layout == MXMOE_GATE_UP_INTERLEAVED ? 2 * i + 1 : cols + i;
    double gate = mxmoe_load_float(d, t, r * 2 * cols + gi);
    double up = mxmoe_load_float(d, t, r * 2 * cols + ui);
    switch (p->activation) {
    case MXMOE_ACT_SILU_MUL:
        return gate * sigmoid(gate) * up;
    case MXMOE_ACT_GELU_TANH_MUL:
        return gelu_tanh(gate) * up;
    case MXMOE_ACT_SWIGLU_OAI:
    default: {
        double limit = p->swiglu_limit;
        double g = gate > limit ? limit : gate; /* comparisons keep NaN, unlike fmin */
        double u = up > limit ? limit : (up < -limit ? -limit : up);
        return g * sigmoid((double)p->swiglu_alpha * g) * (u + 1.0);
    }
    }
}

/* The value the activation dtype holds: FP64 -> FP32 -> act_dtype, each round to nearest even. */
static float activation_rounded(const mxmoe_tensor* h, int64_t r, int64_t i, int64_t cols,
                                const mxmoe_act_params* p) {
    return mxmoe_round_to_dtype((float)activation_value(h, r, i, cols, p), p->act_dtype);
}

mxmoe_status mxmoe_act_and_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                        const mxmoe_tensor* offsets_t, const mxmoe_act_params* p,
                                        mxmoe_mx_tensor* out) {
    int64_t rows = h->dims[0];
    int64_t cols = out->packed.dims[1] * 2; /* I */
    const int32_t* offsets = NULL;
    int64_t num_experts = 0;
    if (offsets_t != NULL) {
        offsets = (const int32_t*)offsets_t->data;
        num_experts = offsets_t->dims[0] - 1;
        MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, rows));
        rows = offsets[num_experts];
        if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
            int64_t used = mxmoe_grouped_swizzled_used_bytes(offsets, num_experts, cols);
            MXMOE_RETURN_IF(used > mxmoe_tensor_numel(&out->scales), ctx, MXMOE_ERR_SHAPE,
                            "swizzled scales hold %lld bytes, these expert groups need %lld",
                            (long long)mxmoe_tensor_numel(&out->scales), (long long)used);
            memset(out->scales.data, 0, (size_t)used);
        }
    } else if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
        memset(out->scales.data, 0, mxmoe_swizzled_scale_bytes(rows, cols));
    }
    float block[MXMOE_BLOCK];
    uint8_t* packed = (uint8_t*)out->packed.data;
    uint8_t* scales = (uint8_t*)out->scales.data;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols / 32; j++) {
            for (int i = 0; i < MXMOE_BLOCK; i++) {
                block[i] = activation_rounded(h, r, j * 32 + i, cols, p);
            }
            uint8_t b = mxmoe_quantize_block(block, p->rule, packed + r * (cols / 2) + j * 16);
            scales[mxmoe_activation_scale_offset(out, r, j, cols, offsets, num_experts)] = b;
        }
    }
    return MXMOE_OK;
}
