/*
 * quantize_avx512.c — the AVX-512 tier's row quantizer: 32 values (two zmm) per block.
 *
 * Byte-identical to mxmoe_quantize_block: the block's amax is the unsigned max of the FP32 bit
 * patterns with the sign cleared (NaN/Inf are the largest), its scale byte comes from the
 * reference's own mxmoe_scale_byte, the elements are scaled by the same single FP32 multiply
 * by mxmoe_pow2f(127 - b), and the E2M1 magnitude is the count of rounding thresholds below
 * |y| (compared as bit patterns: > for 0.25, 1.25, 2.5, 5 and >= for 0.75, 1.75, 3.5 — the
 * ties-to-even boundaries of the reference's comparison chain).
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "ref/mx_numerics.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void load_block(const void* x, mxmoe_dtype dtype, int64_t i, __m512* v0, __m512* v1) {
    switch (dtype) {
    case MXMOE_BF16: {
        const uint16_t* p = (const uint16_t*)x + i;
        __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p));
        __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(p + 16)));
        *v0 = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
        *v1 = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
        break;
    }
    case MXMOE_F16: {
        const uint16_t* p = (const uint16_t*)x + i;
        *v0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
        *v1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(p + 16)));
        break;
    }
    default: {
        const float* p = (const float*)x + i;
        *v0 = _mm512_loadu_ps(p);
        *v1 = _mm512_loadu_ps(p + 16);
        break;
    }
    }
}

/* E2M1 codes (sign | magnitude) of 16 values already multiplied by 2^-s, sign taken from x. */
ALWAYS_INLINE __m512i e2m1_codes(__m512 x, __m512 y) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i a = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(0x7fffffff));
    __m512i c = _mm512_maskz_mov_epi32(
        _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x3e800000), _MM_CMPINT_NLE), one); /* >0.25 */
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x3f400000), _MM_CMPINT_NLT), c, one);
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x3fa00000), _MM_CMPINT_NLE), c, one);
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x3fe00000), _MM_CMPINT_NLT), c, one);
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x40200000), _MM_CMPINT_NLE), c, one);
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x40600000), _MM_CMPINT_NLT), c, one);
    c = _mm512_mask_add_epi32(
        c, _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x40a00000), _MM_CMPINT_NLE), c, one);
    __m512i sign =
        _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 28), _mm512_set1_epi32(8));
    return _mm512_or_si512(c, sign);
}

/* 16 codes -> 8 bytes, element 2i in the low nibble of byte i. */
ALWAYS_INLINE __m128i pack_nibbles(__m512i c) {
    return _mm512_cvtepi64_epi8(_mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
}

void mxmoe_quantize_row_avx512(const void* x, mxmoe_dtype dtype, int64_t k, mxmoe_scale_rule rule,
                               uint8_t* packed, uint8_t* scales) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    for (int64_t j = 0; j < k / 32; j++) {
        __m512 v0, v1;
        load_block(x, dtype, 32 * j, &v0, &v1);
        __m512i m = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask),
                                     _mm512_and_si512(_mm512_castps_si512(v1), abs_mask));
        uint8_t b = mxmoe_scale_byte((uint32_t)_mm512_reduce_max_epu32(m), rule);
        scales[j] = b;
        if (b == MXMOE_E8M0_NAN) {
            memset(packed + 16 * j, 0, 16);
            continue;
        }
        __m512 s = _mm512_set1_ps(mxmoe_pow2f(127 - (int32_t)b));
        __m128i lo = pack_nibbles(e2m1_codes(v0, _mm512_mul_ps(v0, s)));
        __m128i hi = pack_nibbles(e2m1_codes(v1, _mm512_mul_ps(v1, s)));
        _mm_storeu_si128((__m128i*)(packed + 16 * j), _mm_unpacklo_epi64(lo, hi));
    }
}
#endif /* MXMOE_CPU_X86 */
