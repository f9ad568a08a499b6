/*
 * test_permute_quantize.c — mxmoe_permute_quantize against an independent composition: gather
 * the rows by hand in the test, then mxmoe_experts_quantize; the bytes must be identical, for
 * linear and grouped swizzled scales, with dropped ids and experts that get no rows. Plus its
 * data errors (bad sorted entries, bad offsets) with outputs untouched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mxmoe.h"


static void run_case(mxmoe_ctx* ctx, int64_t T, int64_t k, int64_t E, int64_t K, int swizzled) {
    check_set_context("permute_quantize T=%lld k=%lld E=%lld K=%lld swizzled=%d", (long long)T,
                      (long long)k, (long long)E, (long long)K, swizzled);
    int64_t P = T * k;
    float* x = malloc((size_t)(T * K) * sizeof(float));
    float* gathered = malloc((size_t)(P * K) * sizeof(float));
    int32_t* ids = malloc((size_t)P * sizeof(int32_t));
    int32_t *counts = malloc((size_t)E * 4), *offsets = malloc((size_t)(E + 1) * 4);
    int32_t *sorted = malloc((size_t)P * 4), *row_of = malloc((size_t)P * 4);
    for (int64_t i = 0; i < T * K; i++) {
        x[i] =
            ((float)(int32_t)check_rng_u32() / 2147483648.0f) * (float)(1 << (check_rng_u32() % 8));
    }
    for (int64_t i = 0; i < P; i++) {
        ids[i] = check_rng_u32() % 7 == 0
                     ? -1
                     : (int32_t)(check_rng_u32() % (uint32_t)(E > 2 ? E - 1 : E));
    }
    int64_t d_ids[2] = {T, k}, d_e[1] = {E}, d_e1[1] = {E + 1}, d_p[1] = {P};
    mxmoe_tensor ids_t = mxmoe_tensor_make(ids, MXMOE_I32, 2, d_ids);
    mxmoe_tensor counts_t = mxmoe_tensor_make(counts, MXMOE_I32, 1, d_e);
    mxmoe_tensor off_t = mxmoe_tensor_make(offsets, MXMOE_I32, 1, d_e1);
    mxmoe_tensor sorted_t = mxmoe_tensor_make(sorted, MXMOE_I32, 1, d_p);
    mxmoe_tensor row_of_t = mxmoe_tensor_make(row_of, MXMOE_I32, 1, d_p);
    CHECK_STATUS(mxmoe_plan(ctx, &ids_t, NULL, (int32_t)E, &counts_t, &off_t, &sorted_t, &row_of_t),
                 MXMOE_OK);
    memset(gathered, 0, (size_t)(P * K) * sizeof(float));
    for (int64_t r = 0; r < offsets[E]; r++) {
        memcpy(gathered + r * K, x + (sorted[r] / k) * K, (size_t)K * sizeof(float));
    }
    size_t scale_bytes =
        swizzled ? mxmoe_grouped_swizzled_scale_bytes(P, E, K) : (size_t)(P * K / 32);
    uint8_t *pa = malloc((size_t)(P * K / 2)), *sa = malloc(scale_bytes);
    uint8_t *pb = malloc((size_t)(P * K / 2)), *sb = malloc(scale_bytes);
    memset(pa, 0xA5, (size_t)(P * K / 2));
    memset(pb, 0xA5, (size_t)(P * K / 2));
    memset(sa, 0xA5, scale_bytes);
    memset(sb, 0xA5, scale_bytes);
    int64_t d_x[2] = {T, K}, d_g[2] = {P, K}, d_pk[2] = {P, K / 2}, d_sc[2] = {P, K / 32};
    int64_t d_swz[1] = {(int64_t)scale_bytes};
    mxmoe_tensor x_t = mxmoe_tensor_make(x, MXMOE_F32, 2, d_x);
    mxmoe_tensor g_t = mxmoe_tensor_make(gathered, MXMOE_F32, 2, d_g);
    mxmoe_scale_layout sl = swizzled ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_mx_tensor qa = {mxmoe_tensor_make(pa, MXMOE_U8, 2, d_pk),
                          swizzled ? mxmoe_tensor_make(sa, MXMOE_U8, 1, d_swz)
                                   : mxmoe_tensor_make(sa, MXMOE_U8, 2, d_sc),
                          sl};
    mxmoe_mx_tensor qb = qa;
    qb.packed.data = pb;
    qb.scales.data = sb;
    CHECK_STATUS(
        mxmoe_permute_quantize(ctx, &x_t, &sorted_t, &off_t, (int32_t)k, MXMOE_RULE_EVEN, &qa),
        MXMOE_OK);
    CHECK_STATUS(mxmoe_experts_quantize(ctx, &g_t, &off_t, MXMOE_RULE_EVEN, &qb), MXMOE_OK);
    /* rows past offsets[E] stay poisoned in both; experts_quantize leaves them too */
    CHECK_MSG(memcmp(pa, pb, (size_t)(P * K / 2)) == 0, "packed bytes differ");
    CHECK_MSG(memcmp(sa, sb, scale_bytes) == 0, "scale bytes differ");

    /* data errors: a sorted entry out of range, then bad offsets; outputs untouched */
    if (offsets[E] > 0) {
        memset(pa, 0x5A, (size_t)(P * K / 2));
        int32_t saved = sorted[0];
        sorted[0] = (int32_t)P;
        CHECK_STATUS(
            mxmoe_permute_quantize(ctx, &x_t, &sorted_t, &off_t, (int32_t)k, MXMOE_RULE_EVEN, &qa),
            MXMOE_ERR_OUT_OF_RANGE);
        sorted[0] = saved;
        offsets[E] = (int32_t)P + 1;
        CHECK_STATUS(
            mxmoe_permute_quantize(ctx, &x_t, &sorted_t, &off_t, (int32_t)k, MXMOE_RULE_EVEN, &qa),
            MXMOE_ERR_OUT_OF_RANGE);
        int untouched = 1;
        for (int64_t i = 0; i < P * K / 2; i++) {
            untouched &= pa[i] == 0x5A;
        }
        CHECK_MSG(untouched, "a failed call wrote its output");
    }
    CHECK_STATUS(mxmoe_permute_quantize(ctx, &x_t, &sorted_t, &off_t, 0, MXMOE_RULE_EVEN, &qa),
                 MXMOE_ERR_INVALID_ARGUMENT);
    free(x), free(gathered), free(ids), free(counts), free(offsets), free(sorted), free(row_of);
    free(pa), free(pb), free(sa), free(sb);
}

int main(void) {
    mxmoe_ctx* ctx = check_cpu_ctx();
    if (ctx == NULL) {
        return 1;
    }
    for (int swizzled = 0; swizzled < 2; swizzled++) {
        run_case(ctx, 1, 1, 1, 32, swizzled);
        run_case(ctx, 7, 4, 6, 96, swizzled);
        run_case(ctx, 50, 8, 16, 160, swizzled);
        run_case(ctx, 3, 2, 2, 2880, swizzled);
    }
    mxmoe_ctx_free(ctx);
    return check_report();
}
