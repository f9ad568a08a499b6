/*
 * test_grouped_projection.c — mxmoe_grouped_projection (MUL_MAT_ID in one call) against its
 * composition from the public calls it stands for: mxmoe_plan, mxmoe_permute_quantize and
 * mxmoe_grouped_gemm, each grouped row then put back in its pair's row by the test. The rows must
 * be identical to the bit, on every CPU tier (run under each by ctest; the scalar tier is the
 * reference, projection_ref.c, which quantizes each pair alone and so shares no plan with the
 * composition). Cases: dropped ids, an expert map with dropped experts, duplicate ids in a token,
 * experts with no rows, top-k = 1 and = E, one token, K = 32 and K = 2880 (not a multiple of
 * 128), BF16 inputs and outputs, biases, NaN and Inf inputs, extreme scales; outputs poisoned,
 * dropped pairs' rows left poisoned; id errors leave the output untouched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mxmoe.h"


typedef struct proj_case {
    int64_t T, k, E, N, K;
    mxmoe_dtype x_dtype, out_dtype;
    int use_map, use_bias, special, wide_scales;
} proj_case;

static uint16_t bf16_of(float f) { /* truncation is enough for test data */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static void run_case(mxmoe_ctx* ctx, proj_case c) {
    check_set_context("grouped_projection T=%lld k=%lld E=%lld N=%lld K=%lld x=%s out=%s map=%d "
                      "bias=%d special=%d",
                      (long long)c.T, (long long)c.k, (long long)c.E, (long long)c.N,
                      (long long)c.K, mxmoe_dtype_name(c.x_dtype), mxmoe_dtype_name(c.out_dtype),
                      c.use_map, c.use_bias, c.special);
    const int64_t T = c.T, k = c.k, E = c.E, N = c.N, K = c.K, P = T * k;
    const int64_t E_global = c.use_map ? E + 3 : E;
    const size_t xs = mxmoe_dtype_size(c.x_dtype), os = mxmoe_dtype_size(c.out_dtype);
    uint8_t* x = malloc((size_t)(T * K) * xs);
    for (int64_t i = 0; i < T * K; i++) {
        float v =
            ((float)(int32_t)check_rng_u32() / 2147483648.0f) * (float)(1 << (check_rng_u32() % 8));
        if (c.special && check_rng_u32() % 97 == 0) {
            v = check_rng_u32() % 2 ? 1.0f / 0.0f : 0.0f / 0.0f;
        }
        if (c.x_dtype == MXMOE_BF16) {
            ((uint16_t*)x)[i] = bf16_of(v);
        } else {
            ((float*)x)[i] = v;
        }
    }
    int32_t* ids = malloc((size_t)P * 4);
    int32_t* map = malloc((size_t)E_global * 4);
    for (int64_t g = 0; g < E_global; g++) {
        map[g] = g < E ? (int32_t)(E - 1 - g) : -1; /* reversed, the last three dropped */
    }
    for (int64_t i = 0; i < P; i++) {
        /* experts past E/2 stay empty in some cases; duplicates within a token are allowed */
        int32_t limit = (int32_t)(E > 3 && i % 2 ? E / 2 : E_global);
        ids[i] = check_rng_u32() % 9 == 0 ? -1 : (int32_t)(check_rng_u32() % (uint32_t)limit);
    }
    if (k == E && !c.use_map) { /* top-k = E: every token on every expert */
        for (int64_t i = 0; i < P; i++) {
            ids[i] = (int32_t)(i % k);
        }
    }
    uint8_t* wp = malloc((size_t)(E * N * K / 2));
    uint8_t* ws = malloc((size_t)(E * N * K / 32));
    for (int64_t i = 0; i < E * N * K / 2; i++) {
        wp[i] = (uint8_t)check_rng_u32();
    }
    for (int64_t i = 0; i < E * N * K / 32; i++) {
        ws[i] = c.wide_scales ? (uint8_t)(check_rng_u32() % 255)
                              : (uint8_t)(112 + check_rng_u32() % 24);
    }
    float* bias = malloc((size_t)(E * N) * 4);
    for (int64_t i = 0; i < E * N; i++) {
        bias[i] = (float)(int32_t)check_rng_u32() / 2147483648.0f;
    }

    int64_t d_x[2] = {T, K}, d_ids[2] = {T, k}, d_map[1] = {E_global};
    int64_t d_wp[3] = {E, N, K / 2}, d_ws[3] = {E, N, K / 32}, d_b[2] = {E, N}, d_o[2] = {P, N};
    mxmoe_tensor x_t = mxmoe_tensor_make(x, c.x_dtype, 2, d_x);
    mxmoe_tensor ids_t = mxmoe_tensor_make(ids, MXMOE_I32, 2, d_ids);
    mxmoe_tensor map_t = mxmoe_tensor_make(map, MXMOE_I32, 1, d_map);
    mxmoe_mx_tensor w = {mxmoe_tensor_make(wp, MXMOE_U8, 3, d_wp),
                         mxmoe_tensor_make(ws, MXMOE_U8, 3, d_ws), MXMOE_SCALES_LINEAR};
    mxmoe_tensor bias_t = mxmoe_tensor_make(bias, MXMOE_F32, 2, d_b);
    const mxmoe_tensor* map_p = c.use_map ? &map_t : NULL;
    const mxmoe_tensor* bias_p = c.use_bias ? &bias_t : NULL;

    /* the projection, into a poisoned output */
    uint8_t* got = malloc((size_t)(P * N) * os);
    memset(got, 0xC3, (size_t)(P * N) * os);
    mxmoe_tensor got_t = mxmoe_tensor_make(got, c.out_dtype, 2, d_o);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, map_p, &w, bias_p, MXMOE_RULE_EVEN, &got_t),
        MXMOE_OK);

    /* the composition, grouped rows put back in pair order; dropped pairs' rows stay poisoned */
    int32_t *counts = malloc((size_t)E * 4), *offsets = malloc((size_t)(E + 1) * 4);
    int32_t *sorted = malloc((size_t)P * 4), *row_of = malloc((size_t)P * 4);
    int64_t d_e[1] = {E}, d_e1[1] = {E + 1}, d_p[1] = {P};
    mxmoe_tensor counts_t = mxmoe_tensor_make(counts, MXMOE_I32, 1, d_e);
    mxmoe_tensor off_t = mxmoe_tensor_make(offsets, MXMOE_I32, 1, d_e1);
    mxmoe_tensor sorted_t = mxmoe_tensor_make(sorted, MXMOE_I32, 1, d_p);
    mxmoe_tensor row_of_t = mxmoe_tensor_make(row_of, MXMOE_I32, 1, d_p);
    CHECK_STATUS(
        mxmoe_plan(ctx, &ids_t, map_p, (int32_t)E, &counts_t, &off_t, &sorted_t, &row_of_t),
        MXMOE_OK);
    uint8_t *ap = malloc((size_t)(P * K / 2)), *as = malloc((size_t)(P * K / 32));
    int64_t d_ap[2] = {P, K / 2}, d_as[2] = {P, K / 32};
    mxmoe_mx_tensor a = {mxmoe_tensor_make(ap, MXMOE_U8, 2, d_ap),
                         mxmoe_tensor_make(as, MXMOE_U8, 2, d_as), MXMOE_SCALES_LINEAR};
    CHECK_STATUS(
        mxmoe_permute_quantize(ctx, &x_t, &sorted_t, &off_t, (int32_t)k, MXMOE_RULE_EVEN, &a),
        MXMOE_OK);
    uint8_t* grouped = malloc((size_t)(P * N) * os);
    mxmoe_tensor grouped_t = mxmoe_tensor_make(grouped, c.out_dtype, 2, d_o);
    CHECK_STATUS(mxmoe_grouped_gemm(ctx, &a, &w, &off_t, bias_p, &grouped_t), MXMOE_OK);
    uint8_t* want = malloc((size_t)(P * N) * os);
    memset(want, 0xC3, (size_t)(P * N) * os);
    for (int64_t r = 0; r < offsets[E]; r++) {
        memcpy(want + (size_t)sorted[r] * (size_t)N * os, grouped + (size_t)r * (size_t)N * os,
               (size_t)N * os);
    }
    int64_t bad = -1;
    for (int64_t i = 0; i < P * N && bad < 0; i++) {
        if (memcmp(got + (size_t)i * os, want + (size_t)i * os, os) != 0) {
            bad = i;
        }
    }
    CHECK_MSG(bad < 0,
              "output differs from plan + permute_quantize + grouped_gemm at pair %lld, "
              "column %lld (expert row %d)",
              (long long)(bad / N), (long long)(bad % N), bad < 0 ? 0 : row_of[bad / N]);

    /* an id out of range, then a map entry out of range: OUT_OF_RANGE, output untouched */
    memset(got, 0x5A, (size_t)(P * N) * os);
    int32_t saved = ids[P - 1];
    ids[P - 1] = (int32_t)E_global;
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, map_p, &w, bias_p, MXMOE_RULE_EVEN, &got_t),
        MXMOE_ERR_OUT_OF_RANGE);
    ids[P - 1] = -2;
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, map_p, &w, bias_p, MXMOE_RULE_EVEN, &got_t),
        MXMOE_ERR_OUT_OF_RANGE);
    ids[P - 1] = saved;
    if (c.use_map) {
        map[0] = (int32_t)E;
        CHECK_STATUS(
            mxmoe_grouped_projection(ctx, &x_t, &ids_t, map_p, &w, bias_p, MXMOE_RULE_EVEN, &got_t),
            MXMOE_ERR_OUT_OF_RANGE);
        map[0] = (int32_t)(E - 1);
    }
    int untouched = 1;
    for (int64_t i = 0; i < (int64_t)((size_t)(P * N) * os); i++) {
        untouched &= got[i] == 0x5A;
    }
    CHECK_MSG(untouched, "a failed call wrote its output");
    free(x), free(ids), free(map), free(wp), free(ws), free(bias), free(got), free(counts);
    free(offsets), free(sorted), free(row_of), free(ap), free(as), free(grouped), free(want);
}

/* Shapes and dtypes the API refuses, output untouched. */
static void run_bad_shapes(mxmoe_ctx* ctx) {
    check_set_context("grouped_projection: bad shapes");
    float x[2 * 64] = {0}, out[4 * 8];
    int32_t ids[4] = {0, 1, 1, 0};
    uint8_t wp[2 * 8 * 32] = {0}, ws[2 * 8 * 2] = {0};
    memset(out, 0x5A, sizeof out);
    mxmoe_tensor x_t = mxmoe_tensor_make(x, MXMOE_F32, 2, (int64_t[]){2, 64});
    mxmoe_tensor ids_t = mxmoe_tensor_make(ids, MXMOE_I32, 2, (int64_t[]){2, 2});
    mxmoe_mx_tensor w = {mxmoe_tensor_make(wp, MXMOE_U8, 3, (int64_t[]){2, 8, 32}),
                         mxmoe_tensor_make(ws, MXMOE_U8, 3, (int64_t[]){2, 8, 2}),
                         MXMOE_SCALES_LINEAR};
    mxmoe_tensor out_t = mxmoe_tensor_make(out, MXMOE_F32, 2, (int64_t[]){4, 8});
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, NULL, &w, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_OK);
    mxmoe_tensor short_out = mxmoe_tensor_make(out, MXMOE_F32, 2, (int64_t[]){3, 8});
    mxmoe_tensor x_k = mxmoe_tensor_make(x, MXMOE_F32, 2, (int64_t[]){4, 32});
    mxmoe_tensor ids_3 = mxmoe_tensor_make(ids, MXMOE_I32, 2, (int64_t[]){1, 3});
    mxmoe_tensor ids_u8 = mxmoe_tensor_make(ids, MXMOE_U8, 2, (int64_t[]){2, 2});
    memset(out, 0x5A, sizeof out);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, NULL, &w, NULL, MXMOE_RULE_EVEN, &short_out),
        MXMOE_ERR_SHAPE);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_k, &ids_t, NULL, &w, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_ERR_SHAPE);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_3, NULL, &w, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_ERR_SHAPE);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_u8, NULL, &w, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_ERR_DTYPE);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, NULL, NULL, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(
        mxmoe_grouped_projection(ctx, &x_t, &ids_t, NULL, &w, NULL, (mxmoe_scale_rule)99, &out_t),
        MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(
        mxmoe_grouped_projection(NULL, &x_t, &ids_t, NULL, &w, NULL, MXMOE_RULE_EVEN, &out_t),
        MXMOE_ERR_INVALID_ARGUMENT);
    int untouched = 1;
    for (size_t i = 0; i < sizeof out; i++) {
        untouched &= ((uint8_t*)out)[i] == 0x5A;
    }
    CHECK_MSG(untouched, "a refused call wrote its output");
}

int main(void) {
    check_rng_seed(0xD1B54A32D192ED03ull);
    mxmoe_ctx* ctx = check_cpu_ctx();
    if (ctx == NULL) {
        return 1;
    }
    const proj_case cases[] = {
        /* T   k   E    N     K     x            out          map bias special wide */
        {1, 1, 1, 8, 32, MXMOE_F32, MXMOE_F32, 0, 0, 0, 0},
        {1, 4, 32, 40, 2880, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 0},
        {3, 4, 4, 24, 96, MXMOE_F32, MXMOE_F32, 0, 1, 0, 0}, /* top-k = E */
        {8, 8, 16, 64, 256, MXMOE_BF16, MXMOE_F32, 1, 1, 0, 0},
        {5, 2, 6, 33, 160, MXMOE_F32, MXMOE_BF16, 0, 0, 1, 0},
        {40, 8, 12, 48, 128, MXMOE_BF16, MXMOE_F32, 1, 0, 0, 1},
        {70, 6, 64, 72, 64, MXMOE_F32, MXMOE_F32, 0, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(ctx, cases[i]);
    }
    run_bad_shapes(ctx);
    mxmoe_ctx_free(ctx);
    return check_report();
}
