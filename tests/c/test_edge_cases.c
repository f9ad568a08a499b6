/*
 * test_edge_cases.c — small, hand-checkable edge cases through the public API on the CPU backend:
 *
 *   quantize/dequantize: -0 and tiny negatives (code 0x8), saturation at ±6, each scale rule on
 *     either side of its thresholds (including the log2f pitfall just below 8), scale clamping at
 *     both ends, NaN/Inf blocks (0xFF, codes 0, NaN out), all-zero and all-(-0) blocks, FP32
 *     subnormal inputs, E8M0 0x00 and 0xFE decoding (no flush to zero; overflow to Inf);
 *   scale layouts: swizzle/unswizzle against the SPEC §3 formula, experts_quantize into grouped
 *     swizzled scales (fresh 128-row atom per expert, zero padding);
 *   act_and_quantize: an exact RELU2 case, rows beyond offsets[E] untouched;
 *   plan: ids -1, an expert map, deterministic order;
 *   grouped_gemm: experts with zero rows, one token, K = 32, K = 96, extreme and NaN scales,
 *     BF16/F16 output rounding ties, biases, swizzled scales giving the linear result;
 *   moe_forward: top_k = 1 and top_k = E, router weights on output and on input, an expert map
 *     with dropped pairs, biases, gpt-oss SwiGLU interleaved, BF16 output, BF16 GEMM results
 *     (gemm_dtype) — against a plain double-precision reference written here from the header's
 *     description.
 *
 * Every output buffer is poisoned before each call. Inputs are chosen so that results are exact
 * (or, for the MoE layer, so that the reference is provably insensitive to transcendental
 * round-off: see moe_reference()).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mxmoe.h"

#define POISON 0xA5

/* mxmoe.h, mxmoe_act_and_quantize: the activation is evaluated in FP64, rounded to FP32, then
 * to act_dtype (two roundings, as an FP32 activation tensor cast to BF16 would give). */

static mxmoe_ctx* ctx;

/* ---------------------------------------------------------------------------------------------
 * Small helpers: bits, conversions, nibbles, a deterministic generator.
 */
static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t to_bf16(float f) { /* RNE, NaN kept NaN */
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    return float_of((uint32_t)h << 16);
}

/* FP32 -> FP16, RNE, for zero, NaN, Inf and values in the FP16 normal range (what we store). */
static uint16_t to_f16(float f) {
    uint32_t u = bits_of(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (a == 0x7f800000u) {
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a == 0) {
        return sign;
    }
    uint32_t v = a - (112u << 23);
    v += 0xfffu + ((v >> 13) & 1u);
    return (uint16_t)(sign | (v >> 13));
}

static float from_f16(uint16_t h) { /* exact, every encoding */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f) {
        return float_of(sign | 0x7f800000u | (m << 13));
    }
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

static void store_as(void* data, mxmoe_dtype dt, int64_t i, float v) {
    if (dt == MXMOE_F32) {
        ((float*)data)[i] = v;
    } else if (dt == MXMOE_BF16) {
        ((uint16_t*)data)[i] = to_bf16(v);
    } else {
        ((uint16_t*)data)[i] = to_f16(v);
    }
}

static float load_as(const void* data, mxmoe_dtype dt, int64_t i) {
    if (dt == MXMOE_F32) {
        return ((const float*)data)[i];
    }
    if (dt == MXMOE_BF16) {
        return from_bf16(((const uint16_t*)data)[i]);
    }
    return from_f16(((const uint16_t*)data)[i]);
}

static const float e2m1_values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                      -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

static uint8_t get_code(const uint8_t* packed, int64_t i) {
    return (uint8_t)((packed[i / 2] >> (4 * (i % 2))) & 0xF);
}

static void set_code(uint8_t* packed, int64_t i, uint8_t code) {
    uint8_t shift = (uint8_t)(4 * (i % 2));
    packed[i / 2] = (uint8_t)((packed[i / 2] & ~(0xF << shift)) | ((code & 0xF) << shift));
}

static uint32_t rng_state = 0x2545F491u;
static uint32_t rng(void) { /* xorshift32 */
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

static int all_bytes(const void* p, size_t n, uint8_t value) {
    const uint8_t* b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != value) {
            return 0;
        }
    }
    return 1;
}

static mxmoe_mx_tensor mx_make(uint8_t* packed, uint8_t* scales, int32_t ndim,
                               const int64_t* dims) {
    mxmoe_mx_tensor t;
    int64_t pd[MXMOE_MAX_DIMS], sd[MXMOE_MAX_DIMS];
    for (int32_t i = 0; i < ndim; i++) {
        pd[i] = sd[i] = dims[i];
    }
    pd[ndim - 1] = dims[ndim - 1] / 2;
    sd[ndim - 1] = dims[ndim - 1] / 32;
    t.packed = mxmoe_tensor_make(packed, MXMOE_U8, ndim, pd);
    t.scales = mxmoe_tensor_make(scales, MXMOE_U8, ndim, sd);
    t.scale_layout = MXMOE_SCALES_LINEAR;
    return t;
}

static const char* rule_names[] = {"EVEN", "FLOOR", "CEIL", "RCEIL"};

/* ---------------------------------------------------------------------------------------------
 * An independent reference of the SPEC §2 quantizer (used only by the MoE reference): the scale
 * exponent from the FP32 bits of amax, elements by exhaustive nearest search, ties to the even
 * code, saturating.
 */
static int32_t spec_scale_exponent(uint32_t abits, mxmoe_scale_rule rule) {
    int32_t e;
    uint32_t frac;
    if ((abits >> 23) != 0) {
        e = (int32_t)(abits >> 23) - 127;
        frac = abits & 0x7fffffu;
    } else {
        int32_t msb = 31;
        while (!(abits & (1u << msb))) {
            msb--;
        }
        e = msb - 149;
        frac = (abits << (23 - msb)) & 0x7fffffu;
    }
    int32_t s;
    switch (rule) {
    case MXMOE_RULE_FLOOR:
        s = e - 2;
        break;
    case MXMOE_RULE_CEIL:
        s = e + (frac != 0) - 2;
        break;
    case MXMOE_RULE_RCEIL: /* 6 * 2^s >= amax  <=>  1.5 * 2^(s+2) >= 1.f * 2^e */
        s = e - 2 + (frac > 0x400000u);
        break;
    default: {
        uint32_t rounded = ((abits + (1u << 21)) >> 23); /* exponent field after the bump */
        s = ((abits >> 23) != 0 ? (int32_t)rounded - 127 : e + (frac >= 0x600000u)) - 2;
        break;
    }
    }
    return s < -127 ? -127 : (s > 127 ? 127 : s);
}

static void spec_quantize_block(const float* x, mxmoe_scale_rule rule, uint8_t* scale,
                                uint8_t* codes /* 32, one per byte */) {
    uint32_t amax = 0;
    for (int i = 0; i < 32; i++) {
        uint32_t a = bits_of(x[i]) & 0x7fffffffu;
        amax = a > amax ? a : amax;
    }
    if (amax >= 0x7f800000u) {
        *scale = 0xFF;
        memset(codes, 0, 32);
        return;
    }
    int32_t s = amax == 0 ? -127 : spec_scale_exponent(amax, rule);
    *scale = (uint8_t)(s + 127);
    for (int i = 0; i < 32; i++) {
        double y = fabs(ldexp((double)x[i], -s));
        int best = 0;
        for (int c = 1; c < 8; c++) {
            double dc = fabs(y - (double)e2m1_values[c]);
            double db = fabs(y - (double)e2m1_values[best]);
            if (dc < db || (dc == db && (c % 2) == 0)) {
                best = c;
            }
        }
        codes[i] = (uint8_t)(best | ((bits_of(x[i]) >> 28) & 0x8u));
    }
}


/* The BF16 value of an FP64 activation under the contract: FP64 -> FP32 -> BF16. */
static float round_act_bf16(double v) {
    return from_bf16(to_bf16((float)v));
}

/* ---------------------------------------------------------------------------------------------
 * quantize / dequantize
 */

/* Quantizes one row of `nblocks` blocks (F32 input) with `rule`; 0 on failure. */
static int quantize_row(const float* x, int nblocks, mxmoe_scale_rule rule, uint8_t* packed,
                        uint8_t* scales) {
    int64_t dims[2] = {1, 32LL * nblocks};
    mxmoe_tensor xt = mxmoe_tensor_make((void*)x, MXMOE_F32, 2, dims);
    mxmoe_mx_tensor out = mx_make(packed, scales, 2, dims);
    memset(packed, POISON, (size_t)nblocks * 16);
    memset(scales, POISON, (size_t)nblocks);
    mxmoe_status st = mxmoe_quantize(ctx, &xt, rule, &out);
    CHECK_STATUS(st, MXMOE_OK);
    if (st != MXMOE_OK) {
        fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
    }
    return st == MXMOE_OK;
}

static int dequantize_row(const uint8_t* packed, const uint8_t* scales, int nblocks, mxmoe_dtype dt,
                          void* out) {
    int64_t dims[2] = {1, 32LL * nblocks};
    mxmoe_mx_tensor in = mx_make((uint8_t*)packed, (uint8_t*)scales, 2, dims);
    mxmoe_tensor ot = mxmoe_tensor_make(out, dt, 2, dims);
    memset(out, POISON, (size_t)nblocks * 32 * mxmoe_dtype_size(dt));
    mxmoe_status st = mxmoe_dequantize(ctx, &in, &ot);
    CHECK_STATUS(st, MXMOE_OK);
    return st == MXMOE_OK;
}

static void test_negative_zero(void) {
    check_set_context("quantize: -0 and tiny negatives");
    float x[32] = {0};
    x[0] = 4.0f;
    x[1] = -0.0f;
    x[2] = -0.1f;
    x[3] = -1e-30f;
    x[4] = 0.0f;
    x[5] = -0.25f; /* tie between 0 and 0.5: to the even code 0, sign kept: 0x8 */
    x[6] = 0.25f;
    x[7] = 0.1f;
    x[8] = -float_of(1); /* -2^-149 */
    x[9] = -0.2499999f;
    const uint8_t want[10] = {6, 8, 8, 8, 0, 8, 0, 0, 8, 8};
    uint8_t packed[16], scale;
    for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
        /* amax 4: every rule gives s = 0 */
        check_set_context("quantize: -0 and tiny negatives, rule %s", rule_names[r]);
        if (!quantize_row(x, 1, (mxmoe_scale_rule)r, packed, &scale)) {
            continue;
        }
        CHECK_EQ_INT(scale, 0x7F);
        for (int i = 0; i < 32; i++) {
            uint8_t w = i < 10 ? want[i] : 0;
            CHECK_MSG(get_code(packed, i) == w, "element %d (%g): code 0x%X, want 0x%X", i,
                      (double)x[i], get_code(packed, i), w);
        }
        float out[32];
        if (dequantize_row(packed, &scale, 1, MXMOE_F32, out)) {
            for (int i = 1; i < 10; i++) {
                CHECK_FLOAT_BITS(out[i], (want[i] & 8) ? -0.0f : 0.0f);
            }
        }
    }
    /* -0 in BF16 and F16 inputs. */
    for (int d = 0; d < 2; d++) {
        mxmoe_dtype dt = d == 0 ? MXMOE_BF16 : MXMOE_F16;
        check_set_context("quantize: -0 in %s input", mxmoe_dtype_name(dt));
        uint16_t xh[32];
        for (int i = 0; i < 32; i++) {
            xh[i] = 0x8000; /* -0 */
        }
        xh[0] = dt == MXMOE_BF16 ? 0x3F80 : 0x3C00; /* 1.0 */
        int64_t dims[2] = {1, 32};
        mxmoe_tensor xt = mxmoe_tensor_make(xh, dt, 2, dims);
        mxmoe_mx_tensor out = mx_make(packed, &scale, 2, dims);
        memset(packed, POISON, sizeof packed);
        scale = POISON;
        CHECK_STATUS(mxmoe_quantize(ctx, &xt, MXMOE_RULE_EVEN, &out), MXMOE_OK);
        CHECK_EQ_INT(scale, 0x7D);
        CHECK_EQ_INT(packed[0], 0x86); /* 1.0 * 2^2 = 4 -> code 6; -0 -> 0x8 */
        CHECK(all_bytes(packed + 1, 15, 0x88));
    }
}

static void test_saturation(void) {
    check_set_context("quantize: saturation at +-6 (FLOOR)");
    float x[32] = {0};
    x[0] = 7.0f;
    x[1] = -7.0f;
    x[2] = float_of(0x40FFFFFFu); /* 7.9999995: floor(log2f()) would say 3 */
    x[3] = 6.5f;
    x[4] = -6.25f;
    x[5] = 5.5f;
    x[6] = 5.0f;  /* tie 4|6 -> 4 */
    x[7] = -5.0f; /* -> -4 */
    const uint8_t want[8] = {7, 0xF, 7, 7, 0xF, 7, 6, 0xE};
    const float want_val[8] = {6, -6, 6, 6, -6, 6, 4, -4};
    uint8_t packed[16], scale;
    if (quantize_row(x, 1, MXMOE_RULE_FLOOR, packed, &scale)) {
        CHECK_EQ_INT(scale, 0x7F);
        for (int i = 0; i < 8; i++) {
            CHECK_MSG(get_code(packed, i) == want[i], "element %d (%g): code 0x%X, want 0x%X", i,
                      (double)x[i], get_code(packed, i), want[i]);
        }
        float out[32];
        if (dequantize_row(packed, &scale, 1, MXMOE_F32, out)) {
            for (int i = 0; i < 8; i++) {
                CHECK_FLOAT_BITS(out[i], want_val[i]);
            }
        }
    }
}

/* One value v (block 0: +v, block 1: -v, rest 0): scale byte and code of the value per rule. */
typedef struct {
    uint32_t bits;
    uint8_t scale[MXMOE_RULE_COUNT];
    uint8_t code[MXMOE_RULE_COUNT];
} threshold_case;

static void test_rule_thresholds(void) {
    /* Rows: value, then (byte, code) for EVEN, FLOOR, CEIL, RCEIL. Derivations:
     *  EVEN  s = e(amax) + (significand >= 1.75) - 2     FLOOR s = e(amax) - 2
     *  CEIL  s = ceil(log2 amax) - 2                     RCEIL s = ceil(log2(amax / 6))
     * then clamp s to [-127, 127], byte = s + 127, code = RNE(v * 2^-s) saturating. */
    static const threshold_case cases[] = {
        /* 1.75: EVEN bumps (s=-1: 3.5 -> 4), FLOOR s=-2 (7 -> 6), CEIL 1-2, RCEIL ceil(-1.78) */
        {0x3FE00000u, {0x7E, 0x7D, 0x7E, 0x7E}, {6, 7, 6, 6}},
        /* just below 1.75: EVEN no bump (s=-2: 6.9999995 -> 6); CEIL/RCEIL s=-1: 3.49999994 -> 3 */
        {0x3FDFFFFFu, {0x7D, 0x7D, 0x7E, 0x7E}, {7, 7, 5, 5}},
        /* 4: s = 0 for all (RCEIL ceil(log2 2/3) = 0) */
        {0x40800000u, {0x7F, 0x7F, 0x7F, 0x7F}, {6, 6, 6, 6}},
        /* just above 4: CEIL s = 1 (2.0000002 -> 2) */
        {0x40800001u, {0x7F, 0x7F, 0x80, 0x7F}, {6, 6, 4, 6}},
        /* 6: CEIL s = 1 (3); RCEIL exactly 0 */
        {0x40C00000u, {0x7F, 0x7F, 0x80, 0x7F}, {7, 7, 5, 7}},
        /* just above 6: RCEIL s = 1; EVEN/FLOOR saturate 6.0000005 -> 6 */
        {0x40C00001u, {0x7F, 0x7F, 0x80, 0x80}, {7, 7, 5, 5}},
        /* just below 8 (the log2f pitfall): FLOOR s = 0; others s = 1 (3.9999998 -> 4) */
        {0x40FFFFFFu, {0x80, 0x7F, 0x80, 0x80}, {6, 7, 6, 6}},
        /* 8: s = 1 for all */
        {0x41000000u, {0x80, 0x80, 0x80, 0x80}, {6, 6, 6, 6}},
        /* 3 * 2^100 = 1.5 * 2^101: s = 99 (6 -> code 7), CEIL s = 100 (3) */
        {0x72400000u, {0xE2, 0xE2, 0xE3, 0xE2}, {7, 7, 5, 7}},
        /* FLT_MAX ~ 2^128: FLOOR s = 125 (7.9999995 -> 6); others 126 (3.9999998 -> 4) */
        {0x7F7FFFFFu, {0xFD, 0xFC, 0xFD, 0xFD}, {6, 7, 6, 6}},
        /* 2^-126 (smallest normal): s = -128 for all -> clamped to -127, byte 0; 2^-126*2^127=2 */
        {0x00800000u, {0x00, 0x00, 0x00, 0x00}, {4, 4, 4, 4}},
        /* 1.5 * 2^-125: FLOOR/EVEN -127 (6); CEIL -126 (3); RCEIL exactly -127 (6) */
        {0x01400000u, {0x00, 0x00, 0x01, 0x00}, {7, 7, 5, 7}},
        /* 2^-124: s = -126 for all (4) */
        {0x01800000u, {0x01, 0x01, 0x01, 0x01}, {6, 6, 6, 6}},
        /* 2^-140 (FP32 subnormal): clamped to byte 0; 2^-13 rounds to 0 */
        {0x00000200u, {0x00, 0x00, 0x00, 0x00}, {0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float v = float_of(cases[c].bits);
        float x[64] = {0};
        x[0] = v;
        x[32] = -v;
        for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
            check_set_context("rule threshold: amax %a (0x%08X), rule %s", (double)v, cases[c].bits,
                              rule_names[r]);
            uint8_t packed[32], scales[2];
            if (!quantize_row(x, 2, (mxmoe_scale_rule)r, packed, scales)) {
                continue;
            }
            CHECK_MSG(scales[0] == cases[c].scale[r], "scale 0x%02X, want 0x%02X", scales[0],
                      cases[c].scale[r]);
            CHECK_MSG(scales[1] == cases[c].scale[r], "scale of -v 0x%02X, want 0x%02X", scales[1],
                      cases[c].scale[r]);
            CHECK_MSG(get_code(packed, 0) == cases[c].code[r], "code 0x%X, want 0x%X",
                      get_code(packed, 0), cases[c].code[r]);
            CHECK_MSG(get_code(packed, 32) == (cases[c].code[r] | 8), "code of -v 0x%X, want 0x%X",
                      get_code(packed, 32), cases[c].code[r] | 8);
            CHECK(all_bytes(packed + 1, 15, 0x00));
            CHECK(all_bytes(packed + 17, 15, 0x00));
        }
    }
    /* The decoded values of the largest blocks: FLOOR 6 * 2^125 is finite; EVEN 4 * 2^126 =
     * 2^128 overflows FP32 and must round to +Inf (and -Inf). */
    check_set_context("dequantize of FLT_MAX blocks");
    float x[64] = {0};
    x[0] = FLT_MAX;
    x[32] = -FLT_MAX;
    uint8_t packed[32], scales[2];
    float out[64];
    if (quantize_row(x, 2, MXMOE_RULE_FLOOR, packed, scales) &&
        dequantize_row(packed, scales, 2, MXMOE_F32, out)) {
        CHECK_FLOAT_BITS(out[0], float_of(0x7F400000u)); /* 1.5 * 2^127 */
        CHECK_FLOAT_BITS(out[32], float_of(0xFF400000u));
    }
    if (quantize_row(x, 2, MXMOE_RULE_EVEN, packed, scales) &&
        dequantize_row(packed, scales, 2, MXMOE_F32, out)) {
        CHECK_FLOAT_BITS(out[0], INFINITY);
        CHECK_FLOAT_BITS(out[32], -INFINITY);
    }
}

static void test_nan_inf(void) {
    const uint32_t specials[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7F800000u, 0xFF800000u};
    const char* names[] = {"NaN", "-NaN", "sNaN", "+Inf", "-Inf"};
    const int positions[] = {0, 5, 31};
    for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++) {
        for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
            for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
                for (int d = 0; d < 3; d++) {
                    mxmoe_dtype dt = d == 0 ? MXMOE_F32 : (d == 1 ? MXMOE_BF16 : MXMOE_F16);
                    if (dt != MXMOE_F32 && specials[s] == 0x7F800001u) {
                        continue; /* a signalling NaN only in F32 */
                    }
                    check_set_context("%s at element %d, rule %s, %s input", names[s], positions[p],
                                      rule_names[r], mxmoe_dtype_name(dt));
                    /* block 0: 1, 2, 3, ... with the special value; block 1: 4, -2, 1 */
                    float xf[64] = {0};
                    for (int i = 0; i < 8; i++) {
                        xf[i] = (float)(i + 1);
                    }
                    xf[positions[p]] = float_of(specials[s]);
                    xf[32] = 4.0f;
                    xf[33] = -2.0f;
                    xf[34] = 1.0f;
                    float xbuf[64];
                    for (int i = 0; i < 64; i++) {
                        store_as(xbuf, dt, i, xf[i]);
                    }
                    int64_t dims[2] = {1, 64};
                    uint8_t packed[32], scales[2];
                    mxmoe_tensor xt = mxmoe_tensor_make(xbuf, dt, 2, dims);
                    mxmoe_mx_tensor mx = mx_make(packed, scales, 2, dims);
                    memset(packed, POISON, sizeof packed);
                    memset(scales, POISON, sizeof scales);
                    mxmoe_status st = mxmoe_quantize(ctx, &xt, (mxmoe_scale_rule)r, &mx);
                    CHECK_STATUS(st, MXMOE_OK);
                    if (st != MXMOE_OK) {
                        continue;
                    }
                    CHECK_EQ_INT(scales[0], 0xFF);
                    CHECK_MSG(all_bytes(packed, 16, 0x00), "codes of the NaN block not all 0");
                    CHECK_EQ_INT(scales[1], 0x7F);
                    CHECK_EQ_INT(packed[16], 0xC6); /* 4 -> 6, -2 -> 0xC */
                    CHECK_EQ_INT(packed[17], 0x02); /* 1 -> 2 */
                    CHECK(all_bytes(packed + 18, 14, 0x00));
                    for (int od = 0; od < 3; od++) {
                        mxmoe_dtype odt = od == 0 ? MXMOE_F32 : (od == 1 ? MXMOE_BF16 : MXMOE_F16);
                        float out[64];
                        if (!dequantize_row(packed, scales, 2, odt, out)) {
                            continue;
                        }
                        int nan_count = 0;
                        for (int i = 0; i < 32; i++) {
                            nan_count += isnan(load_as(out, odt, i)) ? 1 : 0;
                        }
                        CHECK_MSG(nan_count == 32,
                                  "%d of 32 elements of the 0xFF block are NaN in %s", nan_count,
                                  mxmoe_dtype_name(odt));
                        CHECK_FLOAT_BITS(load_as(out, odt, 32), 4.0f);
                        CHECK_FLOAT_BITS(load_as(out, odt, 33), -2.0f);
                        CHECK_FLOAT_BITS(load_as(out, odt, 34), 1.0f);
                        CHECK_FLOAT_BITS(load_as(out, odt, 63), 0.0f);
                    }
                }
            }
        }
    }
}

static void test_zero_blocks(void) {
    float x[96];
    for (int i = 0; i < 32; i++) {
        x[i] = 0.0f;                             /* block 0: +0 */
        x[32 + i] = -0.0f;                       /* block 1: -0 */
        x[64 + i] = (i % 3 == 0) ? -0.0f : 0.0f; /* block 2: mixed */
    }
    for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
        check_set_context("zero blocks, rule %s", rule_names[r]);
        uint8_t packed[48], scales[3];
        if (!quantize_row(x, 3, (mxmoe_scale_rule)r, packed, scales)) {
            continue;
        }
        CHECK_EQ_INT(scales[0], 0x00);
        CHECK_EQ_INT(scales[1], 0x00);
        CHECK_EQ_INT(scales[2], 0x00);
        CHECK_MSG(all_bytes(packed, 16, 0x00), "+0 block codes not all 0x0");
        CHECK_MSG(all_bytes(packed + 16, 16, 0x88), "-0 block codes not all 0x8");
        for (int i = 0; i < 32; i++) {
            CHECK_EQ_INT(get_code(packed, 64 + i), (i % 3 == 0) ? 8 : 0);
        }
        float out[96];
        if (dequantize_row(packed, scales, 3, MXMOE_F32, out)) {
            for (int i = 0; i < 96; i++) {
                CHECK_FLOAT_BITS(out[i], x[i]);
            }
        }
    }
}

static void test_subnormal_inputs(void) {
    /* amax 1.5*2^-127 (subnormal): every rule's exponent is below -127, so byte 0x00; then
     * y = x * 2^127 exactly: 1.5 -> 3, 1 -> 2, 0.5 -> 1, -0.5 -> 9, 0.75 -> tie -> 2,
     * 0.125 -> 0, -2^-22 -> 0x8, 0.3125 -> 0.5 (code 1). */
    const uint32_t xb[8] = {0x00600000u, 0x00400000u, 0x00200000u, 0x80200000u,
                            0x00300000u, 0x00080000u, 0x80000001u, 0x00140000u};
    const uint8_t want[8] = {3, 2, 1, 9, 2, 0, 8, 1};
    const uint32_t want_back[8] = {0x00600000u, 0x00400000u, 0x00200000u, 0x80200000u,
                                   0x00400000u, 0x00000000u, 0x80000000u, 0x00200000u};
    float x[64] = {0};
    for (int i = 0; i < 8; i++) {
        x[i] = float_of(xb[i]);
    }
    /* block 1: a normal amax with subnormal companions: 1.0 (s=-2 -> 4, code 6), 2^-130 -> 0,
     * -2^-149 -> 0x8 */
    x[32] = 1.0f;
    x[33] = float_of(0x00080000u);
    x[34] = -float_of(1);
    for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
        check_set_context("FP32 subnormal inputs, rule %s", rule_names[r]);
        uint8_t packed[32], scales[2];
        if (!quantize_row(x, 2, (mxmoe_scale_rule)r, packed, scales)) {
            continue;
        }
        CHECK_EQ_INT(scales[0], 0x00);
        for (int i = 0; i < 8; i++) {
            CHECK_MSG(get_code(packed, i) == want[i], "element %d (%a): code 0x%X, want 0x%X", i,
                      (double)x[i], get_code(packed, i), want[i]);
        }
        CHECK(all_bytes(packed + 4, 12, 0));
        CHECK_EQ_INT(scales[1], 0x7D);
        CHECK_EQ_INT(packed[16], 0x06);
        CHECK_EQ_INT(packed[17], 0x08);
        float out[64];
        if (dequantize_row(packed, scales, 2, MXMOE_F32, out)) {
            for (int i = 0; i < 8; i++) {
                CHECK_FLOAT_BITS(out[i], float_of(want_back[i]));
            }
            CHECK_FLOAT_BITS(out[32], 1.0f);
            CHECK_FLOAT_BITS(out[34], -0.0f);
        }
    }
}

/* Hand-made blocks with the extreme scale bytes, decoded into every float dtype. */
static void test_extreme_scale_decoding(void) {
    uint8_t packed[48];
    uint8_t scales[3] = {0x00, 0xFE, 0xFF};
    for (int b = 0; b < 3; b++) {
        for (int i = 0; i < 32; i++) {
            set_code(packed, b * 32 + i, (uint8_t)(i % 16));
        }
    }
    float out[96];
    /* F32: 0x00 -> code value * 2^-127 (subnormals kept: 0.5 -> 2^-128 = 0x00200000) */
    check_set_context("dequantize scale 0x00 / 0xFE / 0xFF to f32");
    if (dequantize_row(packed, scales, 3, MXMOE_F32, out)) {
        const uint32_t want0[8] = {0,           0x00200000u, 0x00400000u, 0x00600000u,
                                   0x00800000u, 0x00C00000u, 0x01000000u, 0x01400000u};
        for (int i = 0; i < 16; i++) {
            uint32_t w = want0[i % 8] | (i >= 8 ? 0x80000000u : 0);
            CHECK_MSG(bits_of(out[i]) == w, "scale 0x00 code 0x%X: %a (0x%08X), want 0x%08X", i,
                      (double)out[i], bits_of(out[i]), w);
        }
        /* 0xFE = 2^127: 0.5 -> 2^126, 1 -> 2^127, 1.5 -> 1.5*2^127, >= 2 -> Inf */
        const uint32_t want1[8] = {0,           0x7E800000u, 0x7F000000u, 0x7F400000u,
                                   0x7F800000u, 0x7F800000u, 0x7F800000u, 0x7F800000u};
        for (int i = 0; i < 16; i++) {
            uint32_t w = want1[i % 8] | (i >= 8 ? 0x80000000u : 0);
            CHECK_MSG(bits_of(out[32 + i]) == w, "scale 0xFE code 0x%X: %a, want 0x%08X", i,
                      (double)out[32 + i], w);
        }
        for (int i = 0; i < 32; i++) {
            CHECK_MSG(isnan(out[64 + i]), "scale 0xFF element %d: %g, want NaN", i,
                      (double)out[64 + i]);
        }
    }
    check_set_context("dequantize scale 0x00 / 0xFE / 0xFF to bf16");
    if (dequantize_row(packed, scales, 3, MXMOE_BF16, out)) {
        const uint16_t* h = (const uint16_t*)out;
        const uint16_t want0[8] = {0, 0x0020, 0x0040, 0x0060, 0x0080, 0x00C0, 0x0100, 0x0140};
        const uint16_t want1[8] = {0, 0x7E80, 0x7F00, 0x7F40, 0x7F80, 0x7F80, 0x7F80, 0x7F80};
        for (int i = 0; i < 16; i++) {
            uint16_t sign = i >= 8 ? 0x8000 : 0;
            CHECK_MSG(h[i] == (want0[i % 8] | sign), "scale 0x00 code 0x%X: 0x%04X, want 0x%04X", i,
                      h[i], want0[i % 8] | sign);
            CHECK_MSG(h[32 + i] == (want1[i % 8] | sign),
                      "scale 0xFE code 0x%X: 0x%04X, want 0x%04X", i, h[32 + i],
                      want1[i % 8] | sign);
        }
        for (int i = 0; i < 32; i++) {
            CHECK(isnan(from_bf16(h[64 + i])));
        }
    }
    /* F16: every value of scale 0x00 underflows to a signed zero, every nonzero value of scale
     * 0xFE overflows to a signed infinity. */
    check_set_context("dequantize scale 0x00 / 0xFE / 0xFF to f16");
    if (dequantize_row(packed, scales, 3, MXMOE_F16, out)) {
        const uint16_t* h = (const uint16_t*)out;
        for (int i = 0; i < 16; i++) {
            uint16_t sign = i >= 8 ? 0x8000 : 0;
            CHECK_MSG(h[i] == sign, "scale 0x00 code 0x%X: 0x%04X, want 0x%04X", i, h[i], sign);
            uint16_t w = (i % 8 == 0) ? sign : (uint16_t)(sign | 0x7C00);
            CHECK_MSG(h[32 + i] == w, "scale 0xFE code 0x%X: 0x%04X, want 0x%04X", i, h[32 + i], w);
        }
        for (int i = 0; i < 32; i++) {
            CHECK(isnan(from_f16(h[64 + i])));
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Scale layouts
 */
static int64_t swz_offset(int64_t r, int64_t j, int64_t k) {
    int64_t kb = k / 32;
    int64_t ktiles = (kb + 3) / 4;
    return ((r / 128) * ktiles + j / 4) * 512 + (r % 32) * 16 + ((r / 32) % 4) * 4 + j % 4;
}

static void test_swizzle(void) {
    check_set_context("swizzle/unswizzle R=130 K=160");
    const int64_t rows = 130, k = 160, kb = 5;
    size_t bytes = mxmoe_swizzled_scale_bytes(rows, k);
    CHECK_EQ_INT(bytes, 256 * 4 * 2);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, 32), 512);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(128, 128), 512);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(129, 160), 2048);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(0, 32), 0 * 512); /* no rows: no atoms */
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(10, 3, 64), 512 * 4);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(256, 1, 128), 384 * 4);
    uint8_t linear[130 * 5], back[130 * 5], swz[2048];
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < kb; j++) {
            linear[r * kb + j] = (uint8_t)(1 + (r * 7 + j * 13) % 254);
        }
    }
    int64_t ldims[2] = {rows, kb};
    int64_t sdims[1] = {2048};
    mxmoe_tensor lt = mxmoe_tensor_make(linear, MXMOE_U8, 2, ldims);
    mxmoe_tensor st = mxmoe_tensor_make(swz, MXMOE_U8, 1, sdims);
    memset(swz, POISON, sizeof swz);
    mxmoe_status s = mxmoe_swizzle_scales(ctx, &lt, k, &st);
    CHECK_STATUS(s, MXMOE_OK);
    if (s == MXMOE_OK) {
        uint8_t want[2048];
        memset(want, 0, sizeof want);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t j = 0; j < kb; j++) {
                want[swz_offset(r, j, k)] = linear[r * kb + j];
            }
        }
        int bad = 0;
        for (int i = 0; i < 2048 && bad < 5; i++) {
            if (swz[i] != want[i]) {
                CHECK_MSG(0, "swizzled byte %d = 0x%02X, want 0x%02X", i, swz[i], want[i]);
                bad++;
            }
        }
        CHECK(bad == 0);
        mxmoe_tensor bt = mxmoe_tensor_make(back, MXMOE_U8, 2, ldims);
        memset(back, POISON, sizeof back);
        CHECK_STATUS(mxmoe_unswizzle_scales(ctx, &st, k, &bt), MXMOE_OK);
        CHECK(memcmp(back, linear, sizeof linear) == 0);
    }
}

/* experts_quantize into grouped swizzled scales: E = 3, offsets {0, 3, 3, 5}, R = 6 (row 5 is
 * beyond offsets[E] and ignored), K = 64: expert 0 rows 0..2 at atom rows 0..2, expert 1 none,
 * expert 2 rows 3..4 at atom rows 128..129. Span = (128 + 128) * 4 * 1 = 1024 bytes. */
static void test_experts_quantize_swizzled(void) {
    check_set_context("experts_quantize, grouped swizzled scales");
    enum { R = 6, K = 64, E = 3 };
    float x[R * K];
    for (int i = 0; i < R * K; i++) {
        x[i] = (float)((int)(rng() % 25) - 12) * 0.25f * (float)(1 << (i / 32 % 4));
    }
    int32_t offsets[E + 1] = {0, 3, 3, 5};
    uint8_t packed[R * K / 2], swz[1024], lin_packed[R * K / 2], lin_scales[R * K / 32];
    int64_t xdims[2] = {R, K};
    mxmoe_tensor xt = mxmoe_tensor_make(x, MXMOE_F32, 2, xdims);
    int64_t odims[1] = {E + 1};
    mxmoe_tensor ot = mxmoe_tensor_make(offsets, MXMOE_I32, 1, odims);
    /* linear reference through mxmoe_quantize */
    mxmoe_mx_tensor lin = mx_make(lin_packed, lin_scales, 2, xdims);
    if (mxmoe_quantize(ctx, &xt, MXMOE_RULE_EVEN, &lin) != MXMOE_OK) {
        CHECK_MSG(0, "mxmoe_quantize failed: %s", mxmoe_ctx_last_error(ctx));
        return;
    }
    /* linear experts_quantize: same bytes for rows < 5, row 5 untouched */
    uint8_t p2[R * K / 2], s2[R * K / 32];
    memset(p2, POISON, sizeof p2);
    memset(s2, POISON, sizeof s2);
    mxmoe_mx_tensor lin2 = mx_make(p2, s2, 2, xdims);
    CHECK_STATUS(mxmoe_experts_quantize(ctx, &xt, &ot, MXMOE_RULE_EVEN, &lin2), MXMOE_OK);
    CHECK(memcmp(p2, lin_packed, 5 * K / 2) == 0);
    CHECK(memcmp(s2, lin_scales, 5 * K / 32) == 0);
    CHECK_MSG(all_bytes(p2 + 5 * K / 2, K / 2, POISON), "row beyond offsets[E] written (packed)");
    CHECK_MSG(all_bytes(s2 + 5 * K / 32, K / 32, POISON), "row beyond offsets[E] written (scales)");

    mxmoe_mx_tensor out = mx_make(packed, swz, 2, xdims);
    int64_t sdims[1] = {1024};
    out.scales = mxmoe_tensor_make(swz, MXMOE_U8, 1, sdims);
    out.scale_layout = MXMOE_SCALES_SWIZZLED;
    memset(packed, POISON, sizeof packed);
    memset(swz, POISON, sizeof swz);
    mxmoe_status s = mxmoe_experts_quantize(ctx, &xt, &ot, MXMOE_RULE_EVEN, &out);
    CHECK_STATUS(s, MXMOE_OK);
    if (s != MXMOE_OK) {
        fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
        return;
    }
    CHECK(memcmp(packed, lin_packed, 5 * K / 2) == 0);
    CHECK_MSG(all_bytes(packed + 5 * K / 2, K / 2, POISON), "row beyond offsets[E] written");
    uint8_t want[1024];
    memset(want, 0, sizeof want);
    const int atom_row[5] = {0, 1, 2, 128, 129};
    for (int r = 0; r < 5; r++) {
        for (int j = 0; j < K / 32; j++) {
            want[swz_offset(atom_row[r], j, K)] = lin_scales[r * (K / 32) + j];
        }
    }
    CHECK_MSG(memcmp(swz, want, sizeof want) == 0,
              "grouped swizzled scales differ from the SPEC §3 placement (or padding not 0)");
}

/* ---------------------------------------------------------------------------------------------
 * act_and_quantize: RELU2 is exact: relu(h)^2 of h in {2, -3, 1.5, 0.5, -0.25} is
 * {4, 0, 2.25, 0.25, 0}, exact in BF16; EVEN amax 4 -> s = 0: codes 6, 0, 4 (2.25 -> 2),
 * 0 (0.25 tie -> 0), 0. offsets {0, 1}: row 1 is not written.
 */
static void test_act_relu2(void) {
    check_set_context("act_and_quantize RELU2");
    float h[2 * 32] = {0};
    h[0] = 2.0f;
    h[1] = -3.0f;
    h[2] = 1.5f;
    h[3] = 0.5f;
    h[4] = -0.25f;
    for (int i = 32; i < 64; i++) {
        h[i] = 1.0f;
    }
    int32_t offsets[2] = {0, 1};
    int64_t hd[2] = {2, 32}, od[1] = {2};
    mxmoe_tensor ht = mxmoe_tensor_make(h, MXMOE_F32, 2, hd);
    mxmoe_tensor ot = mxmoe_tensor_make(offsets, MXMOE_I32, 1, od);
    uint8_t packed[32], scales[2];
    mxmoe_mx_tensor out = mx_make(packed, scales, 2, hd);
    mxmoe_act_params p = mxmoe_act_params_default();
    p.activation = MXMOE_ACT_RELU2;
    for (int with_offsets = 0; with_offsets < 2; with_offsets++) {
        memset(packed, POISON, sizeof packed);
        memset(scales, POISON, sizeof scales);
        mxmoe_status s = mxmoe_act_and_quantize(ctx, &ht, with_offsets ? &ot : NULL, &p, &out);
        CHECK_STATUS(s, MXMOE_OK);
        if (s != MXMOE_OK) {
            fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
            continue;
        }
        CHECK_EQ_INT(scales[0], 0x7F);
        CHECK_EQ_INT(packed[0], 0x06);
        CHECK_EQ_INT(packed[1], 0x04);
        CHECK(all_bytes(packed + 2, 14, 0x00)); /* -0.25 -> relu 0 -> +0 */
        if (with_offsets) {
            CHECK_MSG(scales[1] == POISON && all_bytes(packed + 16, 16, POISON),
                      "row at offsets[E] was written");
        } else {
            CHECK_EQ_INT(scales[1], 0x7D); /* relu(1)^2 = 1 -> s = -2, code 6 */
            CHECK(all_bytes(packed + 16, 16, 0x66));
        }
    }

    /* One rounding from FP64 to act_dtype (header: "evaluates it in FP64 and rounds once").
     * h = 0x3FCAB3A6 = 1.58360743...: h^2 = 2.50781250890... exactly in FP64.
     *   once, FP64 -> BF16:          2.515625 -> at scale 2^0 (amax 4) code 5 (3.0);
     *   twice, FP64 -> FP32 -> BF16: FP32 2.5078125 is a BF16 tie -> 2.5 -> E2M1 tie -> code 4.
     * With act_dtype F32 (no extra rounding): 2.5078125 -> code 5. */
    for (int d = 0; d < 2; d++) {
        check_set_context("act_and_quantize RELU2 rounded via FP32 to %s", d ? "f32" : "bf16");
        float h1[32] = {0};
        h1[0] = 2.0f; /* relu^2 = 4: amax, s = 0 */
        h1[1] = float_of(0x3FCAB3A6u);
        int64_t d1[2] = {1, 32};
        mxmoe_tensor h1t = mxmoe_tensor_make(h1, MXMOE_F32, 2, d1);
        mxmoe_mx_tensor o1 = mx_make(packed, scales, 2, d1);
        p.act_dtype = d ? MXMOE_F32 : MXMOE_BF16;
        memset(packed, POISON, sizeof packed);
        memset(scales, POISON, sizeof scales);
        mxmoe_status s = mxmoe_act_and_quantize(ctx, &h1t, NULL, &p, &o1);
        CHECK_STATUS(s, MXMOE_OK);
        if (s == MXMOE_OK) {
            CHECK_EQ_INT(scales[0], 0x7F);
            int want = d == 0 ? 4 : 5; /* FP64 -> FP32 -> BF16 double-rounds to code 4 */
            CHECK_MSG(get_code(packed, 1) == want,
                      "relu(h)^2 = 2.5078125089 quantized to code 0x%X, want %d (code 5: one "
                      "rounding FP64 -> BF16; code 4: FP64 -> FP32 -> BF16)",
                      get_code(packed, 1), want);
            CHECK_EQ_INT(get_code(packed, 0), 6);
        }
    }
}

/* Every activation and gate/up layout on random h in [-8, 8] (so SwiGLU's clamp at 7 is hit),
 * against an FP64 reference written from the header: activation in FP64, one rounding to
 * act_dtype, SPEC §2 quantization. Blocks whose reference changes under a 1e-9 relative
 * perturbation of the activation are skipped (libm round-off could flip them), and so are BF16
 * blocks where one and two roundings (FP64 -> FP32 -> BF16) disagree: the dedicated RELU2 case
 * above covers that. */
static double ref_activation(mxmoe_activation act, double g, double u, const mxmoe_act_params* p) {
    const double k0 = 0.79788456080286535588; /* sqrt(2/pi) */
    switch (act) {
    case MXMOE_ACT_SILU_MUL:
        return g / (1.0 + exp(-g)) * u;
    case MXMOE_ACT_GELU_TANH_MUL:
        return 0.5 * g * (1.0 + tanh(k0 * (g + 0.044715 * g * g * g))) * u;
    case MXMOE_ACT_SWIGLU_OAI: {
        double limit = p->swiglu_limit, alpha = p->swiglu_alpha;
        g = g < limit ? g : limit;
        u = u < -limit ? -limit : (u > limit ? limit : u);
        return g / (1.0 + exp(-alpha * g)) * (u + 1.0);
    }
    case MXMOE_ACT_SILU:
        return g / (1.0 + exp(-g));
    case MXMOE_ACT_GELU_TANH:
        return 0.5 * g * (1.0 + tanh(k0 * (g + 0.044715 * g * g * g)));
    case MXMOE_ACT_RELU2:
        return g > 0 ? g * g : 0.0;
    default:
        return NAN;
    }
}

static void test_act_random(void) {
    enum { R = 16, I = 64 };
    static float h[R * 2 * I];
    uint8_t packed[R * I / 2], scales[R * I / 32];
    const mxmoe_activation acts[6] = {MXMOE_ACT_SILU_MUL,   MXMOE_ACT_GELU_TANH_MUL,
                                      MXMOE_ACT_SWIGLU_OAI, MXMOE_ACT_SILU,
                                      MXMOE_ACT_GELU_TANH,  MXMOE_ACT_RELU2};
    const char* act_names[6] = {"SILU_MUL", "GELU_TANH_MUL", "SWIGLU_OAI",
                                "SILU",     "GELU_TANH",     "RELU2"};
    for (int a = 0; a < 6; a++) {
        int gated = a < 3;
        for (int layout = 0; layout < (gated ? 2 : 1); layout++) {
            for (int d = 0; d < 2; d++) {
                mxmoe_dtype act_dtype = d ? MXMOE_BF16 : MXMOE_F32;
                check_set_context("act_and_quantize %s %s act_dtype %s", act_names[a],
                                  layout ? "interleaved" : "concat", mxmoe_dtype_name(act_dtype));
                int cols = gated ? 2 * I : I;
                for (int i = 0; i < R * cols; i++) {
                    h[i] = (float)((int)(rng() % 4001) - 2000) / 250.0f;
                }
                mxmoe_act_params p = mxmoe_act_params_default();
                p.activation = acts[a];
                p.layout = layout ? MXMOE_GATE_UP_INTERLEAVED : MXMOE_GATE_UP_CONCAT;
                p.act_dtype = act_dtype;
                int64_t hd[2] = {R, cols}, od[2] = {R, I};
                mxmoe_tensor ht = mxmoe_tensor_make(h, MXMOE_F32, 2, hd);
                mxmoe_mx_tensor out = mx_make(packed, scales, 2, od);
                memset(packed, POISON, sizeof packed);
                memset(scales, POISON, sizeof scales);
                mxmoe_status s = mxmoe_act_and_quantize(ctx, &ht, NULL, &p, &out);
                CHECK_STATUS(s, MXMOE_OK);
                if (s != MXMOE_OK) {
                    continue;
                }
                int checked = 0, skipped = 0, bad = 0;
                for (int r = 0; r < R; r++) {
                    for (int b = 0; b < I / 32; b++) {
                        float vals[3][32];
                        for (int i = 0; i < 32; i++) {
                            int col = b * 32 + i;
                            double g, u = 0.0;
                            if (!gated) {
                                g = h[r * cols + col];
                            } else if (layout) {
                                g = h[r * cols + 2 * col];
                                u = h[r * cols + 2 * col + 1];
                            } else {
                                g = h[r * cols + col];
                                u = h[r * cols + I + col];
                            }
                            double v = ref_activation(acts[a], g, u, &p);
                            for (int q = 0; q < 3; q++) {
                                double vq = v * (1.0 + (q - 1) * 1e-9);
                                vals[q][i] = d ? round_act_bf16(vq) : (float)vq;
                            }
                        }
                        uint8_t sc[3], codes[3][32];
                        for (int q = 0; q < 3; q++) {
                            spec_quantize_block(vals[q], p.rule, &sc[q], codes[q]);
                        }
                        if (sc[0] != sc[1] || sc[2] != sc[1] || memcmp(codes[0], codes[1], 32) ||
                            memcmp(codes[2], codes[1], 32)) {
                            skipped++;
                            continue;
                        }
                        checked++;
                        int ok = scales[r * (I / 32) + b] == sc[1];
                        for (int i = 0; i < 32; i++) {
                            ok &= get_code(packed + r * I / 2, b * 32 + i) == codes[1][i];
                        }
                        if (!ok && bad++ < 3) {
                            CHECK_MSG(0,
                                      "row %d block %d differs from the FP64 reference "
                                      "(scale 0x%02X, want 0x%02X)",
                                      r, b, scales[r * (I / 32) + b], sc[1]);
                        }
                    }
                }
                CHECK_MSG(bad == 0, "%d of %d blocks differ from the FP64 reference", bad, checked);
                if (getenv("MXMOE_TEST_VERBOSE")) {
                    printf("%s: %d blocks checked, %d skipped\n", check_context_, checked, skipped);
                }
                CHECK_MSG(checked >= R * (I / 32) / 2, "only %d blocks checked (%d skipped)",
                          checked, skipped);
            }
        }
    }
}

/* Precision of the activation: inputs solved (in FP64, then rounded to F32) so that each value
 * lands at an E2M1 tie times (1 +- 2^-14), in blocks whose amax (element 0, ~5.5) fixes the scale
 * at 2^0. act_dtype F32 keeps the values intact, so any activation error beyond ~6e-5 relative
 * flips codes, while round-off of a correct FP64 evaluation (~1e-16) cannot. */
static double solve_increasing(mxmoe_activation act, double target, const mxmoe_act_params* p) {
    double lo = 0.0, hi = 20.0;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (ref_activation(act, mid, 0.0, p) < target) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 0.5 * (lo + hi);
}

static void test_act_near_ties(void) {
    enum { R = 8, I = 32 };
    static const double ties[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
    const mxmoe_activation acts[6] = {MXMOE_ACT_SILU_MUL,   MXMOE_ACT_GELU_TANH_MUL,
                                      MXMOE_ACT_SWIGLU_OAI, MXMOE_ACT_SILU,
                                      MXMOE_ACT_GELU_TANH,  MXMOE_ACT_RELU2};
    const char* act_names[6] = {"SILU_MUL", "GELU_TANH_MUL", "SWIGLU_OAI",
                                "SILU",     "GELU_TANH",     "RELU2"};
    const double margin = 1.0 / 16384.0;
    for (int a = 0; a < 6; a++) {
        int gated = a < 3;
        check_set_context("act_and_quantize near E2M1 ties, %s", act_names[a]);
        mxmoe_act_params p = mxmoe_act_params_default();
        p.activation = acts[a];
        p.act_dtype = MXMOE_F32;
        int cols = gated ? 2 * I : I;
        float h[R * 2 * I];
        for (int r = 0; r < R; r++) {
            for (int i = 0; i < I; i++) {
                double target;
                if (i == 0) {
                    target = 5.5; /* amax: EVEN scale 2^0 */
                } else {
                    int side = ((i - 1) / 7 + r) % 2;
                    target = ties[(i - 1 + r) % 7] * (side ? 1.0 + margin : 1.0 - margin);
                    if (gated && (i + r) % 3 == 0) {
                        target = -target;
                    }
                }
                float g, u = 0.0f;
                if (gated) {
                    /* spread gates over each activation's interesting range */
                    double t = (double)((i * 7 + r * 3) % 23) / 22.0; /* 0..1 */
                    double gd;
                    if (acts[a] == MXMOE_ACT_SWIGLU_OAI) {
                        gd = (i % 5 == 4) ? 7.0 + 2.0 * t : 0.75 + 6.0 * t; /* some above limit */
                    } else if (acts[a] == MXMOE_ACT_SILU_MUL) {
                        gd = (i % 2) ? 0.5 + 5.5 * t : -(0.5 + 3.5 * t);
                    } else {
                        gd = (i % 2) ? 0.5 + 4.0 * t : -(0.4 + 1.6 * t);
                    }
                    g = (float)gd;
                    if (acts[a] == MXMOE_ACT_SWIGLU_OAI) {
                        /* g' * sigmoid(alpha g') * (u + 1), u + 1 solved (u may hit the clamp) */
                        u = (float)(target / ref_activation(acts[a], g, 0.0, &p) - 1.0);
                    } else {
                        u = (float)(target / ref_activation(acts[a], g, 1.0, &p));
                    }
                } else {
                    g = (float)(acts[a] == MXMOE_ACT_RELU2 ? sqrt(target)
                                                           : solve_increasing(acts[a], target, &p));
                }
                if (gated) {
                    h[r * cols + i] = g;
                    h[r * cols + I + i] = u;
                } else {
                    h[r * cols + i] = g;
                }
            }
        }
        uint8_t packed[R * I / 2], scales[R];
        int64_t hd[2] = {R, cols}, od[2] = {R, I};
        mxmoe_tensor ht = mxmoe_tensor_make(h, MXMOE_F32, 2, hd);
        mxmoe_mx_tensor out = mx_make(packed, scales, 2, od);
        memset(packed, POISON, sizeof packed);
        memset(scales, POISON, sizeof scales);
        mxmoe_status s = mxmoe_act_and_quantize(ctx, &ht, NULL, &p, &out);
        CHECK_STATUS(s, MXMOE_OK);
        if (s != MXMOE_OK) {
            continue;
        }
        int bad = 0, near = 0;
        for (int r = 0; r < R; r++) {
            float vals[32];
            for (int i = 0; i < I; i++) {
                double g = h[r * cols + i], u = gated ? h[r * cols + I + i] : 0.0;
                double v = ref_activation(acts[a], g, u, &p);
                vals[i] = (float)v;
                /* test sanity: the value sits at a tie +- ~margin, never on it */
                if (i > 0) {
                    double y = fabs(v);
                    for (int t = 0; t < 7; t++) {
                        double rel = fabs(y - ties[t]) / ties[t];
                        if (rel < margin * 1.5) {
                            near++;
                            CHECK_MSG(rel > margin * 0.5,
                                      "test bug: row %d element %d is %.12g, "
                                      "too close to the tie %g",
                                      r, i, v, ties[t]);
                        }
                    }
                }
            }
            uint8_t sc, codes[32];
            spec_quantize_block(vals, p.rule, &sc, codes);
            int ok = scales[r] == sc && sc == 0x7F;
            for (int i = 0; i < I; i++) {
                if (get_code(packed + r * I / 2, i) != codes[i]) {
                    ok = 0;
                    if (bad < 4) {
                        double g = h[r * cols + i], u = gated ? h[r * cols + I + i] : 0.0;
                        CHECK_MSG(0,
                                  "row %d element %d (gate %.9g, up %.9g): activation %.12g -> "
                                  "code 0x%X, want 0x%X",
                                  r, i, g, u, (double)vals[i], get_code(packed + r * I / 2, i),
                                  codes[i]);
                    }
                }
            }
            bad += !ok;
        }
        CHECK_MSG(bad == 0, "%d of %d rows differ", bad, R);
        CHECK_MSG(near >= R * (I - 1) * 3 / 4, "test bug: only %d values near a tie", near);
    }
}

/* ---------------------------------------------------------------------------------------------
 * plan
 */
static void run_plan(int T, int k, const int32_t* ids, const int32_t* map, int e_global, int E,
                     const int32_t* want_counts, const int32_t* want_offsets,
                     const int32_t* want_sorted, const int32_t* want_row_of) {
    int32_t counts[16], offsets[17], sorted[64], row_of[64];
    memset(counts, POISON, sizeof counts);
    memset(offsets, POISON, sizeof offsets);
    memset(sorted, POISON, sizeof sorted);
    memset(row_of, POISON, sizeof row_of);
    int64_t idd[2] = {T, k}, md[1] = {e_global}, cd[1] = {E}, od[1] = {E + 1}, sd[1] = {T * k};
    mxmoe_tensor it = mxmoe_tensor_make((void*)ids, MXMOE_I32, 2, idd);
    mxmoe_tensor mt = mxmoe_tensor_make((void*)map, MXMOE_I32, 1, md);
    mxmoe_tensor ct = mxmoe_tensor_make(counts, MXMOE_I32, 1, cd);
    mxmoe_tensor ot = mxmoe_tensor_make(offsets, MXMOE_I32, 1, od);
    mxmoe_tensor st = mxmoe_tensor_make(sorted, MXMOE_I32, 1, sd);
    mxmoe_tensor rt = mxmoe_tensor_make(row_of, MXMOE_I32, 1, sd);
    mxmoe_status s = mxmoe_plan(ctx, &it, map ? &mt : NULL, E, &ct, &ot, &st, &rt);
    CHECK_STATUS(s, MXMOE_OK);
    if (s != MXMOE_OK) {
        fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
        return;
    }
    for (int e = 0; e < E; e++) {
        CHECK_MSG(counts[e] == want_counts[e], "counts[%d] = %d, want %d", e, counts[e],
                  want_counts[e]);
    }
    for (int e = 0; e <= E; e++) {
        CHECK_MSG(offsets[e] == want_offsets[e], "offsets[%d] = %d, want %d", e, offsets[e],
                  want_offsets[e]);
    }
    for (int i = 0; i < T * k; i++) {
        CHECK_MSG(sorted[i] == want_sorted[i], "sorted[%d] = %d, want %d", i, sorted[i],
                  want_sorted[i]);
        CHECK_MSG(row_of[i] == want_row_of[i], "row_of[%d] = %d, want %d", i, row_of[i],
                  want_row_of[i]);
    }
    CHECK_MSG(all_bytes(counts + E, sizeof counts - (size_t)E * 4, POISON), "counts overrun");
    CHECK_MSG(all_bytes(offsets + E + 1, sizeof offsets - (size_t)(E + 1) * 4, POISON),
              "offsets overrun");
    CHECK_MSG(all_bytes(sorted + T * k, sizeof sorted - (size_t)T * k * 4, POISON),
              "sorted overrun");
    CHECK_MSG(all_bytes(row_of + T * k, sizeof row_of - (size_t)T * k * 4, POISON),
              "row_of overrun");
}

static void test_plan(void) {
    /* ids (T=3, k=2) = {2,-1}, {0,2}, {-1,1}; flat i = t*k + j.
     * expert 0: i=2; expert 1: i=5; expert 2: i=0, 3 (ascending i). */
    check_set_context("plan with ids -1");
    const int32_t ids1[6] = {2, -1, 0, 2, -1, 1};
    const int32_t c1[3] = {1, 1, 2}, o1[4] = {0, 1, 2, 4};
    const int32_t s1[6] = {2, 5, 0, 3, -1, -1}, r1[6] = {2, -1, 0, 3, -1, 1};
    run_plan(3, 2, ids1, NULL, 3, 3, c1, o1, s1, r1);

    /* expert map, E_global = 5 -> local: {-1, 0, 2, -1, 1}; ids (T=4, k=2) =
     * {4,0}, {1,3}, {2,4}, {-1,1} -> local {1,-}, {0,-}, {2,1}, {-,0}:
     * expert 0: i=2, 7; expert 1: i=0, 5; expert 2: i=4. */
    check_set_context("plan with an expert map");
    const int32_t map2[5] = {-1, 0, 2, -1, 1};
    const int32_t ids2[8] = {4, 0, 1, 3, 2, 4, -1, 1};
    const int32_t c2[3] = {2, 2, 1}, o2[4] = {0, 2, 4, 5};
    const int32_t s2[8] = {2, 7, 0, 5, 4, -1, -1, -1};
    const int32_t r2[8] = {2, -1, 0, -1, 4, 3, -1, 1};
    run_plan(4, 2, ids2, map2, 5, 3, c2, o2, s2, r2);

    /* every pair dropped */
    check_set_context("plan with every id -1");
    const int32_t ids3[4] = {-1, -1, -1, -1};
    const int32_t c3[2] = {0, 0}, o3[3] = {0, 0, 0}, s3[4] = {-1, -1, -1, -1};
    run_plan(2, 2, ids3, NULL, 2, 2, c3, o3, s3, s3);

    /* one expert takes every pair, top_k = E = 4 with a permutation per token */
    check_set_context("plan top_k = E");
    const int32_t ids4[8] = {3, 1, 0, 2, 0, 2, 3, 1};
    const int32_t c4[4] = {2, 2, 2, 2}, o4[5] = {0, 2, 4, 6, 8};
    /* expert 0: i=2,4; 1: i=1,7; 2: i=3,5; 3: i=0,6 */
    const int32_t s4[8] = {2, 4, 1, 7, 3, 5, 0, 6};
    const int32_t r4[8] = {6, 2, 0, 4, 1, 5, 7, 3};
    run_plan(2, 4, ids4, NULL, 4, 4, c4, o4, s4, r4);
}

/* ---------------------------------------------------------------------------------------------
 * grouped_gemm
 */

/* FP32 result of one output element by the header's formula: per block an exact sum, scaled by
 * 2^(sa+sb-254); blocks accumulated in FP32 in ascending K (the test's values keep every partial
 * sum exact, so the order cannot matter). */
static float ref_gemm(const uint8_t* ap, const uint8_t* as, int64_t r, const uint8_t* wp,
                      const uint8_t* ws, int64_t e, int64_t n, int64_t N, int64_t K) {
    float acc = 0.0f;
    int64_t kb = K / 32;
    for (int64_t b = 0; b < kb; b++) {
        uint8_t sa = as[r * kb + b];
        uint8_t sb = ws[(e * N + n) * kb + b];
        if (sa == 0xFF || sb == 0xFF) {
            return NAN;
        }
        double s = 0;
        for (int64_t i = 0; i < 32; i++) {
            s += (double)e2m1_values[get_code(ap + r * K / 2, b * 32 + i)] *
                 (double)e2m1_values[get_code(wp + (e * N + n) * K / 2, b * 32 + i)];
        }
        acc += (float)ldexp(s, (int)sa + (int)sb - 254);
    }
    return acc;
}

typedef struct {
    int64_t R, E, N, K;
    uint8_t *ap, *as, *wp, *ws;
    int32_t* offsets;
} gemm_case;

static mxmoe_status call_gemm(const gemm_case* g, const mxmoe_tensor* bias, mxmoe_dtype odt,
                              void* out) {
    int64_t ad[2] = {g->R, g->K}, wd[3] = {g->E, g->N, g->K}, od[1] = {g->E + 1};
    int64_t outd[2] = {g->R, g->N};
    mxmoe_mx_tensor a = mx_make(g->ap, g->as, 2, ad);
    mxmoe_mx_tensor w = mx_make(g->wp, g->ws, 3, wd);
    mxmoe_tensor ot = mxmoe_tensor_make(g->offsets, MXMOE_I32, 1, od);
    mxmoe_tensor outt = mxmoe_tensor_make(out, odt, 2, outd);
    memset(out, POISON, (size_t)(g->R * g->N) * mxmoe_dtype_size(odt));
    mxmoe_status s = mxmoe_grouped_gemm(ctx, &a, &w, &ot, bias, &outt);
    if (s != MXMOE_OK) {
        fprintf(stderr, "  grouped_gemm: %s\n", mxmoe_ctx_last_error(ctx));
    }
    return s;
}

/* E = 4, offsets {0, 0, 2, 2, 4} (experts 0 and 2 have no rows), R = 5 (row 4 beyond
 * offsets[E] must stay untouched), N = 3, K = 96 (three blocks, not a multiple of 128).
 * Random codes; scales chosen so that every partial sum is exact in FP32. Then the same with
 * swizzled scales for a (grouped) and w (per expert). */
static void test_gemm_k96_empty_experts(void) {
    enum { R = 5, E = 4, N = 3, K = 96, KB = 3 };
    uint8_t ap[R * K / 2], as[R * KB], wp[E * N * K / 2], ws[E * N * KB];
    int32_t offsets[E + 1] = {0, 0, 2, 2, 4};
    for (size_t i = 0; i < sizeof ap; i++) {
        ap[i] = (uint8_t)rng();
    }
    for (size_t i = 0; i < sizeof wp; i++) {
        wp[i] = (uint8_t)rng();
    }
    for (size_t i = 0; i < sizeof as; i++) {
        as[i] = (uint8_t)(125 + rng() % 4);
    }
    for (size_t i = 0; i < sizeof ws; i++) {
        ws[i] = (uint8_t)(124 + rng() % 4);
    }
    gemm_case g = {R, E, N, K, ap, as, wp, ws, offsets};
    float want[R * N];
    for (int r = 0; r < 4; r++) {
        int e = r < 2 ? 1 : 3;
        for (int n = 0; n < N; n++) {
            want[r * N + n] = ref_gemm(ap, as, r, wp, ws, e, n, N, K);
        }
    }
    const mxmoe_dtype odts[3] = {MXMOE_F32, MXMOE_BF16, MXMOE_F16};
    for (int d = 0; d < 3; d++) {
        check_set_context("grouped_gemm K=96, empty experts, out %s", mxmoe_dtype_name(odts[d]));
        float out[R * N];
        if (call_gemm(&g, NULL, odts[d], out) != MXMOE_OK) {
            CHECK_MSG(0, "grouped_gemm failed");
            continue;
        }
        for (int i = 0; i < 4 * N; i++) {
            float w = want[i];
            w = odts[d] == MXMOE_BF16 ? from_bf16(to_bf16(w))
                                      : (odts[d] == MXMOE_F16 ? from_f16(to_f16(w)) : w);
            CHECK_MSG(check_same_float(load_as(out, odts[d], i), w), "out[%d][%d] = %g, want %g",
                      i / N, i % N, (double)load_as(out, odts[d], i), (double)w);
        }
        size_t es = mxmoe_dtype_size(odts[d]);
        CHECK_MSG(all_bytes((uint8_t*)out + 4 * N * es, N * es, POISON),
                  "row beyond offsets[E] was written");
    }

    /* swizzled: a grouped (expert 1 rows 0..1 at atom rows 0..1, expert 3 rows 2..3 at atom rows
     * 128..129; 256 rows * 4 bytes), w per expert (4 * 512 bytes) */
    check_set_context("grouped_gemm K=96 with swizzled scales");
    uint8_t as_swz[1024], ws_swz[E * 512];
    memset(as_swz, 0, sizeof as_swz);
    memset(ws_swz, 0, sizeof ws_swz);
    const int atom_row[4] = {0, 1, 128, 129};
    for (int r = 0; r < 4; r++) {
        for (int j = 0; j < KB; j++) {
            as_swz[swz_offset(atom_row[r], j, K)] = as[r * KB + j];
        }
    }
    for (int e = 0; e < E; e++) {
        for (int n = 0; n < N; n++) {
            for (int j = 0; j < KB; j++) {
                ws_swz[e * 512 + swz_offset(n, j, K)] = ws[(e * N + n) * KB + j];
            }
        }
    }
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(N, K), 512);
    int64_t ad[2] = {R, K}, wd[3] = {E, N, K}, od[1] = {E + 1}, outd[2] = {R, N};
    int64_t asd[1] = {1024}, wsd[1] = {E * 512};
    mxmoe_mx_tensor a = mx_make(ap, as, 2, ad);
    mxmoe_mx_tensor w = mx_make(wp, ws, 3, wd);
    a.scales = mxmoe_tensor_make(as_swz, MXMOE_U8, 1, asd);
    a.scale_layout = MXMOE_SCALES_SWIZZLED;
    w.scales = mxmoe_tensor_make(ws_swz, MXMOE_U8, 1, wsd);
    w.scale_layout = MXMOE_SCALES_SWIZZLED;
    mxmoe_tensor ot = mxmoe_tensor_make(offsets, MXMOE_I32, 1, od);
    float out[R * N];
    memset(out, POISON, sizeof out);
    mxmoe_tensor outt = mxmoe_tensor_make(out, MXMOE_F32, 2, outd);
    for (int variant = 0; variant < 3; variant++) {
        /* 0: both swizzled, 1: only a, 2: only w */
        mxmoe_mx_tensor a2 = a, w2 = w;
        if (variant == 2) {
            a2 = mx_make(ap, as, 2, ad);
        }
        if (variant == 1) {
            w2 = mx_make(wp, ws, 3, wd);
        }
        memset(out, POISON, sizeof out);
        mxmoe_status s = mxmoe_grouped_gemm(ctx, &a2, &w2, &ot, NULL, &outt);
        CHECK_STATUS(s, MXMOE_OK);
        if (s != MXMOE_OK) {
            fprintf(stderr, "  variant %d: %s\n", variant, mxmoe_ctx_last_error(ctx));
            continue;
        }
        for (int i = 0; i < 4 * N; i++) {
            CHECK_MSG(check_same_float(out[i], want[i]), "variant %d out[%d][%d] = %g, want %g",
                      variant, i / N, i % N, (double)out[i], (double)want[i]);
        }
        CHECK(all_bytes(out + 4 * N, N * sizeof(float), POISON));
    }
}

/* One token, K = 32, E = 2, offsets {0, 0, 1}: the token goes to expert 1.
 * a = [1, -2, 0...] (codes 2, 0xC; scale 2^0). w[1] (scale 2^1):
 *   n0 = [1, 1]    -> (1 - 2) * 2   = -2
 *   n1 = [6, -0.5] -> (6 + 1) * 2   = 14
 *   n2 = 0         -> 0
 * Expert 0's weights are all 6 (they must not be used). With bias[1] = {0.5, -14, 3}:
 * {-1.5, 0, 3}. */
static void test_gemm_one_token(void) {
    uint8_t ap[16] = {0}, as[1] = {127};
    uint8_t wp[2 * 3 * 16], ws[2 * 3];
    memset(wp, 0x77, 3 * 16); /* expert 0: all codes 7 */
    memset(wp + 3 * 16, 0, 3 * 16);
    memset(ws, 127, 3);
    memset(ws + 3, 128, 3);
    set_code(ap, 0, 2);
    set_code(ap, 1, 0xC);
    set_code(wp + 3 * 16, 0, 2);
    set_code(wp + 3 * 16, 1, 2);
    set_code(wp + 4 * 16, 0, 7);
    set_code(wp + 4 * 16, 1, 9);
    int32_t offsets[3] = {0, 0, 1};
    gemm_case g = {1, 2, 3, 32, ap, as, wp, ws, offsets};
    float out[3];
    check_set_context("grouped_gemm one token K=32");
    if (call_gemm(&g, NULL, MXMOE_F32, out) == MXMOE_OK) {
        CHECK_FLOAT_BITS(out[0], -2.0f);
        CHECK_FLOAT_BITS(out[1], 14.0f);
        CHECK_FLOAT_BITS(out[2], 0.0f);
    } else {
        CHECK_MSG(0, "grouped_gemm failed");
    }
    const mxmoe_dtype bdts[3] = {MXMOE_F32, MXMOE_BF16, MXMOE_F16};
    for (int d = 0; d < 3; d++) {
        check_set_context("grouped_gemm one token K=32 with %s bias", mxmoe_dtype_name(bdts[d]));
        float bias_f[6] = {100, 100, 100, 0.5f, -14, 3};
        float bias[6];
        for (int i = 0; i < 6; i++) {
            store_as(bias, bdts[d], i, bias_f[i]);
        }
        int64_t bd[2] = {2, 3};
        mxmoe_tensor bt = mxmoe_tensor_make(bias, bdts[d], 2, bd);
        if (call_gemm(&g, &bt, MXMOE_F32, out) == MXMOE_OK) {
            CHECK_FLOAT_BITS(out[0], -1.5f);
            CHECK_FLOAT_BITS(out[1], 0.0f);
            CHECK_FLOAT_BITS(out[2], 3.0f);
        } else {
            CHECK_MSG(0, "grouped_gemm failed");
        }
    }
}

/* Extreme scales: R = 2, E = 1, N = 3, K = 64.
 *   row 0: block 0 a = 6 (code 7) at scale 0x00, block 1 a = -1 (code 0xA) at 0x80.
 *   n0: block 0 w = 1.5 at 0xFE -> 9 * 2^(0+254-254) = 9; block 1 w = 1 at 0x7E -> -1: total 8.
 *   n1: block 0 w = 1 at 0x7F -> 6 * 2^-127 = 1.5*2^-125 (must not flush); block 1 w = 0.
 *   n2: block 1 scale 0xFF -> NaN.
 *   row 1: block 0 scale 0xFF (a NaN block): every output NaN. */
static void test_gemm_extreme_scales(void) {
    check_set_context("grouped_gemm extreme scales");
    uint8_t ap[2 * 32] = {0}, as[4] = {0x00, 0x80, 0xFF, 0x7F};
    uint8_t wp[3 * 32] = {0}, ws[6] = {0xFE, 0x7E, 0x7F, 0x7F, 0x7F, 0xFF};
    set_code(ap, 0, 7);
    set_code(ap, 32, 0xA);
    set_code(ap + 32, 0, 2);
    set_code(wp, 0, 3);
    set_code(wp, 32, 2);
    set_code(wp + 32, 0, 2);
    set_code(wp + 64, 0, 2);
    set_code(wp + 64, 32, 2);
    int32_t offsets[2] = {0, 2};
    gemm_case g = {2, 1, 3, 64, ap, as, wp, ws, offsets};
    float out[6];
    if (call_gemm(&g, NULL, MXMOE_F32, out) != MXMOE_OK) {
        CHECK_MSG(0, "grouped_gemm failed");
        return;
    }
    CHECK_FLOAT_BITS(out[0], 8.0f);
    CHECK_FLOAT_BITS(out[1], float_of(0x01400000u));
    CHECK_MSG(isnan(out[2]), "w block scale 0xFF: out = %g, want NaN", (double)out[2]);
    for (int n = 0; n < 3; n++) {
        CHECK_MSG(isnan(out[3 + n]), "a block scale 0xFF: out[1][%d] = %g, want NaN", n,
                  (double)out[3 + n]);
    }
}

/* Output rounding ties: R = 2, E = 1, N = 1, K = 64; w = [1, ..., 0.5 at element 32].
 *   row 0: a = 1 (block 0, scale 2^0) + 0.5 at element 32 (scale 2^(s1-127)),
 *   row 1: a = 1 + 1.5 at element 32.
 * BF16 (s1 = 121): 1 + 2^-8 -> tie -> 1.0 (0x3F80); 1 + 3*2^-8 -> tie -> 1.015625 (0x3F82).
 * F16 (s1 = 118): 1 + 2^-11 -> 1.0 (0x3C00); 1 + 3*2^-11 -> 1 + 2^-9 (0x3C02). */
static void test_gemm_output_rounding(void) {
    for (int d = 0; d < 2; d++) {
        mxmoe_dtype odt = d == 0 ? MXMOE_BF16 : MXMOE_F16;
        check_set_context("grouped_gemm rounding ties to %s", mxmoe_dtype_name(odt));
        uint8_t s1 = d == 0 ? 121 : 118;
        uint8_t ap[64] = {0}, as[4] = {127, s1, 127, s1};
        uint8_t wp[32] = {0}, ws[2] = {127, 127};
        set_code(ap, 0, 2);
        set_code(ap, 32, 1);
        set_code(ap + 32, 0, 2);
        set_code(ap + 32, 32, 3);
        set_code(wp, 0, 2);
        set_code(wp, 32, 1);
        int32_t offsets[2] = {0, 2};
        gemm_case g = {2, 1, 1, 64, ap, as, wp, ws, offsets};
        uint16_t out[2];
        float out32[2];
        if (call_gemm(&g, NULL, odt, out) == MXMOE_OK) {
            CHECK_EQ_INT(out[0], d == 0 ? 0x3F80 : 0x3C00);
            CHECK_EQ_INT(out[1], d == 0 ? 0x3F82 : 0x3C02);
        } else {
            CHECK_MSG(0, "grouped_gemm failed");
        }
        if (call_gemm(&g, NULL, MXMOE_F32, out32) == MXMOE_OK) {
            CHECK_FLOAT_BITS(out32[0], 1.0f + ldexpf(1.0f, d == 0 ? -8 : -11));
            CHECK_FLOAT_BITS(out32[1], 1.0f + 3.0f * ldexpf(1.0f, d == 0 ? -8 : -11));
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * moe_forward against a double-precision reference
 */
typedef struct {
    int T, H, I, E, k, e_global;
    mxmoe_activation act;
    mxmoe_gate_up_layout layout;
    mxmoe_scale_rule rule;
    int weight_on_input;
    int with_bias;
    mxmoe_dtype x_dtype, out_dtype;
    mxmoe_dtype gemm_dtype; /* moe_params.gemm_dtype: the GEMMs' results rounded to it */
    /* data */
    float* x;       /* [T, H] values (exact in x_dtype) */
    int32_t* ids;   /* [T, k] */
    float* weights; /* [T, k] */
    int32_t* map;   /* [e_global] or NULL */
    uint8_t *w13p, *w13s, *w2p, *w2s;
    float *b13, *b2;
} moe_case;

/* The activation of the header (FP64), before the rounding to act_dtype. */
static double act_value(const moe_case* c, const float* h, int i, const mxmoe_act_params* p) {
    int I = c->I;
    double g, u;
    if (c->layout == MXMOE_GATE_UP_CONCAT) {
        g = h[i];
        u = h[I + i];
    } else {
        g = h[2 * i];
        u = h[2 * i + 1];
    }
    switch (c->act) {
    case MXMOE_ACT_SILU_MUL:
        return g / (1.0 + exp(-g)) * u;
    case MXMOE_ACT_SWIGLU_OAI: {
        double limit = p->swiglu_limit, alpha = p->swiglu_alpha;
        g = g < limit ? g : limit;
        u = u < -limit ? -limit : (u > limit ? limit : u);
        return g / (1.0 + exp(-alpha * g)) * (u + 1.0);
    }
    default:
        return NAN;
    }
}

/* FP32 GEMM row: out[n] = sum_b 2^(sa+sb-254) * sum a*b (+ bias), the a operand given as
 * (codes, scales) of one row. Exact block sums; blocks accumulated in FP32 ascending. */
static float gemm_row_elem(const uint8_t* acodes, const uint8_t* ascales, const uint8_t* wp,
                           const uint8_t* ws, int64_t K, int64_t row_w) {
    float acc = 0.0f;
    for (int64_t b = 0; b < K / 32; b++) {
        uint8_t sa = ascales[b], sb = ws[row_w * (K / 32) + b];
        if (sa == 0xFF || sb == 0xFF) {
            return NAN;
        }
        double s = 0;
        for (int64_t i = 0; i < 32; i++) {
            s += (double)e2m1_values[acodes[b * 32 + i]] *
                 (double)e2m1_values[get_code(wp + row_w * (K / 2), b * 32 + i)];
        }
        acc += (float)ldexp(s, (int)sa + (int)sb - 254);
    }
    return acc;
}

/* The whole layer as the header describes it. `perturb` scales the FP64 activation by
 * (1 + perturb) before its rounding to BF16: the test insists that results for perturb = 0 and
 * +-1e-6 agree, so a library whose FP32/FP64 transcendentals differ from this libm cannot fail
 * through round-off at a rounding boundary. */
static void moe_reference(const moe_case* c, double perturb, float* out /* [T, H] FP32 */) {
    const mxmoe_act_params p = mxmoe_act_params_default();
    const int H = c->H, I = c->I, k = c->k;
    const int two_i =
        c->act == MXMOE_ACT_SILU || c->act == MXMOE_ACT_GELU_TANH || c->act == MXMOE_ACT_RELU2
            ? I
            : 2 * I;
    float* xin = malloc(sizeof(float) * (size_t)H);
    uint8_t* xcodes = malloc((size_t)H);
    uint8_t* xscales = malloc((size_t)H / 32);
    float* h = malloc(sizeof(float) * (size_t)two_i);
    float* act = malloc(sizeof(float) * (size_t)I);
    uint8_t* acodes = malloc((size_t)I);
    uint8_t* ascales = malloc((size_t)I / 32);
    for (int t = 0; t < c->T; t++) {
        for (int n = 0; n < H; n++) {
            out[t * H + n] = 0.0f;
        }
        for (int j = 0; j < k; j++) {
            int id = c->ids[t * k + j];
            if (id >= 0 && c->map != NULL) {
                id = c->map[id];
            }
            if (id < 0) {
                continue;
            }
            float wt = c->weights[t * k + j];
            for (int i = 0; i < H; i++) {
                float v = c->x[t * H + i];
                xin[i] = c->weight_on_input ? from_bf16(to_bf16(wt * v)) : v;
            }
            for (int b = 0; b < H / 32; b++) {
                spec_quantize_block(xin + b * 32, c->rule, &xscales[b], xcodes + b * 32);
            }
            for (int n = 0; n < two_i; n++) {
                h[n] = gemm_row_elem(xcodes, xscales, c->w13p, c->w13s, H, (int64_t)id * two_i + n);
                if (c->with_bias) {
                    h[n] = h[n] + c->b13[id * two_i + n];
                }
                if (c->gemm_dtype == MXMOE_BF16) {
                    h[n] = from_bf16(to_bf16(h[n]));
                }
            }
            for (int i = 0; i < I; i++) {
                act[i] = round_act_bf16(act_value(c, h, i, &p) * (1.0 + perturb));
            }
            for (int b = 0; b < I / 32; b++) {
                spec_quantize_block(act + b * 32, c->rule, &ascales[b], acodes + b * 32);
            }
            for (int n = 0; n < H; n++) {
                float y = gemm_row_elem(acodes, ascales, c->w2p, c->w2s, I, (int64_t)id * H + n);
                if (c->with_bias) {
                    y = y + c->b2[id * H + n];
                }
                if (c->gemm_dtype == MXMOE_BF16) {
                    y = from_bf16(to_bf16(y));
                }
                out[t * H + n] = c->weight_on_input ? out[t * H + n] + y : out[t * H + n] + wt * y;
            }
        }
    }
    free(xin);
    free(xcodes);
    free(xscales);
    free(h);
    free(act);
    free(acodes);
    free(ascales);
}

/* Fills weights and activations of a case: x blocks with amax exactly 4*2^s (s in {-1,0,1}) and
 * values on the E2M1 grid, so x quantizes losslessly under every rule; weight codes random,
 * scales in narrow ranges so every GEMM partial sum is exact in FP32; biases multiples of 1/4. */
static void moe_fill(moe_case* c) {
    const int H = c->H, I = c->I, E = c->E, T = c->T;
    const int two_i = 2 * I;
    c->x = malloc(sizeof(float) * (size_t)(T * H));
    c->w13p = malloc((size_t)(E * two_i * H / 2));
    c->w13s = malloc((size_t)(E * two_i * H / 32));
    c->w2p = malloc((size_t)(E * H * I / 2));
    c->w2s = malloc((size_t)(E * H * I / 32));
    c->b13 = malloc(sizeof(float) * (size_t)(E * two_i));
    c->b2 = malloc(sizeof(float) * (size_t)(E * H));
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < H / 32; b++) {
            float scale = ldexpf(1.0f, (int)(rng() % 3) - 1);
            for (int i = 0; i < 32; i++) {
                uint8_t code = (uint8_t)(rng() % 7 | (rng() % 2 ? 8 : 0)); /* no 6: amax 4 */
                c->x[t * H + b * 32 + i] = e2m1_values[code] * scale;
            }
            c->x[t * H + b * 32 + (int)(rng() % 32)] = (rng() % 2 ? 4.0f : -4.0f) * scale;
        }
    }
    for (int i = 0; i < E * two_i * H / 2; i++) {
        c->w13p[i] = (uint8_t)rng();
    }
    for (int i = 0; i < E * two_i * H / 32; i++) {
        c->w13s[i] = (uint8_t)(123 + rng() % 3);
    }
    for (int i = 0; i < E * H * I / 2; i++) {
        c->w2p[i] = (uint8_t)rng();
    }
    for (int i = 0; i < E * H * I / 32; i++) {
        c->w2s[i] = (uint8_t)(124 + rng() % 3);
    }
    for (int i = 0; i < E * two_i; i++) {
        c->b13[i] = (float)((int)(rng() % 17) - 8) * 0.25f;
    }
    for (int i = 0; i < E * H; i++) {
        c->b2[i] = (float)((int)(rng() % 17) - 8) * 0.25f;
    }
}

static void moe_free(moe_case* c) {
    free(c->x);
    free(c->w13p);
    free(c->w13s);
    free(c->w2p);
    free(c->w2s);
    free(c->b13);
    free(c->b2);
}

static void moe_run(moe_case* c, const char* name) {
    check_set_context("moe_forward: %s", name);
    const int T = c->T, H = c->H, I = c->I, E = c->E, k = c->k;
    float* want = malloc(sizeof(float) * (size_t)(T * H));
    float* want_lo = malloc(sizeof(float) * (size_t)(T * H));
    float* want_hi = malloc(sizeof(float) * (size_t)(T * H));
    moe_reference(c, 0.0, want);
    moe_reference(c, -1e-6, want_lo);
    moe_reference(c, 1e-6, want_hi);
    CHECK_MSG(memcmp(want, want_lo, sizeof(float) * (size_t)(T * H)) == 0 &&
                  memcmp(want, want_hi, sizeof(float) * (size_t)(T * H)) == 0,
              "test bug: the reference is sensitive to 1e-6 of activation round-off; pick other "
              "inputs");

    /* descriptors */
    void* xbuf = malloc(4 * (size_t)(T * H));
    for (int i = 0; i < T * H; i++) {
        store_as(xbuf, c->x_dtype, i, c->x[i]);
    }
    void* xcopy = malloc(4 * (size_t)(T * H));
    memcpy(xcopy, xbuf, 4 * (size_t)(T * H));
    int64_t xd[2] = {T, H}, idd[2] = {T, k}, md[1] = {c->e_global};
    int64_t w13d[3] = {E, 2 * I, H}, w2d[3] = {E, H, I}, b13d[2] = {E, 2 * I}, b2d[2] = {E, H};
    mxmoe_tensor xt = mxmoe_tensor_make(xbuf, c->x_dtype, 2, xd);
    mxmoe_tensor it = mxmoe_tensor_make(c->ids, MXMOE_I32, 2, idd);
    mxmoe_tensor wt = mxmoe_tensor_make(c->weights, MXMOE_F32, 2, idd);
    mxmoe_tensor mt = mxmoe_tensor_make(c->map, MXMOE_I32, 1, md);
    mxmoe_tensor b13t = mxmoe_tensor_make(c->b13, MXMOE_F32, 2, b13d);
    mxmoe_tensor b2t = mxmoe_tensor_make(c->b2, MXMOE_F32, 2, b2d);
    mxmoe_moe_weights mw;
    mw.w13 = mx_make(c->w13p, c->w13s, 3, w13d);
    mw.w2 = mx_make(c->w2p, c->w2s, 3, w2d);
    mw.b13 = c->with_bias ? &b13t : NULL;
    mw.b2 = c->with_bias ? &b2t : NULL;
    mxmoe_moe_params mp = mxmoe_moe_params_default();
    mp.num_experts = E;
    mp.act.activation = c->act;
    mp.act.layout = c->layout;
    mp.act.rule = c->rule;
    mp.router_weight_on_input = c->weight_on_input;
    mp.expert_map = c->map ? &mt : NULL;
    mp.gemm_dtype = c->gemm_dtype;

    size_t ws_bytes = 0;
    mxmoe_status s = mxmoe_moe_workspace_size(ctx, &mp, T, k, H, I, &ws_bytes);
    CHECK_STATUS(s, MXMOE_OK);
    void* ws = malloc(ws_bytes ? ws_bytes : 1);
    size_t osz = mxmoe_dtype_size(c->out_dtype);
    void* out = malloc(osz * (size_t)(T * H));
    int32_t ids_copy[64];
    float weights_copy[64];
    memcpy(ids_copy, c->ids, sizeof(int32_t) * (size_t)(T * k));
    memcpy(weights_copy, c->weights, sizeof(float) * (size_t)(T * k));
    for (int rep = 0; rep < 2 && s == MXMOE_OK; rep++) {
        memset(out, POISON, osz * (size_t)(T * H));
        memset(ws, rep ? 0x5A : POISON, ws_bytes ? ws_bytes : 1);
        mxmoe_tensor ot = mxmoe_tensor_make(out, c->out_dtype, 2, xd);
        mxmoe_status fs = mxmoe_moe_forward(ctx, &xt, &it, &wt, &mw, &mp, ws, ws_bytes, &ot);
        CHECK_STATUS(fs, MXMOE_OK);
        if (fs != MXMOE_OK) {
            fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
            break;
        }
        int bad = 0;
        for (int i = 0; i < T * H; i++) {
            float w = want[i];
            if (c->out_dtype == MXMOE_BF16) {
                w = from_bf16(to_bf16(w));
            } else if (c->out_dtype == MXMOE_F16) {
                w = from_f16(to_f16(w));
            }
            float got = load_as(out, c->out_dtype, i);
            if (!check_same_float(got, w)) {
                if (bad++ < 6) {
                    CHECK_MSG(0, "run %d: out[%d][%d] = %.9g, want %.9g", rep, i / H, i % H,
                              (double)got, (double)w);
                }
            }
        }
        CHECK_MSG(bad == 0, "run %d: %d of %d outputs differ from the reference", rep, bad, T * H);
        CHECK_MSG(memcmp(xbuf, xcopy, mxmoe_dtype_size(c->x_dtype) * (size_t)(T * H)) == 0,
                  "moe_forward modified x");
        CHECK_MSG(memcmp(ids_copy, c->ids, sizeof(int32_t) * (size_t)(T * k)) == 0,
                  "moe_forward modified topk_ids");
        CHECK_MSG(memcmp(weights_copy, c->weights, sizeof(float) * (size_t)(T * k)) == 0,
                  "moe_forward modified topk_weights");
    }
    free(ws);
    free(out);
    free(xbuf);
    free(xcopy);
    free(want);
    free(want_lo);
    free(want_hi);
}

static moe_case moe_base(int T, int H, int I, int E, int k) {
    moe_case c;
    memset(&c, 0, sizeof c);
    c.T = T;
    c.H = H;
    c.I = I;
    c.E = E;
    c.k = k;
    c.e_global = E;
    c.act = MXMOE_ACT_SILU_MUL;
    c.layout = MXMOE_GATE_UP_CONCAT;
    c.rule = MXMOE_RULE_EVEN;
    c.x_dtype = MXMOE_F32;
    c.out_dtype = MXMOE_F32;
    return c;
}

static void test_moe(void) {
    /* top_k = 1: T = 3, H = 64, I = 32, E = 2; ids {0, 1, 0}; weights exact in few bits. */
    {
        moe_case c = moe_base(3, 64, 32, 2, 1);
        int32_t ids[3] = {0, 1, 0};
        float w[3] = {1.0f, 0.5f, 0.75f};
        c.ids = ids;
        c.weights = w;
        moe_fill(&c);
        moe_run(&c, "top_k=1, SiLU, F32");
        c.out_dtype = MXMOE_BF16;
        moe_run(&c, "top_k=1, SiLU, BF16 out");
        c.out_dtype = MXMOE_F32;
        c.x_dtype = MXMOE_BF16;
        moe_run(&c, "top_k=1, SiLU, BF16 x");
        c.x_dtype = MXMOE_F32;
        c.weight_on_input = 1;
        moe_run(&c, "top_k=1, router weight on input");
        c.weight_on_input = 0;
        c.rule = MXMOE_RULE_FLOOR;
        moe_run(&c, "top_k=1, rule FLOOR");
        moe_free(&c);
    }
    /* top_k = E = 2, one token with a dropped slot (-1). */
    {
        moe_case c = moe_base(3, 64, 32, 2, 2);
        int32_t ids[6] = {0, 1, 1, 0, 1, -1};
        float w[6] = {0.75f, 0.25f, 0.5f, 0.5f, 1.0f, 0.125f};
        c.ids = ids;
        c.weights = w;
        moe_fill(&c);
        moe_run(&c, "top_k=E=2, SiLU");
        c.with_bias = 1;
        moe_run(&c, "top_k=E=2, SiLU, biases");
        c.gemm_dtype = MXMOE_BF16;
        moe_run(&c, "top_k=E=2, SiLU, biases, BF16 GEMM results");
        c.gemm_dtype = MXMOE_F32;
        c.weight_on_input = 1;
        moe_run(&c, "top_k=E=2, SiLU, biases, router weight on input");
        c.weight_on_input = 0;
        c.act = MXMOE_ACT_SWIGLU_OAI;
        c.layout = MXMOE_GATE_UP_INTERLEAVED;
        moe_run(&c, "top_k=E=2, gpt-oss SwiGLU interleaved, biases");
        c.gemm_dtype = MXMOE_BF16;
        c.weight_on_input = 1;
        moe_run(&c, "top_k=E=2, gpt-oss SwiGLU, biases, BF16 GEMM results, weight on input");
        moe_free(&c);
    }
    /* expert map: E_global = 4, local E = 2: global {0 -> 1, 1 -> -1, 2 -> 0, 3 -> -1};
     * top_k = 2 over 2 tokens, pairs on experts 1 and 3 dropped. */
    {
        moe_case c = moe_base(2, 32, 32, 2, 2);
        int32_t ids[4] = {2, 1, 3, 0};
        float w[4] = {0.5f, 0.25f, 0.75f, 1.0f};
        int32_t map[4] = {1, -1, 0, -1};
        c.ids = ids;
        c.weights = w;
        c.map = map;
        c.e_global = 4;
        moe_fill(&c);
        moe_run(&c, "expert map, H=32");
        moe_free(&c);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Documented defaults.
 */
static void test_defaults(void) {
    check_set_context("defaults");
    mxmoe_act_params a = mxmoe_act_params_default();
    CHECK_EQ_INT(a.activation, MXMOE_ACT_SILU_MUL);
    CHECK_EQ_INT(a.layout, MXMOE_GATE_UP_CONCAT);
    CHECK_EQ_INT(a.act_dtype, MXMOE_BF16);
    CHECK_EQ_INT(a.rule, MXMOE_RULE_EVEN);
    CHECK_FLOAT_BITS(a.swiglu_alpha, 1.702f);
    CHECK_FLOAT_BITS(a.swiglu_limit, 7.0f);
    mxmoe_moe_params m = mxmoe_moe_params_default();
    CHECK_EQ_INT(m.router_weight_on_input, 0);
    CHECK(m.expert_map == NULL);
    CHECK_EQ_INT(m.gemm_dtype, MXMOE_BF16); /* as vLLM keeps them (v32) */
    CHECK_EQ_INT(m.act.act_dtype, MXMOE_BF16);
    CHECK_EQ_INT(m.act.rule, MXMOE_RULE_EVEN);
    mxmoe_route_params r = mxmoe_route_params_default();
    CHECK(r.correction_bias == NULL);
    CHECK_FLOAT_BITS(r.scaling_factor, 1.0f);
    CHECK_EQ_INT(r.num_groups, 1);
    CHECK_EQ_INT(mxmoe_ctx_backend(ctx), MXMOE_BACKEND_CPU);
    CHECK_EQ_INT(mxmoe_version_number(), MXMOE_VERSION_NUMBER);
    CHECK(mxmoe_dtype_size(MXMOE_BF16) == 2 && mxmoe_dtype_size(MXMOE_I32) == 4);
}

int main(void) {
    mxmoe_ctx_params params = mxmoe_ctx_params_default();
    params.backend = MXMOE_BACKEND_CPU;
    params.num_threads = 2;
    mxmoe_status st = mxmoe_ctx_init(&ctx, &params);
    CHECK_STATUS(st, MXMOE_OK);
    if (st != MXMOE_OK || ctx == NULL) {
        return check_report();
    }
    test_defaults();
    test_negative_zero();
    test_saturation();
    test_rule_thresholds();
    test_nan_inf();
    test_zero_blocks();
    test_subnormal_inputs();
    test_extreme_scale_decoding();
    test_swizzle();
    test_experts_quantize_swizzled();
    test_act_relu2();
    test_act_random();
    test_act_near_ties();
    test_plan();
    test_gemm_k96_empty_experts();
    test_gemm_one_token();
    test_gemm_extreme_scales();
    test_gemm_output_rounding();
    test_moe();
    check_set_context("");
    mxmoe_ctx_free(ctx);
    return check_report();
}
