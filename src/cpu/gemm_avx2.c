/*
 * gemm_avx2.c — the AVX2 tier's GEMM tile: 8 output columns x up to 4 rows.
 *
 * The AVX-512 tile's scheme at half width (see gemm_avx512.c): per 32-block, the 16 packed
 * bytes of 8 weight rows go two rows per ymm, are transposed so that a ymm holds packed dword d
 * of the block for the 8 rows, and decoded with one vpshufb table to 2*E2M1 + 12. Without
 * VNNI the dot product is vpmaddubsw (unsigned weights x signed activations -> int16 pairs;
 * |pair| <= 2*24*12 = 576, eight of them sum to <= 4608: no saturation), the eight int16 sums
 * are added before one vpmaddwd widens them to int32. The FP32 accumulation is the same as
 * the AVX-512 tile's, so results are bit-identical to the reference and to the other tiers.
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "cpu/x86_common.h"
#include "ref/mx_numerics.h"

#define TILE_N        8
#define MAX_ROWS      4
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void transpose_4x4_dwords(const __m256i x[4], __m256i* y) {
    __m256i t0 = _mm256_unpacklo_epi32(x[0], x[1]);
    __m256i t1 = _mm256_unpackhi_epi32(x[0], x[1]);
    __m256i t2 = _mm256_unpacklo_epi32(x[2], x[3]);
    __m256i t3 = _mm256_unpackhi_epi32(x[2], x[3]);
    y[0] = _mm256_unpacklo_epi64(t0, t2);
    y[1] = _mm256_unpackhi_epi64(t0, t2);
    y[2] = _mm256_unpacklo_epi64(t1, t3);
    y[3] = _mm256_unpackhi_epi64(t1, t3);
}

ALWAYS_INLINE __m256i load2(const uint8_t* a, const uint8_t* b) {
    __m256i z = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)a));
    return _mm256_inserti128_si256(z, _mm_loadu_si128((const __m128i*)b), 1);
}

/* The block of rows 4b + q (q < 4) sits at g_b + q * s (s3 = 3 * s). */
ALWAYS_INLINE void load_weight_block(const uint8_t* g0, const uint8_t* g1, int64_t s, int64_t s3,
                                     __m256i W[8]) {
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i z[4], P[4];
    z[0] = load2(g0, g1);
    z[1] = load2(g0 + s, g1 + s);
    z[2] = load2(g0 + 2 * s, g1 + 2 * s);
    z[3] = load2(g0 + s3, g1 + s3);
    transpose_4x4_dwords(z, P);
    MXMOE_UNROLL_ALL
    for (int d = 0; d < 4; d++) {
        W[2 * d] = _mm256_shuffle_epi8(table, _mm256_and_si256(P[d], low4));
        W[2 * d + 1] =
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(P[d], 4), low4));
    }
}

ALWAYS_INLINE int32_t load_i32(const uint8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

ALWAYS_INLINE __m256i bcast_dword(const uint8_t* p) {
    return _mm256_set1_epi32(load_i32(p));
}

/* The exact integer dot products of one block for one row, all 8 columns. */
ALWAYS_INLINE __m256i block_isum(const __m256i W[8], const uint8_t* a) {
    __m256i s16 = _mm256_maddubs_epi16(W[0], bcast_dword(a));
    MXMOE_UNROLL_ALL
    for (int d = 1; d < 8; d++) {
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(W[d], bcast_dword(a + 4 * d)));
    }
    return _mm256_add_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)),
                            _mm256_set1_epi32(load_i32(a + MXMOE_ACT8_CORR)));
}

/* The rare path: blocks [0, nj) from g0 / a (rows a + r * as1) through mxmoe_block_term,
 * lane by lane; acc in memory. Not inlined, so the fast loop keeps its registers. */
static __attribute__((noinline)) void exact_chunk(const uint8_t* g0, int64_t s, const uint8_t* sb,
                                                  const uint8_t* a, int64_t as1, int m, int64_t nj,
                                                  __m256* acc) {
    for (int64_t jj = 0; jj < nj; jj++) {
        __m256i W[8];
        load_weight_block(g0 + 16 * jj, g0 + 4 * s + 16 * jj, s, 3 * s, W);
        for (int r = 0; r < m; r++) {
            const uint8_t* ab = a + r * as1 + MXMOE_ACT8_BLOCK * jj;
            int32_t is[TILE_N];
            float v[TILE_N];
            _mm256_storeu_si256((__m256i*)is, block_isum(W, ab));
            _mm256_storeu_ps(v, acc[r]);
            uint32_t sa = (uint32_t)load_i32(ab + MXMOE_ACT8_SA);
            for (int n = 0; n < TILE_N; n++) {
                v[n] += mxmoe_block_term(is[n], sa, sb[TILE_N * jj + n]);
            }
            acc[r] = _mm256_loadu_ps(v);
        }
    }
}

#define ROW(r) (((r) < 4 ? b0 : b4) + ((r) % 4 == 3 ? as3 : ((r) % 4) * as1))

ALWAYS_INLINE void tile_rows(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride,
                             const int m, int32_t sa_lo, int32_t sa_hi, float* res) {
    __m256 acc[MAX_ROWS];
    MXMOE_UNROLL_ALL
    for (int r = 0; r < m; r++) {
        acc[r] = _mm256_setzero_ps();
    }
    /* row r of block j at (r < 4 ? b0 : b4) + (r % 4) * act_stride: two bases, two strides */
    const int64_t as1 = (int64_t)act_stride, as3 = 3 * as1;
    const int64_t s = w->stride, s3 = 3 * s, kb = w->kb;
    const uint8_t* g0 = w->packed;
    const uint8_t* g1 = g0 + 4 * s;
    const uint8_t* sb = w->sbT;
    const uint8_t* next = w->next;
    const uint8_t* b0 = act;
    const uint8_t* b4 = act + 4 * as1;
    for (int64_t j0 = 0; j0 < kb; j0 += MXMOE_CPU_CHUNK_BLOCKS) {
        int64_t c = j0 / MXMOE_CPU_CHUNK_BLOCKS;
        int64_t nj = kb - j0 < MXMOE_CPU_CHUNK_BLOCKS ? kb - j0 : MXMOE_CPU_CHUNK_BLOCKS;
        int fast = sa_hi < 255 && w->chunk_max[c] < 255 &&
                   sa_lo + w->chunk_min[c] >= MXMOE_CPU_FAST_SUM_LO &&
                   sa_hi + w->chunk_max[c] <= MXMOE_CPU_FAST_SUM_HI;
        if (!fast) {
            __m256 acc_mem[MAX_ROWS]; /* a copy: taking acc's address would keep it in memory */
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                acc_mem[r] = acc[r];
            }
            exact_chunk(g0, s, sb, b0, as1, m, nj, acc_mem);
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                acc[r] = acc_mem[r];
            }
            g0 += 16 * nj, g1 += 16 * nj, sb += TILE_N * nj;
            b0 += MXMOE_ACT8_BLOCK * nj, b4 += MXMOE_ACT8_BLOCK * nj;
            if (next != NULL) {
                next += TILE_N * 16 * nj;
            }
            continue;
        }
        for (int64_t jj = 0; jj < nj; jj++) {
            __m256i W[8];
            if (next != NULL) { /* the next tile, in address order: TILE_N * 16 bytes a block */
                _mm_prefetch((const char*)(next + 0), _MM_HINT_T0);
                _mm_prefetch((const char*)(next + 64), _MM_HINT_T0);
                next += TILE_N * 16;
            }
            load_weight_block(g0, g1, s, s3, W);
            int64_t sb8;
            memcpy(&sb8, sb, sizeof sb8);
            __m256i sb_field = _mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sb8)), 23);
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                __m256i isum = block_isum(W, ROW(r));
                __m256i f = _mm256_add_epi32(
                    sb_field, _mm256_set1_epi32(load_i32(ROW(r) + MXMOE_ACT8_SA_BITS)));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_castsi256_ps(f), acc[r]);
            }
            g0 += 16, g1 += 16, sb += TILE_N;
            b0 += MXMOE_ACT8_BLOCK, b4 += MXMOE_ACT8_BLOCK;
        }
    }
    MXMOE_UNROLL_ALL
    for (int r = 0; r < m; r++) {
        _mm256_storeu_ps(res + TILE_N * r, acc[r]);
    }
}

void mxmoe_gemm_tile_avx2(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
                          int32_t sa_lo, int32_t sa_hi, float* res) {
    switch (m) {
    case 1:
        tile_rows(w, act, act_stride, 1, sa_lo, sa_hi, res);
        break;
    case 2:
        tile_rows(w, act, act_stride, 2, sa_lo, sa_hi, res);
        break;
    case 3:
        tile_rows(w, act, act_stride, 3, sa_lo, sa_hi, res);
        break;
    default:
        tile_rows(w, act, act_stride, 4, sa_lo, sa_hi, res);
        break;
    }
}

static void transpose_scales(const uint8_t* src, int64_t stride, int rows, int64_t kb, uint8_t* sbT,
                             uint8_t* chunk_min, uint8_t* chunk_max) {
    mxmoe_transpose_scales_sse41(src, stride, rows, kb, TILE_N, sbT, chunk_min, chunk_max);
}

void mxmoe_act8_row_avx2(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst) {
    mxmoe_act8_row_sse41(packed, scales, k, dst);
}

const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx2 = {
    .name = "avx2",
    .tile_n = TILE_N,
    .max_rows = MAX_ROWS,
    .gemm_tile = mxmoe_gemm_tile_avx2,
    .transpose_scales = transpose_scales,
    .act_row = mxmoe_act_row_avx2,
    .act8_row = mxmoe_act8_row_avx2,
    .quantize_row = mxmoe_quantize_row_avx2,
};
#endif /* MXMOE_CPU_X86 */
