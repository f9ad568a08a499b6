/*
 * test_prepared.c — mxmoe_weights_prepare / mxmoe_weights_unprepare on the CPU backend: the
 * same GEMM bits prepared or not, preparing again, unpreparing what is not prepared, bad
 * tensors, many prepared tensors at once, and a context freed with tensors still prepared
 * (ASan in CI sees any leak); mxmoe_weights_prepare_repack, which the CPU takes as a plain prepare
 * (its codes untouched), and the Hopper sign packing itself (core/sign_packing.h) against a
 * bit-by-bit statement of it. The GPU suite checks the Hopper path's prepared words and every
 * kernel on repacked codes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/sign_packing.h"

enum { E = 3, N = 5, K = 64, R = 7, MANY = 20 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint8_t next_byte(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

static void fill(uint8_t* p, size_t n, int scales) {
    for (size_t i = 0; i < n; i++) {
        p[i] = scales ? (uint8_t)(120 + next_byte() % 12) : next_byte();
    }
}

/* Weights MXFP4 [E, N, K] at p (packed) and s (scales). */
static mxmoe_mx_tensor weights(uint8_t* p, uint8_t* s) {
    int64_t pd[3] = {E, N, K / 2}, sd[3] = {E, N, K / 32};
    mxmoe_mx_tensor w;
    w.packed = mxmoe_tensor_make(p, MXMOE_U8, 3, pd);
    w.scales = mxmoe_tensor_make(s, MXMOE_U8, 3, sd);
    w.scale_layout = MXMOE_SCALES_LINEAR;
    return w;
}

static void test_same_result(mxmoe_ctx* ctx) {
    static uint8_t wp[E * N * K / 2], ws[E * N * K / 32], ap[R * K / 2], as[R * K / 32];
    fill(wp, sizeof wp, 0), fill(ws, sizeof ws, 1), fill(ap, sizeof ap, 0), fill(as, sizeof as, 1);
    int32_t off[E + 1] = {0, 2, 2, 6};
    float out0[R * N], out1[R * N];
    int64_t apd[2] = {R, K / 2}, asd[2] = {R, K / 32}, od[1] = {E + 1}, outd[2] = {R, N};
    mxmoe_mx_tensor a = {mxmoe_tensor_make(ap, MXMOE_U8, 2, apd),
                         mxmoe_tensor_make(as, MXMOE_U8, 2, asd), MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w = weights(wp, ws);
    mxmoe_tensor offsets = mxmoe_tensor_make(off, MXMOE_I32, 1, od);
    mxmoe_tensor o0 = mxmoe_tensor_make(out0, MXMOE_F32, 2, outd);
    mxmoe_tensor o1 = mxmoe_tensor_make(out1, MXMOE_F32, 2, outd);
    memset(out0, 0xA5, sizeof out0), memset(out1, 0xA5, sizeof out1);
    CHECK_STATUS(mxmoe_grouped_gemm(ctx, &a, &w, &offsets, NULL, &o0), MXMOE_OK);
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &w), MXMOE_OK);
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &w), MXMOE_OK); /* again: recomputed, one entry */
    CHECK_STATUS(mxmoe_grouped_gemm(ctx, &a, &w, &offsets, NULL, &o1), MXMOE_OK);
    CHECK_MSG(memcmp(out0, out1, sizeof out0) == 0, "prepared GEMM differs from unprepared");
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w), MXMOE_OK);
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(mxmoe_ctx_last_error(ctx), "not prepared") != NULL, "message: %s",
              mxmoe_ctx_last_error(ctx));
}

static void test_bad_tensors(mxmoe_ctx* ctx) {
    static uint8_t wp[E * N * K / 2], ws[E * N * K / 32];
    mxmoe_mx_tensor w = weights(wp, ws);
    CHECK_STATUS(mxmoe_weights_prepare(NULL, &w), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mxmoe_weights_prepare(ctx, NULL), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, NULL), MXMOE_ERR_INVALID_ARGUMENT);
    mxmoe_mx_tensor bad = w;
    bad.packed.ndim = 2; /* [E, N] */
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &bad), MXMOE_ERR_SHAPE);
    bad = w;
    bad.scales.dims[2] = 1; /* K/32 = 2 expected */
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &bad), MXMOE_ERR_SHAPE);
    bad = w;
    bad.packed.dtype = MXMOE_BF16;
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &bad), MXMOE_ERR_DTYPE);
    bad = w;
    bad.packed.data = NULL;
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &bad), MXMOE_ERR_INVALID_ARGUMENT);
    /* a failed prepare records nothing */
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w), MXMOE_ERR_INVALID_ARGUMENT);
}

/* Many tensors (views into one buffer, each its own pointers): the list grows, and removing
 * entries in the middle keeps the others. */
static void test_many(mxmoe_ctx* ctx) {
    static uint8_t wp[MANY][E * N * K / 2], ws[MANY][E * N * K / 32];
    for (int i = 0; i < MANY; i++) {
        mxmoe_mx_tensor w = weights(wp[i], ws[i]);
        CHECK_STATUS(mxmoe_weights_prepare(ctx, &w), MXMOE_OK);
    }
    for (int i = 0; i < MANY; i += 2) {
        mxmoe_mx_tensor w = weights(wp[i], ws[i]);
        CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w), MXMOE_OK);
    }
    for (int i = 0; i < MANY; i++) {
        mxmoe_mx_tensor w = weights(wp[i], ws[i]);
        CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w),
                     i % 2 ? MXMOE_OK : MXMOE_ERR_INVALID_ARGUMENT);
    }
    /* the same packed bytes with other scales are another tensor */
    mxmoe_mx_tensor w = weights(wp[0], ws[0]), other = weights(wp[0], ws[1]);
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &w), MXMOE_OK);
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, &other), MXMOE_ERR_INVALID_ARGUMENT);
    /* left prepared: mxmoe_ctx_free releases it */
    for (int i = 1; i < 6; i++) {
        mxmoe_mx_tensor v = weights(wp[i], ws[i]);
        CHECK_STATUS(mxmoe_weights_prepare(ctx, &v), MXMOE_OK);
    }
}

/* The packing against its definition, written bit by bit here: magnitude bits stay, code j's sign
 * (bit 4j + 3) goes to bit 8j + 7 for j < 4 and 8(j - 4) + 3 for j >= 4; and unpack inverts it.
 * Every sign pattern with random magnitudes, then random words. */
static void test_sign_packing(void) {
    static const int sign_to[8] = {7, 15, 23, 31, 3, 11, 19, 27};
    long bad = 0;
    for (uint32_t i = 0; i < (1u << 20); i++) {
        uint32_t x = 0;
        for (int b = 0; b < 4; b++) {
            x |= (uint32_t)next_byte() << (8 * b);
        }
        if (i < 256 * 64) { /* every sign pattern, 64 magnitude draws each */
            x = (x & 0x77777777u);
            for (int j = 0; j < 8; j++) {
                x |= ((i >> j) & 1u) << (4 * j + 3);
            }
        }
        uint32_t want = x & 0x77777777u;
        for (int j = 0; j < 8; j++) {
            want |= ((x >> (4 * j + 3)) & 1u) << sign_to[j];
        }
        const uint32_t y = mxmoe_sign_pack(x);
        bad += y != want || mxmoe_sign_unpack(y) != x;
    }
    CHECK_MSG(bad == 0, "sign packing: %ld words differ from the definition or do not round-trip",
              bad);
}

/* On the CPU, leave to repack is a plain prepare: the codes stay as they are, the same bits come
 * out, and unprepare forgets the tensor. */
static void test_repack_on_cpu(mxmoe_ctx* ctx) {
    static uint8_t wp[E * N * K / 2], ws[E * N * K / 32], copy[E * N * K / 2];
    fill(wp, sizeof wp, 0), fill(ws, sizeof ws, 1);
    memcpy(copy, wp, sizeof wp);
    mxmoe_mx_tensor w = weights(wp, ws);
    CHECK_STATUS(mxmoe_weights_prepare_repack(NULL, &w), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mxmoe_weights_prepare_repack(ctx, NULL), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mxmoe_weights_prepare_repack(ctx, &w), MXMOE_OK);
    CHECK_MSG(mxmoe_weights_repacked(ctx, &w) == 0, "the CPU repacked codes");
    CHECK_MSG(memcmp(copy, wp, sizeof wp) == 0, "the CPU changed the caller's codes");
    CHECK_STATUS(mxmoe_weights_prepare(ctx, &w), MXMOE_OK); /* not repacked: prepared again */
    CHECK_STATUS(mxmoe_weights_unprepare(ctx, &w), MXMOE_OK);
    CHECK_MSG(mxmoe_weights_repacked(ctx, &w) == 0 && mxmoe_weights_repacked(NULL, &w) == 0 &&
                  mxmoe_weights_repacked(ctx, NULL) == 0,
              "repacked answers 0 for unprepared weights and NULL arguments");
}

int main(void) {
    mxmoe_ctx_params params = mxmoe_ctx_params_default();
    params.backend = MXMOE_BACKEND_CPU;
    mxmoe_ctx* ctx = NULL;
    CHECK_STATUS(mxmoe_ctx_init(&ctx, &params), MXMOE_OK);
    if (ctx == NULL) {
        return check_report();
    }
    test_same_result(ctx);
    test_sign_packing();
    test_repack_on_cpu(ctx);
    test_bad_tensors(ctx);
    test_many(ctx);
    mxmoe_ctx_free(ctx);
    return check_report();
}
