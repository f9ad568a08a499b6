/*
 * validate.h — descriptor checks shared by the public entry points (src/api).
 *
 * Each check names the argument in its message ("grouped_gemm: w.packed must be ...") and
 * returns the most specific status. Nothing here reads tensor data: what only the data can
 * tell (ids, offsets) is checked by the backend that can read it.
 */
#ifndef MXMOE_CORE_VALIDATE_H
#define MXMOE_CORE_VALIDATE_H

#include "core/ctx.h"

#define MXMOE_DTYPE_BIT(d) (1u << (d))
#define MXMOE_FLOAT_DTYPES                                                                         \
    (MXMOE_DTYPE_BIT(MXMOE_F32) | MXMOE_DTYPE_BIT(MXMOE_BF16) | MXMOE_DTYPE_BIT(MXMOE_F16))
#define MXMOE_ANY_RANK (-1)

/* Checks a descriptor: non-NULL, rank (exact, or 1..MAX_DIMS for MXMOE_ANY_RANK), dims >= 0,
 * byte size representable, dtype in `dtype_mask`, data non-NULL unless empty, and the device of
 * the context's backend. */
mxmoe_status mxmoe_check_tensor(mxmoe_ctx* ctx, const mxmoe_tensor* t, const char* name,
                                unsigned dtype_mask, int32_t ndim);

/* Checks dims[i] == want[i] for i < ndim (t already checked with that rank). */
mxmoe_status mxmoe_check_dims(mxmoe_ctx* ctx, const mxmoe_tensor* t, const char* name, int32_t ndim,
                              const int64_t* want);

/* Checks that k (a reduction length) is a positive multiple of 32. */
mxmoe_status mxmoe_check_k(mxmoe_ctx* ctx, int64_t k, const char* what);

/* Checks an MX tensor of logical shape [lead..., k] (lead given by `lead`, `nlead` dims):
 * packed U8 [lead..., k/2]; scales U8 [lead..., k/32] (linear) or U8 1-D with at least
 * `swizzled_min` bytes (swizzled; pass -1 if the backend checks the size from data);
 * `allow_swizzled` = 0 rejects the swizzled layout. */
mxmoe_status mxmoe_check_mx(mxmoe_ctx* ctx, const mxmoe_mx_tensor* t, const char* name,
                            const int64_t* lead, int32_t nlead, int64_t k, int allow_swizzled,
                            int64_t swizzled_min);

mxmoe_status mxmoe_check_scale_rule(mxmoe_ctx* ctx, mxmoe_scale_rule rule);
mxmoe_status mxmoe_check_act_params(mxmoe_ctx* ctx, const mxmoe_act_params* p);

#endif /* MXMOE_CORE_VALIDATE_H */
