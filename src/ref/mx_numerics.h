/*
 * mx_numerics.h — the MXFP4 numerics of SPEC §2, scalar and exact: E2M1 codes, E8M0 scale
 * rules, element rounding, decoding. Everything is integer/bit arithmetic on FP32 patterns:
 * no log2f (off by one below powers of two), no dependence on the FPU's flush-to-zero mode
 * beyond IEEE multiplication by a power of two.
 *
 * This is the oracle's core; optimised backends must reproduce it bit for bit.
 */
#ifndef MXMOE_REF_MX_NUMERICS_H
#define MXMOE_REF_MX_NUMERICS_H

#include <math.h>
#include <stdint.h>

#include "core/tensor.h"

#define MXMOE_E8M0_NAN 0xFFu

/* E2M1 code -> 2 * value, an integer in [-12, 12]: block dot products are exact in integers.
 * Magnitudes 0..7 map to {0, 1, 2, 3, 4, 6, 8, 12}; bit 3 is the sign (0x8 is -0). */
static inline MXMOE_HD int32_t mxmoe_e2m1_doubled(uint32_t code) {
    int32_t m = (int32_t)(code & 7u);
    int32_t mag = m < 4 ? m : (2 + (m & 1)) << ((m >> 1) - 1);
    return (code & 8u) ? -mag : mag;
}

/* 2^e as FP64 for e in [-1022, 1023], built from bits. */
static inline MXMOE_HD double mxmoe_pow2d(int32_t e) {
    uint64_t u = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* 2^e as FP32 for e in [-149, 127], built from bits (2^-127 is the subnormal 0x00400000). */
static inline MXMOE_HD float mxmoe_pow2f(int32_t e) {
    if (e >= -126) {
        return mxmoe_f32_from_bits((uint32_t)(e + 127) << 23);
    }
    return mxmoe_f32_from_bits(1u << (e + 149));
}

/* E8M0 byte -> FP32 scale (NaN for 0xFF). */
static inline MXMOE_HD float mxmoe_e8m0_to_f32(uint8_t b) {
    return b == MXMOE_E8M0_NAN ? NAN : mxmoe_pow2f((int32_t)b - 127);
}

static inline MXMOE_HD int32_t mxmoe_msb_index(uint32_t v) { /* v != 0 */
    int32_t i = 0;
    while (v >>= 1) {
        i++;
    }
    return i;
}

/* floor(log2 v) of a finite positive FP32 given by its bit pattern, subnormals included. */
static inline MXMOE_HD int32_t mxmoe_floor_log2_bits(uint32_t abs_bits) {
    uint32_t field = abs_bits >> 23;
    if (field != 0) {
        return (int32_t)field - 127;
    }
    return mxmoe_msb_index(abs_bits) - 149;
}

/* The 23 fraction bits of v normalised to 1.f (subnormals shifted up). */
static inline MXMOE_HD uint32_t mxmoe_normalized_fraction(uint32_t abs_bits) {
    if ((abs_bits >> 23) != 0) {
        return abs_bits & 0x7fffffu;
    }
    return (abs_bits << (23 - mxmoe_msb_index(abs_bits))) & 0x7fffffu;
}

/* Unclamped scale exponent of a block whose amax (finite, > 0) has bit pattern abs_bits. */
static inline MXMOE_HD int32_t mxmoe_scale_exponent_unclamped(uint32_t abs_bits,
                                                              mxmoe_scale_rule rule) {
    int32_t e = mxmoe_floor_log2_bits(abs_bits);
    uint32_t frac = mxmoe_normalized_fraction(abs_bits);
    switch (rule) {
    case MXMOE_RULE_FLOOR:
        return e - 2;
    case MXMOE_RULE_CEIL: /* ceil(log2 amax) - 2 */
        return e + (frac != 0) - 2;
    case MXMOE_RULE_RCEIL: /* smallest s with 6 * 2^s >= amax; 4*2^(e-2) <= amax < 8*2^(e-2) */
        return e - 2 + (frac > 0x400000u);
    case MXMOE_RULE_EVEN:
    default:
        /* amax rounded (half up) to one mantissa bit moves to the next binade exactly when its
         * significand is >= 1.75: the 2^21 bit-add of torchao / compressed-tensors. */
        return e + (frac >= 0x600000u) - 2;
    }
}

/* E8M0 scale byte for a block with the given amax bit pattern (sign cleared). NaN/Inf -> 0xFF,
 * zero -> 0x00. */
static inline MXMOE_HD uint8_t mxmoe_scale_byte(uint32_t amax_bits, mxmoe_scale_rule rule) {
    if (amax_bits >= 0x7f800000u) {
        return MXMOE_E8M0_NAN;
    }
    if (amax_bits == 0) {
        return 0;
    }
    int32_t s = mxmoe_scale_exponent_unclamped(amax_bits, rule);
    s = s < -127 ? -127 : (s > 127 ? 127 : s);
    return (uint8_t)(s + 127);
}

/* Nearest E2M1 magnitude code of |y| (ties to the even code, saturating at 6). */
static inline MXMOE_HD uint8_t mxmoe_e2m1_magnitude_code(float a) {
    if (a <= 0.25f) {
        return 0;
    }
    if (a < 0.75f) {
        return 1;
    }
    if (a <= 1.25f) {
        return 2;
    }
    if (a < 1.75f) {
        return 3;
    }
    if (a <= 2.5f) {
        return 4;
    }
    if (a < 3.5f) {
        return 5;
    }
    if (a <= 5.0f) {
        return 6;
    }
    return 7;
}

/* Code of element x in a block with scale byte b (b != 0xFF): x * 2^-(b-127) rounded to E2M1,
 * sign bit = x's sign bit (so -0 and tiny negatives are 0x8). The scaling is exact: the scale
 * keeps |x| * 2^-s below 8, and values that would underflow round to 0 anyway. */
static inline MXMOE_HD uint8_t mxmoe_e2m1_code(float x, uint8_t b) {
    float y = x * mxmoe_pow2f(127 - (int32_t)b);
    uint8_t sign = (uint8_t)((mxmoe_f32_bits(x) >> 28) & 0x8u);
    return (uint8_t)(sign | mxmoe_e2m1_magnitude_code(fabsf(y)));
}

/* Quantizes one block of 32 FP32 values: writes 16 packed bytes (element 2i low nibble of byte
 * i) and returns the scale byte. */
static inline MXMOE_HD uint8_t mxmoe_quantize_block(const float* x, mxmoe_scale_rule rule,
                                                    uint8_t* packed) {
    uint32_t amax_bits = 0;
    MXMOE_UNROLL
    for (int i = 0; i < MXMOE_BLOCK; i++) {
        uint32_t a = mxmoe_f32_bits(x[i]) & 0x7fffffffu;
        amax_bits = a > amax_bits ? a : amax_bits; /* NaN/Inf patterns are the largest */
    }
    uint8_t b = mxmoe_scale_byte(amax_bits, rule);
    MXMOE_UNROLL
    for (int i = 0; i < MXMOE_BLOCK / 2; i++) {
        uint8_t lo = 0, hi = 0;
        if (b != MXMOE_E8M0_NAN) {
            lo = mxmoe_e2m1_code(x[2 * i], b);
            hi = mxmoe_e2m1_code(x[2 * i + 1], b);
        }
        packed[i] = (uint8_t)(lo | (hi << 4));
    }
    return b;
}

/* Value of element i of a block (exact in FP64; one rounding when stored narrower). */
static inline MXMOE_HD double mxmoe_dequantize_element(const uint8_t* packed, uint8_t b, int i) {
    if (b == MXMOE_E8M0_NAN) {
        return NAN;
    }
    uint32_t code = (packed[i / 2] >> (4 * (i % 2))) & 0xFu;
    double magnitude = 0.5 * (double)mxmoe_e2m1_doubled(code & 7u);
    double value = (code & 8u) ? -magnitude : magnitude; /* code 0x8 is -0 */
    return value * mxmoe_pow2d((int32_t)b - 127);
}

/* The FP32 value of one block's dot product: isum (the integer dot product of doubled E2M1
 * codes) * 2^(sa - 127) * 2^(sb - 127) / 4, rounded once to FP32 (exact unless it under- or
 * overflows FP32). NaN if either scale is 0xFF. */
static inline MXMOE_HD float mxmoe_block_term(int32_t isum, uint32_t sa, uint32_t sb) {
    if (sa == MXMOE_E8M0_NAN || sb == MXMOE_E8M0_NAN) {
        return NAN;
    }
    int32_t e = (int32_t)sa + (int32_t)sb - 256;
    if (e >= -149 && e <= 127) {
        /* (float)isum is exact (|isum| <= 4608) and so is 2^e, so one IEEE multiply is the
         * exact product rounded once: the common case, in FP32 only. (Callers compile without
         * FMA contraction, so this product is never fused into a following add.) */
        return (float)isum * mxmoe_pow2f(e);
    }
    return (float)((double)isum * mxmoe_pow2d(e)); /* 2^e outside FP32: round once from FP64 */
}

#endif /* MXMOE_REF_MX_NUMERICS_H */
