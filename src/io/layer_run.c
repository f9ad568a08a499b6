/*
 * layer_run.c — running a loaded mxmoe_layer: the router on the host, then mxmoe_route and
 * mxmoe_moe_forward on the context's backend.
 *
 * The router is a small dense GEMM (T x H times H x E) that the library has no device kernel
 * for; it runs on the host in FP64 sums (exact products of FP32 values, one rounding to FP32 at
 * the end), so its result does not depend on the backend or the thread count. On the CUDA
 * backend that costs a copy of x to the host and of the logits back; the expert computation,
 * which dominates, stays on the device.
 *
 * Workspace of mxmoe_layer_forward, in the backend's memory, each part 256-byte aligned:
 *   [ mxmoe_moe_forward workspace | logits F32 [T, E] | ids I32 [T, k] | weights F32 [T, k] |
 *     one row of x in F32 [H] (CPU backend: the router's conversion buffer) ]
 */
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/validate.h"
#include "io/layer_internal.h"

#define WS_ALIGN 256

typedef struct ws_layout {
    size_t moe, logits, ids, weights, row, total;
} ws_layout;

/* a + round_up(bytes), or 0 on overflow (a valid total is never 0: the row part is not empty). */
static size_t add_part(size_t a, uint64_t bytes) {
    uint64_t r = (bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    if (bytes > UINT64_MAX - WS_ALIGN || r > SIZE_MAX - a) {
        return 0;
    }
    return a + (size_t)r;
}

static mxmoe_status layout(mxmoe_ctx* ctx, const mxmoe_layer* L, int64_t tokens, ws_layout* w) {
    const mxmoe_layer_info* in = &L->info;
    MXMOE_RETURN_IF(tokens < 0 || tokens > INT32_MAX, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "layer: tokens = %lld out of range", (long long)tokens);
    size_t moe = 0;
    MXMOE_FORWARD(mxmoe_moe_workspace_size(ctx, &in->moe, tokens, in->top_k, in->hidden,
                                           in->intermediate, &moe));
    uint64_t t = (uint64_t)tokens;
    w->moe = moe;
    w->logits = add_part(0, moe);
    w->ids = add_part(w->logits, t * (uint64_t)in->num_experts * 4);
    w->weights = add_part(w->ids, t * (uint64_t)in->top_k * 4);
    w->row = add_part(w->weights, t * (uint64_t)in->top_k * 4);
    w->total = add_part(w->row, (uint64_t)in->hidden * 4);
    MXMOE_RETURN_IF(w->logits == 0 && moe != 0, ctx, MXMOE_ERR_OVERFLOW,
                    "layer: workspace size overflows");
    MXMOE_RETURN_IF(w->ids == 0 || w->weights == 0 || w->row == 0 || w->total == 0, ctx,
                    MXMOE_ERR_OVERFLOW, "layer: workspace size overflows");
    return MXMOE_OK;
}

mxmoe_status mxmoe_layer_workspace_size(mxmoe_ctx* ctx, const mxmoe_layer* L, int64_t tokens,
                                        size_t* bytes) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF(L == NULL || bytes == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "layer_workspace_size: NULL layer or bytes");
    ws_layout w;
    memset(&w, 0, sizeof w);
    MXMOE_FORWARD(layout(ctx, L, tokens, &w));
    *bytes = w.total;
    return MXMOE_OK;
}

/* logits[t, e] = fp32(sum_h x[t,h] * W[e,h] (+ b[e])), the sum in FP64 in ascending h: each
 * product of two FP32 values is exact in FP64. `row` holds H floats. */
static void router_logits(const mxmoe_layer* L, mxmoe_dtype dtype, const void* x, int64_t tokens,
                          float* row, float* logits) {
    int64_t E = L->info.num_experts, H = L->info.hidden;
    size_t es = mxmoe_dtype_size(dtype);
    for (int64_t t = 0; t < tokens; t++) {
        layer_to_f32(dtype, (const unsigned char*)x + (size_t)(t * H) * es, (size_t)H, row);
        for (int64_t e = 0; e < E; e++) {
            const float* w = L->router_w + e * H;
            double acc = 0.0;
            for (int64_t h = 0; h < H; h++) {
                acc += (double)row[h] * (double)w[h];
            }
            if (L->router_b != NULL) {
                acc += (double)L->router_b[e];
            }
            logits[t * E + e] = (float)acc;
        }
    }
}

/* Checks that ctx computes where the layer's weights are. */
static mxmoe_status check_layer(mxmoe_ctx* ctx, const mxmoe_layer* L, const char* fn) {
    MXMOE_RETURN_IF(L == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "%s: layer is NULL", fn);
    MXMOE_RETURN_IF(
        mxmoe_ctx_backend(ctx) != mxmoe_ctx_backend(L->ctx), ctx, MXMOE_ERR_INVALID_ARGUMENT,
        "%s: the layer was loaded for the %s backend, the context runs %s", fn,
        mxmoe_backend_name(mxmoe_ctx_backend(L->ctx)), mxmoe_backend_name(mxmoe_ctx_backend(ctx)));
    return MXMOE_OK;
}

static mxmoe_status check_x(mxmoe_ctx* ctx, const mxmoe_layer* L, const mxmoe_tensor* x,
                            const char* fn) {
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, x, fn, MXMOE_FLOAT_DTYPES, 2));
    MXMOE_RETURN_IF(x->dims[1] != L->info.hidden, ctx, MXMOE_ERR_SHAPE,
                    "%s has %lld columns, the layer's hidden size is %lld", fn,
                    (long long)x->dims[1], (long long)L->info.hidden);
    MXMOE_RETURN_IF(x->dims[0] > INT32_MAX, ctx, MXMOE_ERR_OVERFLOW, "%s: too many tokens", fn);
    return MXMOE_OK;
}

/* Router logits into `logits_dev` (F32 [T, E] in backend memory), then routing. `row` is H
 * floats of host memory on the CPU backend (NULL: allocated here). */
static mxmoe_status route(mxmoe_ctx* ctx, const mxmoe_layer* L, const mxmoe_tensor* x,
                          void* logits_dev, float* row, mxmoe_tensor* ids, mxmoe_tensor* weights) {
    int64_t T = x->dims[0], E = L->info.num_experts, H = L->info.hidden;
    size_t x_bytes = (size_t)(T * H) * mxmoe_dtype_size(x->dtype);
    size_t logit_bytes = (size_t)(T * E) * sizeof(float);
    int host = L->device == MXMOE_DEVICE_HOST;
    void* x_host = host ? x->data : malloc(x_bytes ? x_bytes : 1);
    float* logits_host = host ? logits_dev : malloc(logit_bytes ? logit_bytes : 1);
    float* row_buf = row != NULL ? row : malloc((size_t)H * sizeof *row_buf);
    mxmoe_status st = MXMOE_OK;
    if (x_host == NULL || logits_host == NULL || row_buf == NULL) {
        st = mxmoe_fail(ctx, MXMOE_ERR_NO_MEMORY, "layer: out of host memory for the router");
    }
    if (st == MXMOE_OK && !host && x_bytes > 0) {
        st = mxmoe_memcpy(ctx, x_host, x->data, x_bytes, MXMOE_COPY_BACKEND_TO_HOST);
    }
    if (st == MXMOE_OK) {
        router_logits(L, x->dtype, x_host, T, row_buf, logits_host);
        if (!host && logit_bytes > 0) {
            st =
                mxmoe_memcpy(ctx, logits_dev, logits_host, logit_bytes, MXMOE_COPY_HOST_TO_BACKEND);
        }
    }
    if (st == MXMOE_OK) {
        int64_t dl[2] = {T, E};
        mxmoe_tensor lt = mxmoe_tensor_make(logits_dev, MXMOE_F32, 2, dl);
        lt.device = L->device;
        mxmoe_route_params rp = L->info.route;
        rp.correction_bias = L->has_correction ? &L->correction : NULL;
        st = mxmoe_route(ctx, &lt, &rp, ids, weights);
    }
    if (!host) {
        free(x_host);
        free(logits_host);
    }
    if (row == NULL) {
        free(row_buf);
    }
    return st;
}

mxmoe_status mxmoe_layer_route(mxmoe_ctx* ctx, const mxmoe_layer* L, const mxmoe_tensor* x,
                               mxmoe_tensor* topk_ids, mxmoe_tensor* topk_weights) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_FORWARD(check_layer(ctx, L, "layer_route"));
    MXMOE_FORWARD(check_x(ctx, L, x, "layer_route: x"));
    size_t bytes = (size_t)(x->dims[0] * L->info.num_experts) * sizeof(float);
    void* logits = NULL;
    MXMOE_FORWARD(mxmoe_malloc(ctx, bytes ? bytes : 1, &logits));
    mxmoe_status st = route(ctx, L, x, logits, NULL, topk_ids, topk_weights);
    if (st == MXMOE_OK) {
        st = mxmoe_ctx_synchronize(ctx); /* the scratch is freed next */
    }
    mxmoe_free(ctx, logits);
    return st;
}

mxmoe_status mxmoe_layer_forward(mxmoe_ctx* ctx, const mxmoe_layer* L, const mxmoe_tensor* x,
                                 mxmoe_tensor* out, void* workspace, size_t workspace_bytes) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_FORWARD(check_layer(ctx, L, "layer_forward"));
    MXMOE_FORWARD(check_x(ctx, L, x, "layer_forward: x"));
    MXMOE_FORWARD(mxmoe_check_tensor(ctx, out, "layer_forward: out", MXMOE_FLOAT_DTYPES, 2));
    MXMOE_FORWARD(mxmoe_check_dims(ctx, out, "layer_forward: out", 2, x->dims));
    int64_t T = x->dims[0];
    ws_layout w;
    memset(&w, 0, sizeof w);
    MXMOE_FORWARD(layout(ctx, L, T, &w));
    MXMOE_RETURN_IF(workspace == NULL || workspace_bytes < w.total, ctx, MXMOE_ERR_WORKSPACE,
                    "layer_forward needs %zu bytes of workspace, got %zu%s", w.total,
                    workspace_bytes, workspace == NULL ? " (NULL pointer)" : "");
    if (T == 0) {
        return MXMOE_OK;
    }
    unsigned char* ws = workspace;
    int64_t k = L->info.top_k;
    int64_t dk[2] = {T, k};
    mxmoe_tensor ids = mxmoe_tensor_make(ws + w.ids, MXMOE_I32, 2, dk);
    mxmoe_tensor weights = mxmoe_tensor_make(ws + w.weights, MXMOE_F32, 2, dk);
    ids.device = weights.device = L->device;
    float* row = L->device == MXMOE_DEVICE_HOST ? (float*)(void*)(ws + w.row) : NULL;
    MXMOE_FORWARD(route(ctx, L, x, ws + w.logits, row, &ids, &weights));
    return mxmoe_moe_forward(ctx, x, &ids, &weights, &L->weights, &L->info.moe, workspace, w.moe,
                             out);
}
