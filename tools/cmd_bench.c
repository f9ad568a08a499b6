/*
 * cmd_bench.c — `mxmoe bench`: times one grouped projection (the work of ggml's MUL_MAT_ID) or
 * the whole MoE layer on the shapes of SPEC §6, next to the card's ceilings, and writes the
 * JSON of SPEC §6 that bench/torch_baseline.py completes with PyTorch's grouped GEMMs.
 *
 * The interface is stable (scripts depend on it):
 *   mxmoe bench --backend cpu|cuda --op grouped|layer --shape NAME --tokens N[,N...]
 *               [--json PATH|-] [--iters N]
 * Lists are accepted for --op and --shape too ("all" = every one).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char* const usage =
    "usage: mxmoe bench [--backend auto|cpu|cuda] [--op grouped|layer|all]\n"
    "                   [--shape NAME[,NAME...]|all] [--tokens N[,N...]] [--json PATH|-] [--svg "
    "PATH]\n"
    "                   [--iters N] [--budget-ms MS] [--rotate-mb MB] [--rotate-max-mb MB]\n"
    "                   [--copy-mb MB] [--seed S] [--prepare 0|1|2] [--graph 0|1]\n"
    "                   [--gemm-dtype f32|bf16]\n"
    "\n"
    "Times MXFP4 W4A4 MoE work on synthetic weights and routing (each token picks top-k\n"
    "distinct experts uniformly at random):\n"
    "  grouped  one grouped projection, BF16 activations [n, K] + top-k ids in, BF16 out:\n"
    "           mxmoe_plan + mxmoe_permute_quantize + mxmoe_grouped_gemm (issue 4's dims)\n"
    "  layer    mxmoe_moe_forward on the whole layer (both GEMMs, activation, reduction)\n"
    "Shapes (experts, top-k, hidden, intermediate; grouped N x K):\n"
    "  gpt-oss-20b    (32, 4, 2880, 2880; down 2880 x 2880)\n"
    "  gpt-oss-120b   (128, 4, 2880, 2880; down 2880 x 2880)\n"
    "  qwen3-30b-a3b  (128, 8, 2048, 768; down 768 x 2048)\n"
    "  deepseek-v3    (256, 8, 7168, 2048; gate half 2048 x 7168)\n"
    "Each run is timed alone on the backend's stream (CUDA events on a GPU) after warm-up;\n"
    "the median is reported, with the copy bandwidth measured here, the memory floor and\n"
    "issue 4's target: max(10 us, W / (0.8 x copy), F / 900 TFLOP/s).\n"
    "\n"
    "options:\n"
    "  --backend B        auto (default), cpu or cuda\n"
    "  --op OP            grouped (default), layer, or a list / all\n"
    "  --shape S          gpt-oss-20b (default), a list, or all\n"
    "  --tokens N,...     token counts (default 1,8,64,512,4096,8192)\n"
    "  --svg PATH         write a roofline plot (SVG): each point's FLOP/s at its FLOPs per\n"
    "                     weight byte, under the copy-bandwidth roof\n"
    "  --json PATH        write the JSON report there ('-' = stdout; the log then goes to\n"
    "                     stderr); the commit is read from $MXMOE_COMMIT\n"
    "  --iters N          most timed runs per point (default 50 on a GPU, 5 on the CPU)\n"
    "  --budget-ms MS     stop timing a point once its runs add up to this (default 2000 on a\n"
    "                     GPU, 10000 on the CPU)\n"
    "  --rotate-mb MB     active weight bytes that consecutive runs cycle through (default\n"
    "                     256, > 4x a 50 MB L2)\n"
    "  --rotate-max-mb MB memory cap on the weight copies (default 16384 on a GPU, 2048 CPU)\n"
    "  --copy-mb MB       bytes of the copy-bandwidth measurement (default 1024; 0 = skip)\n"
    "  --seed S           routing and data seed (default 1)\n"
    "  --prepare 0|1|2    prepare the weights once (mxmoe_weights_prepare), as a model loader\n"
    "                     does (default 1; 0: every call derives what it needs itself; 2: with\n"
    "                     leave to repack the codes in place, mxmoe_weights_prepare_repack)\n"
    "  --graph 0|1        also record runs on every weight copy in turn into one graph\n"
    "                     (mxmoe_graph_*, CUDA graphs) and time its replays, per run: the\n"
    "                     work without each launch's host cost (default 1 on a GPU; the CPU\n"
    "                     backend cannot record)\n"
    "  --gemm-dtype D     the layer's GEMM results kept in bf16 (default: as vLLM keeps them,\n"
    "                     half the traffic of f32) or f32 (moe_params.gemm_dtype)\n";

typedef struct bench_args {
    mxmoe_backend backend;
    int ops[BENCH_OP_COUNT], num_ops;
    const bench_shape* shapes[8];
    int num_shapes;
    int64_t tokens[64];
    int num_tokens;
    const char* json;
    const char* svg;
    mxmoe_dtype gemm_dtype;
    int64_t iters, budget_ms, rotate_mb, rotate_max_mb, copy_mb, seed, prepare, graph;
} bench_args;

/* Splits a comma list into `out` (at most max items) with parse(item) >= 0. */
static int parse_list(const char* cmd, const char* option, const char* text, int max,
                      int (*parse)(const char* cmd, const char* item, void* out, int index),
                      void* out, int* count) {
    char buf[512];
    if (strlen(text) >= sizeof buf) {
        return cli_usage_error(cmd, "%s: list too long", option);
    }
    strcpy(buf, text);
    *count = 0;
    for (char* item = strtok(buf, ","); item != NULL; item = strtok(NULL, ",")) {
        if (*count >= max) {
            return cli_usage_error(cmd, "%s: at most %d items", option, max);
        }
        int added = parse(cmd, item, out, *count);
        if (added < 0) {
            return CLI_EXIT_USAGE;
        }
        *count += added;
    }
    return *count > 0 ? 0 : cli_usage_error(cmd, "%s: empty list", option);
}

static int parse_op(const char* cmd, const char* item, void* out, int index) {
    int* ops = out;
    if (strcmp(item, "all") == 0 && index == 0) {
        ops[0] = BENCH_OP_GROUPED;
        ops[1] = BENCH_OP_LAYER;
        return 2;
    }
    for (int op = 0; op < BENCH_OP_COUNT; op++) {
        if (strcmp(item, bench_op_names[op]) == 0) {
            ops[index] = op;
            return 1;
        }
    }
    cli_usage_error(cmd, "unknown op '%s' (expected grouped, layer or all)", item);
    return -1;
}

static int parse_shape(const char* cmd, const char* item, void* out, int index) {
    const bench_shape** shapes = out;
    if (strcmp(item, "all") == 0 && index == 0) {
        for (int i = 0; i < bench_shape_count; i++) {
            shapes[i] = &bench_shapes[i];
        }
        return bench_shape_count;
    }
    shapes[index] = bench_find_shape(item);
    if (shapes[index] == NULL) {
        cli_usage_error(cmd,
                        "unknown shape '%s' (expected gpt-oss-20b, gpt-oss-120b, "
                        "qwen3-30b-a3b, deepseek-v3 or all)",
                        item);
        return -1;
    }
    return 1;
}

static int parse_tokens(const char* cmd, const char* item, void* out, int index) {
    int64_t* tokens = out;
    return cli_parse_int(cmd, "--tokens", item, 1, 1 << 20, &tokens[index]) == 0 ? 1 : -1;
}

/* 1 if the context's backend can record calls for replay (an empty recording succeeds). */
static int can_record(mxmoe_ctx* ctx) {
    mxmoe_graph* g = NULL;
    if (mxmoe_graph_begin(ctx) != MXMOE_OK) {
        return 0;
    }
    int ok = mxmoe_graph_end(ctx, &g) == MXMOE_OK;
    mxmoe_graph_free(ctx, g);
    return ok;
}

/* Returns 0, -1 after --help, or a CLI_EXIT_* code. */
static int parse_args(const char* cmd, int argc, char** argv, bench_args* a) {
    memset(a, 0, sizeof *a);
    a->backend = MXMOE_BACKEND_AUTO;
    a->iters = a->budget_ms = a->rotate_max_mb = a->graph = -1;
    a->rotate_mb = 256;
    a->copy_mb = 1024;
    a->seed = 1;
    a->gemm_dtype = mxmoe_moe_params_default().gemm_dtype;
    a->prepare = 1;
    int rc = parse_list(cmd, "--op", "grouped", BENCH_OP_COUNT, parse_op, a->ops, &a->num_ops);
    rc |= parse_list(cmd, "--shape", "gpt-oss-20b", 8, parse_shape, a->shapes, &a->num_shapes);
    rc |= parse_list(cmd, "--tokens", "1,8,64,512,4096,8192", 64, parse_tokens, a->tokens,
                     &a->num_tokens);
    for (int i = 1; i < argc && rc == 0; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return -1;
        }
        const char* opt = argv[i];
        if (strncmp(opt, "--", 2) != 0) {
            return cli_usage_error(cmd, "unexpected argument '%s'", opt);
        }
        const char* v = cli_option_value(cmd, argc, argv, &i);
        if (v == NULL) {
            return CLI_EXIT_USAGE;
        }
        if (strcmp(opt, "--backend") == 0) {
            rc = cli_parse_backend(cmd, v, &a->backend) == 0 ? 0 : CLI_EXIT_USAGE;
        } else if (strcmp(opt, "--op") == 0) {
            rc = parse_list(cmd, opt, v, BENCH_OP_COUNT, parse_op, a->ops, &a->num_ops);
        } else if (strcmp(opt, "--shape") == 0) {
            rc = parse_list(cmd, opt, v, 8, parse_shape, a->shapes, &a->num_shapes);
        } else if (strcmp(opt, "--tokens") == 0) {
            rc = parse_list(cmd, opt, v, 64, parse_tokens, a->tokens, &a->num_tokens);
        } else if (strcmp(opt, "--json") == 0) {
            a->json = v;
        } else if (strcmp(opt, "--svg") == 0) {
            a->svg = v;
        } else if (strcmp(opt, "--gemm-dtype") == 0) {
            rc = cli_parse_gemm_dtype(cmd, v, &a->gemm_dtype) == 0 ? 0 : CLI_EXIT_USAGE;
        } else {
            struct {
                const char* name;
                int64_t* value;
                int64_t min, max;
            } ints[] = {{"--iters", &a->iters, 1, 100000},
                        {"--budget-ms", &a->budget_ms, 1, 3600000},
                        {"--rotate-mb", &a->rotate_mb, 0, 1 << 20},
                        {"--rotate-max-mb", &a->rotate_max_mb, 0, 1 << 24},
                        {"--copy-mb", &a->copy_mb, 0, 1 << 20},
                        {"--seed", &a->seed, 0, INT64_MAX},
                        {"--prepare", &a->prepare, 0, 2},
                        {"--graph", &a->graph, 0, 1}};
            size_t k = 0, count = sizeof ints / sizeof ints[0];
            while (k < count && strcmp(opt, ints[k].name) != 0) {
                k++;
            }
            if (k == count) {
                rc = cli_usage_error(cmd, "unknown option '%s'", opt);
            } else if (cli_parse_int(cmd, opt, v, ints[k].min, ints[k].max, ints[k].value) != 0) {
                rc = CLI_EXIT_USAGE;
            }
        }
    }
    return rc;
}

/* Device-to-device copy bandwidth, counting bytes read + written (the anchors' convention):
 * the median of a few copies of `bytes` bytes, halved until the allocation fits. */
static void measure_copy(const char* cmd, mxmoe_ctx* ctx, size_t bytes, FILE* log,
                         bench_ceilings* c) {
    void *src = NULL, *dst = NULL;
    for (; bytes >= ((size_t)64 << 20); bytes /= 2) {
        if (mxmoe_malloc(ctx, bytes, &src) == MXMOE_OK &&
            mxmoe_malloc(ctx, bytes, &dst) == MXMOE_OK) {
            break;
        }
        mxmoe_free(ctx, src);
        src = NULL;
    }
    if (dst == NULL || bench_fill(cmd, ctx, src, bytes, 42, 0, 255) != 0) {
        cli_warn(cmd, "no copy-bandwidth measurement: floors and targets left null");
        mxmoe_free(ctx, src);
        mxmoe_free(ctx, dst);
        return;
    }
    double times[7];
    int runs = 0;
    mxmoe_status st = mxmoe_memcpy(ctx, dst, src, bytes, MXMOE_COPY_BACKEND_TO_BACKEND);
    for (; st == MXMOE_OK && runs < 7; runs++) {
        st = mxmoe_timer_start(ctx);
        if (st == MXMOE_OK) {
            st = mxmoe_memcpy(ctx, dst, src, bytes, MXMOE_COPY_BACKEND_TO_BACKEND);
        }
        if (st == MXMOE_OK) {
            st = mxmoe_timer_stop(ctx, &times[runs]);
        }
    }
    mxmoe_free(ctx, src);
    mxmoe_free(ctx, dst);
    if (st != MXMOE_OK) {
        cli_warn(cmd, "copy-bandwidth measurement failed: %s", mxmoe_ctx_last_error(ctx));
        return;
    }
    for (int i = 1; i < runs; i++) { /* insertion sort: 7 values */
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    }
    c->copy_bytes = (double)bytes;
    c->copy_GBps = 2.0 * (double)bytes / (times[runs / 2] * 1e-6) / 1e9;
    fprintf(log, "copy bandwidth: %.0f GB/s (read + write, %.0f MB copied, median of %d)\n",
            c->copy_GBps, (double)bytes / 1e6, runs);
}

static void log_point(FILE* log, const bench_point* p) {
    fprintf(log, "%-7s %-13s n=%-5lld ", bench_op_names[p->op], p->shape->name,
            (long long)p->tokens);
    if (p->error[0] != '\0') {
        fprintf(log, "FAILED: %s\n", p->error);
        return;
    }
    fprintf(log,
            "%10.1f us (min %.1f, host %.1f, %d runs, %d copies) | %3d/%d experts %7.1f MB "
            "%7.1f GB/s | %8.3f TFLOP/s | floor %.1f us, target %.1f us%s\n",
            p->time_us, p->min_us, p->host_us, p->runs, p->copies, (int)p->routing->active,
            (int)p->shape->experts, p->weight_bytes / 1e6,
            p->weight_bytes / (p->time_us * 1e-6) / 1e9, p->gflops / 1e3, p->floor_us, p->target_us,
            p->time_us > p->target_us ? " (above target)" : "");
    if (p->graph_replays > 0) {
        fprintf(log, "%36s replayed: %10.1f us (min %.1f, %d replays of %d runs)%s\n", "",
                p->graph_us, p->graph_min_us, p->graph_replays, p->graph_runs_per_replay,
                !isfinite(p->target_us)      ? ""
                : p->graph_us > p->target_us ? " (above target)"
                                             : " (meets target)");
    }
    fflush(log);
}

/* Runs every token count of (op, shape); returns the number of failed points. */
static int run_shape(const char* cmd, mxmoe_ctx* ctx, const bench_args* a, const bench_options* o,
                     const bench_ceilings* c, int op, const bench_shape* s, bench_report* report,
                     bench_roofline* roof) {
    bench_weights w;
    bench_weights_init(&w, s, op);
    w.prepare = o->prepare;
    int failed = 0;
    for (int t = 0; t < a->num_tokens; t++) {
        bench_routing r;
        bench_point p;
        memset(&p, 0, sizeof p);
        p.op = op;
        p.shape = s;
        p.tokens = a->tokens[t];
        p.rows = p.tokens * s->top_k;
        p.n = s->proj_n;
        p.k = s->proj_k;
        p.routing = &r;
        if (bench_routing_make(&r, s, p.tokens, o->seed) != 0) {
            cli_error(cmd, "out of memory for the routing of %lld tokens", (long long)p.tokens);
            failed++;
            continue;
        }
        if (bench_run_point(cmd, ctx, o, &w, &p) != 0) {
            const char* why = mxmoe_ctx_last_error(ctx);
            snprintf(p.error, sizeof p.error, "%s", why[0] != '\0' ? why : "see the log");
            p.runs = 0;
            failed++;
        }
        bench_point_metrics(&p, c);
        log_point(o->log, &p);
        if (report->out != NULL) {
            bench_report_point(report, &p);
        }
        bench_roofline_add(roof, &p);
        bench_routing_free(&r);
    }
    bench_weights_free(ctx, &w);
    return failed;
}

int cmd_bench(int argc, char** argv) {
    const char* cmd = "bench";
    bench_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc != 0) {
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    mxmoe_ctx* ctx = cli_ctx_open(cmd, a.backend);
    if (ctx == NULL) {
        return CLI_EXIT_FAILURE;
    }
    int gpu = cli_ctx_device(ctx) != MXMOE_DEVICE_HOST;
    bench_options o;
    o.iters = (int)(a.iters > 0 ? a.iters : gpu ? 50 : 5);
    o.budget_s = (double)(a.budget_ms > 0 ? a.budget_ms : gpu ? 2000 : 10000) / 1e3;
    o.rotate_mb = (double)a.rotate_mb;
    o.rotate_max_mb = (double)(a.rotate_max_mb >= 0 ? a.rotate_max_mb : gpu ? 16384 : 2048);
    o.seed = (uint64_t)a.seed;
    o.prepare = (int)a.prepare;
    o.gemm_dtype = a.gemm_dtype;
    o.graph = (int)(a.graph >= 0 ? a.graph : gpu);
    if (o.graph && !can_record(ctx)) {
        cli_warn(cmd, "no replayed timings: %s", mxmoe_ctx_last_error(ctx));
        o.graph = 0;
    }
    FILE* json = NULL;
    if (a.json != NULL) {
        json = strcmp(a.json, "-") == 0 ? stdout : fopen(a.json, "w");
        if (json == NULL) {
            mxmoe_ctx_free(ctx);
            return cli_error(cmd, "cannot write '%s'", a.json);
        }
    }
    o.log = json == stdout ? stderr : stdout;
    fprintf(o.log, "mxmoe bench on %s\n", mxmoe_ctx_backend_detail(ctx));
    bench_ceilings c = {0, 0, 0};
    if (a.copy_mb > 0) {
        measure_copy(cmd, ctx, (size_t)a.copy_mb << 20, o.log, &c);
    }
    bench_report report = {NULL, 0};
    static bench_roofline roof_points; /* 40 KB: kept off the stack */
    bench_roofline* roof = &roof_points;
    roof->count = 0;
    if (json != NULL) {
        bench_report_begin(&report, json, ctx, &o, &c);
    }
    int failed = 0;
    for (int i = 0; i < a.num_ops; i++) {
        for (int j = 0; j < a.num_shapes; j++) {
            failed += run_shape(cmd, ctx, &a, &o, &c, a.ops[i], a.shapes[j], &report, roof);
        }
    }
    if (json != NULL) {
        bench_report_end(&report);
        if (json != stdout && fclose(json) != 0) {
            failed += cli_error(cmd, "writing '%s' failed", a.json);
        }
    }
    if (a.svg != NULL) {
        FILE* svg = fopen(a.svg, "w");
        if (svg == NULL) {
            failed += cli_error(cmd, "cannot write '%s'", a.svg);
        } else {
            bench_roofline_write_svg(roof, &c, mxmoe_ctx_backend_detail(ctx), svg);
            if (fclose(svg) != 0) {
                failed += cli_error(cmd, "writing '%s' failed", a.svg);
            } else {
                fprintf(o.log, "roofline plot: %s\n", a.svg);
            }
        }
    }
    mxmoe_ctx_free(ctx);
    if (failed > 0) {
        cli_error(cmd, "%d point%s failed", failed, failed == 1 ? "" : "s");
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}
