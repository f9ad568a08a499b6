/*
 * activation_fp32.h — SiLU(·up) and gpt-oss's SwiGLU rounded to BF16 from an FP32 evaluation,
 * wherever that provably gives the reference's bits (ref/activation.h evaluates in FP64, rounds
 * to FP32, then to BF16): for backends whose FP64 is slow (the GPU activation kernel was
 * issue-bound on it, bench/NOTES.md v29).
 *
 * The bound. With every intermediate a normal number, the FP32 value y of the exact activation
 * x has |y - x| <= k 2^-24 |x| (an ulp is at most 2 such units): the exponential and the
 * quotient within their bounds (mxmoe_act_exp, mxmoe_act_div below); each IEEE add and
 * multiply within one unit; SwiGLU's argument a = alpha * g rounded within one unit, which
 * exp(-a) amplifies by |a|; one more unit for second-order terms. That is under k ulps of x's
 * binade and so under 2k ulps of y's. A BF16
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

/* The exponential and the quotient. On the device CUDA's fast forms (MUFU ex2 and rcp, a few
 * instructions, where the accurate ones took ~20 and a branch): __expf's x * log2(e) into
 * ex2.approx, within 2 + floor(1.173 |x|) ulp, and __fdividef's a * rcp.approx(b), within 2 ulp
 * for |b| in [2^-126, 2^126] (the CUDA C++ Programming Guide's intrinsic functions; the .ftz
 * forms here are the same wherever the inputs and results are normal, as they are in the ranges
 * below: b in [1, 2^116]). tests/gpu/test_activation_gpu.cu checks the resulting bounds on the
 * GPU. On the host libm's expf (within 2 ulp: CUDA's documented bound for its expf, glibc's is
 * 1) and IEEE division (half an ulp). */
#ifdef __CUDA_ARCH__
static __device__ __forceinline__ float mxmoe_act_exp(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
    return y;
}
static __device__ __forceinline__ float mxmoe_act_div(float a, float b) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(b));
    return a * r;
}
#else
static inline float mxmoe_act_exp(float x) {
    return expf(x);
}
static inline float mxmoe_act_div(float a, float b) {
    return a / b;
}
#endif

/* A call's constants for the FP32 form (mxmoe_act_fp32_setup, once per call, on the host).
 * gpt-oss SwiGLU at a gate above the limit is limit * sigmoid(alpha * limit) * (u + 1): the
 * first product, the reference's FP64 value within ~2^-48, as the unevaluated sum hi + lo of
 * two FP32 numbers. Why: with BF16 inputs, 7 (u + 1) has few significant bits and so often
 * sits on a BF16 midpoint, and the reference's value lies 7 sigmoid(-11.9) ~ 2^-17 below it,
 * ~112 units: inside the ~110 that sigmoid evaluated in FP32 at the limit leaves undecided
 * (k = 13 + 3.346 |a| on the device). 8 % of clamped gates fell back to FP64: 2 % of the
 * values of the benchmark's gpt-oss layer, enough that half the activation kernel's warps took
 * the fallback for each of a lane's eight values (bench/NOTES.md v36). */
typedef struct {
    float clamped_hi, clamped_lo;
} mxmoe_act_fp32_consts;

static inline mxmoe_act_fp32_consts mxmoe_act_fp32_setup(const mxmoe_act_params* p) {
    const double limit = p->swiglu_limit;
    const double s = limit / (1.0 + exp(-(double)p->swiglu_alpha * limit));
    mxmoe_act_fp32_consts c;
    c.clamped_hi = (float)s;
    c.clamped_lo = (float)(s - (double)c.clamped_hi);
    return c;
}

/* The activation in FP32 and its bound k (|y - x| <= k 2^-24 |x|), or 0 where the inputs or
 * the result fall outside the bound's ranges (NaN, Inf, zero, tiny or huge: every intermediate
 * stays a normal number) or the activation has no FP32 form. Evaluated first and checked after,
 * so that the device runs it without branches. c: mxmoe_act_fp32_setup(p). */
static inline MXMOE_HD int mxmoe_activation_fp32(mxmoe_activation act, float gate, float up,
                                                 const mxmoe_act_params* p,
                                                 const mxmoe_act_fp32_consts* c, float* y,
                                                 float* k) {
    int in_range;
    switch (act) {
    case MXMOE_ACT_SILU:
    case MXMOE_ACT_SILU_MUL: {
        const float ag = fabsf(gate);
        in_range = ag >= MXMOE_ACT_FP32_TINY && ag < MXMOE_ACT_FP32_MAX_ARG;
        const float s = mxmoe_act_div(gate, 1.0f + mxmoe_act_exp(-gate));
        *y = act == MXMOE_ACT_SILU ? s : s * up;
        /* the exponential, the quotient, the add 1, the product 1, second order 1: on the
         * device 2 (2 + 1.173 |g|) + 4 + 3, on the host 4 + 1 + 3 */
#ifdef __CUDA_ARCH__
        *k = fmaf(2.346f, ag, 11.0f);
#else
        *k = 8.0f;
#endif
        break;
    }
    case MXMOE_ACT_SWIGLU_OAI: {
        const float limit = p->swiglu_limit;
        const int clamped = gate > limit;
        const float g = clamped ? limit : gate; /* as the reference: exact either way */
        const float u = up > limit ? limit : (up < -limit ? -limit : up);
        const float v = u + 1.0f;
        const float a = p->swiglu_alpha * g, aa = fabsf(a);
        in_range = fabsf(g) >= MXMOE_ACT_FP32_TINY && aa >= MXMOE_ACT_FP32_TINY &&
                   aa < MXMOE_ACT_FP32_MAX_ARG;
        const float s = mxmoe_act_div(g, 1.0f + mxmoe_act_exp(-a));
        /* clamped: hi v + lo v, v = u + 1 within 1 unit, the sum within 1 (a correctly
         * rounded FMA), lo v and hi + lo's own error ~2^-24 units, one to spare: 3 */
        *y = clamped ? fmaf(c->clamped_hi, v, c->clamped_lo * v) : s * v;
        /* else as SiLU's, plus a's rounding amplified by |a|, plus u + 1, plus one to spare:
         * on the device 2 (2 + 1.173 |a|) + 4 + 5 + |a|, on the host 4 + 1 + 5 + |a| */
#ifdef __CUDA_ARCH__
        *k = clamped ? 3.0f : fmaf(3.346f, aa, 13.0f);
#else
        *k = clamped ? 3.0f : 10.0f + aa;
#endif
        break;
    }
    default:
        return 0;
    }
    const float ay = fabsf(*y);
    return in_range && ay >= MXMOE_ACT_FP32_TINY && ay <= MXMOE_ACT_FP32_HUGE;
}

/* The reference's BF16-rounded activation (as an FP32 value) into *out, or 0 where the FP32
 * evaluation cannot decide it (then evaluate in FP64; *out is then unspecified). */
static inline MXMOE_HD int mxmoe_activation_bf16_fp32(mxmoe_activation act, float gate, float up,
                                                      const mxmoe_act_params* p,
                                                      const mxmoe_act_fp32_consts* c, float* out) {
    float y = 0.0f, k = 0.0f;
    const int decided = mxmoe_activation_fp32(act, gate, up, p, c, &y, &k);
    const uint32_t bits = mxmoe_f32_bits(y);
    /* |low 16 bits - 2^15|, exact: the float with bits 2^23's and the low 16 (2^23 + low) less
     * 2^23 + 2^15 (an int-to-float conversion was one more instruction on the device's slower
     * conversion pipe, a value) */
    const float from_midpoint =
        fabsf(mxmoe_f32_from_bits(0x4B000000u | (bits & 0xFFFFu)) - 8421376.0f);
    /* y is finite where decided: round to nearest even without the NaN case */
    *out = mxmoe_f32_from_bits((bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u);
    return decided && from_midpoint > fmaf(2.0f, k, 4.0f); /* 2k + 4 as before: 2k is exact */
}

#endif /* MXMOE_CORE_ACTIVATION_FP32_H */
