/*
 * cuda_ops.h — the CUDA backend's entry points (one per operation, called through the table in
 * backend_cuda.cu). Each issues its kernels on the context's stream and returns without
 * waiting; arguments were validated by src/api.
 */
#ifndef MXMOE_CUDA_OPS_H
#define MXMOE_CUDA_OPS_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

mxmoe_status mxmoe_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                 mxmoe_mx_tensor* out);
mxmoe_status mxmoe_dequantize_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out);
mxmoe_status mxmoe_gguf_from_mx_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* gguf);
mxmoe_status mxmoe_mx_from_gguf_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* gguf,
                                     mxmoe_mx_tensor* out);
mxmoe_status mxmoe_swizzle_scales_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                       mxmoe_tensor* swizzled);
mxmoe_status mxmoe_unswizzle_scales_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                         mxmoe_tensor* linear);
mxmoe_status mxmoe_experts_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                         const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                         mxmoe_mx_tensor* out);
mxmoe_status mxmoe_permute_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                         const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                         int32_t top_k, mxmoe_scale_rule rule,
                                         mxmoe_mx_tensor* out);
mxmoe_status mxmoe_act_and_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                         const mxmoe_tensor* offsets,
                                         const mxmoe_act_params* params, mxmoe_mx_tensor* out);
mxmoe_status mxmoe_route_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                              const mxmoe_route_params* params, mxmoe_tensor* topk_ids,
                              mxmoe_tensor* topk_weights);
mxmoe_status mxmoe_plan_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                             const mxmoe_tensor* expert_map, int32_t num_experts,
                             mxmoe_tensor* counts, mxmoe_tensor* offsets, mxmoe_tensor* sorted,
                             mxmoe_tensor* row_of);
mxmoe_status mxmoe_weights_prepare_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, void** data);
void mxmoe_weights_release_cuda(mxmoe_ctx* ctx, void* data);
mxmoe_status mxmoe_weights_repack_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, int pack,
                                       int* done);
mxmoe_status mxmoe_grouped_gemm_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                     const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                     const mxmoe_tensor* bias, mxmoe_tensor* out);
mxmoe_status mxmoe_grouped_projection_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                           const mxmoe_tensor* topk_ids,
                                           const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                           const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                           mxmoe_tensor* out);
mxmoe_status mxmoe_moe_workspace_size_cuda(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                           int64_t tokens, int32_t top_k, int64_t hidden,
                                           int64_t intermediate, size_t* bytes);
mxmoe_status mxmoe_graph_begin_cuda(mxmoe_ctx* ctx);
mxmoe_status mxmoe_graph_end_cuda(mxmoe_ctx* ctx, void** graph);
mxmoe_status mxmoe_graph_replay_cuda(mxmoe_ctx* ctx, const void* graph);
void mxmoe_graph_free_cuda(mxmoe_ctx* ctx, void* graph);
mxmoe_status mxmoe_moe_forward_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                    const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                    const mxmoe_moe_weights* weights,
                                    const mxmoe_moe_params* params, void* workspace,
                                    size_t workspace_bytes, mxmoe_tensor* out);

#ifdef __cplusplus
}
#endif

#endif /* MXMOE_CUDA_OPS_H */
