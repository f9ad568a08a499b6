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

#include "mxmoe.h"

static inline uint32_t mxmoe_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float mxmoe_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float mxmoe_bf16_to_f32(uint16_t h) {
    return mxmoe_f32_from_bits((uint32_t)h << 16);
}

static inline uint16_t mxmoe_f32_to_bf16(float f) {
    uint32_t u = mxmoe_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN, sign kept */
    }
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float mxmoe_f16_to_f32(uint16_t h);
uint16_t mxmoe_f32_to_f16(float f);

/* Element i of a F32/BF16/F16 buffer as FP32 (exact). */
static inline float mxmoe_load_float(const void* data, mxmoe_dtype dtype, int64_t i) {
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
static inline void mxmoe_store_float(void* data, mxmoe_dtype dtype, int64_t i, float v) {
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
static inline float mxmoe_round_to_dtype(float v, mxmoe_dtype dtype) {
    switch (dtype) {
    case MXMOE_BF16:
        return mxmoe_bf16_to_f32(mxmoe_f32_to_bf16(v));
    case MXMOE_F16:
        return mxmoe_f16_to_f32(mxmoe_f32_to_f16(v));
    default:
        return v;
    }
}

static inline int mxmoe_dtype_is_float(mxmoe_dtype dtype) {
    return dtype == MXMOE_F32 || dtype == MXMOE_BF16 || dtype == MXMOE_F16;
}

/* Overflow-checked arithmetic on non-negative sizes: return 0 on overflow. */
static inline int mxmoe_mul_i64(int64_t a, int64_t b, int64_t* out) {
    if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) {
        return 0;
    }
    *out = a * b;
    return 1;
}

static inline int mxmoe_add_size(size_t a, size_t b, size_t* out) {
    if (b > SIZE_MAX - a) {
        return 0;
    }
    *out = a + b;
    return 1;
}

static inline int64_t mxmoe_ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

static inline int64_t mxmoe_round_up(int64_t a, int64_t b) {
    return mxmoe_ceil_div(a, b) * b;
}

/* Product of dims[begin..end) (-1 on overflow). */
int64_t mxmoe_dims_product(const mxmoe_tensor* t, int32_t begin, int32_t end);

/* Bytes of a tensor (0 on overflow or an invalid descriptor). */
size_t mxmoe_tensor_nbytes(const mxmoe_tensor* t);

#endif /* MXMOE_CORE_TENSOR_H */
