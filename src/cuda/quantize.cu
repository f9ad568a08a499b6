/*
 * quantize.cu — CUDA quantization, dequantization, GGUF conversion, scale swizzling and grouped
 * quantization (also the gather + quantize step of moe_forward).
 *
 * The reference's block quantizer (mx_numerics.h) with its E2M1 element encoder computed by
 * rounding arithmetic (core/e2m1_round.h, proven equal on every input), one thread per 32-element
 * block (quantize_rows_kernel) or eight lanes per block: byte-identical to the CPU. The encoder's
 * compare chain made the thread-per-block kernel instruction-bound (1400 instructions a block).
 *
 * The row kernels let the next kernel launch (pdl_release) only once their own stores are
 * issued, not at their start as the other short kernels do. The next kernel is the GEMM, and
 * launched early its CTAs sat down beside the quantizer's: in a CUDA graph (no host gap between
 * the launches) deepseek-v3 n = 1 took 65.6 us a run, 43.9 with the late release (H100, eager
 * 50 -> 49; every other shape at n = 1, 8, 64 within noise; bench/NOTES.md). Likely the GEMM's
 * CTAs placed on a busy GPU packed onto fewer SMs; the skinny GEMM then streams from fewer SMs.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/quantize.cuh"

namespace {

constexpr int kThreads = 256;

/* Output row r's source row: gather[r] / top_k under a gather (r itself without one), and its
 * router weight (1 without weights). False, flagged when `report`, for a gather entry outside
 * [0, gather_limit): the row is skipped. */
__device__ inline bool gather_source(const quantize_rows_args& a, int64_t r, bool report,
                                     int64_t* src_row, float* weight) {
    *src_row = r;
    *weight = 1.0f;
    if (a.gather == nullptr) {
        return true;
    }
    const int32_t pair = a.gather[r];
    if (pair < 0 || pair >= a.gather_limit) {
        if (report) {
            atomicOr(a.errors, MXMOE_DEVERR_ROW_INDEX);
        }
        return false;
    }
    *src_row = pair / a.top_k;
    if (a.weights != nullptr) {
        *weight = a.weights[pair];
    }
    return true;
}

/* The row kernels' last step: the kernel before complete (where its wait was put off to
 * here), then the next kernel let in (late: see the file's header). */
__device__ inline void finish_rows(const quantize_rows_args& a) {
    if (a.wait_late) {
        pdl_wait();
    }
    pdl_release();
}

/* One thread per block: few instructions per block, for many blocks. */
__global__ void quantize_rows_kernel(quantize_rows_args a) {
    if (!a.wait_late) {
        pdl_wait();
    }
    if (a.check_offsets && blockIdx.x == 0) {
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    int64_t kb = a.k / 32;
    const int64_t limit = grouped_row_limit(a.offsets, a.num_experts, a.rows);
    /* rows of k (a multiple of 32) elements keep 16-byte alignment from an aligned base */
    const bool bf16_vectors = a.dtype == MXMOE_BF16 && (uintptr_t)a.x % 16 == 0;
    const bool packed_vectors = (uintptr_t)a.packed % 16 == 0;
    GRID_STRIDE_LOOP(b, limit * kb) {
        int64_t r, j;
        split_index(b, kb, &r, &j);
        int64_t src_row;
        float weight;
        if (!gather_source(a, r, true, &src_row, &weight)) {
            continue;
        }
        float block[MXMOE_BLOCK];
        const int64_t first = src_row * a.k + j * 32;
        if (bf16_vectors) { /* four 16-byte loads instead of 32 two-byte ones */
            load_bf16_block(static_cast<const uint16_t*>(a.x) + first, block);
        } else {
#pragma unroll
            for (int i = 0; i < MXMOE_BLOCK; i++) {
                block[i] = mxmoe_load_float(a.x, a.dtype, first + i);
            }
        }
        if (a.weights != nullptr) {
#pragma unroll
            for (int i = 0; i < MXMOE_BLOCK; i++) {
                block[i] = mxmoe_round_to_dtype(block[i] * weight, a.round_dtype);
            }
        }
        uint8_t packed[MXMOE_BLOCK / 2];
        uint8_t scale = mxmoe_quantize_block_rne(block, a.rule, packed);
        uint8_t* dst = a.packed + r * (a.k / 2) + j * 16;
        if (packed_vectors) {
            uint4 w;
            memcpy(&w, packed, 16);
            *reinterpret_cast<uint4*>(dst) = w;
        } else {
#pragma unroll
            for (int i = 0; i < MXMOE_BLOCK / 2; i++) {
                dst[i] = packed[i];
            }
        }
        int64_t off = grouped_scale_offset(a.swizzled, a.offsets, a.num_experts, a.rows, r, j, a.k);
        if (off < 0 || off >= a.scales_numel) {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
            continue;
        }
        a.scales[off] = scale;
    }
    finish_rows(a);
}

/* Eight lanes per 32-element block, four elements a lane (one 8-byte load of BF16), through
 * quantize_block_lanes<4>: a warp covers four blocks a pass, for short latency with few blocks.
 * Many blocks go to the thread-per-block kernel above (this kernel for every size measured
 * 3 % slower at gpt-oss n = 512 and 1-2 % at n = 8192). */
__global__ void quantize_rows_x8_kernel(quantize_rows_args a) {
    if (!a.wait_late) {
        pdl_wait();
    }
    if (a.check_offsets && blockIdx.x == 0) {
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    const int64_t kb = a.k / 32, blocks = grouped_row_limit(a.offsets, a.num_experts, a.rows) * kb;
    const int sub = threadIdx.x & 7;
    const bool bf16_vectors = a.dtype == MXMOE_BF16 && (uintptr_t)a.x % 8 == 0;
    BLOCK_LANES_GRID_STRIDE_LOOP(4, b, blocks) {
        int64_t r = 0, j = 0, src_row = 0;
        float weight = 1.0f, v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        bool live = b < blocks;
        if (live) {
            split_index(b, kb, &r, &j);
            live = gather_source(a, r, sub == 0, &src_row, &weight);
        }
        if (live) {
            const int64_t first = src_row * a.k + j * 32 + 4 * sub;
            if (bf16_vectors) {
                const uint2 w = __ldg(
                    reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.x) + first));
                v[0] = mxmoe_bf16_to_f32((uint16_t)w.x);
                v[1] = mxmoe_bf16_to_f32((uint16_t)(w.x >> 16));
                v[2] = mxmoe_bf16_to_f32((uint16_t)w.y);
                v[3] = mxmoe_bf16_to_f32((uint16_t)(w.y >> 16));
            } else {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    v[i] = mxmoe_load_float(a.x, a.dtype, first + i);
                }
            }
            if (a.weights != nullptr) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    v[i] = mxmoe_round_to_dtype(v[i] * weight, a.round_dtype);
                }
            }
        }
        quantize_block_lanes<4>(v, live, a.rule, a.packed, a.scales, a.scales_numel, a.swizzled,
                                a.offsets, a.num_experts, a.rows, r, j, a.k, a.errors);
    }
    finish_rows(a);
}

/* Zeroes the used span of swizzled scales (the padding must read as 0x00). */
__global__ void zero_swizzled_kernel(uint8_t* scales, int64_t numel, const int32_t* offsets,
                                     int64_t num_experts, int64_t rows, int64_t k,
                                     unsigned* errors) {
    int64_t used = offsets != nullptr ? grouped_scale_bytes(offsets, num_experts, rows, k)
                                      : mxmoe_swizzled_matrix_bytes(rows, k);
    if (used > numel) {
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            atomicOr(errors, MXMOE_DEVERR_SCALE_SPACE);
        }
        used = numel;
    }
    GRID_STRIDE_LOOP(i, used) {
        scales[i] = 0;
    }
}

__global__ void dequantize_kernel(const uint8_t* packed, const uint8_t* scales, int64_t rows,
                                  int64_t k, void* out, mxmoe_dtype dtype) {
    GRID_STRIDE_LOOP(idx, rows * k) {
        int64_t r = idx / k, i = idx % k;
        uint8_t b = scales[r * (k / 32) + i / 32];
        double v = mxmoe_dequantize_element(packed + r * (k / 2) + (i / 32) * 16, b, (int)(i % 32));
        mxmoe_store_float(out, dtype, idx, (float)v); /* (float)v is exact or +-inf */
    }
}

__global__ void gguf_from_mx_kernel(const uint8_t* packed, const uint8_t* scales, int64_t blocks,
                                    uint8_t* gguf) {
    GRID_STRIDE_LOOP(b, blocks) {
        const uint8_t* src = packed + b * 16;
        uint8_t* dst = gguf + b * 17;
        dst[0] = scales[b];
        for (int j = 0; j < 16; j++) {
            /* element j is nibble j of the canonical block, element j+16 is nibble j+16 */
            uint8_t lo = (src[j / 2] >> (4 * (j % 2))) & 0xF;
            uint8_t hi = (src[(j + 16) / 2] >> (4 * (j % 2))) & 0xF;
            dst[1 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

__global__ void mx_from_gguf_kernel(const uint8_t* gguf, int64_t blocks, uint8_t* packed,
                                    uint8_t* scales) {
    GRID_STRIDE_LOOP(b, blocks) {
        const uint8_t* src = gguf + b * 17;
        scales[b] = src[0];
        for (int i = 0; i < 16; i++) {
            int e0 = 2 * i, e1 = 2 * i + 1; /* canonical elements of byte i */
            uint8_t c0 = (src[1 + e0 % 16] >> (4 * (e0 / 16))) & 0xF;
            uint8_t c1 = (src[1 + e1 % 16] >> (4 * (e1 / 16))) & 0xF;
            packed[b * 16 + i] = (uint8_t)(c0 | (c1 << 4));
        }
    }
}

__global__ void swizzle_kernel(const uint8_t* linear, int64_t rows, int64_t k, uint8_t* swizzled,
                               int to_swizzled) {
    int64_t kb = k / 32;
    GRID_STRIDE_LOOP(idx, rows * kb) {
        int64_t off = mxmoe_swizzled_offset(idx / kb, idx % kb, k);
        if (to_swizzled) {
            swizzled[off] = linear[idx];
        } else {
            const_cast<uint8_t*>(linear)[idx] = swizzled[off];
        }
    }
}

/* Row r of `out` (r < offsets[E]) = row sorted[r] / top_k of the per-token quantized `in`:
 * a warp per row, 16-byte copies of the packed bytes, then the scale bytes (linear layouts). */
__global__ void gather_rows_kernel(quantize_rows_args a, const uint8_t* in_packed,
                                   const uint8_t* in_scales) {
    pdl_wait();
    if (a.check_offsets && blockIdx.x == 0) {
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    const int64_t limit = grouped_row_limit(a.offsets, a.num_experts, a.rows);
    const int64_t row_bytes = a.k / 2, kb = a.k / 32;
    const int lane = threadIdx.x & 31;
    const bool vectors = ((uintptr_t)a.packed | (uintptr_t)in_packed) % 16 == 0;
    WARP_GRID_STRIDE_LOOP(r, limit) {
        int64_t src;
        float unused_weight;
        if (!gather_source(a, r, lane == 0, &src, &unused_weight)) {
            continue;
        }
        const uint8_t* from = in_packed + src * row_bytes;
        uint8_t* to = a.packed + r * row_bytes;
        if (vectors) {
            for (int64_t u = lane; u < row_bytes / 16; u += 32) {
                reinterpret_cast<uint4*>(to)[u] = __ldg(reinterpret_cast<const uint4*>(from) + u);
            }
        } else {
            for (int64_t b = lane; b < row_bytes; b += 32) {
                to[b] = from[b];
            }
        }
        for (int64_t j = lane; j < kb; j += 32) {
            a.scales[r * kb + j] = in_scales[src * kb + j];
        }
    }
    pdl_release(); /* late: see the file's header */
}

} // namespace

__global__ void check_offsets_kernel(const int32_t* offsets, int64_t num_experts, int64_t rows,
                                     unsigned* errors) {
    check_offsets_block(offsets, num_experts, rows, errors);
}

mxmoe_status mxmoe_launch_quantize_rows(mxmoe_ctx* ctx, const quantize_rows_args* args) {
    cudaStream_t stream = cuda_stream(ctx);
    if (args->swizzled) {
        zero_swizzled_kernel<<<grid_for(ctx, args->scales_numel, kThreads), kThreads, 0, stream>>>(
            args->scales, args->scales_numel, args->offsets, args->num_experts, args->rows, args->k,
            args->errors);
        MXMOE_CUDA_LAUNCHED(ctx);
    }
    const int64_t blocks = args->rows * (args->k / 32);
    if (blocks < (int64_t)cuda_state(ctx)->sm_count * 512) {
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, quantize_rows_x8_kernel,
                                         grid_for(ctx, blocks * 8, kThreads), kThreads, 0, *args));
    } else {
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, quantize_rows_kernel, grid_for(ctx, blocks, kThreads),
                                         kThreads, 0, *args));
    }
    return MXMOE_OK;
}

static quantize_rows_args rows_args(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                    mxmoe_mx_tensor* out) {
    quantize_rows_args a = {};
    a.x = x->data;
    a.dtype = x->dtype;
    a.k = x->dims[x->ndim - 1];
    a.rows = mxmoe_dims_product(x, 0, x->ndim - 1);
    a.rule = rule;
    a.packed = static_cast<uint8_t*>(out->packed.data);
    a.scales = static_cast<uint8_t*>(out->scales.data);
    a.scales_numel = mxmoe_tensor_numel(&out->scales);
    a.swizzled = out->scale_layout == MXMOE_SCALES_SWIZZLED;
    a.errors = cuda_state(ctx)->errors;
    return a;
}

mxmoe_status mxmoe_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                 mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    quantize_rows_args a = rows_args(ctx, x, rule, out);
    return mxmoe_launch_quantize_rows(ctx, &a);
}

mxmoe_status mxmoe_quantize_beside_plan_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                             mxmoe_scale_rule rule, mxmoe_mx_tensor* out) {
    quantize_rows_args a = rows_args(ctx, x, rule, out);
    a.wait_late = !a.swizzled; /* swizzled scales are zeroed by a kernel of their own first */
    return mxmoe_launch_quantize_rows(ctx, &a);
}

mxmoe_status mxmoe_experts_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                         const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                         mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    quantize_rows_args a = rows_args(ctx, x, rule, out);
    a.offsets = static_cast<const int32_t*>(offsets->data);
    a.num_experts = offsets->dims[0] - 1;
    a.check_offsets = 1;
    return mxmoe_launch_quantize_rows(ctx, &a);
}

/* Many (token, slot) pairs: each token quantized once into scratch, then its rows copied to the
 * pairs' rows (the gathered BF16 rows, read top_k times, were 70 % of permute_quantize at
 * deepseek-v3 n = 8192); few pairs: one kernel quantizing the gathered rows directly. A router
 * weight folded into the rows (moe_forward) makes every pair's row different: direct too. */
constexpr int64_t kQuantizeOncePairs = 4096;

bool mxmoe_quantize_once_applies(const quantize_rows_args* a) {
    return a->gather != nullptr && a->weights == nullptr && a->top_k > 1 && !a->swizzled &&
           a->rows >= kQuantizeOncePairs;
}

/* The scratch: the tokens' packed rows, then (256-aligned) their linear scales. */
static size_t once_scales_at(int64_t tokens, int64_t k) {
    return (size_t)(tokens * (k / 2) + 255) / 256 * 256;
}

size_t mxmoe_quantize_once_scratch(int64_t tokens, int64_t k) {
    return once_scales_at(tokens, k) + (size_t)(tokens * (k / 32));
}

mxmoe_status mxmoe_launch_quantize_once(mxmoe_ctx* ctx, const quantize_rows_args* a, int64_t tokens,
                                        uint8_t* scratch) {
    quantize_rows_args t = *a; /* the tokens' rows, once each, into the scratch */
    t.rows = tokens;
    t.packed = scratch;
    t.scales = scratch + once_scales_at(tokens, a->k);
    t.scales_numel = tokens * (a->k / 32);
    t.offsets = nullptr;
    t.num_experts = 0;
    t.check_offsets = 0;
    t.gather = nullptr;
    MXMOE_FORWARD(mxmoe_launch_quantize_rows(ctx, &t));
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, gather_rows_kernel, grid_for(ctx, a->rows * 32, kThreads),
                                     kThreads, 0, *a, (const uint8_t*)t.packed,
                                     (const uint8_t*)t.scales));
    return MXMOE_OK;
}

mxmoe_status mxmoe_permute_quantize_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                         const mxmoe_tensor* sorted, const mxmoe_tensor* offsets,
                                         int32_t top_k, mxmoe_scale_rule rule,
                                         mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    quantize_rows_args a = rows_args(ctx, x, rule, out);
    const int64_t tokens = a.rows;
    a.rows = sorted->dims[0];
    a.offsets = static_cast<const int32_t*>(offsets->data);
    a.num_experts = offsets->dims[0] - 1;
    a.gather = static_cast<const int32_t*>(sorted->data);
    a.gather_limit = sorted->dims[0];
    a.top_k = top_k;
    a.check_offsets = 1;
    if (!mxmoe_quantize_once_applies(&a)) {
        return mxmoe_launch_quantize_rows(ctx, &a);
    }
    void* scratch = nullptr;
    MXMOE_CUDA_CHECK(ctx,
                     cudaMallocFromPoolAsync(&scratch, mxmoe_quantize_once_scratch(tokens, a.k),
                                             cuda_state(ctx)->pool, cuda_stream(ctx)));
    const mxmoe_status st =
        mxmoe_launch_quantize_once(ctx, &a, tokens, static_cast<uint8_t*>(scratch));
    MXMOE_CUDA_CHECK(ctx, cudaFreeAsync(scratch, cuda_stream(ctx)));
    return st;
}

mxmoe_status mxmoe_dequantize_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t k = out->dims[out->ndim - 1];
    int64_t rows = mxmoe_dims_product(out, 0, out->ndim - 1);
    dequantize_kernel<<<grid_for(ctx, rows * k, kThreads), kThreads, 0, cuda_stream(ctx)>>>(
        static_cast<const uint8_t*>(in->packed.data), static_cast<const uint8_t*>(in->scales.data),
        rows, k, out->data, out->dtype);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_gguf_from_mx_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in,
                                     mxmoe_tensor* gguf) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t blocks = mxmoe_tensor_numel(&in->scales);
    gguf_from_mx_kernel<<<grid_for(ctx, blocks, kThreads), kThreads, 0, cuda_stream(ctx)>>>(
        static_cast<const uint8_t*>(in->packed.data), static_cast<const uint8_t*>(in->scales.data),
        blocks, static_cast<uint8_t*>(gguf->data));
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_mx_from_gguf_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* gguf,
                                     mxmoe_mx_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t blocks = mxmoe_tensor_numel(&out->scales);
    mx_from_gguf_kernel<<<grid_for(ctx, blocks, kThreads), kThreads, 0, cuda_stream(ctx)>>>(
        static_cast<const uint8_t*>(gguf->data), blocks, static_cast<uint8_t*>(out->packed.data),
        static_cast<uint8_t*>(out->scales.data));
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_swizzle_scales_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                       mxmoe_tensor* swizzled) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t rows = linear->dims[0];
    int64_t bytes = mxmoe_swizzled_matrix_bytes(rows, k);
    MXMOE_CUDA_CHECK(ctx, cudaMemsetAsync(swizzled->data, 0, (size_t)bytes, cuda_stream(ctx)));
    swizzle_kernel<<<grid_for(ctx, rows * (k / 32), kThreads), kThreads, 0, cuda_stream(ctx)>>>(
        static_cast<const uint8_t*>(linear->data), rows, k, static_cast<uint8_t*>(swizzled->data),
        1);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_unswizzle_scales_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                         mxmoe_tensor* linear) {
    MXMOE_CUDA_ENTER(ctx);
    int64_t rows = linear->dims[0];
    swizzle_kernel<<<grid_for(ctx, rows * (k / 32), kThreads), kThreads, 0, cuda_stream(ctx)>>>(
        static_cast<const uint8_t*>(linear->data), rows, k, static_cast<uint8_t*>(swizzled->data),
        0);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}
