/*
 * cpu_state.h — what a CPU context holds (ctx->backend_state): its tier's kernels, its thread
 * pool, and a scratch buffer that grows on demand for the stand-alone operations (moe_forward
 * uses the caller's workspace instead and allocates nothing).
 */
#ifndef MXMOE_CPU_CPU_STATE_H
#define MXMOE_CPU_CPU_STATE_H

#include <stddef.h>

#include "core/ctx.h"
#include "cpu/cpu_kernels.h"
#include "cpu/thread_pool.h"

typedef struct mxmoe_cpu_state {
    mxmoe_cpu_tier tier;
    const mxmoe_cpu_kernels* kern; /* NULL on the scalar tier */
    mxmoe_pool* pool;
    int threads;
    void* scratch; /* 64-byte aligned */
    size_t scratch_bytes;
} mxmoe_cpu_state;

static inline mxmoe_cpu_state* mxmoe_cpu_state_of(mxmoe_ctx* ctx) {
    return (mxmoe_cpu_state*)ctx->backend_state;
}

/* Scratch sizes are products of caller-given dimensions: their magnitude is checked in FP64
 * first (exact enough, and it cannot overflow), so that the size_t arithmetic that follows
 * stays far from wrapping. */
#define MXMOE_CPU_MAX_BYTES 0x1p60

/* Makes the context's scratch hold at least `bytes` (contents not kept). */
mxmoe_status mxmoe_cpu_scratch(mxmoe_ctx* ctx, size_t bytes, void** out);

/* --- the drivers (gemm_cpu.c, quantize_cpu.c, moe_cpu.c) ---------------------------------- */

mxmoe_status mxmoe_cpu_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                mxmoe_mx_tensor* out);
mxmoe_status mxmoe_cpu_experts_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out);
mxmoe_status mxmoe_cpu_permute_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                        int32_t top_k, mxmoe_scale_rule rule, mxmoe_mx_tensor* out);
mxmoe_status mxmoe_cpu_act_and_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                        const mxmoe_tensor* offsets, const mxmoe_act_params* params,
                                        mxmoe_mx_tensor* out);
mxmoe_status mxmoe_cpu_grouped_gemm(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                    const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                    const mxmoe_tensor* bias, mxmoe_tensor* out);
mxmoe_status mxmoe_cpu_moe_workspace_size(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                          int64_t tokens, int32_t top_k, int64_t hidden,
                                          int64_t intermediate, size_t* bytes);
mxmoe_status mxmoe_cpu_grouped_projection(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                          const mxmoe_tensor* topk_ids,
                                          const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                          const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                          mxmoe_tensor* out);
mxmoe_status mxmoe_cpu_moe_forward(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                   const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                   const mxmoe_moe_weights* weights, const mxmoe_moe_params* params,
                                   void* workspace, size_t workspace_bytes, mxmoe_tensor* out);

#endif /* MXMOE_CPU_CPU_STATE_H */
