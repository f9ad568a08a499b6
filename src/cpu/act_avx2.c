/*
 * act_avx2.c — the AVX2 tier's activation row: act_avx512.c's scheme (polynomial exp in FP64,
 * the reference's formula, Ziv's test against FP32 rounding, mxmoe_activation_rounded for the
 * lanes that fail it) four FP64 lanes at a time. Bit-identical to the reference.
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "ref/activation.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* exp(x) for |x| <= 700; `ok` (all-ones lanes) is cleared elsewhere. */
ALWAYS_INLINE __m256d exp_pd(__m256d x, __m256d* ok) {
    const __m256d log2e = _mm256_set1_pd(1.4426950408889634074);
    const __m256d ln2_hi = _mm256_set1_pd(6.93147180369123816490e-01); /* 32 bits: n*hi exact */
    const __m256d ln2_lo = _mm256_set1_pd(1.90821492927058770002e-10);
    static const double inv_fact[13] = {
        1.0,
        1.0,
        1.0 / 2,
        1.0 / 6,
        1.0 / 24,
        1.0 / 120,
        1.0 / 720,
        1.0 / 5040,
        1.0 / 40320,
        1.0 / 362880,
        1.0 / 3628800,
        1.0 / 39916800,
        1.0 / 479001600,
    };
    __m256d ax = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    *ok = _mm256_and_pd(*ok, _mm256_cmp_pd(ax, _mm256_set1_pd(700.0), _CMP_LE_OQ));
    /* out-of-range lanes are recomputed later: keep their exponent arithmetic in range */
    x = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-700.0)), _mm256_set1_pd(700.0));
    __m256d n =
        _mm256_round_pd(_mm256_mul_pd(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(n, ln2_hi, x);
    r = _mm256_fnmadd_pd(n, ln2_lo, r);
    __m256d p = _mm256_set1_pd(inv_fact[12]);
    MXMOE_UNROLL_ALL
    for (int k = 11; k >= 0; k--) {
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv_fact[k]));
    }
    __m128i n32 = _mm256_cvtpd_epi32(n);
    __m256i bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(n32), _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}

ALWAYS_INLINE __m256d sigmoid_pd(__m256d z, __m256d* ok) {
    const __m256d one = _mm256_set1_pd(1.0);
    return _mm256_div_pd(one,
                         _mm256_add_pd(one, exp_pd(_mm256_sub_pd(_mm256_setzero_pd(), z), ok)));
}

/* 4 values from element i as FP32 (exact). */
ALWAYS_INLINE __m128 load4(const void* d, mxmoe_dtype t, int64_t i) {
    switch (t) {
    case MXMOE_BF16: {
        int64_t q;
        memcpy(&q, (const uint16_t*)d + i, sizeof q);
        return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(_mm_cvtsi64_si128(q)), 16));
    }
    case MXMOE_F16: {
        int64_t q;
        memcpy(&q, (const uint16_t*)d + i, sizeof q);
        return _mm_cvtph_ps(_mm_cvtsi64_si128(q));
    }
    default:
        return _mm_loadu_ps((const float*)d + i);
    }
}

ALWAYS_INLINE __m128 round_to_dtype(__m128 f, mxmoe_dtype t) {
    if (t == MXMOE_BF16) {
        __m128i u = _mm_castps_si128(f);
        __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
        u = _mm_add_epi32(u, _mm_add_epi32(_mm_set1_epi32(0x7fff), lsb));
        return _mm_castsi128_ps(_mm_and_si128(u, _mm_set1_epi32((int)0xffff0000u)));
    }
    if (t == MXMOE_F16) {
        return _mm_cvtph_ps(_mm_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return f;
}

void mxmoe_act_row_avx2(const mxmoe_tensor* h, int64_t r, int64_t cols, const mxmoe_act_params* p,
                        float* out) {
    const mxmoe_activation act = p->activation;
    if (act != MXMOE_ACT_SILU && act != MXMOE_ACT_SILU_MUL && act != MXMOE_ACT_SWIGLU_OAI) {
        for (int64_t i = 0; i < cols; i++) {
            out[i] = mxmoe_activation_rounded(h, r, i, cols, p);
        }
        return;
    }
    const void* d = h->data;
    const mxmoe_dtype t = h->dtype;
    const int gated = act != MXMOE_ACT_SILU;
    const int64_t base = gated ? r * 2 * cols : r * cols;
    const __m256d tol = _mm256_set1_pd(0x1p-40);
    const __m256d limit = _mm256_set1_pd((double)p->swiglu_limit);
    const __m256d alpha = _mm256_set1_pd((double)p->swiglu_alpha);
    const __m256d sign = _mm256_set1_pd(-0.0);
    for (int64_t i = 0; i < cols; i += 4) { /* cols is a multiple of 32 */
        __m256d ok = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
        __m256d v;
        if (!gated) {
            __m256d x = _mm256_cvtps_pd(load4(d, t, base + i));
            v = _mm256_mul_pd(x, sigmoid_pd(x, &ok));
        } else {
            __m256d gate, up;
            if (p->layout == MXMOE_GATE_UP_INTERLEAVED) {
                __m128 a = load4(d, t, base + 2 * i), b = load4(d, t, base + 2 * i + 4);
                gate = _mm256_cvtps_pd(_mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
                up = _mm256_cvtps_pd(_mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
            } else {
                gate = _mm256_cvtps_pd(load4(d, t, base + i));
                up = _mm256_cvtps_pd(load4(d, t, base + cols + i));
            }
            if (act == MXMOE_ACT_SILU_MUL) {
                v = _mm256_mul_pd(_mm256_mul_pd(gate, sigmoid_pd(gate, &ok)), up);
            } else {
                /* g = gate > limit ? limit : gate; u = clamp(up); NaN lanes fail `ok` below */
                __m256d neg = _mm256_sub_pd(_mm256_setzero_pd(), limit);
                __m256d g = _mm256_blendv_pd(gate, limit, _mm256_cmp_pd(gate, limit, _CMP_GT_OQ));
                __m256d u = _mm256_blendv_pd(up, limit, _mm256_cmp_pd(up, limit, _CMP_GT_OQ));
                u = _mm256_blendv_pd(u, neg, _mm256_cmp_pd(up, neg, _CMP_LT_OQ));
                v = _mm256_mul_pd(_mm256_mul_pd(g, sigmoid_pd(_mm256_mul_pd(alpha, g), &ok)),
                                  _mm256_add_pd(u, _mm256_set1_pd(1.0)));
            }
        }
        /* Ziv's test: v and v -+ 2^-40 |v| round to the same FP32 (false for NaN lanes) */
        __m256d spread = _mm256_mul_pd(_mm256_andnot_pd(sign, v), tol);
        __m128 f = _mm256_cvtpd_ps(v);
        __m128 f_lo = _mm256_cvtpd_ps(_mm256_sub_pd(v, spread));
        __m128 f_hi = _mm256_cvtpd_ps(_mm256_add_pd(v, spread));
        __m128 same = _mm_and_ps(_mm_cmp_ps(f, f_lo, _CMP_EQ_OQ), _mm_cmp_ps(f, f_hi, _CMP_EQ_OQ));
        same = _mm_and_ps(same, _mm_cmp_ps(_mm_andnot_ps(_mm_set1_ps(-0.0f), f),
                                           _mm_set1_ps(3.0e38f), _CMP_LT_OQ));
        int lanes = _mm_movemask_ps(same) & _mm256_movemask_pd(ok);
        _mm_storeu_ps(out + i, round_to_dtype(f, p->act_dtype));
        if (lanes != 0xF) {
            MXMOE_UNROLL_ALL
            for (int l = 0; l < 4; l++) {
                if (!((lanes >> l) & 1)) {
                    out[i + l] = mxmoe_activation_rounded(h, r, i + l, cols, p);
                }
            }
        }
    }
}
#endif /* MXMOE_CPU_X86 */
