/*
 * act_quantize.cu — CUDA fused activation + quantization: eight lanes per 32-element output
 * block, four elements a lane (a lane an element for small calls), evaluating the reference's
 * activation (ref/activation.h, FP64) and the block quantizer's scale and element encoders
 * (quantize_block_lanes: the bytes of mxmoe_quantize_block). A thread per block took ~100 us
 * at any size on an H200 (32 FP64 activations in a row per thread); a warp per block took 49 us
 * at qwen3 n = 512 (Nsight: 32 lanes repeating each block's index work).
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/quantize.cuh"

extern "C" {
#include "ref/activation.h"
}

namespace {

constexpr int kThreads = 128;

struct act_args {
    mxmoe_tensor h; /* [R, 2I] or [R, I] */
    int64_t rows;
    int64_t inter;
    mxmoe_act_params params;
    uint8_t* packed;
    uint8_t* scales;
    int64_t scales_numel;
    int swizzled;
    const int32_t* offsets;
    int64_t num_experts;
    unsigned* errors;
};

__global__ void zero_scales_kernel(act_args a) {
    int64_t used = a.offsets != nullptr
                       ? grouped_scale_bytes(a.offsets, a.num_experts, a.rows, a.inter)
                       : mxmoe_swizzled_matrix_bytes(a.rows, a.inter);
    if (used > a.scales_numel) {
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
        }
        used = a.scales_numel;
    }
    GRID_STRIDE_LOOP(i, used) {
        a.scales[i] = 0;
    }
}

/* E elements a lane (quantize_block_lanes): 4 where the blocks are many, 1 where a warp per block
 * covers them in one pass (up to 32 blocks an SM): there the latency is each lane's FP64
 * activations in a row (4 a lane: deepseek-v3's layer +4-5 us at n = 1, +2-3 % at n = 8). */
template <int E> __global__ void act_quantize_kernel(act_args a) {
    pdl_wait();
    pdl_release();
    if (a.offsets != nullptr && blockIdx.x == 0) { /* the caller's offsets, checked in place */
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    const int64_t kb = a.inter / 32;
    const int64_t blocks = grouped_row_limit(a.offsets, a.num_experts, a.rows) * kb;
    const int sub = threadIdx.x & (32 / E - 1);
    BLOCK_LANES_GRID_STRIDE_LOOP(E, b, blocks) {
        int64_t r = 0, j = 0;
        float v[E] = {};
        const bool live = b < blocks;
        if (live) {
            split_index(b, kb, &r, &j);
#pragma unroll
            for (int i = 0; i < E; i++) {
                v[i] = mxmoe_activation_rounded(&a.h, r, j * 32 + E * sub + i, a.inter, &a.params);
            }
        }
        quantize_block_lanes<E>(v, live, a.params.rule, a.packed, a.scales, a.scales_numel,
                                a.swizzled, a.offsets, a.num_experts, a.rows, r, j, a.inter,
                                a.errors);
    }
}

} // namespace

mxmoe_status mxmoe_act_and_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                         const mxmoe_tensor* offsets,
                                         const mxmoe_act_params* params, mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    act_args a = {};
    a.h = *h;
    a.rows = h->dims[0];
    a.inter = out->packed.dims[1] * 2;
    a.params = *params;
    a.packed = static_cast<uint8_t*>(out->packed.data);
    a.scales = static_cast<uint8_t*>(out->scales.data);
    a.scales_numel = mxmoe_tensor_numel(&out->scales);
    a.swizzled = out->scale_layout == MXMOE_SCALES_SWIZZLED;
    a.errors = cuda_state(ctx)->errors;
    cudaStream_t stream = cuda_stream(ctx);
    if (offsets != nullptr) {
        a.offsets = static_cast<const int32_t*>(offsets->data);
        a.num_experts = offsets->dims[0] - 1;
    }
    if (a.swizzled) {
        zero_scales_kernel<<<grid_for(ctx, a.scales_numel, 256), 256, 0, stream>>>(a);
        MXMOE_CUDA_LAUNCHED(ctx);
    }
    if (a.rows * (a.inter / 32) <= (int64_t)cuda_state(ctx)->sm_count * 32) { /* one pass */
        MXMOE_CUDA_CHECK(ctx,
                         launch_pdl(ctx, act_quantize_kernel<1>,
                                    grid_for(ctx, a.rows * a.inter, kThreads), kThreads, 0, a));
    } else {
        MXMOE_CUDA_CHECK(ctx,
                         launch_pdl(ctx, act_quantize_kernel<4>,
                                    grid_for(ctx, a.rows * a.inter / 4, kThreads), kThreads, 0, a));
    }
    return MXMOE_OK;
}
