/*
 * grouped_gemm.cu — the generic (sm_80+) W4A4 grouped GEMM.
 *
 * Exact by construction, and bit-identical to the reference: 2*E2M1 values are int8 integers,
 * so each 32-block dot product is an exact int32 (8 __dp4a of packed int8 quadruples); the
 * block's value isum * 2^(sa+sb-256) is rounded once to FP32 (mxmoe_block_term) and blocks are
 * accumulated in FP32 in ascending K, the order the contract fixes.
 *
 * Tiling: a thread block computes a 64 x 64 tile of one expert (rows of that expert x output
 * columns); per K-block it decodes the A and W nibbles into int8 in shared memory, then each of
 * the 256 threads produces a 4 x 4 sub-tile. Tiles map to experts through the offsets in device
 * memory (no host synchronisation): grid.x covers the worst case ceil(R/64) + E tiles and
 * blocks past the last tile exit.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"

namespace {

constexpr int BLOCK_M = 64;
constexpr int BLOCK_N = 64;
constexpr int kThreads = 256;
constexpr int kWords = 8;             /* int8 quadruples per 32-element block */
constexpr int kRowWords = kWords + 1; /* +1 word of padding: conflict-free column reads */

/* Doubled E2M1 codes of 4 packed bytes (8 nibbles) as two int8 quadruples. */
__device__ inline void decode_word(uint32_t packed, uint32_t* lo, uint32_t* hi) {
    uint32_t q[2] = {0, 0};
    for (int n = 0; n < 8; n++) {
        uint32_t v = (uint32_t)(uint8_t)(int8_t)mxmoe_e2m1_doubled((packed >> (4 * n)) & 0xFu);
        q[n / 4] |= v << (8 * (n % 4));
    }
    *lo = q[0];
    *hi = q[1];
}

__device__ inline uint32_t load_word(const uint8_t* p) {
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

/* Decodes 4 packed bytes at `src` (or zeros if !valid) into two int8 quadruples of `dst`. */
__device__ inline void stage_word(const uint8_t* src, bool valid, uint32_t* dst) {
    uint32_t lo = 0, hi = 0;
    if (valid) {
        decode_word(load_word(src), &lo, &hi);
    }
    dst[0] = lo;
    dst[1] = hi;
}

__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(gemm_args a) {
    __shared__ uint32_t smem_a[BLOCK_M][kRowWords];
    __shared__ uint32_t smem_w[BLOCK_N][kRowWords];
    __shared__ uint8_t smem_sa[BLOCK_M];
    __shared__ uint8_t smem_sw[BLOCK_N];

    tile_info t;
    if (!find_tile(a, blockIdx.x, &t)) {
        return;
    }
    const int64_t n_begin = (int64_t)blockIdx.y * BLOCK_N;
    const int64_t kb = a.k / 32;
    const int tid = threadIdx.x;
    const int load_row = tid / 4, load_part = tid % 4; /* 64 rows x 4 words of 4 bytes */
    const int ty = tid / 16, tx = tid % 16;            /* rows ty+16i, columns tx+16j */
    const int64_t w_matrix_bytes = mxmoe_swizzled_matrix_bytes(a.n, a.k);
    const int64_t a_row = t.row_begin + load_row, w_row = n_begin + load_row;

    float acc[4][4];
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) {
            acc[i][j] = 0.0f;
        }
    }
    for (int64_t kblock = 0; kblock < kb; kblock++) {
        int64_t byte = kblock * 16 + load_part * 4;
        stage_word(a.a_packed + a_row * (a.k / 2) + byte, a_row < t.row_end,
                   &smem_a[load_row][2 * load_part]);
        stage_word(a.w_packed + (t.expert * a.n + w_row) * (a.k / 2) + byte, w_row < a.n,
                   &smem_w[load_row][2 * load_part]);
        if (tid < BLOCK_M) {
            int64_t r = t.row_begin + tid;
            int64_t off = !a.a_swizzled
                              ? r * kb + kblock
                              : t.sf_row_base * mxmoe_swizzled_cols(a.k) +
                                    mxmoe_swizzled_offset(r - t.expert_begin, kblock, a.k);
            bool inside = r < t.row_end && off < a.a_scales_numel;
            if (r < t.row_end && !inside) {
                atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
            }
            smem_sa[tid] = inside ? a.a_scales[off] : 0;
        } else if (tid < BLOCK_M + BLOCK_N) {
            int64_t n = n_begin + tid - BLOCK_M;
            int64_t off = !a.w_swizzled
                              ? (t.expert * a.n + n) * kb + kblock
                              : t.expert * w_matrix_bytes + mxmoe_swizzled_offset(n, kblock, a.k);
            smem_sw[tid - BLOCK_M] = n < a.n ? a.w_scales[off] : 0;
        }
        __syncthreads();
        for (int i = 0; i < 4; i++) {
            const uint32_t* arow = smem_a[ty + 16 * i];
            for (int j = 0; j < 4; j++) {
                const uint32_t* wrow = smem_w[tx + 16 * j];
                int32_t isum = 0;
                for (int w = 0; w < kWords; w++) {
                    isum = __dp4a((int)arow[w], (int)wrow[w], isum);
                }
                acc[i][j] += mxmoe_block_term(isum, smem_sa[ty + 16 * i], smem_sw[tx + 16 * j]);
            }
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        int64_t r = t.row_begin + ty + 16 * i;
        for (int j = 0; j < 4; j++) {
            int64_t n = n_begin + tx + 16 * j;
            if (r < t.row_end && n < a.n) {
                float v = acc[i][j];
                if (a.bias != nullptr) {
                    v += mxmoe_load_float(a.bias, a.bias_dtype, t.expert * a.n + n);
                }
                mxmoe_store_float(a.out, a.out_dtype, r * a.n + n, v);
            }
        }
    }
}

} // namespace

mxmoe_status mxmoe_launch_grouped_gemm(mxmoe_ctx* ctx, const gemm_args* args) {
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

mxmoe_status mxmoe_grouped_gemm_cuda(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                     const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                     const mxmoe_tensor* bias, mxmoe_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    gemm_args g = {};
    g.a_packed = static_cast<const uint8_t*>(a->packed.data);
    g.a_scales = static_cast<const uint8_t*>(a->scales.data);
    g.a_swizzled = a->scale_layout == MXMOE_SCALES_SWIZZLED;
    g.a_scales_numel = mxmoe_tensor_numel(&a->scales);
    g.errors = cuda_state(ctx)->errors;
    g.w_packed = static_cast<const uint8_t*>(w->packed.data);
    g.w_scales = static_cast<const uint8_t*>(w->scales.data);
    g.w_swizzled = w->scale_layout == MXMOE_SCALES_SWIZZLED;
    g.offsets = static_cast<const int32_t*>(offsets->data);
    g.num_experts = offsets->dims[0] - 1;
    g.rows = a->packed.dims[0];
    g.n = w->packed.dims[1];
    g.k = w->packed.dims[2] * 2;
    g.bias = bias != nullptr ? bias->data : nullptr;
    g.bias_dtype = bias != nullptr ? bias->dtype : MXMOE_F32;
    g.out = out->data;
    g.out_dtype = out->dtype;
    check_offsets_kernel<<<1, 1, 0, cuda_stream(ctx)>>>(g.offsets, g.num_experts, g.rows,
                                                        cuda_state(ctx)->errors);
    MXMOE_CUDA_LAUNCHED(ctx);
    return mxmoe_launch_grouped_gemm(ctx, &g);
}
