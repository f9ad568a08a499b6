/*
 * act_avx512.c — the AVX-512 tier's activation row (act_and_quantize and the MoE layer): the
 * sigmoid family (SILU, SILU_MUL, SWIGLU_OAI) eight FP64 lanes at a time.
 *
 * The contract evaluates the activation in FP64 with libm's exp, rounds it to FP32, then to
 * act_dtype. Here exp is a polynomial (Cody-Waite reduction, degree-12 Taylor, vscalefpd):
 * within a few FP64 ulps of libm's, and the rest of the formula is the reference's own
 * sequence of operations, so the FP64 value v differs from the reference's by far less than
 * 2^-40 |v|. Every lane is then checked (Ziv's test): if v - 2^-40 |v| and v + 2^-40 |v| round
 * to the same FP32 number as v, so does the reference's value; otherwise (about one lane in
 * 2^16, and every NaN, infinity or |exp argument| > 700) the lane is recomputed by
 * mxmoe_activation_rounded itself. The result is the reference's, bit for bit.
 */
#if defined(MXMOE_CPU_X86)
#include <immintrin.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "ref/activation.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* exp(x) for |x| <= 700 (other lanes: anything; `ok` clears them). */
ALWAYS_INLINE __m512d exp_pd(__m512d x, __mmask8* ok) {
    const __m512d log2e = _mm512_set1_pd(1.4426950408889634074);
    const __m512d ln2_hi = _mm512_set1_pd(6.93147180369123816490e-01); /* 32 bits: n*hi exact */
    const __m512d ln2_lo = _mm512_set1_pd(1.90821492927058770002e-10);
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
    *ok &= _mm512_cmp_pd_mask(_mm512_abs_pd(x), _mm512_set1_pd(700.0), _CMP_LE_OQ);
    __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, log2e),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, ln2_hi, x);
    r = _mm512_fnmadd_pd(n, ln2_lo, r);
    __m512d p = _mm512_set1_pd(inv_fact[12]);
    MXMOE_UNROLL_ALL
    for (int k = 11; k >= 0; k--) {
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(inv_fact[k]));
    }
    return _mm512_scalef_pd(p, n);
}

/* 1 / (1 + exp(-z)), as the reference writes it. */
ALWAYS_INLINE __m512d sigmoid_pd(__m512d z, __mmask8* ok) {
    const __m512d one = _mm512_set1_pd(1.0);
    return _mm512_div_pd(one,
                         _mm512_add_pd(one, exp_pd(_mm512_sub_pd(_mm512_setzero_pd(), z), ok)));
}

/* 16 consecutive values of a F32/BF16/F16 buffer from element i, as FP32. */
ALWAYS_INLINE __m512 load16(const void* d, mxmoe_dtype t, int64_t i) {
    switch (t) {
    case MXMOE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)((const uint16_t*)d + i))),
            16));
    case MXMOE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const uint16_t*)d + i)));
    default:
        return _mm512_loadu_ps((const float*)d + i);
    }
}

/* 8 values from element i, as FP64 (exact). */
ALWAYS_INLINE __m512d load8_pd(const void* d, mxmoe_dtype t, int64_t i) {
    switch (t) {
    case MXMOE_BF16:
        return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)d + i))), 16)));
    case MXMOE_F16:
        return _mm512_cvtps_pd(
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)d + i))));
    default:
        return _mm512_cvtps_pd(_mm256_loadu_ps((const float*)d + i));
    }
}

/* FP32 -> act_dtype and back, as mxmoe_round_to_dtype (lanes are finite: no NaN handling). */
ALWAYS_INLINE __m256 round_to_dtype(__m256 f, mxmoe_dtype t) {
    if (t == MXMOE_BF16) {
        __m256i u = _mm256_castps_si256(f);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
        return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xffff0000u)));
    }
    if (t == MXMOE_F16) {
        return _mm256_cvtph_ps(_mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return f;
}

void mxmoe_act_row_avx512(const mxmoe_tensor* h, int64_t r, int64_t cols, const mxmoe_act_params* p,
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
    const __m512d tol = _mm512_set1_pd(0x1p-40);
    const __m512d limit = _mm512_set1_pd((double)p->swiglu_limit);
    const __m512d alpha = _mm512_set1_pd((double)p->swiglu_alpha);
    /* even / odd FP32 lanes of 16 interleaved values, for gate / up */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t i = 0; i < cols; i += 8) { /* cols is a multiple of 32 */
        __mmask8 ok = 0xFF;
        __m512d v;
        if (!gated) {
            __m512d x = load8_pd(d, t, base + i);
            v = _mm512_mul_pd(x, sigmoid_pd(x, &ok));
        } else {
            __m512d gate, up;
            if (p->layout == MXMOE_GATE_UP_INTERLEAVED) {
                __m512 g16 = load16(d, t, base + 2 * i);
                gate = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_permutexvar_ps(even, g16)));
                up = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_permutexvar_ps(odd, g16)));
            } else {
                gate = load8_pd(d, t, base + i);
                up = load8_pd(d, t, base + cols + i);
            }
            if (act == MXMOE_ACT_SILU_MUL) {
                v = _mm512_mul_pd(_mm512_mul_pd(gate, sigmoid_pd(gate, &ok)), up);
            } else {
                /* g = gate > limit ? limit : gate; u = clamp(up); NaN lanes fail `ok` below */
                __m512d g =
                    _mm512_mask_blend_pd(_mm512_cmp_pd_mask(gate, limit, _CMP_GT_OQ), gate, limit);
                __m512d neg = _mm512_sub_pd(_mm512_setzero_pd(), limit);
                __m512d u =
                    _mm512_mask_blend_pd(_mm512_cmp_pd_mask(up, limit, _CMP_GT_OQ), up, limit);
                u = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(up, neg, _CMP_LT_OQ), u, neg);
                v = _mm512_mul_pd(_mm512_mul_pd(g, sigmoid_pd(_mm512_mul_pd(alpha, g), &ok)),
                                  _mm512_add_pd(u, _mm512_set1_pd(1.0)));
            }
        }
        /* Ziv's test: v and v -+ 2^-40 |v| round to the same FP32 (false for NaN lanes) */
        __m512d spread = _mm512_mul_pd(_mm512_abs_pd(v), tol);
        __m256 f = _mm512_cvtpd_ps(v);
        __m256 f_lo = _mm512_cvtpd_ps(_mm512_sub_pd(v, spread));
        __m256 f_hi = _mm512_cvtpd_ps(_mm512_add_pd(v, spread));
        ok &= _mm256_cmp_ps_mask(f, f_lo, _CMP_EQ_OQ) & _mm256_cmp_ps_mask(f, f_hi, _CMP_EQ_OQ);
        /* infinities compare equal: keep them off the fast path too */
        ok &= _mm256_cmp_ps_mask(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), f),
                                 _mm256_set1_ps(3.0e38f), _CMP_LT_OQ);
        _mm256_storeu_ps(out + i, round_to_dtype(f, p->act_dtype));
        if (ok != 0xFF) {
            MXMOE_UNROLL_ALL
            for (int l = 0; l < 8; l++) {
                if (!((ok >> l) & 1)) {
                    out[i + l] = mxmoe_activation_rounded(h, r, i + l, cols, p);
                }
            }
        }
    }
}
#endif /* MXMOE_CPU_X86 */
