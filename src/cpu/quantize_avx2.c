/*
 * quantize_avx2.c — the AVX2 tier's row quantizer: 32 values (four ymm) per block.
 *
 * The same computation as quantize_avx512.c (see there for why it is byte-identical to
 * mxmoe_quantize_block), with 8-lane compares: |y|'s bit pattern is a non-negative int32
 * below 0x41000000, so signed compares order it like the floats; ">= t" is "> t - 1".
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "ref/mx_numerics.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m256 load8(const void* x, mxmoe_dtype dtype, int64_t i) {
    switch (dtype) {
    case MXMOE_BF16: {
        __m256i a =
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)x + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));
    }
    case MXMOE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)x + i)));
    default:
        return _mm256_loadu_ps((const float*)x + i);
    }
}

ALWAYS_INLINE __m256i count_above(__m256i c, __m256i a, int32_t threshold) {
    return _mm256_sub_epi32(c, _mm256_cmpgt_epi32(a, _mm256_set1_epi32(threshold)));
}

/* E2M1 codes of 8 values, y = x * 2^-s, sign from x. */
ALWAYS_INLINE __m256i e2m1_codes(__m256 x, __m256 y) {
    __m256i a = _mm256_and_si256(_mm256_castps_si256(y), _mm256_set1_epi32(0x7fffffff));
    __m256i c = _mm256_setzero_si256();
    c = count_above(c, a, 0x3e800000);     /* > 0.25 */
    c = count_above(c, a, 0x3f400000 - 1); /* >= 0.75 */
    c = count_above(c, a, 0x3fa00000);     /* > 1.25 */
    c = count_above(c, a, 0x3fe00000 - 1); /* >= 1.75 */
    c = count_above(c, a, 0x40200000);     /* > 2.5 */
    c = count_above(c, a, 0x40600000 - 1); /* >= 3.5 */
    c = count_above(c, a, 0x40a00000);     /* > 5 */
    __m256i sign =
        _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 28), _mm256_set1_epi32(8));
    return _mm256_or_si256(c, sign);
}

/* 8 codes -> 4 bytes (element 2i low nibble of byte i), in the low dword. */
ALWAYS_INLINE uint32_t pack_nibbles(__m256i c) {
    __m256i t = _mm256_or_si256(c, _mm256_srli_epi64(c, 28));
    const __m256i pick =
        _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 8, -1, -1,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    t = _mm256_shuffle_epi8(t, pick);
    uint32_t lo = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(t)) & 0xFFFFu;
    uint32_t hi = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(t, 1)) & 0xFFFFu;
    return lo | (hi << 16);
}

void mxmoe_quantize_row_avx2(const void* x, mxmoe_dtype dtype, int64_t k, mxmoe_scale_rule rule,
                             uint8_t* packed, uint8_t* scales) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    for (int64_t j = 0; j < k / 32; j++) {
        __m256 v[4];
        __m256i m = _mm256_setzero_si256();
        MXMOE_UNROLL_ALL
        for (int q = 0; q < 4; q++) {
            v[q] = load8(x, dtype, 32 * j + 8 * q);
            m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_castps_si256(v[q]), abs_mask));
        }
        __m128i m4 = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
        m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0x4E));
        m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0xB1));
        uint8_t b = mxmoe_scale_byte((uint32_t)_mm_cvtsi128_si32(m4), rule);
        scales[j] = b;
        if (b == MXMOE_E8M0_NAN) {
            memset(packed + 16 * j, 0, 16);
            continue;
        }
        __m256 s = _mm256_set1_ps(mxmoe_pow2f(127 - (int32_t)b));
        uint32_t words[4];
        MXMOE_UNROLL_ALL
        for (int q = 0; q < 4; q++) {
            words[q] = pack_nibbles(e2m1_codes(v[q], _mm256_mul_ps(v[q], s)));
        }
        memcpy(packed + 16 * j, words, 16);
    }
}
#endif /* MXMOE_CPU_X86 */
