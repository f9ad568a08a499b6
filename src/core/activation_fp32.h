/*
 * activation_fp32.h — SiLU(·up) and gpt-oss's SwiGLU rounded to BF16 from an FP32 evaluation,
 * wherever that provably gives the reference's bits (ref/activation.h evaluates in FP64, rounds
 * to FP32, then to BF16): for backends whose FP64 is slow (the GPU activation kernel was
 * issue-bound on it, bench/NOTES.md v29).
 *
 * The bound. With every intermediate a normal number, the FP32 value y of the exact activation
 * x has |y - x| <= k 2^-24 |x|: expf within 2 ulp (CUDA's documented bound; glibc's is 1), that
 * is 4 units of 2^-24; each IEEE add, divide and multiply within one unit; SwiGLU's argument
 * a = alpha * g rounded within one unit, which exp(-a) amplifies by |a|; one more unit for
 * second-order terms. That is under k ulps of x's binade and so under 2k ulps of y's. A BF16
 * value's rounding cell ends at the midpoints (low 16 bits 0x8000 of y's binade, or of a
 * neighbour, 2^15 ulps from any binade edge): where y's low bits lie more than 2k + 4 ulps from
 * 0x8000, x, the reference's FP64 value (within ~2^-50 of x) and its FP32 rounding all share
 * y's cell, and round_bf16(y) is the reference's value. Elsewhere (about 2k / 2^15 of values)
 * and outside the ranges below, the caller evaluates in FP64. tests/c/test_activation_fp32.c
 * checks the bound itself and the bits.
 *
 * (The CPU tiers decide the same way in FP64 vectors, Ziv's test against FP32 rounding:
 * cpu/act_avx512.c.) GELU stays FP64 only: the reference's 1 + tanh cancels for negative arguments,
 * so its bits are not the exact value's and no bound on y predicts them.
 */
#ifndef MXMOE_CORE_ACTIVATION_FP32_H
#define MXMOE_CORE_ACTIVATION_FP32_H

#include <math.h>
#include <stdint.h>

#include "core/hd.h"
#include "core/tensor.h"

/* Inputs whose every intermediate is a normal FP32 number, and results away from BF16's edges. */
#define MXMOE_ACT_FP32_TINY    0x1p-100f
#define MXMOE_ACT_FP32_HUGE    0x1p100f
#define MXMOE_ACT_FP32_MAX_ARG 80.0f /* exp(80) < 2^116 */

/* The activation in FP32 and its bound k (|y - x| <= k 2^-24 |x|), or 0 where the inputs or
 * the result fall outside the bound's ranges (NaN, Inf, zero, tiny or huge: every intermediate
 * stays a normal number) or the activation has no FP32 form. */
static inline MXMOE_HD int mxmoe_activation_fp32(mxmoe_activation act, float gate, float up,
                                                 const mxmoe_act_params* p, float* y, float* k) {
    switch (act) {
    case MXMOE_ACT_SILU:
    case MXMOE_ACT_SILU_MUL: {
        const float ag = fabsf(gate);
        if (!(ag >= MXMOE_ACT_FP32_TINY && ag < MXMOE_ACT_FP32_MAX_ARG)) {
            return 0;
        }
        const float s = gate / (1.0f + expf(-gate));
        *y = act == MXMOE_ACT_SILU ? s : s * up;
        *k = 8.0f; /* expf 4, the add 1, the quotient 1, the product 1, second order 1 */
        break;
    }
    case MXMOE_ACT_SWIGLU_OAI: {
        const float limit = p->swiglu_limit;
        const float g = gate > limit ? limit : gate; /* as the reference: exact either way */
        const float u = up > limit ? limit : (up < -limit ? -limit : up);
        const float a = p->swiglu_alpha * g, aa = fabsf(a);
        if (!(fabsf(g) >= MXMOE_ACT_FP32_TINY && aa >= MXMOE_ACT_FP32_TINY &&
              aa < MXMOE_ACT_FP32_MAX_ARG)) {
            return 0;
        }
        const float s = g / (1.0f + expf(-a));
        *y = s * (u + 1.0f);
        *k = 10.0f + aa; /* as SiLU's, plus a's rounding amplified by |a|, plus u + 1 */
        break;
    }
    default:
        return 0;
    }
    const float ay = fabsf(*y);
    return ay >= MXMOE_ACT_FP32_TINY && ay <= MXMOE_ACT_FP32_HUGE;
}

/* The reference's BF16-rounded activation (as an FP32 value) into *out, or 0 where the FP32
 * evaluation cannot decide it (then evaluate in FP64). */
static inline MXMOE_HD int mxmoe_activation_bf16_fp32(mxmoe_activation act, float gate, float up,
                                                      const mxmoe_act_params* p, float* out) {
    float y, k;
    if (!mxmoe_activation_fp32(act, gate, up, p, &y, &k)) {
        return 0;
    }
    const float from_midpoint = fabsf((float)(mxmoe_f32_bits(y) & 0xFFFFu) - 32768.0f);
    if (!(from_midpoint > 2.0f * k + 4.0f)) {
        return 0;
    }
    *out = mxmoe_round_to_dtype(y, MXMOE_BF16);
    return 1;
}

#endif /* MXMOE_CORE_ACTIVATION_FP32_H */
