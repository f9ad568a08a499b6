/*
 * gemm_avx512_impl.h — the AVX-512 GEMM tile (16 output columns x up to 8 rows), included by
 * gemm_avx512.c (compiled with VNNI: vpdpbusd) and gemm_avx512bw.c (without: vpmaddubsw +
 * vpmaddwd), which differ only in the block dot product (block_isum / block_isums below).
 *
 * Per 32-block j of the tile:
 *   1. load the block's 16 packed bytes from each of the 16 weight rows, four rows per zmm
 *      (one per 128-bit lane), and transpose 4x4 dwords inside each lane, so that a zmm holds
 *      packed dword d (8 elements) of the block for all 16 rows, in row order;
 *   2. decode the nibbles with one vpshufb table into 2*E2M1 + 12 (unsigned: vpdpbusd and
 *      vpmaddubsw multiply unsigned bytes by signed bytes; the +12 is undone by the
 *      activation's -12 * block sum): W[2d] = even elements of dword d, W[2d+1] = odd ones;
 *   3. per activation row: the exact integer block dot product of all 16 columns against the
 *      row's dwords broadcast (act8 stores them in the same order), then
 *      acc += isum * 2^(sa+sb-256) in FP32 (an exact product: one FMA rounds like the
 *      reference's add, cpu_kernels.h). Chunks of 16 blocks where that is not guaranteed go
 *      through exact_block(), which applies mxmoe_block_term lane by lane.
 * K is walked in ascending order and never split, so every output is bit-identical to the
 * reference whatever the thread count.
 *
 * Without VNNI, vpmaddubsw gives int16 sums of pairs (|pair| <= 2*24*12 = 576), eight of them
 * add up to <= 4608 (no saturation) before one vpmaddwd widens them to int32.
 */
#ifndef MXMOE_CPU_GEMM_AVX512_IMPL_H
#define MXMOE_CPU_GEMM_AVX512_IMPL_H

#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "cpu/x86_common.h"
#include "ref/mx_numerics.h"

#define TILE_N        16
#define MAX_ROWS      8
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

ALWAYS_INLINE __m512i load4(const uint8_t* a, const uint8_t* b, const uint8_t* c,
                            const uint8_t* d) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)a));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i*)b), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i*)c), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i*)d), 3);
}

/* The block of rows 4b + q (q < 4) sits at g_b + q * s (s3 = 3 * s). */
ALWAYS_INLINE void load_weight_block(const uint8_t* g0, const uint8_t* g1, const uint8_t* g2,
                                     const uint8_t* g3, int64_t s, int64_t s3, __m512i W[8]) {
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i z[4], P[4];
    z[0] = load4(g0, g1, g2, g3);
    z[1] = load4(g0 + s, g1 + s, g2 + s, g3 + s);
    z[2] = load4(g0 + 2 * s, g1 + 2 * s, g2 + 2 * s, g3 + 2 * s);
    z[3] = load4(g0 + s3, g1 + s3, g2 + s3, g3 + s3);
    transpose_4x4_dwords(z, P);
    MXMOE_UNROLL_ALL
    for (int d = 0; d < 4; d++) {
        W[2 * d] = _mm512_shuffle_epi8(table, _mm512_and_si512(P[d], low4));
        W[2 * d + 1] =
            _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(P[d], 4), low4));
    }
}

ALWAYS_INLINE __m512i bcast_dword(const uint8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

#if defined(__AVX512VNNI__)
/* acc += W (unsigned bytes) . the dword at p broadcast (signed bytes). Written as asm so the
 * broadcast stays a memory operand ({1to16}) instead of a separate vpbroadcastd. */
ALWAYS_INLINE __m512i dpbusd_bcast(__m512i acc, __m512i W, const uint8_t* p) {
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(W), "m"(*(const int32_t*)p));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, W, bcast_dword(p));
#endif
}
#endif

ALWAYS_INLINE int32_t load_i32(const uint8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The block's exact integer dot products for the act8 block at a (all 16 columns). */
ALWAYS_INLINE __m512i block_isum(const __m512i W[8], const uint8_t* a) {
    __m512i corr = _mm512_set1_epi32(load_i32(a + MXMOE_ACT8_CORR));
#if defined(__AVX512VNNI__)
    __m512i isum = corr;
    MXMOE_UNROLL_ALL
    for (int d = 0; d < 8; d++) {
        isum = dpbusd_bcast(isum, W[d], a + 4 * d);
    }
    return isum;
#else
    __m512i s16 = _mm512_maddubs_epi16(W[0], bcast_dword(a));
    MXMOE_UNROLL_ALL
    for (int d = 1; d < 8; d++) {
        s16 = _mm512_add_epi16(s16, _mm512_maddubs_epi16(W[d], bcast_dword(a + 4 * d)));
    }
    return _mm512_add_epi32(_mm512_madd_epi16(s16, _mm512_set1_epi16(1)), corr);
#endif
}

/* The rare path: blocks [0, nj) from g0 / a (rows a + r * as1) through mxmoe_block_term,
 * lane by lane; acc in memory. Not inlined, so the fast loop keeps its registers. */
static __attribute__((noinline)) void exact_chunk(const uint8_t* g0, int64_t s, const uint8_t* sb,
                                                  const uint8_t* a, int64_t as1, int m, int64_t nj,
                                                  __m512* acc) {
    for (int64_t jj = 0; jj < nj; jj++) {
        __m512i W[8];
        load_weight_block(g0 + 16 * jj, g0 + 4 * s + 16 * jj, g0 + 8 * s + 16 * jj,
                          g0 + 12 * s + 16 * jj, s, 3 * s, W);
        for (int r = 0; r < m; r++) {
            const uint8_t* ab = a + r * as1 + MXMOE_ACT8_BLOCK * jj;
            int32_t is[TILE_N];
            float v[TILE_N];
            _mm512_storeu_si512(is, block_isum(W, ab));
            _mm512_storeu_ps(v, acc[r]);
            uint32_t sa = (uint32_t)load_i32(ab + MXMOE_ACT8_SA);
            for (int n = 0; n < TILE_N; n++) {
                v[n] += mxmoe_block_term(is[n], sa, sb[TILE_N * jj + n]);
            }
            acc[r] = _mm512_loadu_ps(v);
        }
    }
}

#define ROW(r) (((r) < 4 ? b0 : b4) + ((r) % 4 == 3 ? as3 : ((r) % 4) * as1))

ALWAYS_INLINE void tile_rows(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride,
                             const int m, int32_t sa_lo, int32_t sa_hi, float* res) {
    __m512 acc[MAX_ROWS];
    MXMOE_UNROLL_ALL
    for (int r = 0; r < m; r++) {
        acc[r] = _mm512_setzero_ps();
    }
    /* row r of block j at (r < 4 ? b0 : b4) + (r % 4) * act_stride: two bases, two strides */
    const int64_t as1 = (int64_t)act_stride, as3 = 3 * as1;
    const int64_t s = w->stride, s3 = 3 * s, kb = w->kb;
    const uint8_t* g0 = w->packed;
    const uint8_t* g1 = g0 + 4 * s;
    const uint8_t* g2 = g0 + 8 * s;
    const uint8_t* g3 = g0 + 12 * s;
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
            __m512 acc_mem[MAX_ROWS]; /* a copy: taking acc's address would keep it in memory */
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                acc_mem[r] = acc[r];
            }
            exact_chunk(g0, s, sb, b0, as1, m, nj, acc_mem);
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                acc[r] = acc_mem[r];
            }
            g0 += 16 * nj, g1 += 16 * nj, g2 += 16 * nj, g3 += 16 * nj, sb += TILE_N * nj;
            b0 += MXMOE_ACT8_BLOCK * nj, b4 += MXMOE_ACT8_BLOCK * nj;
            if (next != NULL) {
                next += TILE_N * 16 * nj;
            }
            continue;
        }
        for (int64_t jj = 0; jj < nj; jj++) {
            __m512i W[8];
            if (next != NULL) { /* the next tile, in address order: TILE_N * 16 bytes a block */
                _mm_prefetch((const char*)(next + 0), _MM_HINT_T0);
                _mm_prefetch((const char*)(next + 64), _MM_HINT_T0);
                _mm_prefetch((const char*)(next + 128), _MM_HINT_T0);
                _mm_prefetch((const char*)(next + 192), _MM_HINT_T0);
                next += TILE_N * 16;
            }
            load_weight_block(g0, g1, g2, g3, s, s3, W);
            __m512i sb_field =
                _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)sb)), 23);
            /* block_isum for each row, the rows interleaved (independent chains) */
            __m512i isum[MAX_ROWS];
#if defined(__AVX512VNNI__)
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                isum[r] = _mm512_set1_epi32(load_i32(ROW(r) + MXMOE_ACT8_CORR));
            }
            MXMOE_UNROLL_ALL
            for (int d = 0; d < 8; d++) {
                MXMOE_UNROLL_ALL
                for (int r = 0; r < m; r++) {
                    isum[r] = dpbusd_bcast(isum[r], W[d], ROW(r) + 4 * d);
                }
            }
#else
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                isum[r] = _mm512_maddubs_epi16(W[0], bcast_dword(ROW(r)));
            }
            MXMOE_UNROLL_ALL
            for (int d = 1; d < 8; d++) {
                MXMOE_UNROLL_ALL
                for (int r = 0; r < m; r++) {
                    isum[r] = _mm512_add_epi16(
                        isum[r], _mm512_maddubs_epi16(W[d], bcast_dword(ROW(r) + 4 * d)));
                }
            }
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                isum[r] = _mm512_add_epi32(_mm512_madd_epi16(isum[r], _mm512_set1_epi16(1)),
                                           _mm512_set1_epi32(load_i32(ROW(r) + MXMOE_ACT8_CORR)));
            }
#endif
            MXMOE_UNROLL_ALL
            for (int r = 0; r < m; r++) {
                __m512i f = _mm512_add_epi32(
                    sb_field, _mm512_set1_epi32(load_i32(ROW(r) + MXMOE_ACT8_SA_BITS)));
                acc[r] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_castsi512_ps(f), acc[r]);
            }
            g0 += 16, g1 += 16, g2 += 16, g3 += 16, sb += TILE_N;
            b0 += MXMOE_ACT8_BLOCK, b4 += MXMOE_ACT8_BLOCK;
        }
    }
    MXMOE_UNROLL_ALL
    for (int r = 0; r < m; r++) {
        _mm512_storeu_ps(res + TILE_N * r, acc[r]);
    }
}

static void tile_any_rows(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
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
    case 4:
        tile_rows(w, act, act_stride, 4, sa_lo, sa_hi, res);
        break;
    case 5:
        tile_rows(w, act, act_stride, 5, sa_lo, sa_hi, res);
        break;
    case 6:
        tile_rows(w, act, act_stride, 6, sa_lo, sa_hi, res);
        break;
    case 7:
        tile_rows(w, act, act_stride, 7, sa_lo, sa_hi, res);
        break;
    default:
        tile_rows(w, act, act_stride, 8, sa_lo, sa_hi, res);
        break;
    }
}

static void transpose_scales(const uint8_t* src, int64_t stride, int rows, int64_t kb, uint8_t* sbT,
                             uint8_t* chunk_min, uint8_t* chunk_max) {
    mxmoe_transpose_scales_sse41(src, stride, rows, kb, TILE_N, sbT, chunk_min, chunk_max);
}

static void act8_row(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst) {
    mxmoe_act8_row_sse41(packed, scales, k, dst);
}
#endif /* MXMOE_CPU_X86 */

#endif /* MXMOE_CPU_GEMM_AVX512_IMPL_H */
