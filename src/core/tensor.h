/*
 * tensor.h — dtype traits, element conversions and size arithmetic shared by every layer.
 *
 * Conversions are exact where the format allows (BF16/F16 -> FP32) and round to nearest even
 * otherwise, NaN kept NaN, overflow to infinity: the numerics contract depends on them.
 */
#ifndef MXMOE_CORE_TENSOR_H
#define MXMOE_CORE_TENSOR_H

#include <stdint.h>
#include <string.h>

#include "core/hd.h"
#include "mxmoe.h"

static inline MXMOE_HD uint32_t mxmoe_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline MXMOE_HD float mxmoe_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline MXMOE_HD float mxmoe_bf16_to_f32(uint16_t h) {
    return mxmoe_f32_from_bits((uint32_t)h << 16);
}

static inline MXMOE_HD uint16_t mxmoe_f32_to_bf16(float f) {
    uint32_t u = mxmoe_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN, sign kept */
    }
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

static inline MXMOE_HD float mxmoe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) {
        return mxmoe_f32_from_bits(sign | 0x7f800000u | (man << 13));
    }
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in FP32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return mxmoe_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline MXMOE_HD uint16_t mxmoe_f32_to_f16(float f) {
    uint32_t u = mxmoe_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    }
    if (abs >= 0x477ff000u) { /* >= 65520 = max half + half an ulp: rounds to infinity */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (abs >= 0x38800000u) { /* normal half: re-bias the exponent, round 13 bits away (RNE) */
        uint32_t v = abs - (112u << 23);
        v += 0xfffu + ((v >> 13) & 1u);
        return (uint16_t)(sign | (v >> 13));
    }
    /* subnormal half (or zero): value / 2^-24 rounded to an integer, ties to even */
    if (abs < 0x33000000u) { /* < 2^-25: rounds to zero (2^-25 itself ties to 0) */
        return sign;
    }
    uint32_t exp = abs >> 23;
    uint32_t man = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp; /* value = man * 2^(exp-150); want value * 2^24 */
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) {
        q++;
    }
    return (uint16_t)(sign | q);
}

/* Element i of a F32/BF16/F16 buffer as FP32 (exact). */
static inline MXMOE_HD float mxmoe_load_float(const void* data, mxmoe_dtype dtype, int64_t i) {
    switch (dtype) {
    case MXMOE_BF16:
        return mxmoe_bf16_to_f32(((const uint16_t*)data)[i]);
    case MXMOE_F16:
        return mxmoe_f16_to_f32(((const uint16_t*)data)[i]);
    default:
        return ((const float*)data)[i];
    }
}

/* Stores an FP32 value into a F32/BF16/F16 buffer, rounding to nearest even. */
static inline MXMOE_HD void mxmoe_store_float(void* data, mxmoe_dtype dtype, int64_t i, float v) {
    switch (dtype) {
    case MXMOE_BF16:
        ((uint16_t*)data)[i] = mxmoe_f32_to_bf16(v);
        break;
    case MXMOE_F16:
        ((uint16_t*)data)[i] = mxmoe_f32_to_f16(v);
        break;
    default:
        ((float*)data)[i] = v;
        break;
    }
}

/* Rounds an FP32 value to `dtype` and back (the value a F32/BF16/F16 buffer would hold). */
static inline MXMOE_HD float mxmoe_round_to_dtype(float v, mxmoe_dtype dtype) {
    switch (dtype) {
    case MXMOE_BF16:
        return mxmoe_bf16_to_f32(mxmoe_f32_to_bf16(v));
    case MXMOE_F16:
        return mxmoe_f16_to_f32(mxmoe_f32_to_f16(v));
    default:
        return v;
    }
}

static inline MXMOE_HD int mxmoe_dtype_is_float(mxmoe_dtype dtype) {
    return dtype == MXMOE_F32 || dtype == MXMOE_BF16 || dtype == MXMOE_F16;
}

/* Overflow-checked arithmetic on non-negative sizes: return 0 on overflow. */
static inline MXMOE_HD int mxmoe_mul_i64(int64_t a, int64_t b, int64_t* out) {
    if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) {
        return 0;
    }
    *out = a * b;
    return 1;
}

static inline MXMOE_HD int mxmoe_add_size(size_t a, size_t b, size_t* out) {
    if (b > SIZE_MAX - a) {
        return 0;
    }
    *out = a + b;
    return 1;
}

static inline MXMOE_HD int64_t mxmoe_ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

static inline MXMOE_HD int64_t mxmoe_round_up(int64_t a, int64_t b) {
    return mxmoe_ceil_div(a, b) * b;
}

/* Product of dims[begin..end) (-1 on overflow). */
int64_t mxmoe_dims_product(const mxmoe_tensor* t, int32_t begin, int32_t end);

/* Bytes of a tensor (0 on overflow or an invalid descriptor). */
size_t mxmoe_tensor_nbytes(const mxmoe_tensor* t);

#endif /* MXMOE_CORE_TENSOR_H */
