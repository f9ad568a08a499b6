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
