/*
 * tensor.c — tensor descriptors, dtype traits and the FP16 conversions.
 */
#include "core/tensor.h"

static const struct {
    const char* name;
    size_t size;
} dtype_traits[MXMOE_DTYPE_COUNT] = {
    [MXMOE_F32] = {"f32", 4}, [MXMOE_BF16] = {"bf16", 2}, [MXMOE_F16] = {"f16", 2},
    [MXMOE_U8] = {"u8", 1},   [MXMOE_I32] = {"i32", 4},
};

size_t mxmoe_dtype_size(mxmoe_dtype dtype) {
    return (unsigned)dtype < MXMOE_DTYPE_COUNT ? dtype_traits[dtype].size : 0;
}

const char* mxmoe_dtype_name(mxmoe_dtype dtype) {
    return (unsigned)dtype < MXMOE_DTYPE_COUNT ? dtype_traits[dtype].name : "invalid";
}

mxmoe_tensor mxmoe_tensor_make(void* data, mxmoe_dtype dtype, int32_t ndim, const int64_t* dims) {
    mxmoe_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.device = MXMOE_DEVICE_HOST;
    t.ndim = ndim;
    for (int32_t i = 0; i < MXMOE_MAX_DIMS; i++) {
        t.dims[i] = (dims != NULL && i < ndim) ? dims[i] : 1;
    }
    return t;
}

int64_t mxmoe_dims_product(const mxmoe_tensor* t, int32_t begin, int32_t end) {
    int64_t n = 1;
    for (int32_t i = begin; i < end; i++) {
        if (t->dims[i] < 0 || !mxmoe_mul_i64(n, t->dims[i], &n)) {
            return -1;
        }
    }
    return n;
}

int64_t mxmoe_tensor_numel(const mxmoe_tensor* t) {
    if (t == NULL || t->ndim < 1 || t->ndim > MXMOE_MAX_DIMS) {
        return -1;
    }
    return mxmoe_dims_product(t, 0, t->ndim);
}

size_t mxmoe_tensor_nbytes(const mxmoe_tensor* t) {
    int64_t n = mxmoe_tensor_numel(t);
    int64_t bytes;
    if (n < 0 || !mxmoe_mul_i64(n, (int64_t)mxmoe_dtype_size(t->dtype), &bytes) ||
        (uint64_t)bytes > SIZE_MAX) {
        return 0;
    }
    return (size_t)bytes;
}

float mxmoe_f16_to_f32(uint16_t h) {
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

uint16_t mxmoe_f32_to_f16(float f) {
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
