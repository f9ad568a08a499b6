/*
 * e2m1_half2.cuh — eight E2M1 codes at once for values that BF16 holds exactly (the layer's
 * activations, act_dtype BF16): mxmoe_e2m1_code_rne's rounding add (core/e2m1_round.h) done
 * two values to an instruction in FP16. The activation kernel spends most of its quantize half
 * in the encoder (~13 SASS instructions a value in FP32, bench/NOTES.md v36).
 *
 * Why FP16 is exact here. y = v 2^-s is the FP32 product the reference forms (x times
 * mxmoe_pow2f). With v a BF16 value, y has at most 8 significant bits, so its conversion to
 * FP16 (11 bits) is exact wherever |y| >= 2^-14; below that it rounds to an FP16 value under
 * 2^-14, and both give magnitude code 0 (the reference rounds |y| <= 0.25 to 0). The block's
 * scale keeps |y| < 8 under every rule (amax 2^-s < 8, also where s is clamped), well inside
 * FP16's range. The sign is y's, which is x's (a product with 2^-s > 0 keeps the sign, zeros
 * and underflows included). Then, as in FP32: c = |y| clamped to [1, 8] has the binade E whose
 * spacing rounds |y|; m = 2^(E - 6) (FP16 exponent field E + 9) has that spacing as its ulp,
 * and |y| + m < 2m, so the sum's bits less m's are k, |y| rounded to a multiple of the spacing,
 * ties to even k; the code is k + 2 (E - 15), at most 8, saturated to 7.
 *
 * Integer steps run on both FP16 lanes of a 32-bit word at once: every lane's result lies in
 * [0, 2^16), so the word's sums and differences are the lanes' (no carry crosses a lane).
 * tests/gpu/test_e2m1_gpu.cu checks every finite BF16 value at every scale byte against
 * mxmoe_e2m1_code_rne, in every nibble.
 */
#ifndef MXMOE_CUDA_E2M1_HALF2_CUH
#define MXMOE_CUDA_E2M1_HALF2_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "core/e2m1_round.h"

/* The codes of a and b (FP32 values already scaled by 2^-s, BF16-exact before scaling) in the
 * low nibbles of the two 16-bit halves: a's at bits 0-3, b's at bits 16-19. */
static __device__ __forceinline__ uint32_t e2m1_code_pair(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b); /* a in the low half */
    const uint32_t bits = *reinterpret_cast<const uint32_t*>(&h);
    const uint32_t mag_bits = bits & 0x7FFF7FFFu;
    const __half2 mag = *reinterpret_cast<const __half2*>(&mag_bits);
    const __half2 c = __hmin2(__hmax2(mag, __float2half2_rn(1.0f)), __float2half2_rn(8.0f));
    const uint32_t e_bits = *reinterpret_cast<const uint32_t*>(&c) & 0x7C007C00u; /* E << 10 */
    const uint32_t m_bits = e_bits + 0x24002400u; /* 2^(E - 6): exponent field E + 9 */
    const __half2 sum = __hadd2_rn(mag, *reinterpret_cast<const __half2*>(&m_bits));
    /* k + 2E - 30 a lane: (E << 10) >> 9 is 2E */
    const uint32_t code =
        *reinterpret_cast<const uint32_t*>(&sum) - m_bits + (e_bits >> 9) - 0x001E001Eu;
    return __vminu2(code, 0x00070007u) | ((bits >> 12) & 0x00080008u); /* sign to bit 3 */
}

/* mxmoe_e2m1_code_rne(v[i], b) in nibble i, for v[i] that BF16 holds exactly and b the block's
 * scale byte (not 0xFF; so |v[i]| 2^(127 - b) < 8). */
static __device__ __forceinline__ uint32_t e2m1_codes8_bf16(const float (&v)[8], uint8_t b) {
    const float f = mxmoe_pow2f(127 - (int32_t)b);
    /* pairs (0, 2), (1, 3): the low halves hold bytes 0's nibbles, the high halves byte 2's */
    const uint32_t lo = e2m1_code_pair(v[0] * f, v[2] * f) | e2m1_code_pair(v[1] * f, v[3] * f)
                                                                 << 4;
    const uint32_t hi = e2m1_code_pair(v[4] * f, v[6] * f) | e2m1_code_pair(v[5] * f, v[7] * f)
                                                                 << 4;
    return __byte_perm(lo, hi, 0x6420); /* lo's bytes 0 and 2, then hi's */
}

/* mxmoe_e2m1_code_rne(v[i], b) in nibble i: by e2m1_codes8_bf16 where every v[i] is BF16-exact
 * (`bf16`), otherwise value by value. The same codes either way. */
static __device__ __forceinline__ uint32_t e2m1_codes8(const float (&v)[8], uint8_t b, bool bf16) {
    if (bf16) {
        return e2m1_codes8_bf16(v, b);
    }
    uint32_t codes = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        codes |= mxmoe_e2m1_code_rne(v[i], b) << (4 * i);
    }
    return codes;
}

#endif /* MXMOE_CUDA_E2M1_HALF2_CUH */
