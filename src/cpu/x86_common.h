/*
 * x86_common.h — SSE4.1 helpers every x86 tier's GEMM file includes (so they compile with that
 * file's flags and run only when that tier was chosen): packed activation row -> act8 row, and
 * the transposition of a weight tile's scales (see cpu_kernels.h for both formats).
 */
#ifndef MXMOE_CPU_X86_COMMON_H
#define MXMOE_CPU_X86_COMMON_H

#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"

static inline void mxmoe_act8_row_sse41(const uint8_t* packed, const uint8_t* scales, int64_t k,
                                        void* dst) {
    /* 2 * E2M1 value of each 4-bit code, signed. */
    const __m128i table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i bias = _mm_set1_epi8((char)0x80);
    const __m128i magnitude_bits = _mm_set1_epi8(0x77);
    int64_t kb = k / 32;
    uint8_t* out = (uint8_t*)dst;
    int32_t sa_min = 255, sa_max = 0;
    for (int64_t j = 0; j < kb; j++) {
        __m128i p = _mm_loadu_si128((const __m128i*)(packed + 16 * j));
        __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(p, low4));
        __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(p, 4), low4));
        uint8_t* b = out + MXMOE_ACT8_BLOCK * j;
        /* packed dword d holds elements 8d..8d+7: store its even ones, then its odd ones */
        _mm_storeu_si128((__m128i*)b, _mm_unpacklo_epi32(lo, hi));
        _mm_storeu_si128((__m128i*)(b + 16), _mm_unpackhi_epi32(lo, hi));
        /* lo + hi lies in [-24, 24]; +128 makes it unsigned for psadbw's byte sums. */
        __m128i sad = _mm_sad_epu8(_mm_xor_si128(_mm_add_epi8(lo, hi), bias), _mm_setzero_si128());
        int32_t sum = (int32_t)(_mm_cvtsi128_si32(sad) + _mm_extract_epi16(sad, 4)) - 128 * 16;
        int32_t sa = scales[j];
        if (sa != 0xFF && _mm_testz_si128(p, magnitude_bits)) {
            sa = 127; /* every code is +-0: the dot product is 0 whatever the scale */
        }
        int32_t info[4] = {-12 * sum, (int32_t)((uint32_t)(sa - 129) << 23), sa, 0};
        memcpy(b + MXMOE_ACT8_CORR, info, sizeof info);
        sa_min = sa < sa_min ? sa : sa_min;
        sa_max = sa > sa_max ? sa : sa_max;
    }
    int32_t range[2] = {sa_min, sa_max};
    memcpy(out + MXMOE_ACT8_BLOCK * kb, range, sizeof range);
}

/* 16 rows of 16 bytes -> 16 columns of 16 bytes. */
static inline __attribute__((always_inline)) void mxmoe_transpose_16x16_bytes(__m128i x[16]) {
    __m128i t[16];
    MXMOE_UNROLL_ALL
    for (int i = 0; i < 8; i++) {
        t[i] = _mm_unpacklo_epi8(x[2 * i], x[2 * i + 1]);
        t[i + 8] = _mm_unpackhi_epi8(x[2 * i], x[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        x[i] = _mm_unpacklo_epi16(t[2 * i], t[2 * i + 1]);
        x[i + 4] = _mm_unpackhi_epi16(t[2 * i], t[2 * i + 1]);
        x[i + 8] = _mm_unpacklo_epi16(t[8 + 2 * i], t[8 + 2 * i + 1]);
        x[i + 12] = _mm_unpackhi_epi16(t[8 + 2 * i], t[8 + 2 * i + 1]);
    }
    MXMOE_UNROLL_ALL
    for (int i = 0; i < 2; i++) {
        MXMOE_UNROLL_ALL
        for (int g = 0; g < 4; g++) {
            t[4 * g + i] = _mm_unpacklo_epi32(x[4 * g + 2 * i], x[4 * g + 2 * i + 1]);
            t[4 * g + i + 2] = _mm_unpackhi_epi32(x[4 * g + 2 * i], x[4 * g + 2 * i + 1]);
        }
    }
    for (int g = 0; g < 8; g++) {
        x[2 * g] = _mm_unpacklo_epi64(t[2 * g], t[2 * g + 1]);
        x[2 * g + 1] = _mm_unpackhi_epi64(t[2 * g], t[2 * g + 1]);
    }
}

/* Horizontal min and max of the first `n` (8 or 16) bytes. */
static inline void mxmoe_minmax_epu8(__m128i lo, __m128i hi, int n, uint8_t* mn, uint8_t* mx) {
    if (n == 8) {
        lo = _mm_unpacklo_epi64(lo, lo);
        hi = _mm_unpacklo_epi64(hi, hi);
    }
    lo = _mm_min_epu8(lo, _mm_srli_si128(lo, 8));
    lo = _mm_min_epu8(lo, _mm_srli_si128(lo, 4));
    lo = _mm_min_epu8(lo, _mm_srli_si128(lo, 2));
    lo = _mm_min_epu8(lo, _mm_srli_si128(lo, 1));
    hi = _mm_max_epu8(hi, _mm_srli_si128(hi, 8));
    hi = _mm_max_epu8(hi, _mm_srli_si128(hi, 4));
    hi = _mm_max_epu8(hi, _mm_srli_si128(hi, 2));
    hi = _mm_max_epu8(hi, _mm_srli_si128(hi, 1));
    *mn = (uint8_t)_mm_cvtsi128_si32(lo);
    *mx = (uint8_t)_mm_cvtsi128_si32(hi);
}

/* Scales of `rows` (<= tile_n, tile_n = 8 or 16) weight rows, `stride` bytes apart, kb blocks
 * each -> sbT[j][tile_n] (missing rows read as 127) and the min/max of each chunk of 16 blocks.
 * Whole tiles with kb >= 16 take the SIMD path: 16 x 16 byte transposes, the last chunk
 * re-reading the 16 blocks that end at kb (its min/max then covers a few blocks of the chunk
 * before, which only makes it more conservative). Anything else is a plain loop. */
static inline __attribute__((always_inline)) void
mxmoe_transpose_scales_sse41(const uint8_t* src, int64_t stride, int rows, int64_t kb,
                             const int tile_n, uint8_t* sbT, uint8_t* chunk_min,
                             uint8_t* chunk_max) {
    if (rows < tile_n || kb < 16) {
        for (int64_t j0 = 0; j0 < kb; j0 += 16) {
            uint8_t mn = 255, mx = 0;
            for (int64_t j = j0; j < kb && j < j0 + 16; j++) {
                for (int i = 0; i < tile_n; i++) {
                    uint8_t b = i < rows ? src[i * stride + j] : 127;
                    sbT[j * tile_n + i] = b;
                    mn = b < mn ? b : mn;
                    mx = b > mx ? b : mx;
                }
            }
            chunk_min[j0 / 16] = mn;
            chunk_max[j0 / 16] = mx;
        }
        return;
    }
    for (int64_t j0 = 0; j0 < kb; j0 += 16) {
        const int64_t at = j0 + 16 <= kb ? j0 : kb - 16;
        /* rows 4g + q at p[g] + q * stride: four bases and two strides address them all */
        const int64_t s3 = 3 * stride;
        const uint8_t* p[4] = {src + at, src + at + 4 * stride,
                               tile_n == 16 ? src + at + 8 * stride : src,
                               tile_n == 16 ? src + at + 12 * stride : src};
        __m128i x[16];
        MXMOE_UNROLL_ALL
        for (int i = 0; i < 16; i++) {
            const int64_t o = i % 4 == 3 ? s3 : (i % 4) * stride;
            x[i] =
                i < tile_n ? _mm_loadu_si128((const __m128i*)(p[i / 4] + o)) : _mm_set1_epi8(127);
        }
        mxmoe_transpose_16x16_bytes(x);
        __m128i lo = x[0], hi = x[0];
        MXMOE_UNROLL_ALL
        for (int jj = 0; jj < 16; jj++) {
            lo = _mm_min_epu8(lo, x[jj]);
            hi = _mm_max_epu8(hi, x[jj]);
            if (tile_n == 16) {
                _mm_storeu_si128((__m128i*)(sbT + (at + jj) * 16), x[jj]);
            } else {
                _mm_storel_epi64((__m128i*)(sbT + (at + jj) * tile_n), x[jj]);
            }
        }
        mxmoe_minmax_epu8(lo, hi, tile_n, &chunk_min[j0 / 16], &chunk_max[j0 / 16]);
    }
}

#endif /* MXMOE_CPU_X86_COMMON_H */
