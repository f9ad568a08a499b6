/*
 * ref.h — the scalar reference backend: every operation of SPEC §4, written to be obviously
 * correct rather than fast. It is the oracle every other backend is tested against, and the
 * CPU backend's scalar tier.
 *
 * Callers (src/api) have validated shapes and dtypes; these functions validate what only the
 * data can tell (ids, offsets) before they write any output.
 */
#ifndef MXMOE_REF_REF_H
#define MXMOE_REF_REF_H

#include "core/ctx.h"

mxmoe_status mxmoe_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                mxmoe_mx_tensor* out);
mxmoe_status mxmoe_dequantize_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out);
mxmoe_status mxmoe_gguf_from_mx_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* gguf);
mxmoe_status mxmoe_mx_from_gguf_ref(mxmoe_ctx* ctx, const mxmoe_tensor* gguf, mxmoe_mx_tensor* out);
mxmoe_status mxmoe_swizzle_scales_ref(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                      mxmoe_tensor* swizzled);
mxmoe_status mxmoe_unswizzle_scales_ref(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                        mxmoe_tensor* linear);
mxmoe_status mxmoe_route_ref(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                             const mxmoe_route_params* params, mxmoe_tensor* topk_ids,
                             mxmoe_tensor* topk_weights);
mxmoe_status mxmoe_plan_ref(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                            const mxmoe_tensor* expert_map, int32_t num_experts,
                            mxmoe_tensor* counts, mxmoe_tensor* offsets, mxmoe_tensor* sorted,
                            mxmoe_tensor* row_of);
mxmoe_status mxmoe_experts_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out);
mxmoe_status mxmoe_permute_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                        int32_t top_k, mxmoe_scale_rule rule, mxmoe_mx_tensor* out);
mxmoe_status mxmoe_act_and_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                        const mxmoe_tensor* offsets, const mxmoe_act_params* params,
                                        mxmoe_mx_tensor* out);
mxmoe_status mxmoe_grouped_gemm_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                    const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                    const mxmoe_tensor* bias, mxmoe_tensor* out);
mxmoe_status mxmoe_moe_workspace_size_ref(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                          int64_t tokens, int32_t top_k, int64_t hidden,
                                          int64_t intermediate, size_t* bytes);
mxmoe_status mxmoe_moe_forward_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                   const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                   const mxmoe_moe_weights* weights, const mxmoe_moe_params* params,
                                   void* workspace, size_t workspace_bytes, mxmoe_tensor* out);

mxmoe_status mxmoe_grouped_projection_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                          const mxmoe_tensor* topk_ids,
                                          const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                          const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                          mxmoe_tensor* out);

/* --- helpers shared by the reference kernels ---------------------------------------------- */

/* Checks top-k ids (and the map's entries, if any) against E local experts: OUT_OF_RANGE for
 * an id outside [-1, E_global) or a map entry outside [-1, E). */
mxmoe_status mxmoe_check_ids_ref(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                                 const mxmoe_tensor* expert_map, int64_t num_experts);

/* Local expert of flat pair i (ids checked), or -1 if the pair is dropped. */
int32_t mxmoe_local_expert_ref(const int32_t* ids, const int32_t* map, int64_t i);

/* Checks offsets (I32 [E+1]): offsets[0] = 0, nondecreasing, offsets[E] <= rows. */
mxmoe_status mxmoe_check_offsets_ref(mxmoe_ctx* ctx, const int32_t* offsets, int64_t num_experts,
                                     int64_t rows);

/* Bytes of grouped-swizzled scales actually used: sum_e round_up(m_e, 128) * cols(k). */
int64_t mxmoe_grouped_swizzled_used_bytes(const int32_t* offsets, int64_t num_experts, int64_t k);

/* Quantizes row `src_row` of a F32/BF16/F16 matrix with k columns into row `row` of an MX
 * tensor, placing scales per its layout; for grouped swizzled scales `offsets` (E+1 entries)
 * gives the expert groups (NULL: one matrix). */
void mxmoe_quantize_row_ref(const void* x, mxmoe_dtype dtype, int64_t src_row, int64_t row,
                            int64_t k, mxmoe_scale_rule rule, const int32_t* offsets,
                            int64_t num_experts, mxmoe_mx_tensor* out);

/* Byte offset of scale (r, j) of an MX activation tensor with k columns: linear, or grouped
 * swizzled by `offsets` (expert atoms). */
int64_t mxmoe_activation_scale_offset(const mxmoe_mx_tensor* t, int64_t r, int64_t j, int64_t k,
                                      const int32_t* offsets, int64_t num_experts);

/* Scratch bytes the GEMM core needs for reduction length k. */
size_t mxmoe_gemm_ref_scratch_bytes(int64_t k);

/* The GEMM without validation or allocation (offsets already checked). */
void mxmoe_grouped_gemm_ref_core(const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                                 const int32_t* offsets, int64_t num_experts,
                                 const mxmoe_tensor* bias, mxmoe_tensor* out, int8_t* scratch);

#endif /* MXMOE_REF_REF_H */
