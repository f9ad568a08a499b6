/*
 * act_ref.c — reference fused activation + quantization (the seed's
 * silu_and_mul_mxfp4_experts_quant, generalised to every activation and both gate/up layouts);
 * the activation itself is in activation.h.
 */
#include <math.h>
#include <string.h>

#include "core/scale_layout.h"
#include "ref/activation.h"
#include "ref/mx_numerics.h"
#include "ref/ref.h"

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
                block[i] = mxmoe_activation_rounded(h, r, j * 32 + i, cols, p);
            }
            uint8_t b = mxmoe_quantize_block(block, p->rule, packed + r * (cols / 2) + j * 16);
            scales[mxmoe_activation_scale_offset(out, r, j, cols, offsets, num_experts)] = b;
        }
    }
    return MXMOE_OK;
}
