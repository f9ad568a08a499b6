/*
 * test_bad_input.c — every fallible public entry point of mxmoe.h, fed each kind of bad input.
 *
 * For each operation a fixture holds a valid call (checked to succeed first, so every bad case
 * differs from a working call in exactly the way it names). Each bad case then:
 *   - starts from the valid fixture, applies one change,
 *   - poisons every output buffer (with slack past the valid size, so out-of-bounds writes
 *     are seen too),
 *   - calls on a fresh CPU context whose log callback counts error messages,
 *   - checks the status code (the most specific mxmoe_status for the fault), a non-empty
 *     mxmoe_ctx_last_error, that the log callback received the message, and that every output
 *     byte still holds the poison.
 * A few cases whose code the header does not pin down accept a small set of codes; they are
 * marked AMBIGUOUS and listed in the test's report.
 *
 * Also: status strings, ctx init/free edge cases, MXMOE_BACKEND, tensor helpers, size queries,
 * and what mxmoe_ctx_last_error says after a success that follows a failure.
 */
#define _POSIX_C_SOURCE 200809L /* setenv / unsetenv */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mxmoe.h"

#define POISON 0xA5

#define INV MXMOE_ERR_INVALID_ARGUMENT
#define DT  MXMOE_ERR_DTYPE
#define SH  MXMOE_ERR_SHAPE
#define OV  MXMOE_ERR_OVERFLOW
#define OOR MXMOE_ERR_OUT_OF_RANGE
#define WS  MXMOE_ERR_WORKSPACE
#define UNS MXMOE_ERR_UNSUPPORTED

#define BIT(s) (1u << (unsigned)(s))

/* Dimensions that overflow: 2^56 rows of 64 F32 = 2^64 bytes (size_t); 2^58 * 64 = 2^64 elements
 * (int64). */
#define BIG_BYTES (INT64_C(1) << 56)
#define BIG_NUMEL (INT64_C(1) << 58)

static mxmoe_ctx* setup_ctx; /* for fixtures that need a query (workspace size) */

/* ---------------------------------------------------------------------------------------------
 * Log capture and the generic runner.
 */
typedef struct {
    int errors;
    char last[1024];
} log_capture;

static void capture_log(mxmoe_log_level level, const char* message, void* user) {
    log_capture* cap = user;
    if (level == MXMOE_LOG_ERROR) {
        cap->errors++;
        snprintf(cap->last, sizeof cap->last, "%s", message ? message : "(null)");
    }
}

static mxmoe_ctx* new_ctx(log_capture* cap) {
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    p.num_threads = 1;
    p.log = capture_log;
    p.log_user_data = cap;
    p.log_level = MXMOE_LOG_ERROR;
    mxmoe_ctx* c = NULL;
    if (mxmoe_ctx_init(&c, &p) != MXMOE_OK) {
        return NULL;
    }
    return c;
}

typedef struct {
    void* p;
    size_t n;
} region;

#define MAX_REGIONS 8
typedef mxmoe_status (*call_fn)(mxmoe_ctx* ctx, void* fx);
typedef int (*outputs_fn)(void* fx, region* regions);

static int is_poisoned(const region* r) {
    const uint8_t* b = r->p;
    for (size_t i = 0; i < r->n; i++) {
        if (b[i] != POISON) {
            return 0;
        }
    }
    return 1;
}

static int ambiguous_count;

static void status_mask_names(unsigned mask, char* buf, size_t n) {
    buf[0] = '\0';
    for (int s = 0; s < MXMOE_STATUS_COUNT; s++) {
        if (mask & BIT(s)) {
            size_t len = strlen(buf);
            snprintf(buf + len, n - len, "%s%s", len ? " or " : "",
                     mxmoe_status_string((mxmoe_status)s));
        }
    }
}

static void expect_fail(const char* op, const char* what, unsigned want_mask, int null_ctx,
                        call_fn call, outputs_fn outputs, void* fx) {
    check_set_context("%s: %s", op, what);
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    mxmoe_ctx* c = NULL;
    if (!null_ctx) {
        c = new_ctx(&cap);
        if (!CHECK_MSG(c != NULL, "cannot create a CPU context")) {
            return;
        }
    }
    region r[MAX_REGIONS];
    int nr = outputs(fx, r);
    for (int i = 0; i < nr; i++) {
        memset(r[i].p, POISON, r[i].n);
    }
    mxmoe_status st = call(c, fx);
    char names[256];
    status_mask_names(want_mask, names, sizeof names);
    CHECK_MSG(((unsigned)st < 32u) && (want_mask & BIT(st)), "returned %d (%s), want %s", (int)st,
              mxmoe_status_string(st), names);
    if (getenv("MXMOE_TEST_VERBOSE") != NULL) {
        printf("%s: %s -> %s: %s\n", op, what, mxmoe_status_string(st),
               c != NULL ? mxmoe_ctx_last_error(c) : "(no context)");
    }
    if (c != NULL) {
        const char* msg = mxmoe_ctx_last_error(c);
        CHECK_MSG(msg != NULL && msg[0] != '\0', "mxmoe_ctx_last_error is empty after a failure");
        CHECK_MSG(cap.errors >= 1, "the log callback received no error message");
        if (msg != NULL && cap.errors >= 1) {
            CHECK_MSG(strcmp(msg, cap.last) == 0, "last_error '%s' differs from the logged '%s'",
                      msg, cap.last);
        }
    }
    for (int i = 0; i < nr; i++) {
        CHECK_MSG(is_poisoned(&r[i]), "output #%d was written on failure", i);
    }
    mxmoe_ctx_free(c);
}

static void expect_ok(const char* op, const char* what, call_fn call, outputs_fn outputs,
                      void* fx) {
    check_set_context("%s: %s (valid call)", op, what);
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    mxmoe_ctx* c = new_ctx(&cap);
    if (!CHECK_MSG(c != NULL, "cannot create a CPU context")) {
        return;
    }
    region r[MAX_REGIONS];
    int nr = outputs(fx, r);
    for (int i = 0; i < nr; i++) {
        memset(r[i].p, POISON, r[i].n);
    }
    mxmoe_status st = call(c, fx);
    CHECK_MSG(st == MXMOE_OK, "valid call returned %d (%s): %s", (int)st, mxmoe_status_string(st),
              mxmoe_ctx_last_error(c));
    int written = 0;
    for (int i = 0; i < nr; i++) {
        written |= !is_poisoned(&r[i]);
    }
    CHECK_MSG(st != MXMOE_OK || written, "valid call wrote no output");
    CHECK_MSG(cap.errors == 0, "valid call logged an error: %s", cap.last);
    CHECK_MSG(strcmp(mxmoe_ctx_last_error(c), "") == 0, "last_error not empty after success: %s",
              mxmoe_ctx_last_error(c));
    mxmoe_ctx_free(c);
}

/* BAD(op, codes, null_ctx, description, mutation...): runs one bad case of fixture `op`. Inside
 * the mutation `f` points at the fixture. */
#define RUN_CASE(op, mask, null_ctx, what, ...)                                                    \
    do {                                                                                           \
        op##_fx* fx_ = calloc(1, sizeof(op##_fx));                                                 \
        op##_setup(fx_);                                                                           \
        {                                                                                          \
            op##_fx* f = fx_;                                                                      \
            (void)f;                                                                               \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
        expect_fail(#op, what, mask, null_ctx, op##_call, op##_outputs, fx_);                      \
        op##_teardown(fx_);                                                                        \
        free(fx_);                                                                                 \
    } while (0)
#define BAD(op, code, what, ...) RUN_CASE(op, BIT(code), 0, what, __VA_ARGS__)
/* A case whose exact code the header leaves open: any of `mask` passes. */
#define BAD_AMBIGUOUS(op, mask, what, ...)                                                         \
    do {                                                                                           \
        ambiguous_count++;                                                                         \
        RUN_CASE(op, mask, 0, "AMBIGUOUS " what, __VA_ARGS__);                                     \
    } while (0)
#define BAD_NULL_CTX(op) RUN_CASE(op, BIT(MXMOE_ERR_INVALID_ARGUMENT), 1, "NULL ctx", (void)0)
#define GOOD(op, what, ...)                                                                        \
    do {                                                                                           \
        op##_fx* fx_ = calloc(1, sizeof(op##_fx));                                                 \
        op##_setup(fx_);                                                                           \
        {                                                                                          \
            op##_fx* f = fx_;                                                                      \
            (void)f;                                                                               \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
        expect_ok(#op, what, op##_call, op##_outputs, fx_);                                        \
        op##_teardown(fx_);                                                                        \
        free(fx_);                                                                                 \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Descriptor helpers.
 */
static void dims1(mxmoe_tensor* t, int64_t a) {
    int64_t d[1] = {a};
    *t = mxmoe_tensor_make(t->data, t->dtype, 1, d);
}
static void dims2(mxmoe_tensor* t, int64_t a, int64_t b) {
    int64_t d[2] = {a, b};
    *t = mxmoe_tensor_make(t->data, t->dtype, 2, d);
}
static void dims3(mxmoe_tensor* t, int64_t a, int64_t b, int64_t c) {
    int64_t d[3] = {a, b, c};
    *t = mxmoe_tensor_make(t->data, t->dtype, 3, d);
}
/* An MX tensor of logical shape [rows, k] (or [e, rows, k] when e > 0), linear scales. */
static mxmoe_mx_tensor mx2(uint8_t* packed, uint8_t* scales, int64_t rows, int64_t k) {
    mxmoe_mx_tensor t;
    int64_t pd[2] = {rows, k / 2}, sd[2] = {rows, k / 32};
    t.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, pd);
    t.scales = mxmoe_tensor_make(scales, MXMOE_U8, 2, sd);
    t.scale_layout = MXMOE_SCALES_LINEAR;
    return t;
}
static void mxdims2(mxmoe_mx_tensor* t, int64_t rows, int64_t k) {
    dims2(&t->packed, rows, k / 2);
    dims2(&t->scales, rows, k / 32);
}
static mxmoe_mx_tensor mx3(uint8_t* packed, uint8_t* scales, int64_t e, int64_t rows, int64_t k) {
    mxmoe_mx_tensor t;
    int64_t pd[3] = {e, rows, k / 2}, sd[3] = {e, rows, k / 32};
    t.packed = mxmoe_tensor_make(packed, MXMOE_U8, 3, pd);
    t.scales = mxmoe_tensor_make(scales, MXMOE_U8, 3, sd);
    t.scale_layout = MXMOE_SCALES_LINEAR;
    return t;
}
static void mxdims3(mxmoe_mx_tensor* t, int64_t e, int64_t rows, int64_t k) {
    dims3(&t->packed, e, rows, k / 2);
    dims3(&t->scales, e, rows, k / 32);
}

static void fill_floats(float* x, int n) {
    for (int i = 0; i < n; i++) {
        x[i] = (float)((i * 7) % 13 - 6) * 0.5f;
    }
}

static void fill_bytes(uint8_t* p, int n, uint8_t base) {
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(base + (i * 37) % 23);
    }
}

/* ---------------------------------------------------------------------------------------------
 * quantize: x F32 [2, 64] -> packed [2, 32], scales [2, 2].
 */
typedef struct {
    float x[4 * 128];
    uint8_t packed[4 * 64], scales[4 * 4];
    mxmoe_tensor xt;
    mxmoe_mx_tensor out;
    const mxmoe_tensor* xp;
    mxmoe_mx_tensor* outp;
    mxmoe_scale_rule rule;
} quant_fx;

static void quant_setup(quant_fx* f) {
    fill_floats(f->x, 4 * 128);
    int64_t d[2] = {2, 64};
    f->xt = mxmoe_tensor_make(f->x, MXMOE_F32, 2, d);
    f->out = mx2(f->packed, f->scales, 2, 64);
    f->xp = &f->xt;
    f->outp = &f->out;
    f->rule = MXMOE_RULE_EVEN;
}
static void quant_teardown(quant_fx* f) {
    (void)f;
}
static mxmoe_status quant_call(mxmoe_ctx* c, void* v) {
    quant_fx* f = v;
    return mxmoe_quantize(c, f->xp, f->rule, f->outp);
}
static int quant_outputs(void* v, region* r) {
    quant_fx* f = v;
    r[0] = (region){f->packed, sizeof f->packed};
    r[1] = (region){f->scales, sizeof f->scales};
    return 2;
}

static void test_quantize(void) {
    GOOD(quant, "F32");
    GOOD(quant, "BF16 x", f->xt.dtype = MXMOE_BF16);
    GOOD(quant, "3-D x", dims3(&f->xt, 1, 2, 64); dims3(&f->out.packed, 1, 2, 32);
         dims3(&f->out.scales, 1, 2, 2));
    BAD_NULL_CTX(quant);
    BAD(quant, INV, "NULL x", f->xp = NULL);
    BAD(quant, INV, "NULL out", f->outp = NULL);
    BAD(quant, INV, "NULL x data", f->xt.data = NULL);
    BAD(quant, INV, "NULL packed data", f->out.packed.data = NULL);
    BAD(quant, INV, "NULL scales data", f->out.scales.data = NULL);
    BAD(quant, DT, "x dtype U8", f->xt.dtype = MXMOE_U8);
    BAD(quant, DT, "x dtype I32", f->xt.dtype = MXMOE_I32);
    BAD(quant, DT, "x dtype 99", f->xt.dtype = (mxmoe_dtype)99);
    BAD(quant, DT, "x dtype -1", f->xt.dtype = (mxmoe_dtype)-1);
    BAD(quant, DT, "packed dtype F32", f->out.packed.dtype = MXMOE_F32);
    BAD(quant, DT, "scales dtype I32", f->out.scales.dtype = MXMOE_I32);
    BAD(quant, SH, "x rank 0", f->xt.ndim = 0);
    BAD(quant, SH, "x rank 5", f->xt.ndim = 5);
    BAD(quant, SH, "packed rank 1", dims1(&f->out.packed, 64));
    BAD(quant, SH, "scales rank 3", dims3(&f->out.scales, 1, 2, 2));
    BAD(quant, SH, "packed last dim 31", dims2(&f->out.packed, 2, 31));
    BAD(quant, SH, "packed last dim 64", dims2(&f->out.packed, 2, 64));
    BAD(quant, SH, "scales last dim 3", dims2(&f->out.scales, 2, 3));
    BAD(quant, SH, "packed rows 3", dims2(&f->out.packed, 3, 32));
    BAD(quant, SH, "scales rows 1", dims2(&f->out.scales, 1, 2));
    BAD(quant, SH, "out rows 3 (both)", mxdims2(&f->out, 3, 64));
    BAD(quant, SH, "K = 48", dims2(&f->xt, 2, 48); dims2(&f->out.packed, 2, 24);
        dims2(&f->out.scales, 2, 1));
    BAD(quant, SH, "K = 16", dims2(&f->xt, 2, 16); dims2(&f->out.packed, 2, 8);
        dims2(&f->out.scales, 2, 0));
    BAD(quant, SH, "K = 33", dims2(&f->xt, 2, 33); dims2(&f->out.packed, 2, 16);
        dims2(&f->out.scales, 2, 1));
    BAD(quant, SH, "negative rows", dims2(&f->xt, -2, 64); mxdims2(&f->out, -2, 64));
    BAD(quant, SH, "negative K", dims2(&f->xt, 2, -64); dims2(&f->out.packed, 2, -32);
        dims2(&f->out.scales, 2, -2));
    BAD(quant, OV, "x bytes overflow size_t", dims2(&f->xt, BIG_BYTES, 64);
        mxdims2(&f->out, BIG_BYTES, 64));
    BAD(quant, OV, "x numel overflows int64", dims2(&f->xt, BIG_NUMEL, 64);
        mxdims2(&f->out, BIG_NUMEL, 64));
    BAD(quant, OV, "numel overflow across 4 dims",
        int64_t d[4] = {INT64_C(1) << 20, INT64_C(1) << 20, INT64_C(1) << 20, 64};
        f->xt = mxmoe_tensor_make(f->x, MXMOE_F32, 4, d); d[3] = 32;
        f->out.packed = mxmoe_tensor_make(f->packed, MXMOE_U8, 4, d); d[3] = 2;
        f->out.scales = mxmoe_tensor_make(f->scales, MXMOE_U8, 4, d));
    BAD(quant, INV, "rule 4", f->rule = MXMOE_RULE_COUNT);
    BAD(quant, INV, "rule -1", f->rule = (mxmoe_scale_rule)-1);
    BAD(quant, INV, "scale layout 7", f->out.scale_layout = (mxmoe_scale_layout)7);
    BAD(quant, INV, "x device 5", f->xt.device = (mxmoe_device)5);
    BAD_AMBIGUOUS(quant, BIT(INV) | BIT(UNS), "x on the CUDA device for a CPU context",
                  f->xt.device = MXMOE_DEVICE_CUDA);
    BAD_AMBIGUOUS(quant, BIT(INV) | BIT(UNS), "out on the CUDA device for a CPU context",
                  f->out.packed.device = MXMOE_DEVICE_CUDA);
    BAD_AMBIGUOUS(quant, BIT(INV) | BIT(UNS) | BIT(SH), "swizzled out (linear only documented)",
                  f->out.scale_layout = MXMOE_SCALES_SWIZZLED;
                  dims1(&f->out.scales, 512));
}

/* ---------------------------------------------------------------------------------------------
 * dequantize: packed [2, 32] + scales [2, 2] -> out F32 [2, 64].
 */
typedef struct {
    uint8_t packed[4 * 64], scales[4 * 4];
    float out[4 * 128];
    mxmoe_mx_tensor in;
    mxmoe_tensor ot;
    const mxmoe_mx_tensor* inp;
    mxmoe_tensor* outp;
} deq_fx;

static void deq_setup(deq_fx* f) {
    fill_bytes(f->packed, sizeof f->packed, 0);
    fill_bytes(f->scales, sizeof f->scales, 120);
    f->in = mx2(f->packed, f->scales, 2, 64);
    int64_t d[2] = {2, 64};
    f->ot = mxmoe_tensor_make(f->out, MXMOE_F32, 2, d);
    f->inp = &f->in;
    f->outp = &f->ot;
}
static void deq_teardown(deq_fx* f) {
    (void)f;
}
static mxmoe_status deq_call(mxmoe_ctx* c, void* v) {
    deq_fx* f = v;
    return mxmoe_dequantize(c, f->inp, f->outp);
}
static int deq_outputs(void* v, region* r) {
    deq_fx* f = v;
    r[0] = (region){f->out, sizeof f->out};
    return 1;
}

static void test_dequantize(void) {
    GOOD(deq, "F32");
    GOOD(deq, "F16 out", f->ot.dtype = MXMOE_F16);
    BAD_NULL_CTX(deq);
    BAD(deq, INV, "NULL in", f->inp = NULL);
    BAD(deq, INV, "NULL out", f->outp = NULL);
    BAD(deq, INV, "NULL packed data", f->in.packed.data = NULL);
    BAD(deq, INV, "NULL scales data", f->in.scales.data = NULL);
    BAD(deq, INV, "NULL out data", f->ot.data = NULL);
    BAD(deq, DT, "out dtype U8", f->ot.dtype = MXMOE_U8);
    BAD(deq, DT, "out dtype I32", f->ot.dtype = MXMOE_I32);
    BAD(deq, DT, "out dtype 42", f->ot.dtype = (mxmoe_dtype)42);
    BAD(deq, DT, "packed dtype BF16", f->in.packed.dtype = MXMOE_BF16);
    BAD(deq, DT, "scales dtype F32", f->in.scales.dtype = MXMOE_F32);
    BAD(deq, SH, "out rank 0", f->ot.ndim = 0);
    BAD(deq, SH, "packed rank 7", f->in.packed.ndim = 7);
    BAD(deq, SH, "out last dim 32", dims2(&f->ot, 2, 32));
    BAD(deq, SH, "out rows 3", dims2(&f->ot, 3, 64));
    BAD(deq, SH, "scales last dim 1", dims2(&f->in.scales, 2, 1));
    BAD(deq, SH, "scales rows 3", dims2(&f->in.scales, 3, 2));
    BAD(deq, SH, "K = 48", mxdims2(&f->in, 2, 48); dims2(&f->ot, 2, 48));
    BAD(deq, SH, "negative rows", mxdims2(&f->in, -2, 64); dims2(&f->ot, -2, 64));
    BAD(deq, OV, "out bytes overflow", mxdims2(&f->in, BIG_BYTES, 64);
        dims2(&f->ot, BIG_BYTES, 64));
    BAD(deq, OV, "numel overflow", mxdims2(&f->in, BIG_NUMEL, 64); dims2(&f->ot, BIG_NUMEL, 64));
    BAD(deq, INV, "scale layout 9", f->in.scale_layout = (mxmoe_scale_layout)9);
    BAD_AMBIGUOUS(deq, BIT(INV) | BIT(UNS) | BIT(SH), "swizzled in (linear only documented)",
                  f->in.scale_layout = MXMOE_SCALES_SWIZZLED;
                  dims1(&f->in.scales, 512));
}

/* ---------------------------------------------------------------------------------------------
 * gguf_from_mx: mx [2, 64] -> gguf U8 [2, 34]; mx_from_gguf: the reverse.
 */
typedef struct {
    uint8_t packed[4 * 64], scales[4 * 4];
    uint8_t gguf[4 * 68];
    mxmoe_mx_tensor mx;
    mxmoe_tensor gt;
    mxmoe_mx_tensor* mxp;
    mxmoe_tensor* gp;
} gguf_fx;

static void gguf_setup(gguf_fx* f) {
    fill_bytes(f->packed, sizeof f->packed, 0);
    fill_bytes(f->scales, sizeof f->scales, 120);
    fill_bytes(f->gguf, sizeof f->gguf, 100);
    f->mx = mx2(f->packed, f->scales, 2, 64);
    int64_t d[2] = {2, 34};
    f->gt = mxmoe_tensor_make(f->gguf, MXMOE_U8, 2, d);
    f->mxp = &f->mx;
    f->gp = &f->gt;
}
static void gguf_teardown(gguf_fx* f) {
    (void)f;
}
/* to_gguf: outputs are the gguf bytes */
typedef gguf_fx to_gguf_fx;
#define to_gguf_setup    gguf_setup
#define to_gguf_teardown gguf_teardown
static mxmoe_status to_gguf_call(mxmoe_ctx* c, void* v) {
    gguf_fx* f = v;
    return mxmoe_gguf_from_mx(c, f->mxp, f->gp);
}
static int to_gguf_outputs(void* v, region* r) {
    gguf_fx* f = v;
    r[0] = (region){f->gguf, sizeof f->gguf};
    return 1;
}
/* from_gguf: outputs are the MX bytes */
typedef gguf_fx from_gguf_fx;
#define from_gguf_setup    gguf_setup
#define from_gguf_teardown gguf_teardown
static mxmoe_status from_gguf_call(mxmoe_ctx* c, void* v) {
    gguf_fx* f = v;
    return mxmoe_mx_from_gguf(c, f->gp, f->mxp);
}
static int from_gguf_outputs(void* v, region* r) {
    gguf_fx* f = v;
    r[0] = (region){f->packed, sizeof f->packed};
    r[1] = (region){f->scales, sizeof f->scales};
    return 2;
}

static void test_gguf(void) {
    GOOD(to_gguf, "[2, 64]");
    BAD_NULL_CTX(to_gguf);
    BAD(to_gguf, INV, "NULL in", f->mxp = NULL);
    BAD(to_gguf, INV, "NULL gguf", f->gp = NULL);
    BAD(to_gguf, INV, "NULL packed data", f->mx.packed.data = NULL);
    BAD(to_gguf, INV, "NULL scales data", f->mx.scales.data = NULL);
    BAD(to_gguf, INV, "NULL gguf data", f->gt.data = NULL);
    BAD(to_gguf, DT, "gguf dtype F32", f->gt.dtype = MXMOE_F32);
    BAD(to_gguf, DT, "packed dtype I32", f->mx.packed.dtype = MXMOE_I32);
    BAD(to_gguf, SH, "gguf last dim 33", dims2(&f->gt, 2, 33));
    BAD(to_gguf, SH, "gguf last dim 17", dims2(&f->gt, 2, 17));
    BAD(to_gguf, SH, "gguf rows 3", dims2(&f->gt, 3, 34));
    BAD(to_gguf, SH, "gguf rank 1", dims1(&f->gt, 68));
    BAD(to_gguf, SH, "K = 48", mxdims2(&f->mx, 2, 48); dims2(&f->gt, 2, 17));
    BAD(to_gguf, SH, "scales inconsistent with packed", dims2(&f->mx.scales, 2, 1));
    BAD(to_gguf, SH, "negative rows", mxdims2(&f->mx, -2, 64); dims2(&f->gt, -2, 34));
    BAD(to_gguf, OV, "numel overflow", mxdims2(&f->mx, BIG_NUMEL * 2, 64);
        dims2(&f->gt, BIG_NUMEL * 2, 34));
    BAD(to_gguf, INV, "scale layout 3", f->mx.scale_layout = (mxmoe_scale_layout)3);
    BAD_AMBIGUOUS(to_gguf, BIT(INV) | BIT(UNS) | BIT(SH), "swizzled in",
                  f->mx.scale_layout = MXMOE_SCALES_SWIZZLED;
                  dims1(&f->mx.scales, 512));

    GOOD(from_gguf, "[2, 34]");
    BAD_NULL_CTX(from_gguf);
    BAD(from_gguf, INV, "NULL gguf", f->gp = NULL);
    BAD(from_gguf, INV, "NULL out", f->mxp = NULL);
    BAD(from_gguf, INV, "NULL gguf data", f->gt.data = NULL);
    BAD(from_gguf, INV, "NULL packed data", f->mx.packed.data = NULL);
    BAD(from_gguf, INV, "NULL scales data", f->mx.scales.data = NULL);
    BAD(from_gguf, DT, "gguf dtype BF16", f->gt.dtype = MXMOE_BF16);
    BAD(from_gguf, DT, "scales dtype F16", f->mx.scales.dtype = MXMOE_F16);
    BAD(from_gguf, SH, "gguf last dim 35", dims2(&f->gt, 2, 35));
    BAD(from_gguf, SH, "gguf last dim 51 (K mismatch)", dims2(&f->gt, 2, 51));
    BAD(from_gguf, SH, "packed last dim 31", dims2(&f->mx.packed, 2, 31));
    BAD(from_gguf, SH, "scales last dim 3", dims2(&f->mx.scales, 2, 3));
    BAD(from_gguf, SH, "out rows 1", mxdims2(&f->mx, 1, 64));
    BAD(from_gguf, SH, "gguf rank 0", f->gt.ndim = 0);
    BAD(from_gguf, OV, "numel overflow", mxdims2(&f->mx, BIG_NUMEL * 2, 64);
        dims2(&f->gt, BIG_NUMEL * 2, 34));
    BAD(from_gguf, INV, "scale layout 3", f->mx.scale_layout = (mxmoe_scale_layout)3);
    BAD_AMBIGUOUS(from_gguf, BIT(INV) | BIT(UNS) | BIT(SH), "swizzled out",
                  f->mx.scale_layout = MXMOE_SCALES_SWIZZLED;
                  dims1(&f->mx.scales, 512));
}

/* ---------------------------------------------------------------------------------------------
 * swizzle_scales: linear U8 [3, 2] (K = 64) -> swizzled U8 [512]; unswizzle: the reverse.
 */
typedef struct {
    uint8_t linear[8 * 4];
    uint8_t swz[1024];
    mxmoe_tensor lt, st;
    mxmoe_tensor *lp, *sp;
    int64_t k;
} swz_fx;

static void swz_setup(swz_fx* f) {
    fill_bytes(f->linear, sizeof f->linear, 110);
    memset(f->swz, 0, sizeof f->swz);
    int64_t ld[2] = {3, 2}, sd[1] = {512};
    f->lt = mxmoe_tensor_make(f->linear, MXMOE_U8, 2, ld);
    f->st = mxmoe_tensor_make(f->swz, MXMOE_U8, 1, sd);
    f->lp = &f->lt;
    f->sp = &f->st;
    f->k = 64;
}
static void swz_teardown(swz_fx* f) {
    (void)f;
}
static mxmoe_status swz_call(mxmoe_ctx* c, void* v) {
    swz_fx* f = v;
    return mxmoe_swizzle_scales(c, f->lp, f->k, f->sp);
}
static int swz_outputs(void* v, region* r) {
    swz_fx* f = v;
    r[0] = (region){f->swz, sizeof f->swz};
    return 1;
}
typedef swz_fx unswz_fx;
static void unswz_setup(swz_fx* f) {
    swz_setup(f);
    fill_bytes(f->swz, sizeof f->swz, 90);
}
#define unswz_teardown swz_teardown
static mxmoe_status unswz_call(mxmoe_ctx* c, void* v) {
    swz_fx* f = v;
    return mxmoe_unswizzle_scales(c, f->sp, f->k, f->lp);
}
static int unswz_outputs(void* v, region* r) {
    swz_fx* f = v;
    r[0] = (region){f->linear, sizeof f->linear};
    return 1;
}

static void test_swizzle(void) {
    GOOD(swz, "R=3 K=64");
    BAD_NULL_CTX(swz);
    BAD(swz, INV, "NULL linear", f->lp = NULL);
    BAD(swz, INV, "NULL swizzled", f->sp = NULL);
    BAD(swz, INV, "NULL linear data", f->lt.data = NULL);
    BAD(swz, INV, "NULL swizzled data", f->st.data = NULL);
    BAD(swz, DT, "linear dtype F32", f->lt.dtype = MXMOE_F32);
    BAD(swz, DT, "swizzled dtype I32", f->st.dtype = MXMOE_I32);
    BAD(swz, SH, "k = 48", f->k = 48);
    BAD(swz, SH, "k = 0", f->k = 0);
    BAD(swz, SH, "k = -64", f->k = -64);
    BAD(swz, SH, "k = 96 (linear has 2 columns)", f->k = 96);
    BAD(swz, SH, "swizzled buffer 511 bytes (too small)", dims1(&f->st, 511));
    BAD(swz, SH, "swizzled rank 2", dims2(&f->st, 1, 512));
    BAD(swz, SH, "linear rank 1", dims1(&f->lt, 6));
    BAD(swz, SH, "linear rank 3", dims3(&f->lt, 1, 3, 2));
    BAD(swz, SH, "negative rows", dims2(&f->lt, -3, 2));
    BAD(swz, OV, "swizzled size overflows", dims2(&f->lt, INT64_C(1) << 62, 2));
    BAD(swz, OV, "k overflows", f->k = INT64_MAX - 31; dims2(&f->lt, 3, (INT64_MAX - 31) / 32));

    GOOD(unswz, "R=3 K=64");
    BAD_NULL_CTX(unswz);
    BAD(unswz, INV, "NULL linear", f->lp = NULL);
    BAD(unswz, INV, "NULL swizzled", f->sp = NULL);
    BAD(unswz, INV, "NULL linear data", f->lt.data = NULL);
    BAD(unswz, INV, "NULL swizzled data", f->st.data = NULL);
    BAD(unswz, DT, "linear dtype BF16", f->lt.dtype = MXMOE_BF16);
    BAD(unswz, DT, "swizzled dtype F16", f->st.dtype = MXMOE_F16);
    BAD(unswz, SH, "k = 40", f->k = 40);
    BAD(unswz, SH, "k = 128 (linear has 2 columns)", f->k = 128);
    BAD(unswz, SH, "swizzled buffer 256 bytes (too small)", dims1(&f->st, 256));
    BAD(unswz, SH, "swizzled rank 3", dims3(&f->st, 1, 1, 512));
    BAD(unswz, SH, "linear rank 1", dims1(&f->lt, 6));
    BAD(unswz, OV, "swizzled size overflows", dims2(&f->lt, INT64_C(1) << 62, 2));
}

/* ---------------------------------------------------------------------------------------------
 * route: logits F32 [2, 4] -> ids I32 [2, 2], weights F32 [2, 2].
 */
typedef struct {
    float logits[8 * 8];
    int32_t ids[8 * 8];
    float weights[8 * 8];
    float bias[16];
    mxmoe_tensor lt, it, wt, bt;
    mxmoe_route_params params;
    const mxmoe_tensor* lp;
    const mxmoe_route_params* pp;
    mxmoe_tensor *ip, *wp;
} route_fx;

static void route_setup(route_fx* f) {
    for (int i = 0; i < 64; i++) {
        f->logits[i] = (float)((i * 5) % 7) * 0.25f - 0.5f;
    }
    for (int i = 0; i < 16; i++) {
        f->bias[i] = 0.125f * (float)i;
    }
    int64_t ld[2] = {2, 4}, od[2] = {2, 2}, bd[1] = {4};
    f->lt = mxmoe_tensor_make(f->logits, MXMOE_F32, 2, ld);
    f->it = mxmoe_tensor_make(f->ids, MXMOE_I32, 2, od);
    f->wt = mxmoe_tensor_make(f->weights, MXMOE_F32, 2, od);
    f->bt = mxmoe_tensor_make(f->bias, MXMOE_F32, 1, bd);
    f->params = mxmoe_route_params_default();
    f->params.method = MXMOE_ROUTE_SOFTMAX_TOPK;
    f->params.top_k = 2;
    f->lp = &f->lt;
    f->pp = &f->params;
    f->ip = &f->it;
    f->wp = &f->wt;
}
static void route_teardown(route_fx* f) {
    (void)f;
}
static mxmoe_status route_call(mxmoe_ctx* c, void* v) {
    route_fx* f = v;
    return mxmoe_route(c, f->lp, f->pp, f->ip, f->wp);
}
static int route_outputs(void* v, region* r) {
    route_fx* f = v;
    r[0] = (region){f->ids, sizeof f->ids};
    r[1] = (region){f->weights, sizeof f->weights};
    return 2;
}
/* A valid DeepSeek-style grouped configuration: E = 4, 2 groups of 2, keep 1, top-2. */
static void route_grouped(route_fx* f) {
    f->params.method = MXMOE_ROUTE_SIGMOID_GROUPED;
    f->params.num_groups = 2;
    f->params.topk_groups = 1;
    f->params.top_k = 2;
    f->params.renormalize = 1;
    f->params.scaling_factor = 2.5f;
    f->params.correction_bias = &f->bt;
}

static void test_route(void) {
    GOOD(route, "softmax top-2");
    GOOD(route, "top-k softmax", f->params.method = MXMOE_ROUTE_TOPK_SOFTMAX);
    GOOD(route, "sigmoid grouped", route_grouped(f));
    GOOD(route, "top_k = E", f->params.top_k = 4; dims2(&f->it, 2, 4); dims2(&f->wt, 2, 4));
    BAD_NULL_CTX(route);
    BAD(route, INV, "NULL logits", f->lp = NULL);
    BAD(route, INV, "NULL params", f->pp = NULL);
    BAD(route, INV, "NULL topk_ids", f->ip = NULL);
    BAD(route, INV, "NULL topk_weights", f->wp = NULL);
    BAD(route, INV, "NULL logits data", f->lt.data = NULL);
    BAD(route, INV, "NULL ids data", f->it.data = NULL);
    BAD(route, INV, "NULL weights data", f->wt.data = NULL);
    BAD(route, DT, "logits dtype I32", f->lt.dtype = MXMOE_I32);
    BAD(route, DT, "logits dtype U8", f->lt.dtype = MXMOE_U8);
    BAD(route, DT, "ids dtype F32", f->it.dtype = MXMOE_F32);
    BAD(route, DT, "weights dtype I32", f->wt.dtype = MXMOE_I32);
    BAD(route, DT, "weights dtype BF16", f->wt.dtype = MXMOE_BF16);
    BAD(route, SH, "logits rank 1", dims1(&f->lt, 8));
    BAD(route, SH, "logits rank 3", dims3(&f->lt, 1, 2, 4));
    BAD(route, SH, "ids rows 3", dims2(&f->it, 3, 2));
    BAD(route, SH, "ids k 3 (params.top_k 2)", dims2(&f->it, 2, 3));
    BAD(route, SH, "weights k 1", dims2(&f->wt, 2, 1));
    BAD(route, SH, "weights rank 1", dims1(&f->wt, 4));
    BAD(route, SH, "negative tokens", dims2(&f->lt, -2, 4); dims2(&f->it, -2, 2);
        dims2(&f->wt, -2, 2));
    BAD(route, OV, "numel overflow", dims2(&f->lt, BIG_NUMEL, 64); dims2(&f->it, BIG_NUMEL, 2);
        dims2(&f->wt, BIG_NUMEL, 2));
    BAD(route, INV, "method 3", f->params.method = MXMOE_ROUTING_COUNT);
    BAD(route, INV, "method -1", f->params.method = (mxmoe_routing)-1);
    BAD(route, INV, "top_k 0", f->params.top_k = 0; dims2(&f->it, 2, 0); dims2(&f->wt, 2, 0));
    BAD(route, INV, "top_k -1", f->params.top_k = -1);
    BAD(route, INV, "top_k 5 > E", f->params.top_k = 5; dims2(&f->it, 2, 5); dims2(&f->wt, 2, 5));
    BAD(route, INV, "top-k softmax, top_k 5 > E", f->params.method = MXMOE_ROUTE_TOPK_SOFTMAX;
        f->params.top_k = 5; dims2(&f->it, 2, 5); dims2(&f->wt, 2, 5));
    BAD(route, INV, "grouped: num_groups 0", route_grouped(f); f->params.num_groups = 0);
    BAD(route, INV, "grouped: num_groups -2", route_grouped(f); f->params.num_groups = -2);
    BAD(route, INV, "grouped: E % num_groups != 0", route_grouped(f); f->params.num_groups = 3);
    BAD(route, INV, "grouped: num_groups > E", route_grouped(f); f->params.num_groups = 8;
        f->params.topk_groups = 1);
    BAD(route, INV, "grouped: topk_groups 0", route_grouped(f); f->params.topk_groups = 0);
    BAD(route, INV, "grouped: topk_groups > num_groups", route_grouped(f);
        f->params.topk_groups = 3);
    BAD(route, INV, "grouped: top_k > experts in kept groups", route_grouped(f);
        f->params.top_k = 3; dims2(&f->it, 2, 3); dims2(&f->wt, 2, 3));
    BAD(route, DT, "grouped: correction_bias dtype I32", route_grouped(f); f->bt.dtype = MXMOE_I32);
    BAD(route, SH, "grouped: correction_bias [5]", route_grouped(f); dims1(&f->bt, 5));
    BAD(route, SH, "grouped: correction_bias [1, 4]", route_grouped(f); dims2(&f->bt, 1, 4));
    BAD(route, INV, "grouped: correction_bias data NULL", route_grouped(f); f->bt.data = NULL);
    BAD(route, OOR, "NaN logit (last token)", f->logits[7] = NAN);
    BAD(route, OOR, "NaN logit, top-k softmax", f->params.method = MXMOE_ROUTE_TOPK_SOFTMAX;
        f->logits[5] = NAN);
    BAD(route, OOR, "NaN logit, grouped", route_grouped(f); f->logits[6] = NAN);
}

/* ---------------------------------------------------------------------------------------------
 * plan: ids I32 [3, 2] over E = 4 -> counts [4], offsets [5], sorted [6], row_of [6].
 */
typedef struct {
    int32_t ids[32];
    int32_t map[16];
    int32_t counts[16], offsets[16], sorted[32], row_of[32];
    mxmoe_tensor it, mt, ct, ot, st, rt;
    const mxmoe_tensor *ip, *mp;
    mxmoe_tensor *cp, *op, *sp, *rp;
    int32_t num_experts;
} plan_fx;

static void plan_setup(plan_fx* f) {
    const int32_t ids[6] = {0, 3, 2, -1, 1, 3};
    memcpy(f->ids, ids, sizeof ids);
    const int32_t map[6] = {-1, 0, 1, -1, 2, 3};
    memcpy(f->map, map, sizeof map);
    int64_t id[2] = {3, 2}, md[1] = {6}, cd[1] = {4}, od[1] = {5}, sd[1] = {6};
    f->it = mxmoe_tensor_make(f->ids, MXMOE_I32, 2, id);
    f->mt = mxmoe_tensor_make(f->map, MXMOE_I32, 1, md);
    f->ct = mxmoe_tensor_make(f->counts, MXMOE_I32, 1, cd);
    f->ot = mxmoe_tensor_make(f->offsets, MXMOE_I32, 1, od);
    f->st = mxmoe_tensor_make(f->sorted, MXMOE_I32, 1, sd);
    f->rt = mxmoe_tensor_make(f->row_of, MXMOE_I32, 1, sd);
    f->ip = &f->it;
    f->mp = NULL;
    f->cp = &f->ct;
    f->op = &f->ot;
    f->sp = &f->st;
    f->rp = &f->rt;
    f->num_experts = 4;
}
static void plan_teardown(plan_fx* f) {
    (void)f;
}
static mxmoe_status plan_call(mxmoe_ctx* c, void* v) {
    plan_fx* f = v;
    return mxmoe_plan(c, f->ip, f->mp, f->num_experts, f->cp, f->op, f->sp, f->rp);
}
static int plan_outputs(void* v, region* r) {
    plan_fx* f = v;
    r[0] = (region){f->counts, sizeof f->counts};
    r[1] = (region){f->offsets, sizeof f->offsets};
    r[2] = (region){f->sorted, sizeof f->sorted};
    r[3] = (region){f->row_of, sizeof f->row_of};
    return 4;
}

static void test_plan(void) {
    GOOD(plan, "no map");
    GOOD(plan, "with map (ids in [0, 6))", f->mp = &f->mt; f->ids[1] = 5; f->ids[5] = 4);
    BAD_NULL_CTX(plan);
    BAD(plan, INV, "NULL ids", f->ip = NULL);
    BAD(plan, INV, "NULL counts", f->cp = NULL);
    BAD(plan, INV, "NULL offsets", f->op = NULL);
    BAD(plan, INV, "NULL sorted", f->sp = NULL);
    BAD(plan, INV, "NULL row_of", f->rp = NULL);
    BAD(plan, INV, "NULL ids data", f->it.data = NULL);
    BAD(plan, INV, "NULL map data", f->mp = &f->mt; f->mt.data = NULL);
    BAD(plan, INV, "NULL counts data", f->ct.data = NULL);
    BAD(plan, INV, "NULL offsets data", f->ot.data = NULL);
    BAD(plan, INV, "NULL sorted data", f->st.data = NULL);
    BAD(plan, INV, "NULL row_of data", f->rt.data = NULL);
    BAD(plan, INV, "num_experts 0", f->num_experts = 0; dims1(&f->ct, 0); dims1(&f->ot, 1));
    BAD(plan, INV, "num_experts -1", f->num_experts = -1);
    BAD(plan, DT, "ids dtype F32", f->it.dtype = MXMOE_F32);
    BAD(plan, DT, "ids dtype U8", f->it.dtype = MXMOE_U8);
    BAD(plan, DT, "map dtype F32", f->mp = &f->mt; f->mt.dtype = MXMOE_F32);
    BAD(plan, DT, "counts dtype F32", f->ct.dtype = MXMOE_F32);
    BAD(plan, DT, "offsets dtype U8", f->ot.dtype = MXMOE_U8);
    BAD(plan, DT, "sorted dtype F32", f->st.dtype = MXMOE_F32);
    BAD(plan, DT, "row_of dtype BF16", f->rt.dtype = MXMOE_BF16);
    BAD(plan, SH, "ids rank 1", dims1(&f->it, 6));
    BAD(plan, SH, "ids rank 3", dims3(&f->it, 1, 3, 2));
    BAD(plan, SH, "counts [3]", dims1(&f->ct, 3));
    BAD(plan, SH, "counts [5]", dims1(&f->ct, 5));
    BAD(plan, SH, "offsets [4]", dims1(&f->ot, 4));
    BAD(plan, SH, "offsets rank 2", dims2(&f->ot, 1, 5));
    BAD(plan, SH, "sorted [5]", dims1(&f->st, 5));
    BAD(plan, SH, "row_of [7]", dims1(&f->rt, 7));
    BAD(plan, SH, "map rank 2", f->mp = &f->mt; f->ids[1] = 5; dims2(&f->mt, 2, 3));
    BAD(plan, SH, "negative tokens", dims2(&f->it, -3, 2));
    BAD(plan, OV, "ids bytes overflow", dims2(&f->it, INT64_C(1) << 61, 2);
        dims1(&f->st, INT64_C(1) << 62); dims1(&f->rt, INT64_C(1) << 62));
    BAD(plan, OOR, "id = E (last)", f->ids[5] = 4);
    BAD(plan, OOR, "id = -2 (last)", f->ids[5] = -2);
    BAD(plan, OOR, "id = INT32_MAX", f->ids[2] = INT32_MAX);
    BAD(plan, OOR, "id = INT32_MIN", f->ids[0] = INT32_MIN);
    BAD(plan, OOR, "map: id = E_global", f->mp = &f->mt; f->ids[5] = 6);
    BAD(plan, OOR, "map: id = -2", f->mp = &f->mt; f->ids[5] = -2);
    BAD(plan, OOR, "map: entry = E (used)", f->mp = &f->mt; f->map[3] = 4; f->ids[5] = 3);
    BAD(plan, OOR, "map: entry = E (unused)", f->mp = &f->mt; f->map[5] = 4; f->ids[5] = 4;
        f->ids[1] = 4);
    BAD(plan, OOR, "map: entry = -2", f->mp = &f->mt; f->map[4] = -2);
}

/* ---------------------------------------------------------------------------------------------
 * experts_quantize: x F32 [5, 64], offsets {0, 2, 4} (E = 2) -> MX [5, 64] linear.
 */
typedef struct {
    float x[8 * 128];
    int32_t offsets[8];
    uint8_t packed[8 * 64], scales[8 * 4], swz[4096];
    mxmoe_tensor xt, ot;
    mxmoe_mx_tensor out;
    const mxmoe_tensor *xp, *op;
    mxmoe_mx_tensor* outp;
    mxmoe_scale_rule rule;
} xq_fx;

static void xq_setup(xq_fx* f) {
    fill_floats(f->x, 8 * 128);
    const int32_t off[3] = {0, 2, 4};
    memcpy(f->offsets, off, sizeof off);
    int64_t xd[2] = {5, 64}, od[1] = {3};
    f->xt = mxmoe_tensor_make(f->x, MXMOE_F32, 2, xd);
    f->ot = mxmoe_tensor_make(f->offsets, MXMOE_I32, 1, od);
    f->out = mx2(f->packed, f->scales, 5, 64);
    f->xp = &f->xt;
    f->op = &f->ot;
    f->outp = &f->out;
    f->rule = MXMOE_RULE_EVEN;
}
static void xq_teardown(xq_fx* f) {
    (void)f;
}
static mxmoe_status xq_call(mxmoe_ctx* c, void* v) {
    xq_fx* f = v;
    return mxmoe_experts_quantize(c, f->xp, f->op, f->rule, f->outp);
}
static int xq_outputs(void* v, region* r) {
    xq_fx* f = v;
    r[0] = (region){f->packed, sizeof f->packed};
    r[1] = (region){f->scales, sizeof f->scales};
    r[2] = (region){f->swz, sizeof f->swz};
    return 3;
}
/* Grouped swizzled scales: experts of 2 rows each -> 2 atoms of 128 rows * 4 = 1024 bytes. */
static void xq_swizzled(xq_fx* f, int64_t bytes) {
    f->out.scale_layout = MXMOE_SCALES_SWIZZLED;
    int64_t d[1] = {bytes};
    f->out.scales = mxmoe_tensor_make(f->swz, MXMOE_U8, 1, d);
}

static void test_experts_quantize(void) {
    GOOD(xq, "linear");
    GOOD(xq, "swizzled, exact size", xq_swizzled(f, 1024));
    GOOD(xq, "swizzled, grouped upper bound",
         xq_swizzled(f, (int64_t)mxmoe_grouped_swizzled_scale_bytes(5, 2, 64)));
    BAD_NULL_CTX(xq);
    BAD(xq, INV, "NULL x", f->xp = NULL);
    BAD(xq, INV, "NULL offsets", f->op = NULL);
    BAD(xq, INV, "NULL out", f->outp = NULL);
    BAD(xq, INV, "NULL x data", f->xt.data = NULL);
    BAD(xq, INV, "NULL offsets data", f->ot.data = NULL);
    BAD(xq, INV, "NULL packed data", f->out.packed.data = NULL);
    BAD(xq, INV, "NULL scales data", f->out.scales.data = NULL);
    BAD(xq, DT, "x dtype I32", f->xt.dtype = MXMOE_I32);
    BAD(xq, DT, "offsets dtype F32", f->ot.dtype = MXMOE_F32);
    BAD(xq, DT, "packed dtype F16", f->out.packed.dtype = MXMOE_F16);
    BAD(xq, SH, "x rank 1", dims1(&f->xt, 320));
    BAD(xq, SH, "x rank 3", dims3(&f->xt, 1, 5, 64); dims3(&f->out.packed, 1, 5, 32);
        dims3(&f->out.scales, 1, 5, 2));
    BAD(xq, SH, "offsets rank 2", dims2(&f->ot, 1, 3));
    BAD(xq, SH, "out rows 4", mxdims2(&f->out, 4, 64));
    BAD(xq, SH, "packed last dim 16", dims2(&f->out.packed, 5, 16));
    BAD(xq, SH, "K = 80", dims2(&f->xt, 5, 80); dims2(&f->out.packed, 5, 40);
        dims2(&f->out.scales, 5, 2));
    BAD(xq, SH, "negative rows", dims2(&f->xt, -5, 64); mxdims2(&f->out, -5, 64));
    BAD(xq, OV, "x bytes overflow", dims2(&f->xt, BIG_BYTES, 64); mxdims2(&f->out, BIG_BYTES, 64));
    BAD(xq, INV, "rule 4", f->rule = (mxmoe_scale_rule)4);
    BAD(xq, INV, "scale layout 2", f->out.scale_layout = (mxmoe_scale_layout)2);
    BAD(xq, OOR, "offsets[0] = 1", f->offsets[0] = 1);
    BAD(xq, OOR, "offsets[0] = -1", f->offsets[0] = -1);
    BAD(xq, OOR, "offsets not monotone", f->offsets[1] = 5);
    BAD(xq, OOR, "offsets[E] = 6 > rows", f->offsets[2] = 6);
    BAD(xq, OOR, "offsets[E] = INT32_MAX", f->offsets[2] = INT32_MAX);
    BAD(xq, OOR, "swizzled: offsets not monotone", xq_swizzled(f, 1024); f->offsets[1] = 5);
    BAD(xq, SH, "swizzled scales 1023 bytes (need 1024)", xq_swizzled(f, 1023));
    BAD(xq, SH, "swizzled scales 512 bytes (need 1024)", xq_swizzled(f, 512));
    BAD(xq, SH, "swizzled scales rank 2", xq_swizzled(f, 1024); dims2(&f->out.scales, 2, 512));
    BAD(xq, DT, "swizzled scales dtype I32", xq_swizzled(f, 1024); f->out.scales.dtype = MXMOE_I32);
}

/* ---------------------------------------------------------------------------------------------
 * act_and_quantize: h F32 [4, 128] (gate‖up, I = 64) -> MX [4, 64].
 */
typedef struct {
    float h[8 * 256];
    int32_t offsets[8];
    uint8_t packed[8 * 64], scales[8 * 4], swz[4096];
    mxmoe_tensor ht, ot;
    mxmoe_mx_tensor out;
    mxmoe_act_params params;
    const mxmoe_tensor *hp, *op;
    const mxmoe_act_params* pp;
    mxmoe_mx_tensor* outp;
} act_fx;

static void act_setup(act_fx* f) {
    fill_floats(f->h, 8 * 256);
    const int32_t off[2] = {0, 4};
    memcpy(f->offsets, off, sizeof off);
    int64_t hd[2] = {4, 128}, od[1] = {2};
    f->ht = mxmoe_tensor_make(f->h, MXMOE_F32, 2, hd);
    f->ot = mxmoe_tensor_make(f->offsets, MXMOE_I32, 1, od);
    f->out = mx2(f->packed, f->scales, 4, 64);
    f->params = mxmoe_act_params_default();
    f->hp = &f->ht;
    f->op = NULL;
    f->pp = &f->params;
    f->outp = &f->out;
}
static void act_teardown(act_fx* f) {
    (void)f;
}
static mxmoe_status act_call(mxmoe_ctx* c, void* v) {
    act_fx* f = v;
    return mxmoe_act_and_quantize(c, f->hp, f->op, f->pp, f->outp);
}
static int act_outputs(void* v, region* r) {
    act_fx* f = v;
    r[0] = (region){f->packed, sizeof f->packed};
    r[1] = (region){f->scales, sizeof f->scales};
    r[2] = (region){f->swz, sizeof f->swz};
    return 3;
}
static void act_swizzled(act_fx* f, int64_t bytes) {
    f->op = &f->ot;
    f->out.scale_layout = MXMOE_SCALES_SWIZZLED;
    int64_t d[1] = {bytes};
    f->out.scales = mxmoe_tensor_make(f->swz, MXMOE_U8, 1, d);
}

static void test_act_and_quantize(void) {
    GOOD(act, "SiLU·mul");
    GOOD(act, "with offsets", f->op = &f->ot);
    GOOD(act, "swizzled", act_swizzled(f, 512));
    GOOD(act, "SiLU no-mul", f->params.activation = MXMOE_ACT_SILU; dims2(&f->ht, 4, 64));
    GOOD(act, "SwiGLU interleaved", f->params.activation = MXMOE_ACT_SWIGLU_OAI;
         f->params.layout = MXMOE_GATE_UP_INTERLEAVED);
    BAD_NULL_CTX(act);
    BAD(act, INV, "NULL h", f->hp = NULL);
    BAD(act, INV, "NULL params", f->pp = NULL);
    BAD(act, INV, "NULL out", f->outp = NULL);
    BAD(act, INV, "NULL h data", f->ht.data = NULL);
    BAD(act, INV, "NULL offsets data", f->op = &f->ot; f->ot.data = NULL);
    BAD(act, INV, "NULL packed data", f->out.packed.data = NULL);
    BAD(act, INV, "NULL scales data", f->out.scales.data = NULL);
    BAD(act, SH, "swizzled out without offsets, one byte short", act_swizzled(f, 511);
        f->op = NULL);
    BAD(act, DT, "h dtype U8", f->ht.dtype = MXMOE_U8);
    BAD(act, DT, "h dtype I32", f->ht.dtype = MXMOE_I32);
    BAD(act, DT, "offsets dtype F16", f->op = &f->ot; f->ot.dtype = MXMOE_F16);
    BAD(act, DT, "packed dtype F32", f->out.packed.dtype = MXMOE_F32);
    BAD(act, DT, "act_dtype U8", f->params.act_dtype = MXMOE_U8);
    BAD(act, DT, "act_dtype I32", f->params.act_dtype = MXMOE_I32);
    BAD(act, DT, "act_dtype 17", f->params.act_dtype = (mxmoe_dtype)17);
    BAD(act, INV, "activation 6", f->params.activation = MXMOE_ACTIVATION_COUNT);
    BAD(act, INV, "activation -1", f->params.activation = (mxmoe_activation)-1);
    BAD(act, INV, "layout 2", f->params.layout = MXMOE_GATE_UP_LAYOUT_COUNT);
    BAD(act, INV, "rule 4", f->params.rule = MXMOE_RULE_COUNT);
    BAD(act, INV, "scale layout 5", f->out.scale_layout = (mxmoe_scale_layout)5);
    BAD(act, SH, "h [4, 96] for I = 64", dims2(&f->ht, 4, 96));
    BAD(act, SH, "h [4, 64] for *_MUL (I = 64)", dims2(&f->ht, 4, 64));
    BAD(act, SH, "no-mul with h [4, 128] (I = 64)", f->params.activation = MXMOE_ACT_SILU);
    BAD(act, SH, "h rows 5", dims2(&f->ht, 5, 128));
    BAD(act, SH, "h rank 1", dims1(&f->ht, 512));
    BAD(act, SH, "I = 48", dims2(&f->ht, 4, 96); dims2(&f->out.packed, 4, 24);
        dims2(&f->out.scales, 4, 1));
    BAD(act, SH, "I = 16", dims2(&f->ht, 4, 32); dims2(&f->out.packed, 4, 8);
        dims2(&f->out.scales, 4, 0));
    BAD(act, SH, "scales [4, 3]", dims2(&f->out.scales, 4, 3));
    BAD(act, SH, "offsets rank 2", f->op = &f->ot; dims2(&f->ot, 1, 2));
    BAD(act, SH, "negative rows", dims2(&f->ht, -4, 128); mxdims2(&f->out, -4, 64));
    BAD(act, OV, "h bytes overflow", dims2(&f->ht, BIG_BYTES, 128);
        mxdims2(&f->out, BIG_BYTES, 64));
    BAD(act, OOR, "offsets[0] = 2", f->op = &f->ot; f->offsets[0] = 2);
    BAD(act, OOR, "offsets[E] = 5 > rows", f->op = &f->ot; f->offsets[1] = 5);
    BAD(act, OOR, "offsets not monotone", f->op = &f->ot; f->offsets[1] = -1);
    BAD(act, OOR, "swizzled: offsets[E] > rows", act_swizzled(f, 512); f->offsets[1] = 5);
    BAD(act, SH, "swizzled scales 511 bytes (need 512)", act_swizzled(f, 511));
    BAD(act, SH, "swizzled scales rank 2", act_swizzled(f, 512); dims2(&f->out.scales, 1, 512));
}

/* ---------------------------------------------------------------------------------------------
 * grouped_gemm: a MX [4, 64]; w MX [2, 3, 64]; offsets {0, 1, 3}; out F32 [4, 3].
 */
typedef struct {
    uint8_t ap[8 * 64], as[8 * 4], wp[4 * 6 * 64], ws[4 * 6 * 4];
    uint8_t as_swz[2048], ws_swz[2048];
    int32_t offsets[8];
    float bias[32];
    float out[8 * 8];
    mxmoe_mx_tensor a, w;
    mxmoe_tensor ot, bt, outt;
    const mxmoe_mx_tensor *aptr, *wptr;
    const mxmoe_tensor *optr, *bptr;
    mxmoe_tensor* outptr;
} gemm_fx;

static void gemm_setup(gemm_fx* f) {
    fill_bytes(f->ap, sizeof f->ap, 0);
    fill_bytes(f->wp, sizeof f->wp, 3);
    memset(f->as, 127, sizeof f->as);
    memset(f->ws, 126, sizeof f->ws);
    memset(f->as_swz, 127, sizeof f->as_swz);
    memset(f->ws_swz, 126, sizeof f->ws_swz);
    const int32_t off[3] = {0, 1, 3};
    memcpy(f->offsets, off, sizeof off);
    fill_floats(f->bias, 32);
    f->a = mx2(f->ap, f->as, 4, 64);
    f->w = mx3(f->wp, f->ws, 2, 3, 64);
    int64_t od[1] = {3}, bd[2] = {2, 3}, outd[2] = {4, 3};
    f->ot = mxmoe_tensor_make(f->offsets, MXMOE_I32, 1, od);
    f->bt = mxmoe_tensor_make(f->bias, MXMOE_F32, 2, bd);
    f->outt = mxmoe_tensor_make(f->out, MXMOE_F32, 2, outd);
    f->aptr = &f->a;
    f->wptr = &f->w;
    f->optr = &f->ot;
    f->bptr = NULL;
    f->outptr = &f->outt;
}
static void gemm_teardown(gemm_fx* f) {
    (void)f;
}
static mxmoe_status gemm_call(mxmoe_ctx* c, void* v) {
    gemm_fx* f = v;
    return mxmoe_grouped_gemm(c, f->aptr, f->wptr, f->optr, f->bptr, f->outptr);
}
static int gemm_outputs(void* v, region* r) {
    gemm_fx* f = v;
    r[0] = (region){f->out, sizeof f->out};
    return 1;
}
/* a: grouped swizzled, experts of 1 and 2 rows -> 2 atoms * 512 = 1024 bytes. */
static void gemm_a_swizzled(gemm_fx* f, int64_t bytes) {
    int64_t d[1] = {bytes};
    f->a.scales = mxmoe_tensor_make(f->as_swz, MXMOE_U8, 1, d);
    f->a.scale_layout = MXMOE_SCALES_SWIZZLED;
}
/* w: per expert mxmoe_swizzled_scale_bytes(3, 64) = 512 -> 1024 bytes. */
static void gemm_w_swizzled(gemm_fx* f, int64_t bytes) {
    int64_t d[1] = {bytes};
    f->w.scales = mxmoe_tensor_make(f->ws_swz, MXMOE_U8, 1, d);
    f->w.scale_layout = MXMOE_SCALES_SWIZZLED;
}

static void test_grouped_gemm(void) {
    GOOD(gemm, "F32 out");
    GOOD(gemm, "bias", f->bptr = &f->bt);
    GOOD(gemm, "BF16 out", f->outt.dtype = MXMOE_BF16);
    GOOD(gemm, "swizzled a and w", gemm_a_swizzled(f, 1024); gemm_w_swizzled(f, 1024));
    BAD_NULL_CTX(gemm);
    BAD(gemm, INV, "NULL a", f->aptr = NULL);
    BAD(gemm, INV, "NULL w", f->wptr = NULL);
    BAD(gemm, INV, "NULL offsets", f->optr = NULL);
    BAD(gemm, INV, "NULL out", f->outptr = NULL);
    BAD(gemm, INV, "NULL a packed data", f->a.packed.data = NULL);
    BAD(gemm, INV, "NULL a scales data", f->a.scales.data = NULL);
    BAD(gemm, INV, "NULL w packed data", f->w.packed.data = NULL);
    BAD(gemm, INV, "NULL w scales data", f->w.scales.data = NULL);
    BAD(gemm, INV, "NULL offsets data", f->ot.data = NULL);
    BAD(gemm, INV, "NULL bias data", f->bptr = &f->bt; f->bt.data = NULL);
    BAD(gemm, INV, "NULL out data", f->outt.data = NULL);
    BAD(gemm, DT, "a packed dtype F32", f->a.packed.dtype = MXMOE_F32);
    BAD(gemm, DT, "a scales dtype I32", f->a.scales.dtype = MXMOE_I32);
    BAD(gemm, DT, "w packed dtype BF16", f->w.packed.dtype = MXMOE_BF16);
    BAD(gemm, DT, "w scales dtype F32", f->w.scales.dtype = MXMOE_F32);
    BAD(gemm, DT, "offsets dtype F32", f->ot.dtype = MXMOE_F32);
    BAD(gemm, DT, "bias dtype I32", f->bptr = &f->bt; f->bt.dtype = MXMOE_I32);
    BAD(gemm, DT, "bias dtype U8", f->bptr = &f->bt; f->bt.dtype = MXMOE_U8);
    BAD(gemm, DT, "out dtype I32", f->outt.dtype = MXMOE_I32);
    BAD(gemm, DT, "out dtype U8", f->outt.dtype = MXMOE_U8);
    BAD(gemm, DT, "out dtype 5", f->outt.dtype = MXMOE_DTYPE_COUNT);
    BAD(gemm, SH, "w rank 2", dims2(&f->w.packed, 6, 32); dims2(&f->w.scales, 6, 2));
    BAD(gemm, SH, "a rank 3", dims3(&f->a.packed, 1, 4, 32); dims3(&f->a.scales, 1, 4, 2));
    BAD(gemm, SH, "K mismatch (a 64, w 96)", mxdims3(&f->w, 2, 3, 96));
    BAD(gemm, SH, "K = 48", mxdims2(&f->a, 4, 48); mxdims3(&f->w, 2, 3, 48));
    BAD(gemm, SH, "a scales [4, 1]", dims2(&f->a.scales, 4, 1));
    BAD(gemm, SH, "w scales [2, 3, 3]", dims3(&f->w.scales, 2, 3, 3));
    BAD(gemm, SH, "w scales [2, 2, 2]", dims3(&f->w.scales, 2, 2, 2));
    BAD(gemm, SH, "out [4, 4]", dims2(&f->outt, 4, 4));
    BAD(gemm, SH, "out [3, 3] (rows != a)", dims2(&f->outt, 3, 3));
    BAD(gemm, SH, "out rank 1", dims1(&f->outt, 12));
    BAD(gemm, SH, "offsets [4] (E = 2)", dims1(&f->ot, 4));
    BAD(gemm, SH, "offsets rank 2", dims2(&f->ot, 1, 3));
    BAD(gemm, SH, "bias [2, 4]", f->bptr = &f->bt; dims2(&f->bt, 2, 4));
    BAD(gemm, SH, "bias [3, 3]", f->bptr = &f->bt; dims2(&f->bt, 3, 3));
    BAD(gemm, SH, "bias rank 1", f->bptr = &f->bt; dims1(&f->bt, 6));
    BAD(gemm, SH, "negative N", mxdims3(&f->w, 2, -3, 64); dims2(&f->outt, 4, -3));
    BAD(gemm, SH, "negative rows", mxdims2(&f->a, -4, 64); dims2(&f->outt, -4, 3));
    BAD(gemm, OV, "w numel overflow", mxdims3(&f->w, 2, INT64_C(1) << 60, 64);
        dims2(&f->outt, 4, INT64_C(1) << 60));
    BAD(gemm, OV, "out bytes overflow", mxdims3(&f->w, 2, INT64_C(1) << 62, 64);
        dims2(&f->outt, 4, INT64_C(1) << 62));
    BAD(gemm, INV, "a scale layout 2", f->a.scale_layout = (mxmoe_scale_layout)2);
    BAD(gemm, INV, "w scale layout -1", f->w.scale_layout = (mxmoe_scale_layout)-1);
    BAD(gemm, OOR, "offsets[0] = 1", f->offsets[0] = 1);
    BAD(gemm, OOR, "offsets not monotone", f->offsets[1] = 4);
    BAD(gemm, OOR, "offsets[1] negative", f->offsets[1] = -1);
    BAD(gemm, OOR, "offsets[E] = 5 > rows", f->offsets[2] = 5);
    BAD(gemm, OOR, "swizzled a: offsets[E] > rows", gemm_a_swizzled(f, 1024); f->offsets[2] = 5);
    BAD(gemm, SH, "swizzled a scales 1023 bytes (need 1024)", gemm_a_swizzled(f, 1023));
    BAD(gemm, SH, "swizzled a scales rank 2", gemm_a_swizzled(f, 1024);
        dims2(&f->a.scales, 2, 512));
    BAD(gemm, SH, "swizzled w scales 1023 bytes (need 1024)", gemm_w_swizzled(f, 1023));
    BAD(gemm, SH, "swizzled w scales 512 bytes (one expert)", gemm_w_swizzled(f, 512));
    BAD(gemm, SH, "swizzled w scales rank 3", gemm_w_swizzled(f, 1024);
        dims3(&f->w.scales, 2, 1, 512));
}

/* ---------------------------------------------------------------------------------------------
 * moe_workspace_size: T = 2, k = 1, H = 64, I = 32, E = 2.
 */
typedef struct {
    mxmoe_moe_params params;
    const mxmoe_moe_params* pp;
    int64_t tokens, hidden, intermediate;
    int32_t top_k;
    size_t bytes;
    size_t* bp;
} wsz_fx;

static void wsz_setup(wsz_fx* f) {
    f->params = mxmoe_moe_params_default();
    f->params.num_experts = 2;
    f->pp = &f->params;
    f->tokens = 2;
    f->hidden = 64;
    f->intermediate = 32;
    f->top_k = 1;
    f->bp = &f->bytes;
}
static void wsz_teardown(wsz_fx* f) {
    (void)f;
}
static mxmoe_status wsz_call(mxmoe_ctx* c, void* v) {
    wsz_fx* f = v;
    return mxmoe_moe_workspace_size(c, f->pp, f->tokens, f->top_k, f->hidden, f->intermediate,
                                    f->bp);
}
static int wsz_outputs(void* v, region* r) {
    wsz_fx* f = v;
    r[0] = (region){&f->bytes, sizeof f->bytes};
    return 1;
}

static void test_workspace_size(void) {
    GOOD(wsz, "T=2 k=1 H=64 I=32");
    GOOD(wsz, "T=0", f->tokens = 0);
    BAD_NULL_CTX(wsz);
    BAD(wsz, INV, "NULL params", f->pp = NULL);
    BAD(wsz, INV, "NULL bytes", f->bp = NULL);
    BAD(wsz, INV, "top_k 0", f->top_k = 0);
    BAD(wsz, INV, "top_k -1", f->top_k = -1);
    BAD(wsz, INV, "num_experts 0", f->params.num_experts = 0);
    BAD(wsz, INV, "num_experts -3", f->params.num_experts = -3);
    BAD(wsz, SH, "hidden 48", f->hidden = 48);
    BAD(wsz, SH, "intermediate 40", f->intermediate = 40);
    BAD_AMBIGUOUS(wsz, BIT(SH) | BIT(INV), "tokens -1", f->tokens = -1);
    BAD_AMBIGUOUS(wsz, BIT(SH) | BIT(INV), "hidden -64", f->hidden = -64);
    BAD_AMBIGUOUS(wsz, BIT(SH) | BIT(INV), "intermediate -32", f->intermediate = -32);
    BAD_AMBIGUOUS(wsz, BIT(SH) | BIT(INV), "hidden 0", f->hidden = 0);
    BAD(wsz, OV, "tokens 2^62", f->tokens = INT64_C(1) << 62);
    BAD(wsz, OV, "tokens * top_k overflows", f->tokens = INT64_MAX / 2; f->top_k = 8);
    BAD(wsz, OV, "hidden 2^62", f->hidden = INT64_C(1) << 62);
}

/* ---------------------------------------------------------------------------------------------
 * moe_forward: T = 2, H = 64, I = 32, E = 2, top_k = 1; F32 in and out.
 */
typedef struct {
    float x[4 * 128];
    int32_t ids[16];
    float weights[16];
    int32_t map[8];
    uint8_t w13p[2 * 64 * 32], w13s[2 * 64 * 2], w2p[2 * 64 * 16], w2s[2 * 64 * 1];
    float b13[2 * 64], b2[2 * 64];
    float out[4 * 128];
    mxmoe_tensor xt, it, wt, mt, b13t, b2t, outt;
    mxmoe_moe_weights mw;
    mxmoe_moe_params params;
    const mxmoe_tensor *xp, *ip, *wp;
    const mxmoe_moe_weights* mwp;
    const mxmoe_moe_params* pp;
    mxmoe_tensor* outp;
    void* ws;
    size_t ws_bytes;
    void* ws_arg;
} moe_fx;

static void moe_setup(moe_fx* f) {
    fill_floats(f->x, 4 * 128);
    f->ids[0] = 0;
    f->ids[1] = 1;
    f->weights[0] = 1.0f;
    f->weights[1] = 0.5f;
    const int32_t map[3] = {1, -1, 0};
    memcpy(f->map, map, sizeof map);
    fill_bytes(f->w13p, sizeof f->w13p, 0);
    fill_bytes(f->w2p, sizeof f->w2p, 5);
    memset(f->w13s, 124, sizeof f->w13s);
    memset(f->w2s, 125, sizeof f->w2s);
    fill_floats(f->b13, 2 * 64);
    fill_floats(f->b2, 2 * 64);
    int64_t xd[2] = {2, 64}, kd[2] = {2, 1}, md[1] = {3}, b13d[2] = {2, 64}, b2d[2] = {2, 64};
    f->xt = mxmoe_tensor_make(f->x, MXMOE_F32, 2, xd);
    f->it = mxmoe_tensor_make(f->ids, MXMOE_I32, 2, kd);
    f->wt = mxmoe_tensor_make(f->weights, MXMOE_F32, 2, kd);
    f->mt = mxmoe_tensor_make(f->map, MXMOE_I32, 1, md);
    f->b13t = mxmoe_tensor_make(f->b13, MXMOE_F32, 2, b13d);
    f->b2t = mxmoe_tensor_make(f->b2, MXMOE_F32, 2, b2d);
    f->outt = mxmoe_tensor_make(f->out, MXMOE_F32, 2, xd);
    f->mw.w13 = mx3(f->w13p, f->w13s, 2, 64, 64);
    f->mw.w2 = mx3(f->w2p, f->w2s, 2, 64, 32);
    f->mw.b13 = NULL;
    f->mw.b2 = NULL;
    f->params = mxmoe_moe_params_default();
    f->params.num_experts = 2;
    f->xp = &f->xt;
    f->ip = &f->it;
    f->wp = &f->wt;
    f->mwp = &f->mw;
    f->pp = &f->params;
    f->outp = &f->outt;
    f->ws_bytes = 0;
    /* room for the mutations that grow k or T a little */
    mxmoe_moe_params p = f->params;
    size_t need = 0;
    if (mxmoe_moe_workspace_size(setup_ctx, &p, 4, 4, 64, 32, &need) != MXMOE_OK) {
        need = 0;
    }
    mxmoe_moe_workspace_size(setup_ctx, &p, 2, 1, 64, 32, &f->ws_bytes);
    f->ws = malloc(need > f->ws_bytes ? need + 64 : f->ws_bytes + 64);
    f->ws_arg = f->ws;
}
static void moe_teardown(moe_fx* f) {
    free(f->ws);
}
static mxmoe_status moe_call(mxmoe_ctx* c, void* v) {
    moe_fx* f = v;
    return mxmoe_moe_forward(c, f->xp, f->ip, f->wp, f->mwp, f->pp, f->ws_arg, f->ws_bytes,
                             f->outp);
}
static int moe_outputs(void* v, region* r) {
    moe_fx* f = v;
    r[0] = (region){f->out, sizeof f->out};
    return 1;
}
static void moe_use_map(moe_fx* f) {
    f->params.expert_map = &f->mt;
    f->ids[0] = 0; /* -> local 1 */
    f->ids[1] = 2; /* -> local 0 */
}

static void test_moe_forward(void) {
    GOOD(moe, "top_k 1");
    GOOD(moe, "biases", f->mw.b13 = &f->b13t; f->mw.b2 = &f->b2t);
    GOOD(moe, "expert map", moe_use_map(f));
    GOOD(moe, "workspace larger than needed", f->ws_bytes += 64);
    BAD_NULL_CTX(moe);
    BAD(moe, INV, "NULL x", f->xp = NULL);
    BAD(moe, INV, "NULL topk_ids", f->ip = NULL);
    BAD(moe, INV, "NULL topk_weights", f->wp = NULL);
    BAD(moe, INV, "NULL weights", f->mwp = NULL);
    BAD(moe, INV, "NULL params", f->pp = NULL);
    BAD(moe, INV, "NULL out", f->outp = NULL);
    BAD(moe, INV, "NULL x data", f->xt.data = NULL);
    BAD(moe, INV, "NULL ids data", f->it.data = NULL);
    BAD(moe, INV, "NULL weights data", f->wt.data = NULL);
    BAD(moe, INV, "NULL w13 packed data", f->mw.w13.packed.data = NULL);
    BAD(moe, INV, "NULL w13 scales data", f->mw.w13.scales.data = NULL);
    BAD(moe, INV, "NULL w2 packed data", f->mw.w2.packed.data = NULL);
    BAD(moe, INV, "NULL w2 scales data", f->mw.w2.scales.data = NULL);
    BAD(moe, INV, "NULL b13 data", f->mw.b13 = &f->b13t; f->b13t.data = NULL);
    BAD(moe, INV, "NULL b2 data", f->mw.b2 = &f->b2t; f->b2t.data = NULL);
    BAD(moe, INV, "NULL map data", moe_use_map(f); f->mt.data = NULL);
    BAD(moe, INV, "NULL out data", f->outt.data = NULL);
    BAD(moe, WS, "NULL workspace", f->ws_arg = NULL);
    BAD(moe, WS, "workspace one byte short", f->ws_bytes -= 1);
    BAD(moe, WS, "workspace_bytes 0", f->ws_bytes = 0);
    BAD(moe, DT, "x dtype U8", f->xt.dtype = MXMOE_U8);
    BAD(moe, DT, "x dtype I32", f->xt.dtype = MXMOE_I32);
    BAD(moe, DT, "ids dtype F32", f->it.dtype = MXMOE_F32);
    BAD(moe, DT, "topk_weights dtype I32", f->wt.dtype = MXMOE_I32);
    BAD(moe, DT, "topk_weights dtype BF16", f->wt.dtype = MXMOE_BF16);
    BAD(moe, DT, "out dtype U8", f->outt.dtype = MXMOE_U8);
    BAD(moe, DT, "out dtype 9", f->outt.dtype = (mxmoe_dtype)9);
    BAD(moe, DT, "w13 packed dtype F32", f->mw.w13.packed.dtype = MXMOE_F32);
    BAD(moe, DT, "w2 scales dtype I32", f->mw.w2.scales.dtype = MXMOE_I32);
    BAD(moe, DT, "b13 dtype I32", f->mw.b13 = &f->b13t; f->b13t.dtype = MXMOE_I32);
    BAD(moe, DT, "b2 dtype U8", f->mw.b2 = &f->b2t; f->b2t.dtype = MXMOE_U8);
    BAD(moe, DT, "map dtype F32", moe_use_map(f); f->mt.dtype = MXMOE_F32);
    BAD(moe, DT, "act_dtype U8", f->params.act.act_dtype = MXMOE_U8);
    BAD(moe, DT, "gemm_dtype F16", f->params.gemm_dtype = MXMOE_F16);
    BAD(moe, DT, "gemm_dtype 9", f->params.gemm_dtype = (mxmoe_dtype)9);
    BAD(moe, INV, "activation 6", f->params.act.activation = MXMOE_ACTIVATION_COUNT);
    BAD(moe, INV, "layout 2", f->params.act.layout = MXMOE_GATE_UP_LAYOUT_COUNT);
    BAD(moe, INV, "rule 4", f->params.act.rule = MXMOE_RULE_COUNT);
    BAD(moe, INV, "w13 scale layout 3", f->mw.w13.scale_layout = (mxmoe_scale_layout)3);
    BAD(moe, INV, "num_experts 0", f->params.num_experts = 0);
    BAD(moe, INV, "num_experts -2", f->params.num_experts = -2);
    BAD(moe, SH, "num_experts 3 != weights' 2", f->params.num_experts = 3);
    BAD(moe, SH, "x rank 1", dims1(&f->xt, 128));
    BAD(moe, SH, "x [2, 32] (H = 64)", dims2(&f->xt, 2, 32));
    BAD(moe, SH, "H = 48 everywhere", dims2(&f->xt, 2, 48); dims2(&f->outt, 2, 48);
        mxdims3(&f->mw.w13, 2, 64, 48); dims3(&f->mw.w2.packed, 2, 48, 16);
        dims3(&f->mw.w2.scales, 2, 48, 1));
    BAD(moe, SH, "I = 48 everywhere", mxdims3(&f->mw.w13, 2, 96, 64);
        dims3(&f->mw.w2.packed, 2, 64, 24); dims3(&f->mw.w2.scales, 2, 64, 1));
    BAD(moe, SH, "w13 rows 63 (odd 2I)", mxdims3(&f->mw.w13, 2, 63, 64));
    BAD(moe, SH, "w2 K 64 (w13 says I = 32)", mxdims3(&f->mw.w2, 2, 64, 64));
    BAD(moe, SH, "w2 rows 32 (H = 64)", mxdims3(&f->mw.w2, 2, 32, 32));
    BAD(moe, SH, "w2 experts 3", mxdims3(&f->mw.w2, 3, 64, 32));
    BAD(moe, SH, "w13 rank 2", dims2(&f->mw.w13.packed, 128, 32); dims2(&f->mw.w13.scales, 128, 2));
    BAD(moe, SH, "w13 scales [2, 64, 1]", dims3(&f->mw.w13.scales, 2, 64, 1));
    BAD(moe, SH, "ids [3, 1]", dims2(&f->it, 3, 1));
    BAD(moe, SH, "ids rank 1", dims1(&f->it, 2));
    BAD(moe, SH, "topk_weights [2, 2]", dims2(&f->wt, 2, 2));
    BAD(moe, SH, "out [2, 32]", dims2(&f->outt, 2, 32));
    BAD(moe, SH, "out [3, 64]", dims2(&f->outt, 3, 64));
    BAD(moe, SH, "b13 [2, 32]", f->mw.b13 = &f->b13t; dims2(&f->b13t, 2, 32));
    BAD(moe, SH, "b2 [2, 32]", f->mw.b2 = &f->b2t; dims2(&f->b2t, 2, 32));
    BAD(moe, SH, "b2 [1, 64]", f->mw.b2 = &f->b2t; dims2(&f->b2t, 1, 64));
    BAD(moe, SH, "map rank 2", moe_use_map(f); dims2(&f->mt, 1, 3));
    BAD(moe, SH, "negative tokens", dims2(&f->xt, -2, 64); dims2(&f->it, -2, 1);
        dims2(&f->wt, -2, 1); dims2(&f->outt, -2, 64));
    BAD(moe, OV, "tokens overflow", dims2(&f->xt, BIG_NUMEL, 64); dims2(&f->it, BIG_NUMEL, 1);
        dims2(&f->wt, BIG_NUMEL, 1); dims2(&f->outt, BIG_NUMEL, 64));
    BAD_AMBIGUOUS(moe, BIT(INV) | BIT(SH), "top_k 0", dims2(&f->it, 2, 0); dims2(&f->wt, 2, 0));
    BAD(moe, OOR, "id = E (last token)", f->ids[1] = 2);
    BAD(moe, OOR, "id = -2 (last token)", f->ids[1] = -2);
    BAD(moe, OOR, "id = INT32_MAX", f->ids[0] = INT32_MAX);
    BAD(moe, OOR, "map: id = E_global", moe_use_map(f); f->ids[1] = 3);
    BAD(moe, OOR, "map: id = -5", moe_use_map(f); f->ids[1] = -5);
    BAD(moe, OOR, "map: entry = E", moe_use_map(f); f->map[2] = 2);
    BAD(moe, OOR, "map: entry = -2", moe_use_map(f); f->map[1] = -2);
}

/* ---------------------------------------------------------------------------------------------
 * Status strings, contexts, environment, helpers.
 */
static void test_status_strings(void) {
    check_set_context("mxmoe_status_string");
    for (int i = 0; i < MXMOE_STATUS_COUNT; i++) {
        const char* a = mxmoe_status_string((mxmoe_status)i);
        CHECK_MSG(a != NULL && a[0] != '\0', "status %d has no string", i);
        for (int j = 0; j < i; j++) {
            const char* b = mxmoe_status_string((mxmoe_status)j);
            CHECK_MSG(a == NULL || b == NULL || strcmp(a, b) != 0,
                      "statuses %d and %d share the string '%s'", j, i, a ? a : "");
        }
    }
    CHECK(mxmoe_status_string(MXMOE_STATUS_COUNT) != NULL);
    CHECK(mxmoe_status_string((mxmoe_status)-1) != NULL);
    CHECK(mxmoe_status_string((mxmoe_status)1000) != NULL);

    check_set_context("names of bad enum values");
    CHECK(mxmoe_dtype_name((mxmoe_dtype)99) != NULL);
    CHECK(mxmoe_dtype_name((mxmoe_dtype)-1) != NULL);
    CHECK(mxmoe_scale_rule_name((mxmoe_scale_rule)99) != NULL);
    CHECK(mxmoe_backend_name((mxmoe_backend)99) != NULL);
    CHECK_EQ_INT(mxmoe_dtype_size((mxmoe_dtype)99), 0);
    CHECK_EQ_INT(mxmoe_dtype_size((mxmoe_dtype)-1), 0);
    CHECK_EQ_INT(mxmoe_dtype_size(MXMOE_DTYPE_COUNT), 0);
    CHECK_EQ_INT(mxmoe_backend_available((mxmoe_backend)99), 0);
    CHECK_EQ_INT(mxmoe_backend_available(MXMOE_BACKEND_CPU), 1);
    for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
        CHECK(mxmoe_scale_rule_name((mxmoe_scale_rule)r) != NULL);
    }
    CHECK(strcmp(mxmoe_scale_rule_name(MXMOE_RULE_EVEN), mxmoe_scale_rule_name(MXMOE_RULE_CEIL)));
}

static void test_tensor_helpers(void) {
    check_set_context("mxmoe_tensor_numel / make");
    int64_t d[4] = {3, 5, 7, 2};
    mxmoe_tensor t = mxmoe_tensor_make(NULL, MXMOE_F32, 2, d);
    CHECK_EQ_INT(t.ndim, 2);
    CHECK_EQ_INT(t.dims[2], 1);
    CHECK_EQ_INT(t.dims[3], 1);
    CHECK_EQ_INT(t.device, MXMOE_DEVICE_HOST);
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), 15);
    t = mxmoe_tensor_make(NULL, MXMOE_F32, 4, d);
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), 210);
    CHECK_EQ_INT(mxmoe_tensor_numel(NULL), -1);
    t.ndim = 0;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1);
    t.ndim = 5;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1);
    t.ndim = -1;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1);
    t = mxmoe_tensor_make(NULL, MXMOE_F32, 2, d);
    t.dims[1] = -5;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1);
    t.dims[0] = INT64_C(1) << 32;
    t.dims[1] = INT64_C(1) << 31;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1); /* 2^63 */
    t.dims[0] = INT64_MAX;
    t.dims[1] = 2;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), -1);
    t.dims[1] = 0;
    CHECK_EQ_INT(mxmoe_tensor_numel(&t), 0);

    check_set_context("swizzled size queries with bad arguments");
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(-1, 64), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, 48), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, 0), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, -32), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(INT64_MAX, 64), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(INT64_C(1) << 62, 128), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, INT64_MAX - 31), 0);
    CHECK_EQ_INT(mxmoe_swizzled_scale_bytes(1, 32), 512);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(10, 0, 64), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(10, -1, 64), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(-1, 2, 64), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(10, 2, 40), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(INT64_MAX - 10, 2, 64), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(10, INT64_MAX / 2, 64), 0);
    CHECK_EQ_INT(mxmoe_grouped_swizzled_scale_bytes(5, 2, 64), 384 * 4);
}

static void test_ctx(void) {
    check_set_context("mxmoe_ctx_free(NULL)");
    mxmoe_ctx_free(NULL); /* must not crash */
    CHECK(1);

    check_set_context("mxmoe_ctx_init bad arguments");
    CHECK_STATUS(mxmoe_ctx_init(NULL, NULL), INV);
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    CHECK_EQ_INT(p.backend, MXMOE_BACKEND_AUTO);
    mxmoe_ctx* sentinel = (mxmoe_ctx*)&p; /* any non-NULL value */
    mxmoe_ctx* c = sentinel;
    p.backend = MXMOE_BACKEND_COUNT;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), INV);
    CHECK_MSG(c == NULL || c == sentinel, "*out is neither NULL nor untouched");
    c = sentinel;
    p.backend = (mxmoe_backend)-1;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), INV);
    CHECK_MSG(c == NULL || c == sentinel, "*out is neither NULL nor untouched");
    c = sentinel;
    p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    p.num_threads = -1;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), INV);
    CHECK_MSG(c == NULL || c == sentinel, "*out is neither NULL nor untouched");

    check_set_context("mxmoe_ctx_init: failure message reaches the log callback");
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    p = mxmoe_ctx_params_default();
    p.backend = (mxmoe_backend)77;
    p.log = capture_log;
    p.log_user_data = &cap;
    c = NULL;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), INV);
    CHECK_MSG(cap.errors >= 1 && cap.last[0] != '\0', "no error message logged by ctx_init");

    check_set_context("CUDA backend without a usable GPU");
    if (!mxmoe_backend_available(MXMOE_BACKEND_CUDA)) {
        p = mxmoe_ctx_params_default();
        p.backend = MXMOE_BACKEND_CUDA;
        c = sentinel;
        CHECK_STATUS(mxmoe_ctx_init(&c, &p), UNS);
        CHECK_MSG(c == NULL, "*out is not NULL after UNSUPPORTED (documented)");
        /* AUTO falls back to the CPU */
        p.backend = MXMOE_BACKEND_AUTO;
        c = NULL;
        unsetenv("MXMOE_BACKEND");
        CHECK_STATUS(mxmoe_ctx_init(&c, &p), MXMOE_OK);
        CHECK_EQ_INT(mxmoe_ctx_backend(c), MXMOE_BACKEND_CPU);
        mxmoe_ctx_free(c);
    } else {
        printf("note: CUDA is available here; the UNSUPPORTED case is not exercised\n");
    }

    check_set_context("valid CPU context");
    p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    c = NULL;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), MXMOE_OK);
    if (c != NULL) {
        CHECK_EQ_INT(mxmoe_ctx_backend(c), MXMOE_BACKEND_CPU);
        CHECK(mxmoe_ctx_backend_detail(c) != NULL && mxmoe_ctx_backend_detail(c)[0] != '\0');
        CHECK(strcmp(mxmoe_ctx_last_error(c), "") == 0);
        CHECK_STATUS(mxmoe_ctx_set_stream(c, (void*)&p), MXMOE_OK); /* ignored on the CPU */
        CHECK_STATUS(mxmoe_ctx_synchronize(c), MXMOE_OK);

        check_set_context("recording on the CPU backend: UNSUPPORTED, nothing recorded");
        mxmoe_graph* g = (mxmoe_graph*)&p; /* must come back NULL */
        CHECK_STATUS(mxmoe_graph_begin(c), UNS);
        CHECK(strstr(mxmoe_ctx_last_error(c), "CUDA") != NULL);
        CHECK_STATUS(mxmoe_graph_end(c, &g), UNS);
        CHECK(g == NULL);
        CHECK_STATUS(mxmoe_graph_end(c, NULL), INV);
        CHECK_STATUS(mxmoe_graph_replay(c, NULL), INV);
        mxmoe_graph_free(c, NULL);                        /* a no-op */
        CHECK_STATUS(mxmoe_ctx_synchronize(c), MXMOE_OK); /* not left recording */
        mxmoe_ctx_free(c);
    }
    CHECK_STATUS(mxmoe_graph_begin(NULL), INV);
    CHECK_STATUS(mxmoe_graph_end(NULL, NULL), INV);
    CHECK_STATUS(mxmoe_graph_replay(NULL, NULL), INV);
    mxmoe_graph_free(NULL, NULL);
    CHECK_STATUS(mxmoe_ctx_set_stream(NULL, NULL), INV);
    CHECK_STATUS(mxmoe_ctx_synchronize(NULL), INV);
    CHECK(mxmoe_ctx_last_error(NULL) != NULL);
}

/* MXMOE_BACKEND: the header documents cpu|cuda for AUTO, an explicit backend winning; it does
 * not say what a bogus value does. Accepted: an error (INVALID_ARGUMENT, *out NULL) or ignoring
 * it (a CPU context here). The behaviour seen is printed. */
static void test_env_backend(void) {
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    mxmoe_ctx* c = NULL;

    check_set_context("MXMOE_BACKEND=cpu with AUTO");
    setenv("MXMOE_BACKEND", "cpu", 1);
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), MXMOE_OK);
    CHECK_EQ_INT(mxmoe_ctx_backend(c), MXMOE_BACKEND_CPU);
    mxmoe_ctx_free(c);

    if (!mxmoe_backend_available(MXMOE_BACKEND_CUDA)) {
        check_set_context("MXMOE_BACKEND=cuda with AUTO and no GPU");
        setenv("MXMOE_BACKEND", "cuda", 1);
        c = (mxmoe_ctx*)&p;
        CHECK_STATUS(mxmoe_ctx_init(&c, &p), UNS);
        CHECK(c == NULL);
        check_set_context("MXMOE_BACKEND=cuda with explicit CPU");
        p.backend = MXMOE_BACKEND_CPU;
        c = NULL;
        CHECK_STATUS(mxmoe_ctx_init(&c, &p), MXMOE_OK);
        mxmoe_ctx_free(c);
        p.backend = MXMOE_BACKEND_AUTO;
    }

    check_set_context("MXMOE_BACKEND=bogus with AUTO");
    setenv("MXMOE_BACKEND", "bogus", 1);
    c = (mxmoe_ctx*)&p;
    mxmoe_status st = mxmoe_ctx_init(&c, &p);
    if (st == MXMOE_OK) {
        printf("note: MXMOE_BACKEND=bogus is ignored (AUTO chose %s)\n",
               mxmoe_backend_name(mxmoe_ctx_backend(c)));
        CHECK(c != NULL && c != (mxmoe_ctx*)&p);
        mxmoe_ctx_free(c);
    } else {
        printf("note: MXMOE_BACKEND=bogus is an error: %s\n", mxmoe_status_string(st));
        CHECK_STATUS(st, INV);
        CHECK(c == NULL);
    }
    check_set_context("MXMOE_BACKEND=bogus with explicit CPU (explicit wins)");
    p.backend = MXMOE_BACKEND_CPU;
    c = NULL;
    CHECK_STATUS(mxmoe_ctx_init(&c, &p), MXMOE_OK);
    CHECK_EQ_INT(mxmoe_ctx_backend(c), MXMOE_BACKEND_CPU);
    mxmoe_ctx_free(c);
    unsetenv("MXMOE_BACKEND");
}

/* mxmoe_ctx_last_error: "" on a fresh context; the message of the most recent call — reset by a
 * successful call, replaced by the next failure. */
static void test_last_error_lifecycle(void) {
    check_set_context("last_error across calls");
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    mxmoe_ctx* c = new_ctx(&cap);
    if (!CHECK(c != NULL)) {
        return;
    }
    CHECK(strcmp(mxmoe_ctx_last_error(c), "") == 0);
    float x[64] = {1.0f};
    uint8_t packed[32], scales[2];
    int64_t xd[2] = {1, 64}, bad[2] = {1, 48};
    mxmoe_tensor xt = mxmoe_tensor_make(x, MXMOE_F32, 2, xd);
    mxmoe_mx_tensor out = mx2(packed, scales, 1, 64);
    mxmoe_tensor xbad = mxmoe_tensor_make(x, MXMOE_F32, 2, bad);
    CHECK_STATUS(mxmoe_quantize(c, &xbad, MXMOE_RULE_EVEN, &out), SH);
    char first[1024];
    snprintf(first, sizeof first, "%s", mxmoe_ctx_last_error(c));
    CHECK(first[0] != '\0');
    CHECK_STATUS(mxmoe_quantize(c, &xt, MXMOE_RULE_EVEN, &out), MXMOE_OK);
    CHECK_MSG(strcmp(mxmoe_ctx_last_error(c), "") == 0,
              "after a success last_error is '%s', want \"\"", mxmoe_ctx_last_error(c));
    CHECK_STATUS(mxmoe_quantize(c, &xt, (mxmoe_scale_rule)9, &out), INV);
    CHECK_MSG(strcmp(mxmoe_ctx_last_error(c), first) != 0,
              "a second, different failure did not replace last_error ('%s')",
              mxmoe_ctx_last_error(c));
    CHECK_EQ_INT(cap.errors, 2);
    mxmoe_ctx_free(c);
}

int main(void) {
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    p.num_threads = 1;
    if (mxmoe_ctx_init(&setup_ctx, &p) != MXMOE_OK) {
        CHECK_MSG(0, "cannot create a CPU context");
        return check_report();
    }
    test_status_strings();
    test_tensor_helpers();
    test_ctx();
    test_env_backend();
    test_last_error_lifecycle();
    test_quantize();
    test_dequantize();
    test_gguf();
    test_swizzle();
    test_route();
    test_plan();
    test_experts_quantize();
    test_act_and_quantize();
    test_grouped_gemm();
    test_workspace_size();
    test_moe_forward();
    mxmoe_ctx_free(setup_ctx);
    check_set_context("");
    printf("%d cases accept more than one status (AMBIGUOUS in the header)\n", ambiguous_count);
    return check_report();
}
