/*
 * gemm_avx512.c — the AVX-512 VNNI tier's GEMM tile: 16 output columns x up to 4 rows.
 *
 * Per 32-block j of the tile:
 *   1. load the block's 16 packed bytes from each of the 16 weight rows, four rows per zmm
 *      (one per 128-bit lane), and transpose 4x4 dwords inside each lane, so that a zmm holds
 *      packed dword d (8 elements) of the block for all 16 rows, in row order;
 *   2. decode the nibbles with one vpshufb table into 2*E2M1 + 12 (unsigned: vpdpbusd
 *      multiplies unsigned bytes by signed bytes; the +12 is undone by the activation's
 *      -12 * block sum): W[2d] = even elements of dword d, W[2d+1] = odd ones;
 *   3. per activation row: 8 vpdpbusd against the row's dwords broadcast (act8 stores them in
 *      the same order) = the exact integer block dot product of all 16 columns, then
 *      acc += isum * 2^(sa+sb-256) in FP32.
 * K is walked in ascending order and never split, so every output is bit-identical to the
 * reference whatever the thread count (cpu_kernels.h gives the exactness argument).
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/x86_common.h"
#include "cpu/cpu_kernels.h"
#include "ref/mx_numerics.h"

#define TILE_N 16
#define MAX_ROWS 4
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void transpose_4x4_dwords(const __m512i x[4], __m512i* y) {
    __m512i t0 = _mm512_unpacklo_epi32(x[0], x[1]);
    __m512i t1 = _mm512_unpackhi_epi32(x[0], x[1]);
    __m512i t2 = _mm512_unpacklo_epi32(x[2], x[3]);
    __m512i t3 = _mm512_unpackhi_epi32(x[2], x[3]);
    y[0] = _mm512_unpacklo_epi64(t0, t2);
    y[1] = _mm512_unpackhi_epi64(t0, t2);
    y[2] = _mm512_unpacklo_epi64(t1, t3);
    y[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The block's 16 packed bytes of rows 4b + q (q < 4) sit at g[b] + q * s. Packed dword d of a
 * row holds elements 8d..8d+7 (even ones in the low nibbles): the dwords are transposed first
 * (so P[d] holds dword d of the 16 rows, in row order), then decoded: W[2d] = the even
 * elements of dword d, W[2d + 1] = the odd ones, as 2*E2M1 + 12. */
ALWAYS_INLINE void load_weight_block(const uint8_t* const g[4], int64_t s, __m512i W[8]) {
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i z[4], P[4];
    for (int q = 0; q < 4; q++) {
        const int64_t o = q == 3 ? 3 * s : q * s;
        z[q] = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(g[0] + o)));
        z[q] = _mm512_inserti32x4(z[q], _mm_loadu_si128((const __m128i*)(g[1] + o)), 1);
        z[q] = _mm512_inserti32x4(z[q], _mm_loadu_si128((const __m128i*)(g[2] + o)), 2);
        z[q] = _mm512_inserti32x4(z[q], _mm_loadu_si128((const __m128i*)(g[3] + o)), 3);
    }
    transpose_4x4_dwords(z, P);
    for (int d = 0; d < 4; d++) {
        W[2 * d] = _mm512_shuffle_epi8(table, _mm512_and_si512(P[d], low4));
        W[2 * d + 1] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(P[d], 4), low4));
    }
}

ALWAYS_INLINE __m512i bcast_dword(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* The exact integer dot products of one block for one row, all 16 columns. */
ALWAYS_INLINE __m512i block_isum(const __m512i W[8], const int8_t* a, int32_t corr) {
    __m512i acc = _mm512_set1_epi32(corr);
    for (int d = 0; d < 8; d++) {
        acc = _mm512_dpbusd_epi32(acc, W[d], bcast_dword(a + 4 * d));
    }
    return acc;
}

ALWAYS_INLINE void tile_rows(const mxmoe_cpu_wtile* w, const mxmoe_cpu_act_row* rows, int m,
                             float* res) {
    __m512 acc[MAX_ROWS];
    int32_t sa_lo = 255, sa_hi = 0;
    for (int r = 0; r < m; r++) {
        acc[r] = _mm512_setzero_ps();
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
            __m512i W[8];
            const uint8_t* g[4] = {w->packed + 16 * j, w->packed + 4 * w->stride + 16 * j,
                                   w->packed + 8 * w->stride + 16 * j,
                                   w->packed + 12 * w->stride + 16 * j};
            load_weight_block(g, w->stride, W);
            __m512i sb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(w->sbT + 16 * j)));
            if (fast) {
                __m512i sb_field = _mm512_slli_epi32(sb, 23);
                for (int r = 0; r < m; r++) {
                    const int32_t* info = rows[r].info + 4 * j;
                    __m512i isum = block_isum(W, rows[r].vals + 32 * j, info[0]);
                    __m512 f = _mm512_castsi512_ps(_mm512_add_epi32(sb_field, _mm512_set1_epi32(info[1])));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), f, acc[r]);
                }
            } else {
                for (int r = 0; r < m; r++) {
                    const int32_t* info = rows[r].info + 4 * j;
                    __m512i isum = block_isum(W, rows[r].vals + 32 * j, info[0]);
                    int32_t is[TILE_N];
                    float a[TILE_N];
                    _mm512_storeu_si512(is, isum);
                    _mm512_storeu_ps(a, acc[r]);
                    for (int n = 0; n < TILE_N; n++) {
                        a[n] += mxmoe_block_term(is[n], (uint32_t)info[2], w->sbT[16 * j + n]);
                    }
                    acc[r] = _mm512_loadu_ps(a);
                }
            }
        }
    }
    for (int r = 0; r < m; r++) {
        _mm512_storeu_ps(res + TILE_N * r, acc[r]);
    }
}

void mxmoe_gemm_tile_avx512(const mxmoe_cpu_wtile* w, const mxmoe_cpu_act_row* rows, int m,
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

void mxmoe_act8_row_avx512(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst) {
    mxmoe_act8_row_sse41(packed, scales, k, dst);
}

static void transpose_scales(const uint8_t* src, int64_t stride, int rows, int64_t kb,
                             uint8_t* sbT, uint8_t* chunk_min, uint8_t* chunk_max) {
    mxmoe_transpose_scales_sse41(src, stride, rows, kb, TILE_N, sbT, chunk_min, chunk_max);
}

const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx512 = {
    .name = "avx512-vnni",
    .tile_n = TILE_N,
    .max_rows = MAX_ROWS,
    .gemm_tile = mxmoe_gemm_tile_avx512,
    .transpose_scales = transpose_scales,
    .act8_row = mxmoe_act8_row_avx512,
    .quantize_row = mxmoe_quantize_row_avx512,
};
#endif /* MXMOE_CPU_X86 */
