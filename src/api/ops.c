/*
 * ops.c — the public operations: validate every descriptor, then dispatch to the context's
 * backend. Validation happens here, once, before any backend work, so every backend sees
 * well-formed shapes and a caller sees the same errors whatever the backend.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/prepared.h"
#include "core/scale_layout.h"
#include "core/tensor.h"
#include "core/validate.h"

/* Every entry point starts here: a NULL context is an error, and the last message is cleared. */
#define MXMOE_BEGIN(ctx)                                                                           \
    do {                                                                                           \
        if ((ctx) == NULL) {                                                                       \
            return MXMOE_ERR_INVALID_ARGUMENT;                                                     \
        }                                                                                          \
        (ctx)->last_error[0] = '\0';                                                               \
    } while (0)

#define I32_BIT MXMOE_DTYPE_BIT(MXMOE_I32)
#define U8_BIT  MXMOE_DTYPE_BIT(MXMOE_U8)

static int activation_is_gated(mxmoe_activation a) {
    return a == MXMOE_ACT_SILU_MUL || a == MXMOE_ACT_GELU_TANH_MUL || a == MXMOE_ACT_SWIGLU_OAI;
}

/* Expert offsets: I32 [E+1] with E >= 1; writes E. */
static mxmoe_status check_offsets(mxmoe_ctx* ctx, const mxmoe_tensor* offsets, const char* name,
                                  int64_t* num_experts) {
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, offsets, name, I32_BIT, 1));
    MXMOE_RETURN_IF(offsets->dims[0] < 2, ctx, MXMOE_ERR_SHAPE,
                    "%s has %lld entries, expected E+1 >= 2", name, (long long)offsets->dims[0]);
    *num_experts = offsets->dims[0] - 1;
    return MXMOE_OK;
}

static mxmoe_status check_row_count(mxmoe_ctx* ctx, int64_t rows, const char* what) {
    MXMOE_RETURN_IF(rows > INT32_MAX, ctx, MXMOE_ERR_OVERFLOW,
                    "%s = %lld rows exceeds the int32 row index range", what, (long long)rows);
    return MXMOE_OK;
}

/* --- 1. quantization -------------------------------------------------------------------------- */

mxmoe_status mxmoe_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                            mxmoe_mx_tensor* out) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, "quantize: x", MXMOE_FLOAT_DTYPES, MXMOE_ANY_RANK));
    int64_t k = x->dims[x->ndim - 1];
    MXMOE_FORWARD(mxmoe_check_k(ctx, k, "quantize: K (the last dim of x)"));
    MXMOE_FORWARD(mxmoe_check_scale_rule(ctx, rule));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, out, "quantize: out", x->dims, x->ndim - 1, k, 0, -1));
    return ctx->ops->quantize(ctx, x, rule, out);
}

mxmoe_status mxmoe_dequantize(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(
        mxmoe_check_tensor(ctx, out, "dequantize: out", MXMOE_FLOAT_DTYPES, MXMOE_ANY_RANK));
    int64_t k = out->dims[out->ndim - 1];
    MXMOE_FORWARD(mxmoe_check_k(ctx, k, "dequantize: K (the last dim of out)"));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, in, "dequantize: in", out->dims, out->ndim - 1, k, 0, -1));
    return ctx->ops->dequantize(ctx, in, out);
}

mxmoe_status mxmoe_gguf_from_mx(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* gguf) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, gguf, "gguf_from_mx: gguf", U8_BIT, MXMOE_ANY_RANK));
    int64_t last = gguf->dims[gguf->ndim - 1];
    MXMOE_RETURN_IF(last <= 0 || last % 17 != 0, ctx, MXMOE_ERR_SHAPE,
                    "gguf_from_mx: gguf's last dim %lld is not a positive multiple of 17 "
                    "(bytes per block_mxfp4)",
                    (long long)last);
    MXMOE_FORWARD(mxmoe_check_mx(ctx, in, "gguf_from_mx: in", gguf->dims, gguf->ndim - 1,
                                 last / 17 * 32, 0, -1));
    return ctx->ops->gguf_from_mx(ctx, in, gguf);
}

mxmoe_status mxmoe_mx_from_gguf(mxmoe_ctx* ctx, const mxmoe_tensor* gguf, mxmoe_mx_tensor* out) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, gguf, "mx_from_gguf: gguf", U8_BIT, MXMOE_ANY_RANK));
    int64_t last = gguf->dims[gguf->ndim - 1];
    MXMOE_RETURN_IF(last <= 0 || last % 17 != 0, ctx, MXMOE_ERR_SHAPE,
                    "mx_from_gguf: gguf's last dim %lld is not a positive multiple of 17 "
                    "(bytes per block_mxfp4)",
                    (long long)last);
    MXMOE_FORWARD(mxmoe_check_mx(ctx, out, "mx_from_gguf: out", gguf->dims, gguf->ndim - 1,
                                 last / 17 * 32, 0, -1));
    return ctx->ops->mx_from_gguf(ctx, gguf, out);
}

/* --- 2. scale layouts ------------------------------------------------------------------------- */

static mxmoe_status check_swizzle_args(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                       const mxmoe_tensor* swizzled, const char* op) {
    char name[64];
    MXMOE_FORWARD(mxmoe_check_k(ctx, k, "swizzle: k"));
    snprintf(name, sizeof name, "%s: linear", op);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, linear, name, U8_BIT, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, linear, name, 2, (int64_t[]){linear->dims[0], k / 32}));
    snprintf(name, sizeof name, "%s: swizzled", op);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, swizzled, name, U8_BIT, 1));
    size_t need = mxmoe_swizzled_scale_bytes(linear->dims[0], k);
    MXMOE_RETURN_IF(need == 0 && linear->dims[0] != 0, ctx, MXMOE_ERR_OVERFLOW,
                    "%s: swizzled size overflows", op);
    MXMOE_RETURN_IF((uint64_t)swizzled->dims[0] < need, ctx, MXMOE_ERR_SHAPE,
                    "%s holds %lld bytes, the swizzled layout of %lld rows x K=%lld needs %zu",
                    name, (long long)swizzled->dims[0], (long long)linear->dims[0], (long long)k,
                    need);
    return MXMOE_OK;
}

mxmoe_status mxmoe_swizzle_scales(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                  mxmoe_tensor* swizzled) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(check_swizzle_args(ctx, linear, k, swizzled, "swizzle_scales"));
    return ctx->ops->swizzle_scales(ctx, linear, k, swizzled);
}

mxmoe_status mxmoe_unswizzle_scales(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                    mxmoe_tensor* linear) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(check_swizzle_args(ctx, linear, k, swizzled, "unswizzle_scales"));
    return ctx->ops->unswizzle_scales(ctx, swizzled, k, linear);
}

/* --- 3. routing and planning --------------------------------------------------------------------
 */

mxmoe_route_params mxmoe_route_params_default(void) {
    mxmoe_route_params p;
    memset(&p, 0, sizeof p);
    p.method = MXMOE_ROUTE_SOFTMAX_TOPK;
    p.top_k = 1;
    p.renormalize = 0;
    p.num_groups = 1;
    p.topk_groups = 1;
    p.scaling_factor = 1.0f;
    p.correction_bias = NULL;
    return p;
}

mxmoe_status mxmoe_route(mxmoe_ctx* ctx, const mxmoe_tensor* logits, const mxmoe_route_params* p,
                         mxmoe_tensor* topk_ids, mxmoe_tensor* topk_weights) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, logits, "route: logits", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_RETURN_IF(p == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "route: params are NULL");
    int64_t T = logits->dims[0], E = logits->dims[1];
    MXMOE_RETURN_IF(E < 1 || E > INT32_MAX, ctx, MXMOE_ERR_SHAPE, "route: logits have %lld experts",
                    (long long)E);
    MXMOE_RETURN_IF((unsigned)p->method >= MXMOE_ROUTING_COUNT, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "route: method %d is not a mxmoe_routing", (int)p->method);
    MXMOE_RETURN_IF(p->top_k < 1 || p->top_k > E, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "route: top_k = %d must be in [1, %lld]", (int)p->top_k, (long long)E);
    if (p->method == MXMOE_ROUTE_SIGMOID_GROUPED) {
        MXMOE_RETURN_IF(p->num_groups < 1 || E % p->num_groups != 0, ctx,
                        MXMOE_ERR_INVALID_ARGUMENT,
                        "route: num_groups = %d must divide the %lld experts", (int)p->num_groups,
                        (long long)E);
        MXMOE_RETURN_IF(p->topk_groups < 1 || p->topk_groups > p->num_groups, ctx,
                        MXMOE_ERR_INVALID_ARGUMENT, "route: topk_groups = %d must be in [1, %d]",
                        (int)p->topk_groups, (int)p->num_groups);
        MXMOE_RETURN_IF((int64_t)p->top_k > (int64_t)p->topk_groups * (E / p->num_groups), ctx,
                        MXMOE_ERR_INVALID_ARGUMENT,
                        "route: top_k = %d exceeds the %lld experts of the %d kept groups",
                        (int)p->top_k, (long long)(p->topk_groups * (E / p->num_groups)),
                        (int)p->topk_groups);
        MXMOE_RETURN_IF(!isfinite(p->scaling_factor), ctx, MXMOE_ERR_INVALID_ARGUMENT,
                        "route: scaling_factor must be finite");
        if (p->correction_bias != NULL) {
            MXMOE_FORWARD(mxmoe_check_tensor(ctx, p->correction_bias, "route: correction_bias",
                                             MXMOE_DTYPE_BIT(MXMOE_F32), 1));
            MXMOE_FORWARD(
                mxmoe_check_dims(ctx, p->correction_bias, "route: correction_bias", 1, &E));
        }
    }
    int64_t want[2] = {T, p->top_k};
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, topk_ids, "route: topk_ids", I32_BIT, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, topk_ids, "route: topk_ids", 2, want));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, topk_weights, "route: topk_weights",
                                     MXMOE_DTYPE_BIT(MXMOE_F32), 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, topk_weights, "route: topk_weights", 2, want));
    return ctx->ops->route(ctx, logits, p, topk_ids, topk_weights);
}

/* topk_ids I32 [T, k] with T*k within int32; optional expert_map I32 [E_global]. */
static mxmoe_status check_ids(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                              const mxmoe_tensor* expert_map, const char* op, int64_t* pairs) {
    char name[64];
    snprintf(name, sizeof name, "%s: topk_ids", op);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, topk_ids, name, I32_BIT, 2));
    MXMOE_RETURN_IF(topk_ids->dims[1] < 1, ctx, MXMOE_ERR_SHAPE, "%s: top-k is 0", op);
    *pairs = topk_ids->dims[0] * topk_ids->dims[1];
    MXMOE_FORWARD(check_row_count(ctx, *pairs, "tokens x top-k"));
    if (expert_map != NULL) {
        snprintf(name, sizeof name, "%s: expert_map", op);
        MXMOE_FORWARD(mxmoe_check_tensor(ctx, expert_map, name, I32_BIT, 1));
        MXMOE_RETURN_IF(expert_map->dims[0] < 1 || expert_map->dims[0] > INT32_MAX, ctx,
                        MXMOE_ERR_SHAPE, "%s has %lld entries", name,
                        (long long)expert_map->dims[0]);
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_plan(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                        const mxmoe_tensor* expert_map, int32_t num_experts, mxmoe_tensor* counts,
                        mxmoe_tensor* offsets, mxmoe_tensor* sorted, mxmoe_tensor* row_of) {
    MXMOE_BEGIN(ctx);
    int64_t pairs;
    MXMOE_FORWARD(check_ids(ctx, topk_ids, expert_map, "plan", &pairs));
    MXMOE_RETURN_IF(num_experts < 1 || num_experts == INT32_MAX, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "plan: num_experts = %d must be >= 1", (int)num_experts);
    int64_t e = num_experts, e1 = (int64_t)num_experts + 1;
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, counts, "plan: counts", I32_BIT, 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, counts, "plan: counts", 1, &e));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, offsets, "plan: offsets", I32_BIT, 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, offsets, "plan: offsets", 1, &e1));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, sorted, "plan: sorted", I32_BIT, 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, sorted, "plan: sorted", 1, &pairs));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, row_of, "plan: row_of", I32_BIT, 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, row_of, "plan: row_of", 1, &pairs));
    return ctx->ops->plan(ctx, topk_ids, expert_map, num_experts, counts, offsets, sorted, row_of);
}

/* --- 4. grouped operations -------------------------------------------------------------------- */

mxmoe_status mxmoe_experts_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                    const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                    mxmoe_mx_tensor* out) {
    MXMOE_BEGIN(ctx);
    int64_t num_experts = 0;
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, "experts_quantize: x", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_k(ctx, x->dims[1], "experts_quantize: K (dim 1 of x)"));
    MXMOE_FORWARD(check_row_count(ctx, x->dims[0], "experts_quantize: rows of x"));
    MXMOE_FORWARD(check_offsets(ctx, offsets, "experts_quantize: offsets", &num_experts));
    MXMOE_FORWARD(mxmoe_check_scale_rule(ctx, rule));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, out, "experts_quantize: out", x->dims, 1, x->dims[1], 1, -1));
    return ctx->ops->experts_quantize(ctx, x, offsets, rule, out);
}

mxmoe_status mxmoe_permute_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                    const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                    int32_t top_k, mxmoe_scale_rule rule, mxmoe_mx_tensor* out) {
    MXMOE_BEGIN(ctx);
    int64_t num_experts = 0;
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, "permute_quantize: x", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_k(ctx, x->dims[1], "permute_quantize: K (dim 1 of x)"));
    MXMOE_RETURN_IF(top_k < 1, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "permute_quantize: top_k = %d must be >= 1", (int)top_k);
    int64_t pairs;
    MXMOE_RETURN_IF(!mxmoe_mul_i64(x->dims[0], top_k, &pairs), ctx, MXMOE_ERR_OVERFLOW,
                    "permute_quantize: tokens x top_k overflows");
    MXMOE_FORWARD(check_row_count(ctx, pairs, "permute_quantize: tokens x top-k"));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, sorted, "permute_quantize: sorted", I32_BIT, 1));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, sorted, "permute_quantize: sorted", 1, &pairs));
    MXMOE_FORWARD(check_offsets(ctx, offsets, "permute_quantize: offsets", &num_experts));
    MXMOE_FORWARD(mxmoe_check_scale_rule(ctx, rule));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, out, "permute_quantize: out", &pairs, 1, x->dims[1], 1, -1));
    return ctx->ops->permute_quantize(ctx, x, sorted, offsets, top_k, rule, out);
}

mxmoe_act_params mxmoe_act_params_default(void) {
    mxmoe_act_params p;
    memset(&p, 0, sizeof p);
    p.activation = MXMOE_ACT_SILU_MUL;
    p.layout = MXMOE_GATE_UP_CONCAT;
    p.swiglu_alpha = 1.702f;
    p.swiglu_limit = 7.0f;
    p.act_dtype = MXMOE_BF16;
    p.rule = MXMOE_RULE_EVEN;
    return p;
}

mxmoe_status mxmoe_act_and_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                    const mxmoe_tensor* offsets, const mxmoe_act_params* p,
                                    mxmoe_mx_tensor* out) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(mxmoe_check_act_params(ctx, p));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, h, "act_and_quantize: h", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(check_row_count(ctx, h->dims[0], "act_and_quantize: rows of h"));
    int gated = activation_is_gated(p->activation);
    MXMOE_RETURN_IF(gated && h->dims[1] % 2 != 0, ctx, MXMOE_ERR_SHAPE,
                    "act_and_quantize: a gated activation needs an even width, h has %lld",
                    (long long)h->dims[1]);
    int64_t inter = gated ? h->dims[1] / 2 : h->dims[1];
    MXMOE_FORWARD(mxmoe_check_k(ctx, inter, "act_and_quantize: intermediate size I"));
    int64_t num_experts = 0;
    int64_t swizzled_min = -1; /* with offsets the backend sizes the grouped span from data */
    if (offsets != NULL) {
        MXMOE_FORWARD(check_offsets(ctx, offsets, "act_and_quantize: offsets", &num_experts));
    } else {
        swizzled_min = (int64_t)mxmoe_swizzled_scale_bytes(h->dims[0], inter);
    }
    MXMOE_FORWARD(
        mxmoe_check_mx(ctx, out, "act_and_quantize: out", h->dims, 1, inter, 1, swizzled_min));
    return ctx->ops->act_and_quantize(ctx, h, offsets, p, out);
}

/* Expert weights: MXFP4 [E, N, K] with E = *experts where given (else any E >= 1). */
static mxmoe_status check_weights(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, const char* what,
                                  const int64_t* experts) {
    MXMOE_RETURN_IF(w == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "%s: w is NULL", what);
    char name[64];
    snprintf(name, sizeof name, "%s: w.packed", what);
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, &w->packed, name, U8_BIT, 3));
    int64_t N = w->packed.dims[1], k = w->packed.dims[2] * 2;
    snprintf(name, sizeof name, "%s: K (2 x dim 2 of w.packed)", what);
    MXMOE_FORWARD(mxmoe_check_k(ctx, k, name));
    MXMOE_RETURN_IF(N < 1, ctx, MXMOE_ERR_SHAPE, "%s: w has N = 0 output rows", what);
    int64_t w_lead[2] = {experts != NULL ? *experts : w->packed.dims[0], N};
    int64_t swz;
    MXMOE_RETURN_IF(!mxmoe_mul_i64(w_lead[0], (int64_t)mxmoe_swizzled_scale_bytes(N, k), &swz), ctx,
                    MXMOE_ERR_OVERFLOW, "%s: swizzled weight scale size overflows", what);
    snprintf(name, sizeof name, "%s: w", what);
    return mxmoe_check_mx(ctx, w, name, w_lead, 2, k, 1, swz);
}

mxmoe_status mxmoe_grouped_gemm(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                                const mxmoe_tensor* offsets, const mxmoe_tensor* bias,
                                mxmoe_tensor* out) {
    MXMOE_BEGIN(ctx);
    int64_t num_experts = 0;
    MXMOE_FORWARD(check_offsets(ctx, offsets, "grouped_gemm: offsets", &num_experts));
    MXMOE_RETURN_IF(w == NULL || a == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "grouped_gemm: a or w is NULL");
    MXMOE_FORWARD(check_weights(ctx, w, "grouped_gemm", &num_experts));
    int64_t N = w->packed.dims[1], k = w->packed.dims[2] * 2;
    int64_t w_lead[2] = {num_experts, N};
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, &a->packed, "grouped_gemm: a.packed", U8_BIT, 2));
    int64_t rows = a->packed.dims[0];
    MXMOE_FORWARD(check_row_count(ctx, rows, "grouped_gemm: rows of a"));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, a, "grouped_gemm: a", &rows, 1, k, 1, -1));
    if (bias != NULL) {
        MXMOE_FORWARD(mxmoe_check_tensor(ctx, bias, "grouped_gemm: bias", MXMOE_FLOAT_DTYPES, 2));
        MXMOE_FORWARD(mxmoe_check_dims(ctx, bias, "grouped_gemm: bias", 2, w_lead));
    }
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, out, "grouped_gemm: out", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, out, "grouped_gemm: out", 2, (int64_t[]){rows, N}));
    return ctx->ops->grouped_gemm(ctx, a, w, offsets, bias, out);
}

mxmoe_status mxmoe_grouped_projection(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                      const mxmoe_tensor* topk_ids, const mxmoe_tensor* expert_map,
                                      const mxmoe_mx_tensor* w, const mxmoe_tensor* bias,
                                      mxmoe_scale_rule rule, mxmoe_tensor* out) {
    MXMOE_BEGIN(ctx);
    int64_t pairs;
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, "grouped_projection: x", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(check_ids(ctx, topk_ids, expert_map, "grouped_projection", &pairs));
    MXMOE_RETURN_IF(topk_ids->dims[0] != x->dims[0], ctx, MXMOE_ERR_SHAPE,
                    "grouped_projection: topk_ids has %lld tokens, x has %lld",
                    (long long)topk_ids->dims[0], (long long)x->dims[0]);
    MXMOE_FORWARD(check_weights(ctx, w, "grouped_projection", NULL));
    int64_t E = w->packed.dims[0], N = w->packed.dims[1], k = w->packed.dims[2] * 2;
    MXMOE_RETURN_IF(E < 1 || E > INT32_MAX - 1, ctx, MXMOE_ERR_SHAPE,
                    "grouped_projection: w has %lld experts", (long long)E);
    MXMOE_RETURN_IF(x->dims[1] != k, ctx, MXMOE_ERR_SHAPE,
                    "grouped_projection: x has K = %lld, w has K = %lld", (long long)x->dims[1],
                    (long long)k);
    MXMOE_FORWARD(mxmoe_check_scale_rule(ctx, rule));
    if (bias != NULL) {
        MXMOE_FORWARD(
            mxmoe_check_tensor(ctx, bias, "grouped_projection: bias", MXMOE_FLOAT_DTYPES, 2));
        MXMOE_FORWARD(
            mxmoe_check_dims(ctx, bias, "grouped_projection: bias", 2, (int64_t[]){E, N}));
    }
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, out, "grouped_projection: out", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, out, "grouped_projection: out", 2, (int64_t[]){pairs, N}));
    return ctx->ops->grouped_projection(ctx, x, topk_ids, expert_map, w, bias, rule, out);
}

/* mxmoe_weights_prepare, and with `repack` mxmoe_weights_prepare_repack. */
static mxmoe_status prepare_weights(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, int repack,
                                    const char* what) {
    MXMOE_FORWARD(check_weights(ctx, w, what, NULL));
    MXMOE_RETURN_IF_RECORDING(ctx, what);
    /* Prepared again, repacked codes would be taken for the caller's new ones, or the reverse. */
    MXMOE_RETURN_IF(mxmoe_prepared_repacked(ctx, w), ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "%s: these weights are repacked in place on this context: unprepare them "
                    "first (that restores their codes)",
                    what);
    void* data = NULL;
    if (ctx->ops->weights_prepare != NULL) {
        MXMOE_FORWARD(ctx->ops->weights_prepare(ctx, w, &data));
    }
    int repacked = 0;
    mxmoe_status st = MXMOE_OK;
    if (repack && ctx->ops->weights_repack != NULL) {
        st = ctx->ops->weights_repack(ctx, w, 1, &repacked);
    }
    if (st == MXMOE_OK) {
        st = mxmoe_prepared_add(ctx, w, data, repacked); /* releases data if it fails */
        data = NULL;
    }
    if (st != MXMOE_OK) { /* leave the weights as they came */
        int restored = 0;
        if (repacked) {
            ctx->ops->weights_repack(ctx, w, 0, &restored);
        }
        if (data != NULL && ctx->ops->weights_release != NULL) {
            ctx->ops->weights_release(ctx, data);
        }
    }
    return st;
}

mxmoe_status mxmoe_weights_prepare(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    MXMOE_BEGIN(ctx);
    return prepare_weights(ctx, w, 0, "weights_prepare");
}

mxmoe_status mxmoe_weights_prepare_repack(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    MXMOE_BEGIN(ctx);
    return prepare_weights(ctx, w, 1, "weights_prepare_repack");
}

int mxmoe_weights_repacked(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    return ctx != NULL && w != NULL && mxmoe_prepared_repacked(ctx, w);
}

mxmoe_status mxmoe_weights_unprepare(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(check_weights(ctx, w, "weights_unprepare", NULL));
    MXMOE_RETURN_IF_RECORDING(ctx, "weights_unprepare");
    MXMOE_RETURN_IF(mxmoe_prepared_entry_of(ctx, w) == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "weights_unprepare: these weights are not prepared on this context");
    if (mxmoe_prepared_repacked(ctx, w)) { /* kept prepared if the codes cannot be restored */
        int done = 0;
        MXMOE_FORWARD(ctx->ops->weights_repack(ctx, w, 0, &done));
    }
    mxmoe_prepared_remove(ctx, w);
    return MXMOE_OK;
}

/* --- 5. the MoE layer ---------------------------------------------------------------------------
 */

mxmoe_moe_params mxmoe_moe_params_default(void) {
    mxmoe_moe_params p;
    memset(&p, 0, sizeof p);
    p.num_experts = 0;
    p.act = mxmoe_act_params_default();
    p.router_weight_on_input = 0;
    p.expert_map = NULL;
    p.gemm_dtype = MXMOE_BF16;
    return p;
}

static mxmoe_status check_moe_params(mxmoe_ctx* ctx, const mxmoe_moe_params* p) {
    MXMOE_RETURN_IF(p == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "moe: params are NULL");
    MXMOE_RETURN_IF(p->num_experts < 1 || p->num_experts == INT32_MAX, ctx,
                    MXMOE_ERR_INVALID_ARGUMENT, "moe: num_experts = %d must be >= 1",
                    (int)p->num_experts);
    MXMOE_RETURN_IF(p->router_weight_on_input != 0 && p->router_weight_on_input != 1, ctx,
                    MXMOE_ERR_INVALID_ARGUMENT, "moe: router_weight_on_input must be 0 or 1");
    MXMOE_RETURN_IF(p->gemm_dtype != MXMOE_F32 && p->gemm_dtype != MXMOE_BF16, ctx, MXMOE_ERR_DTYPE,
                    "moe: gemm_dtype must be f32 or bf16");
    return mxmoe_check_act_params(ctx, &p->act);
}

mxmoe_status mxmoe_moe_workspace_size(mxmoe_ctx* ctx, const mxmoe_moe_params* p, int64_t tokens,
                                      int32_t top_k, int64_t hidden, int64_t intermediate,
                                      size_t* bytes) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(check_moe_params(ctx, p));
    MXMOE_RETURN_IF(bytes == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "moe_workspace_size: bytes is NULL");
    MXMOE_RETURN_IF(tokens < 0 || top_k < 1, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "moe_workspace_size: tokens = %lld must be >= 0 and top_k = %d >= 1",
                    (long long)tokens, (int)top_k);
    MXMOE_FORWARD(mxmoe_check_k(ctx, hidden, "moe_workspace_size: hidden"));
    MXMOE_FORWARD(mxmoe_check_k(ctx, intermediate, "moe_workspace_size: intermediate"));
    return ctx->ops->moe_workspace_size(ctx, p, tokens, top_k, hidden, intermediate, bytes);
}

static mxmoe_status check_moe_weights(mxmoe_ctx* ctx, const mxmoe_moe_weights* w, int64_t E,
                                      int64_t H, int gated, int64_t* intermediate) {
    MXMOE_RETURN_IF(w == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "moe_forward: weights are NULL");
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, &w->w2.packed, "moe_forward: w2.packed", U8_BIT, 3));
    int64_t inter = w->w2.packed.dims[2] * 2;
    MXMOE_FORWARD(
        mxmoe_check_k(ctx, inter, "moe_forward: intermediate I (2 x dim 2 of w2.packed)"));
    int64_t n13 = gated ? 2 * inter : inter;
    int64_t lead13[2] = {E, n13}, lead2[2] = {E, H};
    int64_t swz13, swz2;
    MXMOE_RETURN_IF(!mxmoe_mul_i64(E, (int64_t)mxmoe_swizzled_scale_bytes(n13, H), &swz13) ||
                        !mxmoe_mul_i64(E, (int64_t)mxmoe_swizzled_scale_bytes(H, inter), &swz2),
                    ctx, MXMOE_ERR_OVERFLOW, "moe_forward: swizzled weight scale size overflows");
    MXMOE_FORWARD(mxmoe_check_mx(ctx, &w->w13, "moe_forward: w13", lead13, 2, H, 1, swz13));
    MXMOE_FORWARD(mxmoe_check_mx(ctx, &w->w2, "moe_forward: w2", lead2, 2, inter, 1, swz2));
    if (w->b13 != NULL) {
        MXMOE_FORWARD(mxmoe_check_tensor(ctx, w->b13, "moe_forward: b13", MXMOE_FLOAT_DTYPES, 2));
        MXMOE_FORWARD(mxmoe_check_dims(ctx, w->b13, "moe_forward: b13", 2, lead13));
    }
    if (w->b2 != NULL) {
        MXMOE_FORWARD(mxmoe_check_tensor(ctx, w->b2, "moe_forward: b2", MXMOE_FLOAT_DTYPES, 2));
        MXMOE_FORWARD(mxmoe_check_dims(ctx, w->b2, "moe_forward: b2", 2, lead2));
    }
    *intermediate = inter;
    return MXMOE_OK;
}

mxmoe_status mxmoe_moe_forward(mxmoe_ctx* ctx, const mxmoe_tensor* x, const mxmoe_tensor* topk_ids,
                               const mxmoe_tensor* topk_weights, const mxmoe_moe_weights* weights,
                               const mxmoe_moe_params* p, void* workspace, size_t workspace_bytes,
                               mxmoe_tensor* out) {
    MXMOE_BEGIN(ctx);
    MXMOE_FORWARD(check_moe_params(ctx, p));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, "moe_forward: x", MXMOE_FLOAT_DTYPES, 2));
    int64_t T = x->dims[0], H = x->dims[1];
    MXMOE_FORWARD(mxmoe_check_k(ctx, H, "moe_forward: hidden H (dim 1 of x)"));
    int64_t pairs;
    MXMOE_FORWARD(check_ids(ctx, topk_ids, p->expert_map, "moe_forward", &pairs));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, topk_ids, "moe_forward: topk_ids", 1, &T));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, topk_weights, "moe_forward: topk_weights",
                                     MXMOE_DTYPE_BIT(MXMOE_F32), 2));
    MXMOE_FORWARD(
        mxmoe_check_dims(ctx, topk_weights, "moe_forward: topk_weights", 2, topk_ids->dims));
    int64_t inter = 0;
    MXMOE_FORWARD(check_moe_weights(ctx, weights, p->num_experts, H,
                                    activation_is_gated(p->act.activation), &inter));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, out, "moe_forward: out", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, out, "moe_forward: out", 2, x->dims));
    size_t need;
    MXMOE_FORWARD(
        ctx->ops->moe_workspace_size(ctx, p, T, (int32_t)topk_ids->dims[1], H, inter, &need));
    MXMOE_RETURN_IF(workspace == NULL || workspace_bytes < need, ctx, MXMOE_ERR_WORKSPACE,
                    "moe_forward needs %zu bytes of workspace, got %zu%s", need, workspace_bytes,
                    workspace == NULL ? " (NULL pointer)" : "");
    return ctx->ops->moe_forward(ctx, x, topk_ids, topk_weights, weights, p, workspace,
                                 workspace_bytes, out);
}

const char* mxmoe_scale_rule_name(mxmoe_scale_rule rule) {
    switch (rule) {
    case MXMOE_RULE_EVEN:
        return "even";
    case MXMOE_RULE_FLOOR:
        return "floor";
    case MXMOE_RULE_CEIL:
        return "ceil";
    case MXMOE_RULE_RCEIL:
        return "rceil";
    default:
        return "invalid";
    }
}
