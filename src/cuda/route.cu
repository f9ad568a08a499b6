/*
 * route.cu — CUDA router: one thread block per token running the reference's per-token code
 * (ref/route_token.h) on FP64 scratch in shared memory. Routing is a sliver of the layer's
 * time; sharing the code keeps selection identical to the CPU.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"

extern "C" {
#include "ref/route_token.h"
}

namespace {

__global__ void route_kernel(mxmoe_tensor logits, mxmoe_route_params params, const float* bias,
                             int32_t* ids, float* weights, int64_t groups, unsigned* errors) {
    extern __shared__ double route_smem[];
    int64_t t = blockIdx.x, E = logits.dims[1];
    int32_t k = params.top_k;
    route_scratch s;
    mxmoe_route_scratch_carve(route_smem, E, groups, k, &s);
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
        float v = mxmoe_load_float(logits.data, logits.dtype, t * E + e);
        if (!isfinite(v)) {
            atomicOr(errors, MXMOE_DEVERR_LOGITS);
        }
        s.logit[e] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mxmoe_route_token(&params, E, bias, &s, ids + t * k, weights + t * k);
    }
}

} // namespace

mxmoe_status mxmoe_route_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                              const mxmoe_route_params* params, mxmoe_tensor* topk_ids,
                              mxmoe_tensor* topk_weights) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t T = logits->dims[0], E = logits->dims[1];
    int64_t groups = params->method == MXMOE_ROUTE_SIGMOID_GROUPED ? params->num_groups : 1;
    size_t smem = mxmoe_route_scratch_bytes(E, groups, params->top_k);
    if (smem > 48 * 1024) {
        return mxmoe_fail(ctx, MXMOE_ERR_UNSUPPORTED,
                          "route: %lld experts need %zu bytes of shared memory per token; the "
                          "CUDA router supports up to 48 KiB (about 1900 experts)",
                          (long long)E, smem);
    }
    if (T == 0) {
        return MXMOE_OK;
    }
    mxmoe_route_params p = *params;
    const float* bias =
        p.correction_bias != nullptr ? static_cast<const float*>(p.correction_bias->data) : nullptr;
    p.correction_bias = nullptr; /* host pointer: the kernel gets the data pointer instead */
    route_kernel<<<(unsigned)T, 32, smem, cuda_stream(ctx)>>>(
        *logits, p, bias, static_cast<int32_t*>(topk_ids->data),
        static_cast<float*>(topk_weights->data), groups, cuda_state(ctx)->errors);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}
