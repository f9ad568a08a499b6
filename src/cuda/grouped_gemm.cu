/*
 * grouped_gemm.cu — the generic (sm_80+) W4A4 grouped GEMM, on int8 tensor cores.
 *
 * Exact by construction, and bit-identical to the reference: 2*E2M1 values are int8 integers
 * and an MX block is 32 long, exactly the K of one `mma.sync.m16n8k32.s8.s8.s32`; issued with a
 * zero accumulator it returns each block's exact integer dot product. The block's value
 * isum * 2^(sa+sb-256) is rounded once to FP32 (mxmoe_block_term) and blocks are accumulated in
 * FP32 in ascending K, the order the contract fixes.
 *
 * Tiling: a thread block computes a 64 x 128 tile of one expert (rows of that expert x output
 * columns) with 8 warps of 32 x 32. Per K-block the threads decode the A and W nibbles into
 * int8 (two byte-permute table lookups per 4 values) into a double-buffered shared-memory
 * stage while the previous stage feeds the tensor cores. Tiles map to experts through the
 * offsets in device memory (no host synchronisation): grid.x covers the worst case
 * ceil(R/64) + E tiles and blocks past the last tile exit.
 * History: v1 (commit 4aa0d6a) used __dp4a on CUDA cores, 64 x 64 tiles.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"
#include "cuda/int8_mma.cuh"

#include <stdlib.h>
#include <string.h>

#include "core/prepared.h"
#include "core/sign_packing.h"

namespace {

constexpr int BLOCK_M = 64;
constexpr int BLOCK_N = 128;
constexpr int kThreads = 256;
/* A row of one K-block: 32 int8 = 8 words, padded to 12 so the fragment loads of a warp
 * (8 rows x 4 words) hit 32 distinct banks. */
constexpr int kRowWords = 12;

__device__ __forceinline__ uint32_t load_word(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The M tile block `tile` computes: its expert, the expert's first row, the tile's rows, and
 * the expert's first 128-row scale atom (grouped swizzled activation scales). */
struct tile_info {
    int64_t expert, expert_begin, row_begin, row_end, sf_row_base;
};

__device__ inline bool find_tile(const gemm_args& a, int64_t tile, tile_info* t) {
    int64_t seen = 0, sf_rows = 0;
    for (int64_t e = 0; e < a.num_experts; e++) {
        int64_t b, n;
        expert_rows(a.offsets, e, a.rows, &b, &n);
        int64_t tiles = (n - b + BLOCK_M - 1) / BLOCK_M;
        if (tile < seen + tiles) {
            t->expert = e;
            t->expert_begin = b;
            t->row_begin = b + (tile - seen) * BLOCK_M;
            t->row_end = min(n, t->row_begin + BLOCK_M);
            t->sf_row_base = sf_rows;
            return true;
        }
        seen += tiles;
        sf_rows += (n - b + 127) / 128 * 128;
    }
    return false;
}

/* What one thread fetches from global memory for one K-block: its packed words of A (one row)
 * and W (two rows), and one scale byte (threads 0..63: A rows, 64..191: W rows). */
struct fetch {
    uint32_t a, w0, w1;
    uint32_t scale;
};

struct block_ctx {
    const gemm_args* a;
    tile_info t;
    int64_t n_begin, kb, w_matrix_bytes;
    int tid;
};

__device__ __forceinline__ fetch fetch_kblock(const block_ctx& c, int64_t kblock) {
    const gemm_args& a = *c.a;
    fetch f;
    const int row = c.tid / 4, part = c.tid % 4; /* 64 rows x 4 words of 4 packed bytes */
    const int64_t byte = kblock * 16 + part * 4;
    const int64_t ar = c.t.row_begin + row;
    f.a = ar < c.t.row_end ? load_word(a.a_packed + ar * (a.k / 2) + byte) : 0;
    const int64_t n0 = c.n_begin + row, n1 = n0 + 64;
    f.w0 = n0 < a.n ? load_word(a.w_packed + (c.t.expert * a.n + n0) * (a.k / 2) + byte) : 0;
    f.w1 = n1 < a.n ? load_word(a.w_packed + (c.t.expert * a.n + n1) * (a.k / 2) + byte) : 0;
    if (a.w_repacked) { /* each word back in the canonical packing (core/sign_packing.h) */
        f.w0 = mxmoe_sign_unpack(f.w0);
        f.w1 = mxmoe_sign_unpack(f.w1);
    }
    f.scale = 0;
    if (c.tid < BLOCK_M) {
        int64_t r = c.t.row_begin + c.tid;
        int64_t off = !a.a_swizzled ? r * c.kb + kblock
                                    : c.t.sf_row_base * mxmoe_swizzled_cols(a.k) +
                                          mxmoe_swizzled_offset(r - c.t.expert_begin, kblock, a.k);
        bool inside = r < c.t.row_end && off < a.a_scales_numel;
        if (r < c.t.row_end && !inside) {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
        }
        f.scale = inside ? a.a_scales[off] : 0;
    } else if (c.tid < BLOCK_M + BLOCK_N) {
        int64_t n = c.n_begin + c.tid - BLOCK_M;
        int64_t off = !a.w_swizzled
                          ? (c.t.expert * a.n + n) * c.kb + kblock
                          : c.t.expert * c.w_matrix_bytes + mxmoe_swizzled_offset(n, kblock, a.k);
        f.scale = n < a.n ? a.w_scales[off] : 0;
    }
    return f;
}

struct stage {
    uint32_t a[BLOCK_M][kRowWords];
    uint32_t w[BLOCK_N][kRowWords];
    uint8_t sa[BLOCK_M];
    uint8_t sw[BLOCK_N];
};

__device__ __forceinline__ void store_stage(stage& s, const fetch& f, int tid) {
    const int row = tid / 4, part = tid % 4;
    s.a[row][2 * part] = e2m1x4_to_int8x4(f.a);
    s.a[row][2 * part + 1] = e2m1x4_to_int8x4(f.a >> 16);
    s.w[row][2 * part] = e2m1x4_to_int8x4(f.w0);
    s.w[row][2 * part + 1] = e2m1x4_to_int8x4(f.w0 >> 16);
    s.w[row + 64][2 * part] = e2m1x4_to_int8x4(f.w1);
    s.w[row + 64][2 * part + 1] = e2m1x4_to_int8x4(f.w1 >> 16);
    if (tid < BLOCK_M) {
        s.sa[tid] = (uint8_t)f.scale;
    } else if (tid < BLOCK_M + BLOCK_N) {
        s.sw[tid - BLOCK_M] = (uint8_t)f.scale;
    }
}

__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(gemm_args args) {
    __shared__ stage stages[2];
    block_ctx c;
    c.a = &args;
    if (!find_tile(args, blockIdx.x, &c.t)) {
        return;
    }
    c.n_begin = (int64_t)blockIdx.y * BLOCK_N;
    c.kb = args.k / 32;
    c.w_matrix_bytes = mxmoe_swizzled_matrix_bytes(args.n, args.k);
    c.tid = threadIdx.x;
    const int lane = c.tid % 32, warp = c.tid / 32;
    const int g = lane / 4, t = lane % 4;                         /* mma fragment coordinates */
    const int warp_m = (warp / 4) * 32, warp_n = (warp % 4) * 32; /* the warp's 32 x 32 */

    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                acc[mi][ni][q] = 0.0f;
            }
        }
    }
    fetch next = fetch_kblock(c, 0);
    for (int64_t kblock = 0; kblock < c.kb; kblock++) {
        stage& s = stages[kblock & 1];
        store_stage(s, next, c.tid);
        __syncthreads(); /* also orders the last reads of the other stage before its rewrite */
        if (kblock + 1 < c.kb) {
            next = fetch_kblock(c, kblock + 1); /* in flight while the tensor cores work */
        }
        uint32_t af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            const int r = warp_m + mi * 16 + g;
            af[mi][0] = s.a[r][t];
            af[mi][1] = s.a[r + 8][t];
            af[mi][2] = s.a[r][t + 4];
            af[mi][3] = s.a[r + 8][t + 4];
        }
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const int n = warp_n + ni * 8 + g;
            bf[ni][0] = s.w[n][t];
            bf[ni][1] = s.w[n][t + 4];
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            const int r = warp_m + mi * 16 + g;
            const uint32_t sa0 = s.sa[r], sa1 = s.sa[r + 8];
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                int32_t d[4];
                mma_s8_16x8x32(af[mi], bf[ni], 0, d);
                const int n = warp_n + ni * 8 + 2 * t;
                const uint32_t sw0 = s.sw[n], sw1 = s.sw[n + 1];
                acc[mi][ni][0] += mxmoe_block_term(d[0], sa0, sw0);
                acc[mi][ni][1] += mxmoe_block_term(d[1], sa0, sw1);
                acc[mi][ni][2] += mxmoe_block_term(d[2], sa1, sw0);
                acc[mi][ni][3] += mxmoe_block_term(d[3], sa1, sw1);
            }
        }
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int64_t r = c.t.row_begin + warp_m + mi * 16 + g + (q / 2) * 8;
                const int64_t n = c.n_begin + warp_n + ni * 8 + 2 * t + q % 2;
                if (r < c.t.row_end && n < args.n) {
                    float v = acc[mi][ni][q];
                    if (args.bias != nullptr) {
                        v += mxmoe_load_float(args.bias, args.bias_dtype, c.t.expert * args.n + n);
                    }
                    mxmoe_store_float(args.out, args.out_dtype, gemm_out_row(args, r) * args.n + n,
                                      v);
                }
            }
        }
    }
}

} // namespace

/* MXMOE_CUDA_GEMM=generic|skinny|sm90 forces a kernel where it takes the arguments (tests run
 * every kernel; benchmarks compare them); otherwise: */
static bool gemm_forced(const char* name) {
    const char* force = getenv("MXMOE_CUDA_GEMM");
    return force != nullptr && strcmp(force, name) == 0;
}

/* Few tokens per active expert, where the skinny kernel (the weights streamed once per group of
 * 32 tokens) beats the others. Against the generic kernel: up to ~12 rows an expert (H200: skinny
 * faster at 8 rows). Against the Hopper kernel with prepared weights (no weight-scale pass per
 * call) and its 8-token tiles: only where the rows are at most a quarter of the experts and the
 * active weights under 100 MB (as the one-launch projection, mxmoe_projection_one_launch).
 * H200, bench/NOTES.md v44, replayed us, skinny / Hopper: one token 15.2 / 23.8 (gpt-oss-120b),
 * 8.9 / 15.7 (qwen3), 31.6 / 36.2 (deepseek-v3, 62 MB); a quarter: qwen3 n = 4 19.9 / 21.0,
 * gpt-oss-120b n = 8 48.3 / 48.6; half: gpt-oss-20b n = 4 36.0 / 33.0, qwen3 n = 8 29.0 / 28.3,
 * the layer at qwen3 n = 8 84.6 / 76.5; over 100 MB: deepseek-v3 n = 2 (16 rows, 125 MB)
 * 60.6 / 51.5, its layer at n = 1 93.4 / 87.4. Eager, the projection's composed path (plan,
 * token prepass, GEMM) costs its extra launches where the device time is short: qwen3 n = 8
 * 35 -> 41 us eager for 28.4 -> 28.2 replayed. */
static bool few_rows(const gemm_args* a, bool sm90) {
    const int64_t active = a->num_experts < a->rows ? a->num_experts : a->rows;
    const int64_t experts = active > 0 ? active : 1;
    if (!sm90 || a->w_words_prepared == nullptr) {
        return a->rows <= 12 * experts;
    }
    return 4 * a->rows <= a->num_experts &&
           mxmoe_weight_bytes(experts, a->n, a->k) < kFewTokensWeightBytes;
}

gemm_kernel mxmoe_grouped_gemm_pick(mxmoe_ctx* ctx, const gemm_args* args) {
    const bool generic = gemm_forced("generic");
    const bool skinny = !generic && mxmoe_grouped_gemm_skinny_supported(ctx, args);
    const bool sm90 = !generic && mxmoe_grouped_gemm_sm90_supported(ctx, args);
    const bool few = few_rows(args, sm90);
    if (skinny && (gemm_forced("skinny") || (few && !(sm90 && gemm_forced("sm90"))))) {
        return GEMM_SKINNY;
    }
    return sm90 && args->rows > 0 ? GEMM_SM90 : GEMM_GENERIC;
}

mxmoe_status mxmoe_launch_grouped_gemm(mxmoe_ctx* ctx, const gemm_args* args) {
    const gemm_kernel kernel = mxmoe_grouped_gemm_pick(ctx, args);
    if (kernel == GEMM_SKINNY) {
        return mxmoe_launch_grouped_gemm_skinny(ctx, args); /* checks the offsets itself */
    }
    if (kernel == GEMM_SM90) { /* checks the offsets in its activation prepass */
        return mxmoe_launch_grouped_gemm_sm90(ctx, args);
    }
    if (args->check_offsets) {
        check_offsets_kernel<<<1, 256, 0, cuda_stream(ctx)>>>(args->offsets, args->num_experts,
                                                              args->rows, args->errors);
        MXMOE_CUDA_LAUNCHED(ctx);
    }
    int64_t m_tiles = (args->rows + BLOCK_M - 1) / BLOCK_M + args->num_experts;
    int64_t n_tiles = (args->n + BLOCK_N - 1) / BLOCK_N;
    if (m_tiles > INT32_MAX || n_tiles > 65535) {
        return mxmoe_fail(ctx, MXMOE_ERR_UNSUPPORTED,
                          "grouped_gemm: %lld x %lld tiles exceed the CUDA grid",
                          (long long)m_tiles, (long long)n_tiles);
    }
    if (args->rows == 0) {
        return MXMOE_OK;
    }
    dim3 grid((unsigned)m_tiles, (unsigned)n_tiles);
    grouped_gemm_kernel<<<grid, kThreads, 0, cuda_stream(ctx)>>>(*args);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

void mxmoe_gemm_args_set_weights(mxmoe_ctx* ctx, gemm_args* g, const mxmoe_mx_tensor* w) {
    g->w_packed = static_cast<const uint8_t*>(w->packed.data);
    g->w_scales = static_cast<const uint8_t*>(w->scales.data);
    g->w_swizzled = w->scale_layout == MXMOE_SCALES_SWIZZLED;
    g->w_scales_numel = mxmoe_tensor_numel(&w->scales);
    g->n = w->packed.dims[1];
    g->k = w->packed.dims[2] * 2;
    const mxmoe_prepared_entry* prepared = mxmoe_prepared_entry_of(ctx, w);
    g->w_words_prepared =
        prepared != nullptr ? static_cast<const uint32_t*>(prepared->data) : nullptr;
    g->w_repacked = prepared != nullptr && prepared->repacked;
}

mxmoe_status mxmoe_weights_prepare_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, void** data) {
    MXMOE_CUDA_ENTER(ctx);
    gemm_args g = {};
    mxmoe_gemm_args_set_weights(ctx, &g, w);
    g.num_experts = w->packed.dims[0];
    g.errors = cuda_state(ctx)->errors;
    uint32_t* words = nullptr;
    MXMOE_FORWARD(mxmoe_grouped_gemm_sm90_prepare(ctx, &g, &words));
    *data = words;
    return MXMOE_OK;
}

void mxmoe_weights_release_cuda(mxmoe_ctx* ctx, void* data) {
    cudaSetDevice(cuda_state(ctx)->device);
    cudaFree(data); /* waits for the device: no call still reads the words */
}

gemm_args mxmoe_gemm_args_from(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                               const mxmoe_tensor* offsets, const mxmoe_tensor* bias,
                               mxmoe_tensor* out) {
    gemm_args g = {};
    g.a_packed = static_cast<const uint8_t*>(a->packed.data);
    g.a_scales = static_cast<const uint8_t*>(a->scales.data);
    g.a_swizzled = a->scale_layout == MXMOE_SCALES_SWIZZLED;
    g.a_scales_numel = mxmoe_tensor_numel(&a->scales);
    g.errors = cuda_state(ctx)->errors;
    mxmoe_gemm_args_set_weights(ctx, &g, w);
    g.offsets = static_cast<const int32_t*>(offsets->data);
    g.num_experts = offsets->dims[0] - 1;
    g.rows = a->packed.dims[0];
    g.bias = bias != nullptr ? bias->data : nullptr;
    g.bias_dtype = bias != nullptr ? bias->dtype : MXMOE_F32;
    g.out = out->data;
    g.out_dtype = out->dtype;
    g.check_offsets = 1;
    return g;
}

mxmoe_status mxmoe_grouped_gemm_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                     const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                     const mxmoe_tensor* bias, mxmoe_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    const gemm_args g = mxmoe_gemm_args_from(ctx, a, w, offsets, bias, out);
    return mxmoe_launch_grouped_gemm(ctx, &g);
}
