/*
 * e2m1_round.h — the E2M1 element encoder of the reference (mx_numerics.h) computed by rounding
 * arithmetic instead of a chain of seven compares: the GPU quantizers are instruction-bound at
 * large token counts (1400 instructions per 32-element block), and this is most of them.
 *
 * |y| is rounded to a multiple of the E2M1 spacing of its binade (0.5 below 2, 1 in [2, 4), 2 in
 * [4, 8), saturating from there) by one FP32 add of M = 2^22 * spacing, whose unit in the last
 * place is that spacing: the sum is M plus k spacings, rounded to nearest with k even on a tie,
 * which is the even E2M1 code (the contract's ties-to-even). Its bits less M's are k, and k plus
 * twice the binade's distance from [1, 2) is the code: 13 SASS instructions an element with the
 * scaling, sign and packing, against 20 when the rounded value was decoded as a float
 * (bench/NOTES.md v25).
 *
 * The block's scale byte likewise, by one add and a shift (mxmoe_scale_byte_add) instead of the
 * reference's subnormal-aware switch.
 *
 * Equal to mxmoe_e2m1_magnitude_code for every FP32 in [0, 8) and beyond (saturating at 6):
 * tests/c/test_e2m1_round.c checks every one below 64 and a stride through the rest. Needs
 * round-to-nearest FP32 adds that are not reassociated or flushed to zero, which mxmoe's builds
 * guarantee (never -ffast-math; device code uses __fadd_rn, which nvcc never contracts or
 * folds).
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

/* Nearest E2M1 magnitude code of a = |y| >= 0 (ties to the even code, saturating at 6). c, a
 * clamped to [1, 8], has the binade e whose spacing rounds a; the rounded sum a + m is m + k
 * spacings, so its bits less m's are k, and k + 2 (e - 127) is the code (k = 2a below 2: codes 0-4;
 * a in [2, 4): k = a, codes 4-6; then k = a / 2: 6, 7, 8 -> 7; from 8 it saturates). */
static inline MXMOE_HD uint32_t mxmoe_e2m1_magnitude_code_rne(float a) {
    const float c = fminf(fmaxf(a, 1.0f), 8.0f);
    const uint32_t e_bits = mxmoe_f32_bits(c) & 0x7f800000u;   /* e << 23 */
    const float m = mxmoe_f32_from_bits(e_bits + (22u << 23)); /* 2^(e - 105): ulp = spacing */
    const uint32_t code =
        mxmoe_f32_bits(MXMOE_FADD_RN(a, m)) - mxmoe_f32_bits(m) + (e_bits >> 22) - 254u;
    return code < 7u ? code : 7u;
}

/* mxmoe_e2m1_code: x * 2^-(b-127) rounded to E2M1, sign bit = x's sign bit (b != 0xFF). */
static inline MXMOE_HD uint32_t mxmoe_e2m1_code_rne(float x, uint8_t b) {
    const float y = x * mxmoe_pow2f(127 - (int32_t)b);
    return ((mxmoe_f32_bits(x) >> 28) & 0x8u) | mxmoe_e2m1_magnitude_code_rne(fabsf(y));
}

/* The largest of n values' FP32 magnitude bits: the block's amax as mxmoe_scale_byte takes it
 * (NaN/Inf patterns are the largest, as in mxmoe_quantize_block). */
static inline MXMOE_HD uint32_t mxmoe_amax_bits(const float* x, int n) {
    uint32_t amax_bits = 0;
    MXMOE_UNROLL
    for (int i = 0; i < n; i++) {
        const uint32_t a = mxmoe_f32_bits(x[i]) & 0x7fffffffu;
        amax_bits = a > amax_bits ? a : amax_bits;
    }
    return amax_bits;
}

/* mxmoe_scale_byte by one add and one shift. Every rule is the exponent of amax moved up one
 * binade when its fraction passes the rule's point (FLOOR never, CEIL above 0, RCEIL above
 * 0x400000, EVEN from 0x600000), so amax's bits plus the rule's `add` carry into the exponent
 * field exactly then, and the field less 2 is the byte (s + 127). Subnormal and zero amax give
 * a field of 0 or 1, so -2 or -1, clamped to 0 as the reference clamps s to -127; the largest
 * finite amax gives 253, so the top needs no clamp. Branch-free for the device quantizers,
 * whose scale was ~30 instructions of the reference's subnormal-aware form a block
 * (bench/NOTES.md v46); tests/c/test_e2m1_round.c checks it against mxmoe_scale_byte. */
static inline MXMOE_HD uint32_t mxmoe_scale_rule_add(mxmoe_scale_rule rule) {
    return rule == MXMOE_RULE_FLOOR   ? 0u
           : rule == MXMOE_RULE_CEIL  ? 0x7fffffu
           : rule == MXMOE_RULE_RCEIL ? 0x3fffffu
                                      : 0x200000u; /* EVEN, the default */
}

static inline MXMOE_HD uint8_t mxmoe_scale_byte_add(uint32_t amax_bits, uint32_t add) {
    const int32_t b = (int32_t)((amax_bits + add) >> 23) - 2;
    return amax_bits >= 0x7f800000u ? MXMOE_E8M0_NAN : (uint8_t)(b < 0 ? 0 : b);
}

/* mxmoe_quantize_block with the encoder above: the same 16 packed bytes and scale byte. */
static inline MXMOE_HD uint8_t mxmoe_quantize_block_rne(const float* x, mxmoe_scale_rule rule,
                                                        uint8_t* packed) {
    const uint8_t b =
        mxmoe_scale_byte_add(mxmoe_amax_bits(x, MXMOE_BLOCK), mxmoe_scale_rule_add(rule));
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
