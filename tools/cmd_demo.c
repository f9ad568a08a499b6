/*
 * cmd_demo.c — `mxmoe demo`: the README's main job in one command. A synthetic MoE layer of
 * gpt-oss-20b's shape is quantized to MXFP4, run W4A4 on the best backend, timed, and verified
 * against an FP64 computation that mirrors the quantized pipeline.
 *
 * Layer: 32 experts, top-4, hidden 2880, intermediate 2880, gate/up rows interleaved, gpt-oss
 * SwiGLU (alpha 1.702, limit 7), biases, router = top-k of the logits then softmax over the k.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

static const char* const usage =
    "usage: mxmoe demo [--tokens N] [--backend auto|cpu|cuda] [--seed S] [--check-tokens C]\n"
    "\n"
    "Builds a synthetic MoE layer of gpt-oss-20b's shape (32 experts, top-4, hidden 2880,\n"
    "intermediate 2880, SwiGLU, biases) with random weights, quantizes it to MXFP4 (rule\n"
    "even), routes N random BF16 tokens, runs the W4A4 forward pass on the backend, times\n"
    "it, and checks it against an FP64 computation that mirrors the quantization points.\n"
    "Exits non-zero if the check fails.\n"
    "\n"
    "options:\n"
    "  --tokens N        tokens in the batch (default 64)\n"
    "  --backend B       auto (default: CUDA if usable, else CPU), cpu or cuda\n"
    "  --seed S          seed of the synthetic weights, tokens and logits (default 1)\n"
    "  --check-tokens C  tokens checked in FP64 (default min(16, N))\n";

enum { MAX_RUNS = 9 };

/* --- The pass criterion ------------------------------------------------------------------------
 * A correct backend differs from the mirror only by FP32 accumulation (each MX block's dot
 * product is exact; 90 FP32 block sums over K = 2880 give a relative error near 1e-7, measured
 * 5e-8 on the CPU backend) unless a
 * value falls on the other side of a rounding boundary. The one such boundary that matters is
 * re-quantizing the activation: the FP32 GEMM-1 output differs from the FP64 one in its last
 * bits, so about 2^-16 of the activations round to the neighbouring BF16 value, and roughly one
 * in a hundred of those crosses an E2M1 rounding midpoint. Such a flip moves one element of one
 * (token, expert) pair by one E2M1 step, which changes that token's output by up to a few
 * percent (one of I = 2880 inputs of GEMM-2, times its router weight) — so flips are told apart
 * by token, not folded into one norm:
 *   - a token whose normalised error is above TOKEN_EXACT (100x the accumulation error) has
 *     seen a flip;
 *   - the check fails if more than a quarter of the checked tokens (at least 1) flipped, since
 *     flips are rare (none in 448 checked pairs over seeds 1-4) while a real bug (a wrong
 *     nibble, scale, expert, bias, rounding mode or weight) moves every token (a scale rule
 *     swapped for the activation gives 8e-2 on every token);
 *   - and fails if any token is off by more than TOKEN_FLIP_MAX, which a flip or two cannot
 *     reach but the W4A4 quantization error itself (about 26% for this layer) would.
 */
#define TOKEN_EXACT    1e-5
#define TOKEN_FLIP_MAX 5e-2

typedef struct check_result {
    double normalised; /* ||out - ref|| / ||ref|| over all checked tokens */
    double max_abs;
    double worst_token; /* largest per-token normalised error */
    int64_t flipped;    /* tokens above TOKEN_EXACT */
    int64_t non_finite;
} check_result;

static check_result compare(const float* out, const double* ref, int64_t tokens, int64_t h) {
    check_result r = {0, 0, 0, 0, 0};
    double err2 = 0, ref2 = 0;
    for (int64_t t = 0; t < tokens; t++) {
        double te2 = 0, tr2 = 0;
        for (int64_t n = 0; n < h; n++) {
            double o = out[t * h + n], d = o - ref[t * h + n];
            if (!isfinite(o)) {
                r.non_finite++;
                continue;
            }
            te2 += d * d;
            tr2 += ref[t * h + n] * ref[t * h + n];
            r.max_abs = fabs(d) > r.max_abs ? fabs(d) : r.max_abs;
        }
        double te = tr2 > 0 ? sqrt(te2 / tr2) : sqrt(te2);
        r.worst_token = te > r.worst_token ? te : r.worst_token;
        r.flipped += te > TOKEN_EXACT;
        err2 += te2;
        ref2 += tr2;
    }
    r.normalised = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    return r;
}

static int check_passes(const check_result* r, int64_t tokens) {
    int64_t allowed = tokens / 4 > 1 ? tokens / 4 : 1;
    return r->non_finite == 0 && r->flipped <= allowed && r->worst_token <= TOKEN_FLIP_MAX;
}

/* The same comparison against an FP32 output (the CPU cross-check). */
static check_result compare_outputs(const float* out, const float* ref, int64_t tokens, int64_t h) {
    double* ref64 = malloc((size_t)(tokens * h) * sizeof(double));
    check_result r = {INFINITY, INFINITY, INFINITY, tokens, 0};
    if (ref64 != NULL) {
        for (int64_t i = 0; i < tokens * h; i++) {
            ref64[i] = ref[i];
        }
        r = compare(out, ref64, tokens, h);
        free(ref64);
    }
    return r;
}

/* Everything the forward pass reads and writes, in host memory. */
typedef struct demo_batch {
    int64_t tokens;
    uint16_t* x;    /* BF16 [T, H] */
    float* logits;  /* F32 [T, E] */
    int32_t* ids;   /* I32 [T, k] */
    float* weights; /* F32 [T, k] */
    float* out;     /* F32 [T, H] */
    void* workspace;
    size_t workspace_bytes;
} demo_batch;

static mxmoe_moe_params layer_params(const demo_layer* L) {
    mxmoe_moe_params p = mxmoe_moe_params_default();
    p.num_experts = L->experts;
    p.act = mxmoe_act_params_default();
    p.act.activation = MXMOE_ACT_SWIGLU_OAI;
    p.act.layout = MXMOE_GATE_UP_INTERLEAVED;
    p.act.swiglu_alpha = 1.702f;
    p.act.swiglu_limit = 7.0f;
    p.act.act_dtype = MXMOE_BF16;
    p.act.rule = MXMOE_RULE_EVEN;
    p.router_weight_on_input = 0;
    return p;
}

/* One forward pass of the whole batch into `out` (poisoned with NaN first, so a kernel that
 * skips an element cannot pass on stale values). */
static int forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, const demo_batch* b,
                   float* out, size_t workspace_bytes, void* workspace) {
    int64_t T = b->tokens, H = L->hidden, E = L->experts, I = L->intermediate, k = L->top_k;
    for (int64_t i = 0; i < T * H; i++) {
        out[i] = NAN;
    }
    int64_t x_dims[2] = {T, H}, k_dims[2] = {T, k};
    int64_t b13_dims[2] = {E, 2 * I}, b2_dims[2] = {E, H};
    mxmoe_tensor x = mxmoe_tensor_make(b->x, MXMOE_BF16, 2, x_dims);
    mxmoe_tensor ids = mxmoe_tensor_make(b->ids, MXMOE_I32, 2, k_dims);
    mxmoe_tensor w = mxmoe_tensor_make(b->weights, MXMOE_F32, 2, k_dims);
    mxmoe_tensor y = mxmoe_tensor_make(out, MXMOE_F32, 2, x_dims);
    mxmoe_tensor b13 = mxmoe_tensor_make(L->b13, MXMOE_BF16, 2, b13_dims);
    mxmoe_tensor b2 = mxmoe_tensor_make(L->b2, MXMOE_BF16, 2, b2_dims);
    int64_t w13_p[3] = {E, 2 * I, H / 2}, w13_s[3] = {E, 2 * I, H / MXMOE_BLOCK};
    int64_t w2_p[3] = {E, H, I / 2}, w2_s[3] = {E, H, I / MXMOE_BLOCK};
    mxmoe_moe_weights wts;
    wts.w13.packed = mxmoe_tensor_make(L->w13_packed, MXMOE_U8, 3, w13_p);
    wts.w13.scales = mxmoe_tensor_make(L->w13_scales, MXMOE_U8, 3, w13_s);
    wts.w13.scale_layout = MXMOE_SCALES_LINEAR;
    wts.w2.packed = mxmoe_tensor_make(L->w2_packed, MXMOE_U8, 3, w2_p);
    wts.w2.scales = mxmoe_tensor_make(L->w2_scales, MXMOE_U8, 3, w2_s);
    wts.w2.scale_layout = MXMOE_SCALES_LINEAR;
    wts.b13 = &b13;
    wts.b2 = &b2;
    mxmoe_moe_params params = layer_params(L);
    mxmoe_status st =
        mxmoe_moe_forward(ctx, &x, &ids, &w, &wts, &params, workspace, workspace_bytes, &y);
    if (st == MXMOE_OK) {
        st = mxmoe_ctx_synchronize(ctx);
    }
    if (st != MXMOE_OK) {
        return cli_error(cmd, "mxmoe_moe_forward on %s: %s (%s)", mxmoe_ctx_backend_detail(ctx),
                         mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
    }
    return 0;
}

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* Synthesises tokens and logits, routes them and sizes the workspace. */
static int prepare_batch(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, demo_batch* b) {
    int64_t T = b->tokens, H = L->hidden, E = L->experts, k = L->top_k;
    b->x = malloc((size_t)(T * H) * sizeof(uint16_t));
    b->logits = malloc((size_t)(T * E) * sizeof(float));
    b->ids = malloc((size_t)(T * k) * sizeof(int32_t));
    b->weights = malloc((size_t)(T * k) * sizeof(float));
    b->out = malloc((size_t)(T * H) * sizeof(float));
    if (b->x == NULL || b->logits == NULL || b->ids == NULL || b->weights == NULL ||
        b->out == NULL) {
        return cli_error(cmd, "out of memory for %lld tokens", (long long)T);
    }
    demo_generate_bf16(L->seed, DEMO_X, 0, 1.0f, 0, T * H, b->x);
    demo_generate_f32(L->seed, DEMO_LOGITS, 0, 1.0f, 0, T * E, b->logits);
    int64_t l_dims[2] = {T, E}, k_dims[2] = {T, k};
    mxmoe_tensor logits = mxmoe_tensor_make(b->logits, MXMOE_F32, 2, l_dims);
    mxmoe_tensor ids = mxmoe_tensor_make(b->ids, MXMOE_I32, 2, k_dims);
    mxmoe_tensor w = mxmoe_tensor_make(b->weights, MXMOE_F32, 2, k_dims);
    mxmoe_route_params rp = mxmoe_route_params_default();
    rp.method = MXMOE_ROUTE_TOPK_SOFTMAX;
    rp.top_k = L->top_k;
    mxmoe_status st = mxmoe_route(ctx, &logits, &rp, &ids, &w);
    if (st != MXMOE_OK) {
        return cli_error(cmd, "mxmoe_route: %s (%s)", mxmoe_ctx_last_error(ctx),
                         mxmoe_status_string(st));
    }
    int64_t load[256] = {0}, used = 0, most = 0;
    for (int64_t i = 0; i < T * k; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= E) {
            return cli_error(cmd, "mxmoe_route returned expert id %d outside [0, %lld)",
                             (int)b->ids[i], (long long)E);
        }
        load[b->ids[i]]++;
    }
    for (int64_t e = 0; e < E; e++) {
        used += load[e] > 0;
        most = load[e] > most ? load[e] : most;
    }
    printf("      %lld tokens routed: %lld of %lld experts used, busiest has %lld rows\n",
           (long long)T, (long long)used, (long long)E, (long long)most);
    mxmoe_moe_params params = layer_params(L);
    st = mxmoe_moe_workspace_size(ctx, &params, T, L->top_k, H, L->intermediate,
                                  &b->workspace_bytes);
    if (st != MXMOE_OK) {
        return cli_error(cmd, "mxmoe_moe_workspace_size: %s (%s)", mxmoe_ctx_last_error(ctx),
                         mxmoe_status_string(st));
    }
    b->workspace = malloc(b->workspace_bytes ? b->workspace_bytes : 1);
    if (b->workspace == NULL) {
        return cli_error(cmd, "out of memory for a %zu-byte workspace", b->workspace_bytes);
    }
    return 0;
}

static void free_batch(demo_batch* b) {
    free(b->x);
    free(b->logits);
    free(b->ids);
    free(b->weights);
    free(b->out);
    free(b->workspace);
}

/* Times the forward pass: a few runs (more when they are quick), median reported. */
static int time_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, const demo_batch* b) {
    double times[MAX_RUNS], total = 0;
    int runs = 0;
    while (runs < MAX_RUNS && (runs < 3 || total < 2.0) && !(runs >= 1 && total > 20.0)) {
        double t0 = cli_seconds();
        if (forward(cmd, ctx, L, b, b->out, b->workspace_bytes, b->workspace) != 0) {
            return -1;
        }
        times[runs] = cli_seconds() - t0;
        total += times[runs++];
    }
    qsort(times, (size_t)runs, sizeof times[0], compare_doubles);
    double median = times[runs / 2];
    double flops = 2.0 * (double)b->tokens * L->top_k *
                   (double)(2 * L->intermediate * L->hidden + L->hidden * L->intermediate);
    printf("      %d run%s: median %.2f ms (min %.2f ms) = %.1f tokens/s, %.2f GFLOP/s "
           "(workspace %.1f MB)\n",
           runs, runs == 1 ? "" : "s", median * 1e3, times[0] * 1e3, (double)b->tokens / median,
           flops / median / 1e9, (double)b->workspace_bytes / 1e6);
    return 0;
}

static void print_check(const char* label, const check_result* r) {
    printf("      %s: normalised error %.3e, max abs error %.3e, worst token %.3e%s\n", label,
           r->normalised, r->max_abs, r->worst_token, r->non_finite ? " (NON-FINITE OUTPUTS)" : "");
}

/* Parses the options; returns -1 after --help, a CLI_EXIT_* code > 0 on a usage error. */
static int parse_args(int argc, char** argv, int64_t* tokens, int64_t* check, uint64_t* seed,
                      mxmoe_backend* backend) {
    const char* cmd = "demo";
    *check = -1;
    for (int i = 1; i < argc; i++) {
        const char* v = NULL;
        int64_t n = 0;
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return -1;
        }
        if (strcmp(argv[i], "--tokens") == 0 || strcmp(argv[i], "--seed") == 0 ||
            strcmp(argv[i], "--check-tokens") == 0 || strcmp(argv[i], "--backend") == 0) {
            v = cli_option_value(cmd, argc, argv, &i);
            if (v == NULL) {
                return CLI_EXIT_USAGE;
            }
        } else {
            return cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
        const char* opt = argv[i - 1];
        if (strcmp(opt, "--backend") == 0) {
            if (cli_parse_backend(cmd, v, backend) != 0) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(opt, "--tokens") == 0) {
            if (cli_parse_int(cmd, opt, v, 1, 1 << 20, tokens) != 0) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(opt, "--check-tokens") == 0) {
            if (cli_parse_int(cmd, opt, v, 1, 1 << 20, check) != 0) {
                return CLI_EXIT_USAGE;
            }
        } else {
            if (cli_parse_int(cmd, opt, v, 0, INT64_MAX, &n) != 0) {
                return CLI_EXIT_USAGE;
            }
            *seed = (uint64_t)n;
        }
    }
    if (*check < 0) {
        *check = *tokens < 16 ? *tokens : 16;
    }
    if (*check > *tokens) {
        return cli_usage_error(cmd, "--check-tokens %lld exceeds --tokens %lld", (long long)*check,
                               (long long)*tokens);
    }
    return 0;
}

/* Opens the compute context. AUTO may pick CUDA, which this tool cannot feed yet (no device
 * allocation in the public API): then it says so and falls back to the CPU. */
static mxmoe_ctx* open_compute_ctx(const char* cmd, mxmoe_backend backend) {
    mxmoe_ctx* ctx = cli_ctx_open(cmd, backend);
    if (ctx == NULL || mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CPU) {
        return ctx;
    }
    if (backend == MXMOE_BACKEND_AUTO) {
        cli_warn(cmd,
                 "auto picked %s, but the tool cannot allocate device memory yet; using "
                 "the CPU backend",
                 mxmoe_ctx_backend_detail(ctx));
        mxmoe_ctx_free(ctx);
        return cli_ctx_open(cmd, MXMOE_BACKEND_CPU);
    }
    cli_ctx_uses_host_memory(cmd, ctx);
    mxmoe_ctx_free(ctx);
    return NULL;
}

/* Runs the same forward on a CPU context and compares (when the main backend is not the CPU). */
static int cross_check_cpu(const char* cmd, mxmoe_ctx* ctx, mxmoe_ctx* cpu, const demo_layer* L,
                           const demo_batch* b) {
    if (mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CPU) {
        printf("[4/5] cross-check against the CPU backend: skipped (the backend is the CPU)\n");
        return 0;
    }
    printf("[4/5] cross-check against the CPU backend (%s)\n", mxmoe_ctx_backend_detail(cpu));
    size_t ws_bytes = 0;
    mxmoe_moe_params params = layer_params(L);
    if (mxmoe_moe_workspace_size(cpu, &params, b->tokens, L->top_k, L->hidden, L->intermediate,
                                 &ws_bytes) != MXMOE_OK) {
        return cli_error(cmd, "CPU workspace size: %s", mxmoe_ctx_last_error(cpu));
    }
    float* out = malloc((size_t)(b->tokens * L->hidden) * sizeof(float));
    void* ws = malloc(ws_bytes ? ws_bytes : 1);
    int rc = (out == NULL || ws == NULL) ? cli_error(cmd, "out of memory") : 0;
    if (rc == 0) {
        rc = forward(cmd, cpu, L, b, out, ws_bytes, ws);
    }
    if (rc == 0) {
        check_result r = compare_outputs(b->out, out, b->tokens, L->hidden);
        print_check("vs CPU", &r);
        if (!check_passes(&r, b->tokens)) {
            rc = cli_error(cmd, "the %s output disagrees with the CPU backend's",
                           mxmoe_backend_name(mxmoe_ctx_backend(ctx)));
        }
    }
    free(out);
    free(ws);
    return rc;
}

/* The FP64 check on the first `check` tokens; returns 0 if it passes. */
static int fp64_check(const char* cmd, mxmoe_ctx* cpu, const demo_layer* L, const demo_batch* b,
                      int64_t check) {
    printf("[5/5] FP64 check of the first %lld tokens (mirrored quantization points)\n",
           (long long)check);
    fflush(stdout);
    double* mirror = malloc((size_t)(check * L->hidden) * sizeof(double));
    double* unquantized = malloc((size_t)(check * L->hidden) * sizeof(double));
    int rc = (mirror == NULL || unquantized == NULL) ? cli_error(cmd, "out of memory") : 0;
    mxmoe_moe_params params = layer_params(L);
    if (rc == 0) {
        rc = demo_reference(cmd, cpu, L, &params.act, b->x, b->ids, b->weights, check, mirror,
                            unquantized);
    }
    if (rc == 0) {
        check_result r = compare(b->out, mirror, check, L->hidden);
        check_result q = compare(b->out, unquantized, check, L->hidden);
        print_check("vs FP64 mirror of the W4A4 pipeline", &r);
        printf("      tokens with a re-quantization boundary flip (error > %.0e): %lld of %lld\n",
               TOKEN_EXACT, (long long)r.flipped, (long long)check);
        print_check("vs unquantized BF16 layer (W4A4 quantization error, informative)", &q);
        if (!check_passes(&r, check)) {
            rc = cli_error(cmd,
                           "the forward pass does not match the FP64 mirror (allowed: at most "
                           "%lld flipped tokens, none above %.0e, all outputs finite)",
                           (long long)(check / 4 > 1 ? check / 4 : 1), TOKEN_FLIP_MAX);
        }
    }
    free(mirror);
    free(unquantized);
    return rc;
}

int cmd_demo(int argc, char** argv) {
    const char* cmd = "demo";
    int64_t tokens = 64, check = -1;
    uint64_t seed = 1;
    mxmoe_backend backend = MXMOE_BACKEND_AUTO;
    int parsed = parse_args(argc, argv, &tokens, &check, &seed, &backend);
    if (parsed != 0) {
        return parsed < 0 ? CLI_EXIT_OK : parsed;
    }
    demo_layer L = {0};
    L.experts = 32;
    L.top_k = 4;
    L.hidden = 2880;
    L.intermediate = 2880;
    L.seed = seed;
    printf("mxmoe demo: gpt-oss-20b MoE layer (%d experts, top-%d, hidden %lld, intermediate "
           "%lld, SwiGLU alpha 1.702 limit 7, biases), %lld tokens, seed %llu\n",
           (int)L.experts, (int)L.top_k, (long long)L.hidden, (long long)L.intermediate,
           (long long)tokens, (unsigned long long)seed);
    double t_start = cli_seconds();
    mxmoe_ctx* ctx = open_compute_ctx(cmd, backend);
    mxmoe_ctx* cpu = NULL;
    if (ctx != NULL) {
        cpu = mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CPU ? ctx
                                                          : cli_ctx_open(cmd, MXMOE_BACKEND_CPU);
    }
    if (ctx == NULL || cpu == NULL) {
        mxmoe_ctx_free(ctx);
        return CLI_EXIT_FAILURE;
    }
    printf("      backend: %s\n", mxmoe_ctx_backend_detail(ctx));
    printf("[1/5] synthesising BF16 expert weights and quantizing them to MXFP4 (rule even), "
           "one expert at a time\n");
    fflush(stdout);
    demo_batch b = {0};
    b.tokens = tokens;
    double t0 = cli_seconds();
    int rc = demo_layer_build(cmd, cpu, &L) == 0 ? 0 : CLI_EXIT_FAILURE;
    if (rc == 0) {
        double bytes = (double)L.experts * 3.0 * (double)(L.hidden * L.intermediate) * 17.0 / 32.0;
        printf("      %.0f MB of MXFP4 weights (%.0f MB as BF16) in %.1f s\n", bytes / 1e6,
               bytes / 1e6 * 32.0 / 17.0 * 2.0, cli_seconds() - t0);
        printf("[2/5] random BF16 tokens and router logits -> mxmoe_route (top-%d, then softmax)\n",
               (int)L.top_k);
        rc = prepare_batch(cmd, cpu, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        printf("[3/5] forward pass (mxmoe_moe_forward) on %s\n", mxmoe_ctx_backend_detail(ctx));
        fflush(stdout);
        rc = time_forward(cmd, ctx, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        rc = cross_check_cpu(cmd, ctx, cpu, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        rc = fp64_check(cmd, cpu, &L, &b, check) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    printf("%s in %.1f s\n", rc == 0 ? "PASS" : "FAIL", cli_seconds() - t_start);
    free_batch(&b);
    demo_layer_free(&L);
    if (cpu != ctx) {
        mxmoe_ctx_free(cpu);
    }
    mxmoe_ctx_free(ctx);
    return rc;
}
