/*
 * demo_oracle.c — the FP64 references `mxmoe demo` checks a forward pass against.
 *
 * The mirror follows the quantized pipeline's rounding points exactly (SPEC §2) and does
 * everything between them in FP64; the MXFP4 conversions themselves go through the library's
 * mxmoe_quantize / mxmoe_dequantize (bit-exact, tested on their own). What remains between the
 * mirror and a correct backend is FP32-vs-FP64 accumulation and, rarely, a value that lands on
 * the other side of a BF16 or E2M1 rounding boundary because of it. The unquantized reference
 * runs the same layer on the BF16 weights: its distance to the output is the W4A4 error.
 *
 * Work is grouped by expert so each expert's weights are dequantized and regenerated once, and
 * the experts are shared out over one worker per core (demo_workers.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

/* Dot products in FP64; products of two FP32 values are exact in FP64. Four accumulators
 * break the add latency chain (the order changes nothing that matters at FP64 precision). */
static double dot_ff(const float* a, const float* b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)a[i] * b[i];
        s1 += (double)a[i + 1] * b[i + 1];
        s2 += (double)a[i + 2] * b[i + 2];
        s3 += (double)a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) {
        s0 += (double)a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

static double dot_fd(const float* a, const double* b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) {
        s0 += a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

/* gpt-oss SwiGLU in FP64, as the reference evaluates it (comparisons keep NaN). */
static double swiglu(double gate, double up, const mxmoe_act_params* act) {
    double limit = act->swiglu_limit;
    double g = gate > limit ? limit : gate;
    double u = up > limit ? limit : (up < -limit ? -limit : up);
    return g * (1.0 / (1.0 + exp(-(double)act->swiglu_alpha * g))) * (u + 1.0);
}

/* Quantizes `rows` rows of BF16 through the library and dequantizes them to FP32. */
static int quantize_roundtrip(const char* cmd, mxmoe_ctx* ctx, const uint16_t* in, int64_t rows,
                              int64_t k, mxmoe_scale_rule rule, float* out) {
    uint8_t* packed = malloc((size_t)(rows * k / 2));
    uint8_t* scales = malloc((size_t)(rows * k / MXMOE_BLOCK));
    int rc = 0;
    if (packed == NULL || scales == NULL) {
        rc = cli_error(cmd, "out of memory");
    } else {
        int64_t dims[2] = {rows, k}, p_dims[2] = {rows, k / 2}, s_dims[2] = {rows, k / 32};
        mxmoe_tensor x = mxmoe_tensor_make((void*)in, MXMOE_BF16, 2, dims);
        mxmoe_tensor y = mxmoe_tensor_make(out, MXMOE_F32, 2, dims);
        mxmoe_mx_tensor q;
        q.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, p_dims);
        q.scales = mxmoe_tensor_make(scales, MXMOE_U8, 2, s_dims);
        q.scale_layout = MXMOE_SCALES_LINEAR;
        mxmoe_status st = mxmoe_quantize(ctx, &x, rule, &q);
        if (st == MXMOE_OK) {
            st = mxmoe_dequantize(ctx, &q, &y);
        }
        if (st != MXMOE_OK) {
            rc = cli_error(cmd, "quantize/dequantize for the check: %s (%s)",
                           mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
        }
    }
    free(packed);
    free(scales);
    return rc;
}

/* An expert's weights twice, as FP32: dequantized MXFP4 and the BF16 originals. */
static int expert_weights(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, demo_stream what,
                          int64_t e, float* dequantized, float* original, uint16_t* tmp) {
    int64_t rows = what == DEMO_W13 ? 2 * L->intermediate : L->hidden;
    int64_t k = what == DEMO_W13 ? L->hidden : L->intermediate;
    mxmoe_mx_tensor q = what == DEMO_W13 ? demo_expert_w13(L, e) : demo_expert_w2(L, e);
    int64_t dims[2] = {rows, k};
    mxmoe_tensor out = mxmoe_tensor_make(dequantized, MXMOE_F32, 2, dims);
    mxmoe_status st = mxmoe_dequantize(ctx, &q, &out);
    if (st != MXMOE_OK) {
        return cli_error(cmd, "dequantizing expert %lld: %s (%s)", (long long)e,
                         mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
    }
    demo_generate_bf16(L->seed, what, e, 1.0f / sqrtf((float)k), 0, rows * k, tmp);
    for (int64_t i = 0; i < rows * k; i++) {
        original[i] = cli_float_from_bf16(tmp[i]);
    }
    return 0;
}

/* A GEMM result as the layer keeps it: rounded to FP32, then to BF16 where gemm_dtype says. */
static float kept(double v, mxmoe_dtype gemm_dtype) {
    float f = (float)v;
    return gemm_dtype == MXMOE_BF16 ? cli_float_from_bf16(cli_bf16_from_float(f)) : f;
}

/* Scratch for one expert: pairs routed to it and their intermediate values. */
typedef struct expert_scratch {
    int64_t* token;   /* [P] */
    float* weight;    /* [P] router weight */
    double* h_mirror; /* [P, 2I] GEMM-1 + bias */
    double* h_orig;   /* [P, 2I] */
    uint16_t* a_bf16; /* [P, I] activation rounded to FP32 then BF16 */
    float* a_mirror;  /* [P, I] after quantize/dequantize */
    double* a_orig;   /* [P, I] */
} expert_scratch;

/* One expert's contribution to both references for its P pairs. */
static int run_expert(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L,
                      const mxmoe_moe_params* params, int64_t e, int64_t P, const float* x_mirror,
                      const float* x_orig, expert_scratch* s, float* wq, float* wo, uint16_t* tmp,
                      double* mirror, double* unquantized) {
    int64_t H = L->hidden, I = L->intermediate;
    const mxmoe_act_params* act = &params->act;
    /* GEMM-1 (+ b13) for every pair: rows of w13 outermost so each row is read once. */
    if (expert_weights(cmd, ctx, L, DEMO_W13, e, wq, wo, tmp) != 0) {
        return -1;
    }
    for (int64_t n = 0; n < 2 * I; n++) {
        double bias = cli_float_from_bf16(L->b13[e * 2 * I + n]);
        for (int64_t p = 0; p < P; p++) {
            s->h_mirror[p * 2 * I + n] = dot_ff(wq + n * H, x_mirror + s->token[p] * H, H) + bias;
            s->h_orig[p * 2 * I + n] = dot_ff(wo + n * H, x_orig + s->token[p] * H, H) + bias;
        }
    }
    /* The activation: from GEMM-1's output as the layer keeps it (FP32, or BF16: gemm_dtype),
     * evaluated in FP64, rounded to FP32 then to BF16, then quantized (SPEC §2); the
     * unquantized path keeps FP64 throughout. */
    int interleaved = act->layout == MXMOE_GATE_UP_INTERLEAVED;
    for (int64_t p = 0; p < P; p++) {
        for (int64_t i = 0; i < I; i++) {
            int64_t gi = interleaved ? 2 * i : i, ui = interleaved ? 2 * i + 1 : I + i;
            const double* hm = s->h_mirror + p * 2 * I;
            const double* ho = s->h_orig + p * 2 * I;
            double a =
                swiglu(kept(hm[gi], params->gemm_dtype), kept(hm[ui], params->gemm_dtype), act);
            s->a_bf16[p * I + i] = cli_bf16_from_float((float)a);
            s->a_orig[p * I + i] = swiglu(ho[gi], ho[ui], act);
        }
    }
    if (quantize_roundtrip(cmd, ctx, s->a_bf16, P, I, act->rule, s->a_mirror) != 0) {
        return -1;
    }
    /* GEMM-2 (+ b2) and the router-weighted sum. */
    if (expert_weights(cmd, ctx, L, DEMO_W2, e, wq, wo, tmp) != 0) {
        return -1;
    }
    for (int64_t n = 0; n < H; n++) {
        double bias = cli_float_from_bf16(L->b2[e * H + n]);
        for (int64_t p = 0; p < P; p++) {
            double ym = kept(dot_ff(wq + n * I, s->a_mirror + p * I, I) + bias, params->gemm_dtype);
            double yo = dot_fd(wo + n * I, s->a_orig + p * I, I) + bias;
            mirror[s->token[p] * H + n] += s->weight[p] * ym;
            unquantized[s->token[p] * H + n] += s->weight[p] * yo;
        }
    }
    return 0;
}

/* One worker's share of the check: scratch and accumulators of its own; it takes the experts
 * e with e % workers == index, so the split (and the result) is fixed for a machine. */
typedef struct check_share {
    const char* cmd;
    const demo_layer* L;
    const mxmoe_moe_params* params;
    const int32_t* ids;
    const float* weights;
    const float *x_mirror, *x_orig;
    int64_t tokens;
    double *mirror, *unquantized; /* [tokens, H] */
    int64_t pairs_done;
} check_share;

static int check_experts(mxmoe_ctx* ctx, int index, int workers, void* arg) {
    check_share* w = arg;
    const demo_layer* L = w->L;
    int64_t H = L->hidden, I = L->intermediate, k = L->top_k, max_pairs = w->tokens * k;
    size_t w_elems = (size_t)(2 * I * H > H * I ? 2 * I * H : H * I);
    float* wq = malloc(w_elems * sizeof(float));
    float* wo = malloc(w_elems * sizeof(float));
    uint16_t* tmp = malloc(w_elems * sizeof(uint16_t));
    expert_scratch s;
    s.token = malloc((size_t)max_pairs * sizeof *s.token);
    s.weight = malloc((size_t)max_pairs * sizeof *s.weight);
    s.h_mirror = malloc((size_t)(max_pairs * 2 * I) * sizeof(double));
    s.h_orig = malloc((size_t)(max_pairs * 2 * I) * sizeof(double));
    s.a_bf16 = malloc((size_t)(max_pairs * I) * sizeof(uint16_t));
    s.a_mirror = malloc((size_t)(max_pairs * I) * sizeof(float));
    s.a_orig = malloc((size_t)(max_pairs * I) * sizeof(double));
    int rc = 0;
    if (wq == NULL || wo == NULL || tmp == NULL || s.token == NULL || s.weight == NULL ||
        s.h_mirror == NULL || s.h_orig == NULL || s.a_bf16 == NULL || s.a_mirror == NULL ||
        s.a_orig == NULL) {
        rc = cli_error(w->cmd, "out of memory for the FP64 check");
    }
    for (int64_t e = index; e < L->experts && rc == 0; e += workers) {
        int64_t P = 0;
        for (int64_t t = 0; t < w->tokens; t++) {
            for (int64_t j = 0; j < k; j++) {
                if (w->ids[t * k + j] == e) {
                    s.token[P] = t;
                    s.weight[P] = w->weights[t * k + j];
                    P++;
                }
            }
        }
        if (P > 0) {
            rc = run_expert(w->cmd, ctx, L, w->params, e, P, w->x_mirror, w->x_orig, &s, wq, wo,
                            tmp, w->mirror, w->unquantized);
            w->pairs_done += P;
        }
    }
    free(wq);
    free(wo);
    free(tmp);
    free(s.token);
    free(s.weight);
    free(s.h_mirror);
    free(s.h_orig);
    free(s.a_bf16);
    free(s.a_mirror);
    free(s.a_orig);
    return rc;
}

int demo_reference(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L,
                   const mxmoe_moe_params* params, const uint16_t* x, const int32_t* ids,
                   const float* weights, int64_t tokens, double* mirror, double* unquantized) {
    int64_t H = L->hidden;
    int workers = demo_worker_count(L->experts);
    float* x_mirror = malloc((size_t)(tokens * H) * sizeof(float));
    float* x_orig = malloc((size_t)(tokens * H) * sizeof(float));
    check_share* w = calloc((size_t)workers, sizeof *w);
    double* sums = calloc((size_t)(2 * workers * tokens * H), sizeof(double));
    if (x_mirror == NULL || x_orig == NULL || w == NULL || sums == NULL) {
        free(x_mirror), free(x_orig), free(w), free(sums);
        return cli_error(cmd, "out of memory for the FP64 check");
    }
    /* The forward quantizes x with the activation's rule: mirror that, exactly. */
    int rc = quantize_roundtrip(cmd, ctx, x, tokens, H, params->act.rule, x_mirror);
    for (int64_t i = 0; i < tokens * H; i++) {
        x_orig[i] = cli_float_from_bf16(x[i]);
    }
    double t0 = cli_seconds();
    for (int i = 0; i < workers; i++) {
        check_share one = {.cmd = cmd,
                           .L = L,
                           .params = params,
                           .ids = ids,
                           .weights = weights,
                           .x_mirror = x_mirror,
                           .x_orig = x_orig,
                           .tokens = tokens,
                           .mirror = sums + (size_t)(2 * i) * tokens * H,
                           .unquantized = sums + (size_t)(2 * i + 1) * tokens * H};
        w[i] = one;
    }
    if (rc == 0) {
        rc = demo_run_workers(cmd, workers, check_experts, w, sizeof *w);
    }
    int64_t done = 0;
    memset(mirror, 0, (size_t)(tokens * H) * sizeof(double));
    memset(unquantized, 0, (size_t)(tokens * H) * sizeof(double));
    for (int i = 0; i < workers && rc == 0; i++) { /* fixed order: deterministic */
        done += w[i].pairs_done;
        for (int64_t j = 0; j < tokens * H; j++) {
            mirror[j] += w[i].mirror[j];
            unquantized[j] += w[i].unquantized[j];
        }
    }
    if (rc == 0) {
        printf("      %lld (token, expert) pairs checked on %d threads (%.1f s)\n", (long long)done,
               workers, cli_seconds() - t0);
    }
    free(x_mirror), free(x_orig), free(w), free(sums);
    return rc == 0 ? 0 : -1;
}
