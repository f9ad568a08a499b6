/*
 * e2m1_round.h — the E2M1 element encoder of the reference (mx_numerics.h) computed by rounding
 * arithmetic instead of a chain of seven compares: the GPU quantizers are instruction-bound at
 * large token counts (1400 instructions per 32-element block), and this is most of them.
 *
 * |y| < 8 is rounded to a multiple of the E2M1 spacing of its binade (0.5 below 2, 1 in [2, 4),
 * 2 from 4) by one FP32 add of M = 2^22 * spacing, whose unit in the last place is that spacing:
 * round-to-nearest-even picks the even multiple on a tie, which is the even E2M1 code (the
 * contract's ties-to-even); subtracting M again is exact. A value that rounds up into the next
 * binade lands on its first E2M1 value, which is a multiple of either spacing. The code then
 * comes from the exponent and top mantissa bit of the rounded value.
 *
 * Equal to mxmoe_e2m1_magnitude_code for every FP32 in [0, 8) and beyond (saturating at 6):
 * tests/c/test_e2m1_round.c checks all of them. Needs round-to-nearest FP32 adds that are not
 * reassociated or flushed to zero, which mxmoe's builds guarantee (never -ffast-math; device code
 * uses __fadd_rn, which nvcc never contracts or folds).
 */
#ifndef MXMOE_CORE_E2M1_ROUND_H
#define MXMOE_CORE_E2M1_ROUND_H

#include <math.h>
#include <stdint.h>

#include "core/hd.h"
#include "core/tensor.h"
#include "ref/mx_numerics.h"

#if defined(__CUDA_ARCH__)
#define MXMOE_FADD_RN(a, b) __fadd_rn((a), (b))
#else
#define MXMOE_FADD_RN(a, b) ((a) + (b))
#endif

/* Nearest E2M1 magnitude code of a = |y| >= 0 (ties to the even code, saturating at 6). */
static inline MXMOE_HD uint32_t mxmoe_e2m1_magnitude_code_rne(float a) {
    uint32_t e = mxmoe_f32_bits(a) >> 23; /* biased exponent; below 1 the spacing of [1, 2) */
    e = e < 127u ? 127u : (e > 130u ? 130u : e);
    const float m = mxmoe_f32_from_bits((e + 22u) << 23);
    float r = MXMOE_FADD_RN(MXMOE_FADD_RN(a, m), -m);
    r = r < 6.0f ? r : 6.0f;
    /* 0, 0.5, 1, 1.5, 2, 3, 4, 6 have bits >> 22 of 0, 252, 254, 255, 256, 257, 258, 259 */
    uint32_t t = mxmoe_f32_bits(r) >> 22;
    t = t < 251u ? 251u : t;
    return t - 251u - (t > 252u ? 1u : 0u);
}

/* mxmoe_e2m1_code: x * 2^-(b-127) rounded to E2M1, sign bit = x's sign bit (b != 0xFF). */
static inline MXMOE_HD uint32_t mxmoe_e2m1_code_rne(float x, uint8_t b) {
    const float y = x * mxmoe_pow2f(127 - (int32_t)b);
    return ((mxmoe_f32_bits(x) >> 28) & 0x8u) | mxmoe_e2m1_magnitude_code_rne(fabsf(y));
}

/* mxmoe_quantize_block with the encoder above: the same 16 packed bytes and scale byte. */
static inline MXMOE_HD uint8_t mxmoe_quantize_block_rne(const float* x, mxmoe_scale_rule rule,
                                                        uint8_t* packed) {
    uint32_t amax_bits = 0;
    MXMOE_UNROLL
    for (int i = 0; i < MXMOE_BLOCK; i++) {
        const uint32_t a = mxmoe_f32_bits(x[i]) & 0x7fffffffu;
        amax_bits = a > amax_bits ? a : amax_bits; /* NaN/Inf patterns are the largest */
    }
    const uint8_t b = mxmoe_scale_byte(amax_bits, rule);
    MXMOE_UNROLL
    for (int i = 0; i < MXMOE_BLOCK / 2; i++) {
        uint32_t lo = 0, hi = 0;
        if (b != MXMOE_E8M0_NAN) {
            lo = mxmoe_e2m1_code_rne(x[2 * i], b);
            hi = mxmoe_e2m1_code_rne(x[2 * i + 1], b);
        }
        packed[i] = (uint8_t)(lo | (hi << 4));
    }
    return b;
}

#endif /* MXMOE_CORE_E2M1_ROUND_H */
