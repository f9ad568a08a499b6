/*
 * test_worked_examples.c — the worked examples of reference/formats.md §2.8, for the four scale
 * rules mxmoe implements (EVEN, FLOOR, CEIL, RCEIL; elements rounded to nearest, ties to even).
 * The ties-away (microxcaling) and ggml rows of that table are other libraries' rules and are
 * not part of mxmoe's contract.
 *
 * Each example is a short block padded to 32 elements with +0. For every rule it checks the
 * scale byte, all 32 codes (low nibble = even element) and the dequantized values (F32, BF16,
 * F16, bit for bit, -0 included), for F32, BF16 and F16 inputs; one block per call, all
 * examples as rows of one tensor, and all examples side by side as blocks of one long row.
 *
 * Every table row was re-derived by hand from SPEC §2 (comments give the arithmetic).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mxmoe.h"

#define NUM_EXAMPLES 6
#define MAX_VALUES   8

typedef struct {
    uint8_t scale;
    uint8_t codes[MAX_VALUES];
    float decoded[MAX_VALUES];
} expected_block;

typedef struct {
    const char* name;
    int count;
    float values[MAX_VALUES];
    expected_block want[MXMOE_RULE_COUNT]; /* indexed by mxmoe_scale_rule */
} example;

/* clang-format off */
static const example examples[NUM_EXAMPLES] = {
    /* amax 6. FLOOR: e(6)=2, s=0. EVEN: 6 = 1.5*2^2, 1.5 < 1.75, s=0. RCEIL: ceil(log2 1)=0.
     * y = x: 5 -> tie 4|6 -> 4 (code 6), 3.5 -> tie 3|4 -> 4, 2.5 -> tie 2|3 -> 2,
     * 1.75 -> tie 1.5|2 -> 2, 0.75 -> tie 0.5|1 -> 1, 0.25 -> tie 0|0.5 -> 0, -0.25 -> -0 (0x8).
     * CEIL: ceil(log2 6)=3, s=1, y = x/2 = 3 2.5 1.75 1.25 .875 .375 .125 -.125. */
    {"[6 5 3.5 2.5 1.75 0.75 0.25 -0.25]", 8, {6, 5, 3.5f, 2.5f, 1.75f, 0.75f, 0.25f, -0.25f},
     {[MXMOE_RULE_EVEN] = {0x7F, {7, 6, 6, 4, 4, 2, 0, 8}, {6, 4, 4, 2, 2, 1, 0, -0.0f}},
      [MXMOE_RULE_FLOOR] = {0x7F, {7, 6, 6, 4, 4, 2, 0, 8}, {6, 4, 4, 2, 2, 1, 0, -0.0f}},
      [MXMOE_RULE_CEIL] = {0x80, {5, 4, 4, 2, 2, 1, 0, 8}, {6, 4, 4, 2, 2, 1, 0, -0.0f}},
      [MXMOE_RULE_RCEIL] = {0x7F, {7, 6, 6, 4, 4, 2, 0, 8}, {6, 4, 4, 2, 2, 1, 0, -0.0f}}}},
    /* amax 7 = 1.75*2^2. FLOOR: s=0, 7 saturates to 6, -1.25 -> tie 1|1.5 -> 1 (0xA).
     * EVEN (1.75 bumps), CEIL (ceil(log2 7)=3), RCEIL (ceil(log2 7/6)=1): s=1,
     * y = 3.5 -> 4, 1.75 -> 2, -0.625 -> -0.5 (0x9), 0. */
    {"[7 3.5 -1.25 0]", 4, {7, 3.5f, -1.25f, 0},
     {[MXMOE_RULE_EVEN] = {0x80, {6, 4, 9, 0}, {8, 4, -1, 0}},
      [MXMOE_RULE_FLOOR] = {0x7F, {7, 6, 0xA, 0}, {6, 4, -1, 0}},
      [MXMOE_RULE_CEIL] = {0x80, {6, 4, 9, 0}, {8, 4, -1, 0}},
      [MXMOE_RULE_RCEIL] = {0x80, {6, 4, 9, 0}, {8, 4, -1, 0}}}},
    /* amax 1.6. FLOOR / EVEN (1.6 < 1.75): s=-2, y = 6.4 7 3.2 -> 3, -1.6 -> -1.5, 0.4 -> 0.5.
     * CEIL (ceil(log2 1.6)=1) / RCEIL (ceil(log2 0.2667)=-1): s=-1, y = 3.2 1.6 -0.8 0.2. */
    {"[1.6 0.8 -0.4 0.1]", 4, {1.6f, 0.8f, -0.4f, 0.1f},
     {[MXMOE_RULE_EVEN] = {0x7D, {7, 5, 0xB, 1}, {1.5f, 0.75f, -0.375f, 0.125f}},
      [MXMOE_RULE_FLOOR] = {0x7D, {7, 5, 0xB, 1}, {1.5f, 0.75f, -0.375f, 0.125f}},
      [MXMOE_RULE_CEIL] = {0x7E, {5, 3, 0xA, 0}, {1.5f, 0.75f, -0.5f, 0}},
      [MXMOE_RULE_RCEIL] = {0x7E, {5, 3, 0xA, 0}, {1.5f, 0.75f, -0.5f, 0}}}},
    /* amax 1.8 (>= 1.75). FLOOR: s=-2, y = 7.2 -> 6, 3.6 -> 4, -1.8 -> -2, 0.4 -> 0.5.
     * EVEN / CEIL / RCEIL (ceil(log2 0.3)=-1): s=-1,
     * y = 3.6 -> 4, 1.8 -> 2, -0.9 -> -1, 0.2 -> 0. */
    {"[1.8 0.9 -0.45 0.1]", 4, {1.8f, 0.9f, -0.45f, 0.1f},
     {[MXMOE_RULE_EVEN] = {0x7E, {6, 4, 0xA, 0}, {2, 1, -0.5f, 0}},
      [MXMOE_RULE_FLOOR] = {0x7D, {7, 6, 0xC, 1}, {1.5f, 1, -0.5f, 0.125f}},
      [MXMOE_RULE_CEIL] = {0x7E, {6, 4, 0xA, 0}, {2, 1, -0.5f, 0}},
      [MXMOE_RULE_RCEIL] = {0x7E, {6, 4, 0xA, 0}, {2, 1, -0.5f, 0}}}},
    /* amax 3. FLOOR / EVEN / RCEIL (ceil(log2 0.5)=-1): s=-1, exact: y = 6 3 1.5 -6.
     * CEIL (ceil(log2 3)=2): s=0, y = 3 1.5 0.75 -> 1 (tie 0.5|1) -3. */
    {"[3 1.5 0.75 -3]", 4, {3, 1.5f, 0.75f, -3},
     {[MXMOE_RULE_EVEN] = {0x7E, {7, 5, 3, 0xF}, {3, 1.5f, 0.75f, -3}},
      [MXMOE_RULE_FLOOR] = {0x7E, {7, 5, 3, 0xF}, {3, 1.5f, 0.75f, -3}},
      [MXMOE_RULE_CEIL] = {0x7F, {5, 3, 2, 0xD}, {3, 1.5f, 1, -3}},
      [MXMOE_RULE_RCEIL] = {0x7E, {7, 5, 3, 0xF}, {3, 1.5f, 0.75f, -3}}}},
    /* All zeros: byte 0x00 for every rule, codes 0, value +0 (0 * 2^-127). */
    {"all zeros", 4, {0, 0, 0, 0},
     {[MXMOE_RULE_EVEN] = {0x00, {0, 0, 0, 0}, {0, 0, 0, 0}},
      [MXMOE_RULE_FLOOR] = {0x00, {0, 0, 0, 0}, {0, 0, 0, 0}},
      [MXMOE_RULE_CEIL] = {0x00, {0, 0, 0, 0}, {0, 0, 0, 0}},
      [MXMOE_RULE_RCEIL] = {0x00, {0, 0, 0, 0}, {0, 0, 0, 0}}}},
};
/* clang-format on */

static const mxmoe_scale_rule all_rules[] = {MXMOE_RULE_EVEN, MXMOE_RULE_FLOOR, MXMOE_RULE_CEIL,
                                             MXMOE_RULE_RCEIL};
static const mxmoe_dtype float_dtypes[] = {MXMOE_F32, MXMOE_BF16, MXMOE_F16};

/* --- exact conversions used to build inputs and expected outputs ------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t to_bf16(float f) { /* RNE; finite inputs */
    uint32_t u = f32_bits(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

/* RNE to FP16 for zero and values in the FP16 normal range (all this file needs). */
static uint16_t to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a == 0) {
        return sign;
    }
    uint32_t v = a - (112u << 23);
    v += 0xfffu + ((v >> 13) & 1u);
    return (uint16_t)(sign | (v >> 13));
}

static float from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0 && m == 0) {
        return f32_from_bits(sign);
    }
    return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13)); /* normal only */
}

static void store(void* data, mxmoe_dtype dt, int64_t i, float v) {
    if (dt == MXMOE_F32) {
        ((float*)data)[i] = v;
    } else if (dt == MXMOE_BF16) {
        ((uint16_t*)data)[i] = to_bf16(v);
    } else {
        ((uint16_t*)data)[i] = to_f16(v);
    }
}

static float load(const void* data, mxmoe_dtype dt, int64_t i) {
    if (dt == MXMOE_F32) {
        return ((const float*)data)[i];
    }
    if (dt == MXMOE_BF16) {
        return from_bf16(((const uint16_t*)data)[i]);
    }
    return from_f16(((const uint16_t*)data)[i]);
}

/* The value an expected decoded number has once stored in `dt` (all table values are exact in
 * every float dtype, so this is the identity, but it keeps -0 and the bit patterns honest). */
static float as_dtype(float v, mxmoe_dtype dt) {
    if (dt == MXMOE_BF16) {
        return from_bf16(to_bf16(v));
    }
    if (dt == MXMOE_F16) {
        return from_f16(to_f16(v));
    }
    return v;
}

static uint8_t nibble(const uint8_t* packed, int64_t i) {
    return (uint8_t)((packed[i / 2] >> (4 * (i % 2))) & 0xF);
}

/* --- checks --------------------------------------------------------------------------------- */

static mxmoe_ctx* ctx;

/* Quantizes `rows` x (32 * blocks) values laid out as examples ex[r][b], checks the codes and
 * scales, then dequantizes into every float dtype and checks the values. */
static void check_layout(int rows, int blocks, const int* ex_index, mxmoe_scale_rule rule,
                         mxmoe_dtype in_dtype) {
    const int64_t k = 32LL * blocks;
    const int64_t n = rows * k;
    float* x32 = calloc((size_t)n, sizeof(float));
    void* x = calloc((size_t)n, 4);
    uint8_t* packed = malloc((size_t)(n / 2));
    uint8_t* scales = malloc((size_t)(n / 32));
    float* deq = malloc((size_t)n * 4);
    if (!x32 || !x || !packed || !scales || !deq) {
        CHECK_MSG(0, "out of memory");
        goto done;
    }
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < blocks; b++) {
            const example* e = &examples[ex_index[r * blocks + b]];
            for (int i = 0; i < e->count; i++) {
                x32[r * k + b * 32 + i] = e->values[i];
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        store(x, in_dtype, i, x32[i]);
    }
    memset(packed, 0xA5, (size_t)(n / 2));
    memset(scales, 0xA5, (size_t)(n / 32));

    int64_t xdims[2] = {rows, k};
    int64_t pdims[2] = {rows, k / 2};
    int64_t sdims[2] = {rows, k / 32};
    mxmoe_tensor xt = mxmoe_tensor_make(x, in_dtype, 2, xdims);
    mxmoe_mx_tensor mx;
    mx.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, pdims);
    mx.scales = mxmoe_tensor_make(scales, MXMOE_U8, 2, sdims);
    mx.scale_layout = MXMOE_SCALES_LINEAR;
    mxmoe_status st = mxmoe_quantize(ctx, &xt, rule, &mx);
    CHECK_STATUS(st, MXMOE_OK);
    if (st != MXMOE_OK) {
        fprintf(stderr, "  last error: %s\n", mxmoe_ctx_last_error(ctx));
        goto done;
    }
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < blocks; b++) {
            const example* e = &examples[ex_index[r * blocks + b]];
            const expected_block* w = &e->want[rule];
            CHECK_MSG(scales[r * blocks + b] == w->scale,
                      "%s row %d block %d: scale 0x%02X, want 0x%02X", e->name, r, b,
                      scales[r * blocks + b], w->scale);
            for (int i = 0; i < 32; i++) {
                uint8_t want = i < e->count ? w->codes[i] : 0;
                uint8_t got = nibble(packed + r * k / 2, b * 32 + i);
                CHECK_MSG(got == want, "%s row %d block %d element %d: code 0x%X, want 0x%X",
                          e->name, r, b, i, got, want);
            }
        }
    }

    for (size_t d = 0; d < sizeof float_dtypes / sizeof float_dtypes[0]; d++) {
        mxmoe_dtype out_dtype = float_dtypes[d];
        memset(deq, 0xA5, (size_t)n * 4);
        mxmoe_tensor out = mxmoe_tensor_make(deq, out_dtype, 2, xdims);
        st = mxmoe_dequantize(ctx, &mx, &out);
        CHECK_STATUS(st, MXMOE_OK);
        if (st != MXMOE_OK) {
            continue;
        }
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b < blocks; b++) {
                const example* e = &examples[ex_index[r * blocks + b]];
                for (int i = 0; i < 32; i++) {
                    float want =
                        as_dtype(i < e->count ? e->want[rule].decoded[i] : 0.0f, out_dtype);
                    float got = load(deq, out_dtype, r * k + b * 32 + i);
                    CHECK_MSG(check_same_float(got, want),
                              "%s row %d block %d element %d dequantized to %s: %g, want %g",
                              e->name, r, b, i, mxmoe_dtype_name(out_dtype), (double)got,
                              (double)want);
                }
            }
        }
        /* Bytes past the tensor's end are not written (the buffer holds n F32 elements). */
        if (out_dtype != MXMOE_F32) {
            const uint8_t* tail = (const uint8_t*)deq + n * 2;
            int clean = 1;
            for (int64_t i = 0; i < n * 2; i++) {
                clean &= tail[i] == 0xA5;
            }
            CHECK_MSG(clean, "dequantize to %s wrote past the end of its output",
                      mxmoe_dtype_name(out_dtype));
        }
    }
done:
    free(x32);
    free(x);
    free(packed);
    free(scales);
    free(deq);
}

int main(void) {
    mxmoe_ctx_params params = mxmoe_ctx_params_default();
    params.backend = MXMOE_BACKEND_CPU;
    params.num_threads = 1;
    mxmoe_status st = mxmoe_ctx_init(&ctx, &params);
    CHECK_STATUS(st, MXMOE_OK);
    if (st != MXMOE_OK || ctx == NULL) {
        return check_report();
    }

    for (size_t ri = 0; ri < sizeof all_rules / sizeof all_rules[0]; ri++) {
        mxmoe_scale_rule rule = all_rules[ri];
        for (size_t di = 0; di < sizeof float_dtypes / sizeof float_dtypes[0]; di++) {
            mxmoe_dtype dt = float_dtypes[di];
            /* One example per call, [1, 32]. */
            for (int e = 0; e < NUM_EXAMPLES; e++) {
                check_set_context("rule %s, input %s, single block %s", mxmoe_scale_rule_name(rule),
                                  mxmoe_dtype_name(dt), examples[e].name);
                check_layout(1, 1, &e, rule, dt);
            }
            /* All examples as rows of one [6, 32] tensor. */
            int as_rows[NUM_EXAMPLES];
            for (int e = 0; e < NUM_EXAMPLES; e++) {
                as_rows[e] = e;
            }
            check_set_context("rule %s, input %s, examples as rows", mxmoe_scale_rule_name(rule),
                              mxmoe_dtype_name(dt));
            check_layout(NUM_EXAMPLES, 1, as_rows, rule, dt);
            /* All examples as blocks of one [2, 192] tensor (row 1 in reverse order). */
            int as_blocks[2 * NUM_EXAMPLES];
            for (int e = 0; e < NUM_EXAMPLES; e++) {
                as_blocks[e] = e;
                as_blocks[NUM_EXAMPLES + e] = NUM_EXAMPLES - 1 - e;
            }
            check_set_context("rule %s, input %s, examples as blocks of a row",
                              mxmoe_scale_rule_name(rule), mxmoe_dtype_name(dt));
            check_layout(2, NUM_EXAMPLES, as_blocks, rule, dt);
        }
    }
    check_set_context("");
    mxmoe_ctx_free(ctx);
    return check_report();
}
