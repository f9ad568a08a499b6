/*
 * act_quantize.cu — CUDA fused activation + quantization: one warp per 32-element output block,
 * one lane per element, evaluating the reference's activation (ref/activation.h, FP64) and the
 * block quantizer's own scale and element encoders (the bytes of mxmoe_quantize_block). A thread
 * per block took ~100 us at any size on an H200: 32 FP64 activations in a row per thread.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"

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

__global__ void act_quantize_kernel(act_args a) {
    pdl_wait();
    pdl_release();
    if (a.offsets != nullptr && blockIdx.x == 0) { /* the caller's offsets, checked in place */
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    int64_t kb = a.inter / 32;
    int64_t limit = a.rows;
    if (a.offsets != nullptr) {
        int64_t end = a.offsets[a.num_experts];
        limit = end < 0 ? 0 : (end > a.rows ? a.rows : end);
    }
    const int lane = threadIdx.x & 31;
    const int64_t first = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t b = first; b < limit * kb; b += stride) { /* uniform across the warp */
        const int64_t r = b / kb, j = b % kb;
        const float v = mxmoe_activation_rounded(&a.h, r, j * 32 + lane, a.inter, &a.params);
        /* NaN/Inf bit patterns are the largest, as in mxmoe_quantize_block */
        const uint32_t amax = __reduce_max_sync(0xFFFFFFFFu, mxmoe_f32_bits(v) & 0x7fffffffu);
        const uint8_t scale = mxmoe_scale_byte(amax, a.params.rule);
        const uint32_t code = scale != MXMOE_E8M0_NAN ? mxmoe_e2m1_code(v, scale) : 0u;
        const uint32_t high = __shfl_down_sync(0xFFFFFFFFu, code, 1);
        if ((lane & 1) == 0) {
            a.packed[r * (a.inter / 2) + j * 16 + lane / 2] = (uint8_t)(code | (high << 4));
        }
        if (lane == 0) {
            const int64_t off =
                grouped_scale_offset(a.swizzled, a.offsets, a.num_experts, a.rows, r, j, a.inter);
            if (off < 0 || off >= a.scales_numel) {
                atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
            } else {
                a.scales[off] = scale;
            }
        }
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
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, act_quantize_kernel,
                                     grid_for(ctx, a.rows * a.inter, kThreads), kThreads, 0, a));
    return MXMOE_OK;
}
