/*
 * activation.h — the activations of act_and_quantize, shared by the reference and the CUDA
 * backend (one definition of every bit).
 *
 * The activation is evaluated in FP64 from the (exact) input values, rounded to FP32, then to
 * the activation dtype (SPEC §2: the intermediate rounding is part of the contract). FP64
 * evaluation makes the FP32 value correctly rounded in all but vanishingly rare cases, so
 * backends agree bit for bit up to their libm's last FP64 ulp.
 */
#ifndef MXMOE_REF_ACTIVATION_H
#define MXMOE_REF_ACTIVATION_H

#include <math.h>

#include "core/hd.h"
#include "core/tensor.h"

static inline MXMOE_HD double sigmoid(double z) {
    return 1.0 / (1.0 + exp(-z));
}

static inline MXMOE_HD double gelu_tanh(double g) {
    const double sqrt_2_over_pi = 0.79788456080286535588; /* sqrt(2/pi) */
    return 0.5 * g * (1.0 + tanh(sqrt_2_over_pi * (g + 0.044715 * g * g * g)));
}

static inline MXMOE_HD int mxmoe_activation_is_gated(mxmoe_activation a) {
    return a == MXMOE_ACT_SILU_MUL || a == MXMOE_ACT_GELU_TANH_MUL || a == MXMOE_ACT_SWIGLU_OAI;
}

/* The activation of one element, in FP64, from its input (non-gated: `gate` alone) or its gate
 * and up values (exact: FP32 inputs widened). */
static inline MXMOE_HD double mxmoe_activation_of(mxmoe_activation act, double gate, double up,
                                                  const mxmoe_act_params* p) {
    switch (act) {
    case MXMOE_ACT_SILU:
        return gate * sigmoid(gate);
    case MXMOE_ACT_GELU_TANH:
        return gelu_tanh(gate);
    case MXMOE_ACT_RELU2: {
        double v = gate > 0.0 ? gate : (gate == gate ? 0.0 : gate); /* NaN stays NaN */
        return v * v;
    }
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

/* Activation of column i of row r, in FP64. `in` has 2*cols (gated) or cols columns. */
static inline MXMOE_HD double mxmoe_activation_value(const mxmoe_tensor* h, int64_t r, int64_t i,
                                                     int64_t cols, const mxmoe_act_params* p) {
    const void* d = h->data;
    mxmoe_dtype t = h->dtype;
    if (!mxmoe_activation_is_gated(p->activation)) {
        return mxmoe_activation_of(p->activation, mxmoe_load_float(d, t, r * cols + i), 0.0, p);
    }
    int64_t gi = p->layout == MXMOE_GATE_UP_INTERLEAVED ? 2 * i : i;
    int64_t ui = p->layout == MXMOE_GATE_UP_INTERLEAVED ? 2 * i + 1 : cols + i;
    return mxmoe_activation_of(p->activation, mxmoe_load_float(d, t, r * 2 * cols + gi),
                               mxmoe_load_float(d, t, r * 2 * cols + ui), p);
}

/* The value the activation dtype holds: FP64 -> FP32 -> act_dtype, each round to nearest even. */
static inline MXMOE_HD float mxmoe_activation_rounded(const mxmoe_tensor* h, int64_t r, int64_t i,
                                                      int64_t cols, const mxmoe_act_params* p) {
    return mxmoe_round_to_dtype((float)mxmoe_activation_value(h, r, i, cols, p), p->act_dtype);
}

#endif /* MXMOE_REF_ACTIVATION_H */
