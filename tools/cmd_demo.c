/*
 * cmd_demo.c — `mxmoe demo`: the README's main job in one command. A synthetic MoE layer of
 * gpt-oss-20b's shape is quantized to MXFP4, run W4A4 on the best backend, timed, and verified
 * against an FP64 computation that mirrors the quantized pipeline — and, when the backend is a
 * GPU, against the CPU backend bit for bit (the generic CUDA path reproduces it exactly).
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
    "On a GPU it also runs the same pass on the CPU backend and requires bit-identical\n"
    "outputs, and requires the GPU to repeat its own output bit for bit after the timing.\n"
    "Exits non-zero if a check fails.\n"
    "\n"
    "options:\n"
    "  --tokens N        tokens in the batch (default 64)\n"
    "  --backend B       auto (default: CUDA if usable, else CPU), cpu or cuda\n"
    "  --seed S          seed of the synthetic weights, tokens and logits (default 1)\n"
    "  --check-tokens C  tokens checked in FP64 (default min(4, N))\n";

/* Synthesises tokens and logits and routes them (on the CPU context). */
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
    return 0;
}

static void free_batch(demo_batch* b) {
    free(b->x);
    free(b->logits);
    free(b->ids);
    free(b->weights);
    free(b->out);
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
        *check = *tokens < 4 ? *tokens : 4;
    }
    if (*check > *tokens) {
        return cli_usage_error(cmd, "--check-tokens %lld exceeds --tokens %lld", (long long)*check,
                               (long long)*tokens);
    }
    return 0;
}

/* The forward pass on ctx: one checked pass into b->out, then the timing; on a GPU the output
 * after the timed passes must equal the first one bit for bit (moe_forward is deterministic). */
static int run_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, demo_batch* b) {
    printf("[3/5] forward pass (mxmoe_moe_forward) on %s\n", mxmoe_ctx_backend_detail(ctx));
    fflush(stdout);
    int gpu = cli_ctx_device(ctx) != MXMOE_DEVICE_HOST;
    size_t out_bytes = (size_t)(b->tokens * L->hidden) * sizeof(float);
    float* again = gpu ? malloc(out_bytes) : NULL;
    if (gpu && again == NULL) {
        return cli_error(cmd, "out of memory");
    }
    demo_backend_data d;
    if (demo_backend_init(cmd, ctx, L, b, b->out, &d) != 0) {
        free(again);
        return -1;
    }
    /* On the CPU every timed pass is a checked one; on a GPU the checked pass comes first. */
    int rc = gpu ? demo_forward(cmd, ctx, L, b->tokens, &d, 1) : 0;
    if (rc == 0) {
        rc = demo_time_forward(cmd, ctx, L, b->tokens, &d);
    }
    if (rc == 0 && gpu) {
        /* The timing left the last pass's output in place: compare it with the first. */
        cli_buffer last = d.out;
        last.host = again;
        rc = cli_buffer_download(cmd, ctx, &last, out_bytes);
        if (rc == 0 && memcmp(again, b->out, out_bytes) != 0) {
            rc = cli_error(cmd, "the output of the last timed pass differs from the first pass");
        } else if (rc == 0) {
            printf("      run to run: the last timed pass repeats the first bit for bit\n");
        }
    }
    demo_backend_free(ctx, &d);
    free(again);
    return rc;
}

/* Runs the same forward on a CPU context and requires identical bits (when the main backend is
 * not the CPU). */
static int cross_check_cpu(const char* cmd, mxmoe_ctx* ctx, mxmoe_ctx* cpu, const demo_layer* L,
                           const demo_batch* b) {
    if (mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CPU) {
        printf("[4/5] cross-check against the CPU backend: skipped (the backend is the CPU)\n");
        return 0;
    }
    printf("[4/5] cross-check against the CPU backend (%s)\n", mxmoe_ctx_backend_detail(cpu));
    fflush(stdout);
    float* out = malloc((size_t)(b->tokens * L->hidden) * sizeof(float));
    if (out == NULL) {
        return cli_error(cmd, "out of memory");
    }
    demo_backend_data d;
    if (demo_backend_init(cmd, cpu, L, b, out, &d) != 0) {
        free(out);
        return -1;
    }
    double t0 = cli_seconds();
    int rc = demo_forward(cmd, cpu, L, b->tokens, &d, 1);
    if (rc == 0) {
        printf("      CPU pass in %.1f s\n", cli_seconds() - t0);
        int64_t differing = demo_compare_to_cpu(b->out, out, b->tokens, L->hidden);
        if (differing != 0) {
            rc = cli_error(cmd, "%lld outputs of the %s backend differ from the CPU backend's",
                           (long long)differing, mxmoe_backend_name(mxmoe_ctx_backend(ctx)));
        }
    }
    demo_backend_free(cpu, &d);
    free(out);
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
    mxmoe_ctx* ctx = cli_ctx_open(cmd, backend);
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
           "one expert per thread at a time (%d threads)\n",
           demo_worker_count(L.experts));
    fflush(stdout);
    demo_batch b = {0};
    b.tokens = tokens;
    double t0 = cli_seconds();
    int rc = demo_layer_build(cmd, &L) == 0 ? 0 : CLI_EXIT_FAILURE;
    if (rc == 0) {
        double bytes = (double)L.experts * 3.0 * (double)(L.hidden * L.intermediate) * 17.0 / 32.0;
        printf("      %.0f MB of MXFP4 weights (%.0f MB as BF16) in %.1f s\n", bytes / 1e6,
               bytes / 1e6 * 32.0 / 17.0 * 2.0, cli_seconds() - t0);
        printf("[2/5] random BF16 tokens and router logits -> mxmoe_route (top-%d, then softmax)\n",
               (int)L.top_k);
        rc = prepare_batch(cmd, cpu, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        rc = run_forward(cmd, ctx, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        rc = cross_check_cpu(cmd, ctx, cpu, &L, &b) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (rc == 0) {
        rc = demo_fp64_check(cmd, cpu, &L, &b, check) == 0 ? 0 : CLI_EXIT_FAILURE;
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
