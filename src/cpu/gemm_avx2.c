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

#include "cpu/x86_common.h"
#include "cpu/cpu_kernels.h"
#include "ref/mx_numerics.h"

#define TILE_N 8
#define MAX_ROWS 4
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

/* Rows 4b + q (q < 4) of the block at g[b] + q * s; W as in gemm_avx512.c, for 8 rows. */
ALWAYS_INLINE void load_weight_block(const uint8_t* const g[2], int64_t s, __m256i W[8]) {
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i z[4], P[4];
    for (int q = 0; q < 4; q++) {
        const int64_t o = q == 3 ? 3 * s : q * s;
        z[q] = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)(g[0] + o)));
        z[q] = _mm256_inserti128_si256(z[q], _mm_loadu_si128((const __m128i*)(g[1] + o)), 1);
    }
    transpose_4x4_dwords(z, P);
    for (int d = 0; d < 4; d++) {
        W[2 * d] = _mm256_shuffle_epi8(table, _mm256_and_si256(P[d], low4));
        W[2 * d + 1] =
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(P[d], 4), low4));
    }
}

ALWAYS_INLINE __m256i bcast_dword(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

ALWAYS_INLINE __m256i block_isum(const __m256i W[8], const int8_t* a, int32_t corr) {
    __m256i s16 = _mm256_maddubs_epi16(W[0], bcast_dword(a));
    for (int d = 1; d < 8; d++) {
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(W[d], bcast_dword(a + 4 * d)));
    }
    return _mm256_add_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)), _mm256_set1_epi32(corr));
}

ALWAYS_INLINE void tile_rows(const mxmoe_cpu_wtile* w, const mxmoe_cpu_act_row* rows, int m,
                             float* res) {
    __m256 acc[MAX_ROWS];
    int32_t sa_lo = 255, sa_hi = 0;
    for (int r = 0; r < m; r++) {
        acc[r] = _mm256_setzero_ps();
        sa_lo = rows[r].sa_min < sa_lo ? rows[r].sa_min : sa_lo;
        sa_hi = rows[r].sa_max > sa_hi ? rows[r].sa_max : sa_hi;
    }
    const int64_t kb = w->kb;
    for (int64_t j0 = 0; j0 < kb; j0 += MXMOE_CPU_CHUNK_BLOCKS) {
        int64_t c = j0 / MXMOE_CPU_CHUNK_BLOCKS;
        int64_t j1 = j0 + MXMOE_CPU_CHUNK_BLOCKS < kb ? j0 + MXMOE_CPU_CHUNK_BLOCKS : kb;
        int fast = sa_hi < 255 && w->chunk_max[c] < 255 &&
                   sa_lo + w->chunk_min[c] >= MXMOE_CPU_FAST_SUM_LO &&
                   sa_hi + w->chunk_max[c] <= MXMOE_CPU_FAST_SUM_HI;
        for (int64_t j = j0; j < j1; j++) {
            __m256i W[8];
            const uint8_t* g[2] = {w->packed + 16 * j, w->packed + 4 * w->stride + 16 * j};
            load_weight_block(g, w->stride, W);
            if (fast) {
                int64_t sb8;
                memcpy(&sb8, w->sbT + TILE_N * j, sizeof sb8);
                __m256i sb_field =
                    _mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sb8)), 23);
                for (int r = 0; r < m; r++) {
                    const int32_t* info = rows[r].info + 4 * j;
                    __m256i isum = block_isum(W, rows[r].vals + 32 * j, info[0]);
                    __m256 f = _mm256_castsi256_ps(
                        _mm256_add_epi32(sb_field, _mm256_set1_epi32(info[1])));
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), f, acc[r]);
                }
            } else {
                for (int r = 0; r < m; r++) {
                    const int32_t* info = rows[r].info + 4 * j;
                    __m256i isum = block_isum(W, rows[r].vals + 32 * j, info[0]);
                    int32_t is[TILE_N];
                    float a[TILE_N];
                    _mm256_storeu_si256((__m256i*)is, isum);
                    _mm256_storeu_ps(a, acc[r]);
                    for (int n = 0; n < TILE_N; n++) {
                        a[n] += mxmoe_block_term(is[n], (uint32_t)info[2], w->sbT[TILE_N * j + n]);
                    }
                    acc[r] = _mm256_loadu_ps(a);
                }
            }
        }
    }
    for (int r = 0; r < m; r++) {
        _mm256_storeu_ps(res + TILE_N * r, acc[r]);
    }
}

void mxmoe_gemm_tile_avx2(const mxmoe_cpu_wtile* w, const mxmoe_cpu_act_row* rows, int m,
                          float* res) {
    switch (m) {
    case 1:
        tile_rows(w, rows, 1, res);
        break;
    case 2:
        tile_rows(w, rows, 2, res);
        break;
    case 3:
        tile_rows(w, rows, 3, res);
        break;
    default:
        tile_rows(w, rows, 4, res);
        break;
    }
}

void mxmoe_act8_row_avx2(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst) {
    mxmoe_act8_row_sse41(packed, scales, k, dst);
}

static void transpose_scales(const uint8_t* src, int64_t stride, int rows, int64_t kb,
                             uint8_t* sbT, uint8_t* chunk_min, uint8_t* chunk_max) {
    mxmoe_transpose_scales_sse41(src, stride, rows, kb, TILE_N, sbT, chunk_min, chunk_max);
}

const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx2 = {
    .name = "avx2",
    .tile_n = TILE_N,
    .max_rows = MAX_ROWS,
    .gemm_tile = mxmoe_gemm_tile_avx2,
    .transpose_scales = transpose_scales,
    .act8_row = mxmoe_act8_row_avx2,
    .quantize_row = mxmoe_quantize_row_avx2,
};
#endif /* MXMOE_CPU_X86 */
