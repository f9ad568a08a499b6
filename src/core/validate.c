/*
 * validate.c — descriptor checks shared by the public entry points.
 */
#include <math.h>
#include <stdio.h>

#include "core/tensor.h"
#include "core/validate.h"

static const char* dtype_list(unsigned mask, char* buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < MXMOE_DTYPE_COUNT; d++) {
        if (mask & MXMOE_DTYPE_BIT(d)) {
            int n = snprintf(buf + used, size - used, "%s%s", used ? "/" : "",
                             mxmoe_dtype_name((mxmoe_dtype)d));
            if (n < 0 || (size_t)n >= size - used) {
                break;
            }
            used += (size_t)n;
        }
    }
    return buf;
}

static mxmoe_device backend_device(const mxmoe_ctx* ctx) {
    return ctx->backend == MXMOE_BACKEND_CUDA ? MXMOE_DEVICE_CUDA : MXMOE_DEVICE_HOST;
}

mxmoe_status mxmoe_check_tensor(mxmoe_ctx* ctx, const mxmoe_tensor* t, const char* name,
                                unsigned dtype_mask, int32_t ndim) {
    char dtypes[64];
    MXMOE_RETURN_IF(t == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "%s is NULL", name);
    MXMOE_RETURN_IF(t->ndim < 1 || t->ndim > MXMOE_MAX_DIMS, ctx, MXMOE_ERR_SHAPE,
                    "%s has rank %d, expected 1..%d", name, (int)t->ndim, MXMOE_MAX_DIMS);
    MXMOE_RETURN_IF(ndim != MXMOE_ANY_RANK && t->ndim != ndim, ctx, MXMOE_ERR_SHAPE,
                    "%s has rank %d, expected %d", name, (int)t->ndim, (int)ndim);
    for (int32_t i = 0; i < t->ndim; i++) {
        MXMOE_RETURN_IF(t->dims[i] < 0, ctx, MXMOE_ERR_SHAPE, "%s has a negative dim %lld", name,
                        (long long)t->dims[i]);
    }
    MXMOE_RETURN_IF((unsigned)t->dtype >= MXMOE_DTYPE_COUNT, ctx, MXMOE_ERR_DTYPE,
                    "%s has an invalid dtype %d", name, (int)t->dtype);
    MXMOE_RETURN_IF(!(dtype_mask & MXMOE_DTYPE_BIT(t->dtype)), ctx, MXMOE_ERR_DTYPE,
                    "%s must be %s, got %s", name, dtype_list(dtype_mask, dtypes, sizeof dtypes),
                    mxmoe_dtype_name(t->dtype));
    int64_t numel = mxmoe_tensor_numel(t);
    MXMOE_RETURN_IF(numel < 0 || (mxmoe_tensor_nbytes(t) == 0 && numel != 0), ctx,
                    MXMOE_ERR_OVERFLOW, "%s: the byte size of its dims overflows", name);
    MXMOE_RETURN_IF((unsigned)t->device >= MXMOE_DEVICE_COUNT, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "%s has an invalid device %d", name, (int)t->device);
    MXMOE_RETURN_IF(t->device != backend_device(ctx), ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "%s is in %s memory but the %s backend computes in %s memory", name,
                    t->device == MXMOE_DEVICE_CUDA ? "CUDA device" : "host",
                    mxmoe_backend_name(ctx->backend),
                    backend_device(ctx) == MXMOE_DEVICE_CUDA ? "CUDA device" : "host");
    MXMOE_RETURN_IF(t->data == NULL && numel != 0, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "%s has a NULL data pointer", name);
    return MXMOE_OK;
}

mxmoe_status mxmoe_check_dims(mxmoe_ctx* ctx, const mxmoe_tensor* t, const char* name, int32_t ndim,
                              const int64_t* want) {
    for (int32_t i = 0; i < ndim; i++) {
        MXMOE_RETURN_IF(t->dims[i] != want[i], ctx, MXMOE_ERR_SHAPE,
                        "%s has dims[%d] = %lld, expected %lld", name, (int)i,
                        (long long)t->dims[i], (long long)want[i]);
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_check_k(mxmoe_ctx* ctx, int64_t k, const char* what) {
    MXMOE_RETURN_IF(k <= 0 || k % 32 != 0, ctx, MXMOE_ERR_SHAPE,
                    "%s = %lld must be a positive multiple of 32 (one E8M0 scale per 32 elements)",
                    what, (long long)k);
    return MXMOE_OK;
}

mxmoe_status mxmoe_check_mx(mxmoe_ctx* ctx, const mxmoe_mx_tensor* t, const char* name,
                            const int64_t* lead, int32_t nlead, int64_t k, int allow_swizzled,
                            int64_t swizzled_min) {
    char what[96];
    int64_t want[MXMOE_MAX_DIMS];
    MXMOE_RETURN_IF(t == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "%s is NULL", name);
    for (int32_t i = 0; i < nlead; i++) {
        want[i] = lead[i];
    }
    want[nlead] = k / 2;
    snprintf(what, sizeof what, "%s.packed", name);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, &t->packed, what, MXMOE_DTYPE_BIT(MXMOE_U8), nlead + 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, &t->packed, what, nlead + 1, want));
    snprintf(what, sizeof what, "%s.scales", name);
    switch (t->scale_layout) {
    case MXMOE_SCALES_LINEAR:
        want[nlead] = k / 32;
        MXMOE_FORWARD(
            mxmoe_check_tensor(ctx, &t->scales, what, MXMOE_DTYPE_BIT(MXMOE_U8), nlead + 1));
        return mxmoe_check_dims(ctx, &t->scales, what, nlead + 1, want);
    case MXMOE_SCALES_SWIZZLED:
        MXMOE_RETURN_IF(!allow_swizzled, ctx, MXMOE_ERR_UNSUPPORTED,
                        "%s: this operation takes linear scales only", what);
        MXMOE_FORWARD(mxmoe_check_tensor(ctx, &t->scales, what, MXMOE_DTYPE_BIT(MXMOE_U8), 1));
        MXMOE_RETURN_IF(swizzled_min >= 0 && t->scales.dims[0] < swizzled_min, ctx, MXMOE_ERR_SHAPE,
                        "%s holds %lld bytes, the swizzled layout needs %lld", what,
                        (long long)t->scales.dims[0], (long long)swizzled_min);
        return MXMOE_OK;
    default:
        return mxmoe_fail(ctx, MXMOE_ERR_INVALID_ARGUMENT, "%s has an invalid scale layout %d",
                          name, (int)t->scale_layout);
    }
}

mxmoe_status mxmoe_check_scale_rule(mxmoe_ctx* ctx, mxmoe_scale_rule rule) {
    MXMOE_RETURN_IF((unsigned)rule >= MXMOE_RULE_COUNT, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "scale rule %d is not a mxmoe_scale_rule", (int)rule);
    return MXMOE_OK;
}

mxmoe_status mxmoe_check_act_params(mxmoe_ctx* ctx, const mxmoe_act_params* p) {
    MXMOE_RETURN_IF(p == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "activation params are NULL");
    MXMOE_RETURN_IF((unsigned)p->activation >= MXMOE_ACTIVATION_COUNT, ctx,
                    MXMOE_ERR_INVALID_ARGUMENT, "activation %d is not a mxmoe_activation",
                    (int)p->activation);
    MXMOE_RETURN_IF((unsigned)p->layout >= MXMOE_GATE_UP_LAYOUT_COUNT, ctx,
                    MXMOE_ERR_INVALID_ARGUMENT, "gate/up layout %d is not a mxmoe_gate_up_layout",
                    (int)p->layout);
    MXMOE_RETURN_IF(!isfinite(p->swiglu_alpha) || !isfinite(p->swiglu_limit) ||
                        p->swiglu_limit < 0.0f,
                    ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "swiglu alpha (%g) must be finite and limit (%g) finite and >= 0",
                    (double)p->swiglu_alpha, (double)p->swiglu_limit);
    MXMOE_RETURN_IF((unsigned)p->act_dtype >= MXMOE_DTYPE_COUNT ||
                        !(MXMOE_FLOAT_DTYPES & MXMOE_DTYPE_BIT(p->act_dtype)),
                    ctx, MXMOE_ERR_DTYPE, "act_dtype must be f32, bf16 or f16");
    return mxmoe_check_scale_rule(ctx, p->rule);
}
