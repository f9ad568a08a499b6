/*
 * weights_repack.cu — mxmoe_weights_prepare_repack on CUDA: the weights' codes rewritten in place
 * into the Hopper sign packing (core/sign_packing.h) where the Hopper path runs them, and back
 * for mxmoe_weights_unprepare. Each aligned 32-bit word is its own bijection, so the rewrite is
 * one elementwise pass; the packed rows are whole words (K / 2 bytes, K a multiple of 32).
 */
#include "core/sign_packing.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"

namespace {

template <bool Pack> __global__ void repack_kernel(uint32_t* words, int64_t count) {
    GRID_STRIDE_LOOP(i, count) {
        words[i] = Pack ? mxmoe_sign_pack(words[i]) : mxmoe_sign_unpack(words[i]);
    }
}

} // namespace

mxmoe_status mxmoe_weights_repack_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, int pack,
                                       int* done) {
    MXMOE_CUDA_ENTER(ctx);
    *done = 0;
    gemm_args g = {};
    mxmoe_gemm_args_set_weights(ctx, &g, w);
    g.num_experts = w->packed.dims[0];
    /* Packed only where the Hopper kernel runs these weights (its alignment included); the
     * others read the packing too, but only lose by it. Unpacked whenever asked. */
    if (pack && !mxmoe_grouped_gemm_sm90_takes_weights(ctx, &g)) {
        return MXMOE_OK;
    }
    const int64_t count = mxmoe_tensor_numel(&w->packed) / 4;
    uint32_t* words = static_cast<uint32_t*>(w->packed.data);
    if (pack) {
        repack_kernel<true><<<grid_for(ctx, count, 256), 256, 0, cuda_stream(ctx)>>>(words, count);
    } else {
        repack_kernel<false><<<grid_for(ctx, count, 256), 256, 0, cuda_stream(ctx)>>>(words, count);
    }
    MXMOE_CUDA_LAUNCHED(ctx);
    const cudaError_t err = cudaStreamSynchronize(cuda_stream(ctx));
    MXMOE_RETURN_IF(err != cudaSuccess, ctx, MXMOE_ERR_BACKEND,
                    "weights_prepare_repack: rewriting the codes failed: %s",
                    cudaGetErrorString(err));
    *done = 1;
    return MXMOE_OK;
}
