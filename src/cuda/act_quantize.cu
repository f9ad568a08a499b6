/*
 * act_quantize.cu — CUDA fused activation + quantization: four lanes per 32-element output
 * block, eight elements a lane (a lane an element for small calls), evaluating the reference's
 * activation (ref/activation.h, FP64) and the block quantizer's scale and element encoders
 * (quantize_block_lanes: the bytes of mxmoe_quantize_block). A thread per block took ~100 us
 * at any size on an H200 (32 FP64 activations in a row per thread); a warp per block took 49 us
 * at qwen3 n = 512 (Nsight: 32 lanes repeating each block's index work). FP32 input (the layer's
 * GEMM-1 output) and BF16 input (the same, kept in BF16: moe_params.gemm_dtype) take a kernel
 * specialised on the activation, with vector loads: the generic one, its dtype and activation
 * decided per element, ran at a third of DRAM bandwidth (397 us at qwen3 n = 8192, H100, NOTES
 * v29).
 */
#include "core/activation_fp32.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"
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
    mxmoe_act_fp32_consts fp32; /* mxmoe_act_fp32_setup(&params) */
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

/* Four FP32 values from 16-byte aligned p, or four BF16 values from 8-byte aligned p, as FP32
 * (exact), as a streaming load (ld.global.cs: evict-first in L1 and L2, for values read once). */
__device__ __forceinline__ float4 load_x4(const float* p) {
    return __ldcs(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ float4 load_x4(const uint16_t* p) {
    return bf16x4_to_float4(__ldcs(reinterpret_cast<const uint2*>(p)));
}

template <mxmoe_dtype D, int E> __device__ __forceinline__ void round_values(float (&v)[E]) {
#pragma unroll
    for (int i = 0; i < E; i++) {
        v[i] = mxmoe_round_to_dtype(v[i], D);
    }
}

/* Values a lane in act_quantize_vec_kernel: 8, four lanes a block. Each lane's share of a
 * block's scale, index and store work halves against 4 a lane (ptxas: ~300 instructions a lane
 * for 4 values, ~100 of them that share). */
constexpr int kVecValues = 8;

/* act_quantize_kernel's work for FP32 rows (T = float) at a 16-byte aligned base or BF16 rows
 * (T = uint16_t, the layer's gemm_dtype) at an 8-byte aligned one, activation A fixed: lane `sub`
 * of a block's 32 / E loads its E inputs (and E ups) as whole vectors. The same bytes: the
 * reference's FP64 evaluation (mxmoe_activation_of), or for BF16 results an FP32 one wherever
 * core/activation_fp32.h proves it rounds to the same value. */
template <mxmoe_activation A, typename T> __global__ void act_quantize_vec_kernel(act_args a) {
    constexpr int E = kVecValues, lanes = 32 / E;
    pdl_wait();
    pdl_release();
    if (a.offsets != nullptr && blockIdx.x == 0) {
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    constexpr bool gated =
        A == MXMOE_ACT_SILU_MUL || A == MXMOE_ACT_GELU_TANH_MUL || A == MXMOE_ACT_SWIGLU_OAI;
    /* core/activation_fp32.h has these */
    constexpr bool fp32_form =
        A == MXMOE_ACT_SILU || A == MXMOE_ACT_SILU_MUL || A == MXMOE_ACT_SWIGLU_OAI;
    const int64_t kb = a.inter / 32, width = gated ? 2 * a.inter : a.inter;
    const int64_t blocks = grouped_row_limit(a.offsets, a.num_experts, a.rows) * kb;
    const bool interleaved = a.params.layout == MXMOE_GATE_UP_INTERLEAVED;
    const int sub = threadIdx.x & (lanes - 1);
    const T* h = static_cast<const T*>(a.h.data);
    /* this lane's block (row r, column block j) as the loop below walks: divided once, then
     * advanced by the pass's stride (a division a pass was ~20 instructions) */
    int64_t r = 0, j = 0, step_r = 0, step_j = 0;
    split_index((((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5) * E +
                    (threadIdx.x & 31) / lanes,
                kb, &r, &j);
    split_index((int64_t)gridDim.x * blockDim.x / lanes, kb, &step_r, &step_j);
    BLOCK_LANES_GRID_STRIDE_LOOP(E, b, blocks) {
        float v[E] = {};
        const bool live = b < blocks;
        if (live) {
            const int64_t col = j * 32 + E * sub;
            const T* row = h + r * width;
            float g[E], u[E] = {};
#pragma unroll
            for (int q = 0; q < E; q += 4) {
                if (!gated) {
                    const float4 x = load_x4(row + col + q);
                    g[q] = x.x, g[q + 1] = x.y, g[q + 2] = x.z, g[q + 3] = x.w;
                } else if (interleaved) { /* (gate, up) pairs */
                    const float4 p0 = load_x4(row + 2 * (col + q)),
                                 p1 = load_x4(row + 2 * (col + q) + 4);
                    g[q] = p0.x, u[q] = p0.y, g[q + 1] = p0.z, u[q + 1] = p0.w;
                    g[q + 2] = p1.x, u[q + 2] = p1.y, g[q + 3] = p1.z, u[q + 3] = p1.w;
                } else { /* gate || up */
                    const float4 x = load_x4(row + col + q), y = load_x4(row + a.inter + col + q);
                    g[q] = x.x, g[q + 1] = x.y, g[q + 2] = x.z, g[q + 3] = x.w;
                    u[q] = y.x, u[q + 1] = y.y, u[q + 2] = y.z, u[q + 3] = y.w;
                }
            }
            if (fp32_form && a.params.act_dtype == MXMOE_BF16) {
                /* FP32 where it provably rounds to the reference's BF16 value (~99.9 % of
                 * ordinary inputs), the reference's FP64 evaluation elsewhere: the lane's values
                 * decided first, without branches, then one branch for the rare rest (one a
                 * value cost ~10 instructions of branch and reconvergence each) */
                unsigned undecided = 0;
#pragma unroll
                for (int i = 0; i < E; i++) {
                    undecided |= (unsigned)!mxmoe_activation_bf16_fp32(A, g[i], u[i], &a.params,
                                                                       &a.fp32, &v[i])
                                 << i;
                }
                if (undecided != 0) {
#pragma unroll
                    for (int i = 0; i < E; i++) {
                        if ((undecided >> i) & 1) {
                            v[i] = mxmoe_round_to_dtype(
                                (float)mxmoe_activation_of(A, g[i], u[i], &a.params), MXMOE_BF16);
                        }
                    }
                }
            } else {
#pragma unroll
                for (int i = 0; i < E; i++) {
                    v[i] = (float)mxmoe_activation_of(A, g[i], u[i], &a.params);
                }
                /* the dtype decided once for the lane's values (per value, its branches were
                 * ~20 % of the kernel's instructions) */
                if (a.params.act_dtype == MXMOE_BF16) {
                    round_values<MXMOE_BF16>(v);
                } else if (a.params.act_dtype == MXMOE_F16) {
                    round_values<MXMOE_F16>(v);
                }
            }
        }
        if (a.params.act_dtype == MXMOE_BF16) { /* the values above are BF16 */
            quantize_block_lanes<E, true>(v, live, a.params.rule, a.packed, a.scales,
                                          a.scales_numel, a.swizzled, a.offsets, a.num_experts,
                                          a.rows, r, j, a.inter, a.errors);
        } else {
            quantize_block_lanes<E>(v, live, a.params.rule, a.packed, a.scales, a.scales_numel,
                                    a.swizzled, a.offsets, a.num_experts, a.rows, r, j, a.inter,
                                    a.errors);
        }
        j += step_j, r += step_r;
        if (j >= kb) {
            j -= kb, r++;
        }
    }
}

template <mxmoe_activation A, typename T>
cudaError_t launch_vec(mxmoe_ctx* ctx, const act_args& a) {
    return launch_pdl(ctx, act_quantize_vec_kernel<A, T>,
                      grid_for(ctx, a.rows * a.inter / kVecValues, kThreads), kThreads, 0, a);
}

template <typename T> cudaError_t launch_vec_for(mxmoe_ctx* ctx, const act_args& a) {
    switch (a.params.activation) {
    case MXMOE_ACT_SILU_MUL:
        return launch_vec<MXMOE_ACT_SILU_MUL, T>(ctx, a);
    case MXMOE_ACT_GELU_TANH_MUL:
        return launch_vec<MXMOE_ACT_GELU_TANH_MUL, T>(ctx, a);
    case MXMOE_ACT_SWIGLU_OAI:
        return launch_vec<MXMOE_ACT_SWIGLU_OAI, T>(ctx, a);
    case MXMOE_ACT_SILU:
        return launch_vec<MXMOE_ACT_SILU, T>(ctx, a);
    case MXMOE_ACT_GELU_TANH:
        return launch_vec<MXMOE_ACT_GELU_TANH, T>(ctx, a);
    default:
        return launch_vec<MXMOE_ACT_RELU2, T>(ctx, a);
    }
}

/* The decode layer's activation rows (moe.cu): out[p, i] = the activation of h's row p, rounded
 * to act_dtype (mxmoe_activation_rounded: the values act_and_quantize quantizes) for the pairs
 * kept on this device; row_of[p] = p for those and -1 for the dropped (the reduction's view of
 * a layer without a plan). A few hundred rows at most: an element a thread. */
struct act_rows_args {
    mxmoe_tensor h; /* [pairs, n13], pair order */
    int64_t inter;
    mxmoe_act_params params;
    projection_tokens pairs; /* their ids (ids, map, id_limit) */
    int64_t count, num_experts;
    void* out; /* [pairs, inter] in params.act_dtype */
    int32_t* row_of;
};

__global__ void act_rows_kernel(act_rows_args a) {
    pdl_wait();
    pdl_release();
    GRID_STRIDE_LOOP(idx, a.count * a.inter) {
        int64_t p, i;
        split_index(idx, a.inter, &p, &i);
        /* errors were flagged by GEMM-1, which reads the same ids */
        const bool kept = pair_expert(a.pairs, a.num_experts, p, nullptr) >= 0;
        if (i == 0) {
            a.row_of[p] = kept ? (int32_t)p : -1;
        }
        if (kept) {
            mxmoe_store_float(a.out, a.params.act_dtype, idx,
                              mxmoe_activation_rounded(&a.h, p, i, a.inter, &a.params));
        }
    }
}

} // namespace

mxmoe_status mxmoe_launch_activation_rows(mxmoe_ctx* ctx, const mxmoe_tensor* h, int64_t inter,
                                          const mxmoe_act_params* params,
                                          const projection_tokens* pairs, int64_t num_experts,
                                          void* out, int32_t* row_of) {
    act_rows_args a = {};
    a.h = *h;
    a.inter = inter;
    a.params = *params;
    a.pairs = *pairs;
    a.count = h->dims[0];
    a.num_experts = num_experts;
    a.out = out;
    a.row_of = row_of;
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, act_rows_kernel, grid_for(ctx, a.count * inter, kThreads),
                                     kThreads, 0, a));
    return MXMOE_OK;
}

mxmoe_status mxmoe_act_and_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                         const mxmoe_tensor* offsets,
                                         const mxmoe_act_params* params, mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    act_args a = {};
    a.h = *h;
    a.rows = h->dims[0];
    a.inter = out->packed.dims[1] * 2;
    a.params = *params;
    a.fp32 = mxmoe_act_fp32_setup(params);
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
    } else if (h->dtype == MXMOE_F32 && (uintptr_t)h->data % 16 == 0) {
        MXMOE_CUDA_CHECK(ctx, launch_vec_for<float>(ctx, a));
    } else if (h->dtype == MXMOE_BF16 && (uintptr_t)h->data % 8 == 0) {
        MXMOE_CUDA_CHECK(ctx, launch_vec_for<uint16_t>(ctx, a));
    } else {
        MXMOE_CUDA_CHECK(ctx,
                         launch_pdl(ctx, act_quantize_kernel<4>,
                                    grid_for(ctx, a.rows * a.inter / 4, kThreads), kThreads, 0, a));
    }
    return MXMOE_OK;
}
