/*
 * backend.h — the internal backend interface: a table of function pointers per backend
 * (ggml style). The public entry points in src/api validate every shape and dtype first, so a
 * backend receives well-formed descriptors; what only the data can tell (expert ids, offsets)
 * each backend checks itself, before writing any output.
 */
#ifndef MXMOE_CORE_BACKEND_H
#define MXMOE_CORE_BACKEND_H

#include "core/ctx.h"

typedef struct mxmoe_backend_ops {
    const char* name;
    int compiled; /* 1 if built into this library */
    /* 1 if the backend can run here (compiled in; for CUDA a device is visible). */
    int (*available)(void);
    /* Prepares ctx->backend_state and ctx->detail (optional). */
    mxmoe_status (*init)(mxmoe_ctx* ctx);
    /* Frees ctx->backend_state (optional). */
    void (*release)(mxmoe_ctx* ctx);
    /* Waits for issued work (optional: synchronous backends leave it NULL). */
    mxmoe_status (*synchronize)(mxmoe_ctx* ctx);
    /* Memory where the backend computes, copies, and a stream-ordered stopwatch. */
    mxmoe_status (*alloc)(mxmoe_ctx* ctx, size_t bytes, void** ptr);
    void (*dealloc)(mxmoe_ctx* ctx, void* ptr);
    mxmoe_status (*copy)(mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                         mxmoe_copy_kind kind);
    mxmoe_status (*timer_start)(mxmoe_ctx* ctx);
    mxmoe_status (*timer_stop)(mxmoe_ctx* ctx, double* microseconds);
    /* Recording for replay (optional: NULL = UNSUPPORTED). begin redirects the context's work
     * into a recording; end always stops it, then builds *graph if nothing failed. */
    mxmoe_status (*graph_begin)(mxmoe_ctx* ctx);
    mxmoe_status (*graph_end)(mxmoe_ctx* ctx, void** graph);
    mxmoe_status (*graph_replay)(mxmoe_ctx* ctx, const void* graph);
    void (*graph_free)(mxmoe_ctx* ctx, void* graph);

    mxmoe_status (*quantize)(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                             mxmoe_mx_tensor* out);
    mxmoe_status (*dequantize)(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out);
    mxmoe_status (*gguf_from_mx)(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* gguf);
    mxmoe_status (*mx_from_gguf)(mxmoe_ctx* ctx, const mxmoe_tensor* gguf, mxmoe_mx_tensor* out);
    mxmoe_status (*swizzle_scales)(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                   mxmoe_tensor* swizzled);
    mxmoe_status (*unswizzle_scales)(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                     mxmoe_tensor* linear);
    mxmoe_status (*route)(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                          const mxmoe_route_params* params, mxmoe_tensor* topk_ids,
                          mxmoe_tensor* topk_weights);
    mxmoe_status (*plan)(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                         const mxmoe_tensor* expert_map, int32_t num_experts, mxmoe_tensor* counts,
                         mxmoe_tensor* offsets, mxmoe_tensor* sorted, mxmoe_tensor* row_of);
    mxmoe_status (*permute_quantize)(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                     const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                     int32_t top_k, mxmoe_scale_rule rule, mxmoe_mx_tensor* out);
    mxmoe_status (*experts_quantize)(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                     const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                     mxmoe_mx_tensor* out);
    mxmoe_status (*act_and_quantize)(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                     const mxmoe_tensor* offsets, const mxmoe_act_params* params,
                                     mxmoe_mx_tensor* out);
    /* Derives what the backend's GEMMs want from static weights (mxmoe_weights_prepare) into
     * *data, which weights_release frees; optional (NULL: nothing to derive). */
    mxmoe_status (*weights_prepare)(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, void** data);
    void (*weights_release)(mxmoe_ctx* ctx, void* data);
    /* Rewrites w's packed codes in place into the Hopper sign packing (pack = 1,
     * core/sign_packing.h), or back (pack = 0), for mxmoe_weights_prepare_repack; *done says
     * whether it did (0: the backend's GEMMs gain nothing from it on these weights, which stay
     * as they are). Waits for the device. Optional (NULL: never repacks). */
    mxmoe_status (*weights_repack)(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, int pack, int* done);
    mxmoe_status (*grouped_gemm)(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                                 const mxmoe_tensor* offsets, const mxmoe_tensor* bias,
                                 mxmoe_tensor* out);
    mxmoe_status (*grouped_projection)(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                       const mxmoe_tensor* topk_ids, const mxmoe_tensor* expert_map,
                                       const mxmoe_mx_tensor* w, const mxmoe_tensor* bias,
                                       mxmoe_scale_rule rule, mxmoe_tensor* out);
    /* Workspace bytes for moe_forward; the backend owns its workspace layout. */
    mxmoe_status (*moe_workspace_size)(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                       int64_t tokens, int32_t top_k, int64_t hidden,
                                       int64_t intermediate, size_t* bytes);
    mxmoe_status (*moe_forward)(mxmoe_ctx* ctx, const mxmoe_tensor* x, const mxmoe_tensor* topk_ids,
                                const mxmoe_tensor* topk_weights, const mxmoe_moe_weights* weights,
                                const mxmoe_moe_params* params, void* workspace,
                                size_t workspace_bytes, mxmoe_tensor* out);
} mxmoe_backend_ops;

extern const mxmoe_backend_ops mxmoe_cpu_backend;
extern const mxmoe_backend_ops mxmoe_cuda_backend;

#endif /* MXMOE_CORE_BACKEND_H */
