/*
 * bench_cpu.c — CPU benchmark of the grouped projection (the work of ggml's MUL_MAT_ID): BF16
 * activations [n, K] and top-k ids in, FP32 [n * top_k, N] out, with plan + permute_quantize
 * (activations -> MXFP4) + grouped_gemm all inside the timed region. Optionally the whole MoE
 * layer (--op layer). Medians over repeats after a warm-up; GFLOP/s = 2 * n * top_k * N * K /
 * time (the layer: both projections).
 *
 *   bench_cpu [--isa scalar|avx2|avx512] [--threads N] [--shape NAME[,NAME]] [--tokens N[,N]]
 *             [--op grouped|layer] [--min-time SECONDS] [--cold]
 *
 * Grouped shapes (E, top-k, N, K) match the ggml CPU anchors in the reference notes:
 * gpt-oss-20b down (32, 4, 2880, 2880) and Qwen3-30B-A3B (128, 8, 768, 2048); the layer uses
 * the models' hidden and intermediate sizes. Weights are random MXFP4 with scales near
 * 2^-4..2^0, ids uniform without repeats per token (fixed seed). Every call sees the same ids,
 * as in ggml's test-backend-ops: at 1 token the 4-8 experts' weights may stay in L3. --cold
 * rotates through 16 sets of ids instead, so that small batches read their weights from DRAM.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mxmoe.h"

typedef struct shape {
    const char* name;
    int32_t experts, top_k;
    int64_t n, k;          /* grouped projection: output columns, reduction */
    int64_t hidden, inter; /* layer */
} shape;

/* The grouped (N, K) are those of the ggml anchors: gpt-oss-20b's down projection, and for
 * Qwen3-30B-A3B N = 768, K = 2048 as ggml's test-backend-ops measured it. */
static const shape shapes[] = {
    {"gpt-oss-20b", 32, 4, 2880, 2880, 2880, 2880},
    {"qwen3-30b-a3b", 128, 8, 768, 2048, 2048, 768},
    {"gpt-oss-120b", 128, 4, 2880, 2880, 2880, 2880},
    {"deepseek-v3", 256, 8, 7168, 2048, 7168, 2048},
};

/* ggml's CPU MUL_MAT_ID anchors (GFLOP/s, same 2-core machine, reference/anchors_cpu.md). */
static double ggml_anchor(const char* name, int64_t tokens) {
    static const struct {
        const char* name;
        int64_t tokens;
        double gflops;
    } a[] = {
        {"gpt-oss-20b", 1, 70.8},    {"gpt-oss-20b", 8, 79.6},     {"gpt-oss-20b", 64, 82.3},
        {"gpt-oss-20b", 512, 83.0},  {"qwen3-30b-a3b", 1, 81.4},   {"qwen3-30b-a3b", 8, 77.2},
        {"qwen3-30b-a3b", 64, 72.9}, {"qwen3-30b-a3b", 512, 80.6},
    };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        if (strcmp(a[i].name, name) == 0 && a[i].tokens == tokens) {
            return a[i].gflops;
        }
    }
    return 0.0;
}

/* Sets of ids a --cold run rotates through (1 otherwise). */
static int ID_SETS = 1;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float rng_normal(void) {
    double u = ((double)(rng() >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(rng() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static uint16_t bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        mxmoe_status st_ = (call);                                                                 \
        if (st_ != MXMOE_OK) {                                                                     \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,                     \
                    mxmoe_status_string(st_), mxmoe_ctx_last_error(ctx));                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void* xmalloc(size_t n) {
    void* p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Random MXFP4 matrix [rows, k]: uniform codes, scales 123..127. */
static void random_mx(uint8_t* packed, uint8_t* scales, int64_t rows, int64_t k) {
    for (int64_t i = 0; i < rows * k / 2; i++) {
        packed[i] = (uint8_t)rng();
    }
    for (int64_t i = 0; i < rows * k / 32; i++) {
        scales[i] = (uint8_t)(123 + rng() % 5);
    }
}

static void random_ids(int32_t* ids, float* weights, int64_t tokens, int32_t top_k,
                       int32_t experts) {
    for (int64_t t = 0; t < tokens; t++) {
        for (int32_t j = 0; j < top_k; j++) {
            int32_t e;
            int again;
            do {
                e = (int32_t)(rng() % (uint64_t)experts);
                again = 0;
                for (int32_t i = 0; i < j; i++) {
                    again |= ids[t * top_k + i] == e;
                }
            } while (again);
            ids[t * top_k + j] = e;
            weights[t * top_k + j] = 1.0f / (float)top_k;
        }
    }
}

typedef struct run_result {
    double median_us, min_us;
    int reps;
} run_result;

/* One grouped projection: plan + permute_quantize + grouped_gemm. */
typedef struct grouped_state {
    mxmoe_ctx* ctx;
    const shape* s;
    int64_t tokens;
    mxmoe_tensor x, ids, counts, offsets, sorted, row_of, out;
    int32_t* id_sets; /* ID_SETS sets of [T, k] ids, used in turn */
    int64_t calls;
    mxmoe_mx_tensor a, w;
} grouped_state;

static void grouped_once(grouped_state* g) {
    mxmoe_ctx* ctx = g->ctx;
    g->ids.data = g->id_sets + (g->calls++ % ID_SETS) * g->tokens * g->s->top_k;
    CHECK(mxmoe_plan(ctx, &g->ids, NULL, g->s->experts, &g->counts, &g->offsets, &g->sorted,
                     &g->row_of));
    CHECK(mxmoe_permute_quantize(ctx, &g->x, &g->sorted, &g->offsets, g->s->top_k, MXMOE_RULE_EVEN,
                                 &g->a));
    CHECK(mxmoe_grouped_gemm(ctx, &g->a, &g->w, &g->offsets, NULL, &g->out));
}

typedef struct layer_state {
    mxmoe_ctx* ctx;
    mxmoe_tensor x, ids, weights, out;
    int32_t* id_sets;
    int64_t calls, pairs;
    mxmoe_moe_weights wt;
    mxmoe_moe_params params;
    void* ws;
    size_t ws_bytes;
} layer_state;

static void layer_once(layer_state* l) {
    mxmoe_ctx* ctx = l->ctx;
    l->ids.data = l->id_sets + (l->calls++ % ID_SETS) * l->pairs;
    CHECK(mxmoe_moe_forward(ctx, &l->x, &l->ids, &l->weights, &l->wt, &l->params, l->ws,
                            l->ws_bytes, &l->out));
}

static run_result time_it(void (*fn)(void*), void* arg, double min_time) {
    enum { MAX_REPS = 1000 };
    static double t[MAX_REPS];
    fn(arg); /* warm-up */
    int reps = 0;
    double start = now_s();
    while (reps < MAX_REPS && (reps < 3 || now_s() - start < min_time)) {
        double t0 = now_s();
        fn(arg);
        t[reps++] = (now_s() - t0) * 1e6;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    run_result r = {t[reps / 2], t[0], reps};
    return r;
}

static void grouped_fn(void* p) {
    grouped_once((grouped_state*)p);
}
static void layer_fn(void* p) {
    layer_once((layer_state*)p);
}

static int64_t parse_list(const char* s, int64_t* out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = strtoll(s, (char**)&s, 10);
        if (*s == ',') {
            s++;
        }
    }
    return n;
}

int main(int argc, char** argv) {
    const char* shape_list = "gpt-oss-20b,qwen3-30b-a3b";
    const char* op = "grouped";
    int64_t tokens[16] = {1, 8, 64, 512};
    int64_t num_tokens = 4;
    int threads = 0;
    double min_time = 1.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) {
            setenv("MXMOE_CPU_ISA", argv[++i], 1);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            shape_list = argv[++i];
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            num_tokens = parse_list(argv[++i], tokens, 16);
        } else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) {
            op = argv[++i];
        } else if (strcmp(argv[i], "--cold") == 0) {
            ID_SETS = 16;
        } else if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc) {
            min_time = atof(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: bench_cpu [--isa scalar|avx2|avx512] [--threads N] [--shape a,b] "
                    "[--tokens 1,8,64,512] [--op grouped|layer] [--min-time S] [--cold]\n");
            return 2;
        }
    }
    int layer = strcmp(op, "layer") == 0;
    mxmoe_ctx_params cp = mxmoe_ctx_params_default();
    cp.backend = MXMOE_BACKEND_CPU;
    cp.num_threads = threads;
    mxmoe_ctx* ctx = NULL;
    CHECK(mxmoe_ctx_init(&ctx, &cp));
    printf("# %s\n", mxmoe_ctx_backend_detail(ctx));
    printf("# op %s%s: %s\n", op, ID_SETS > 1 ? " (cold: 16 id sets in turn)" : "",
           layer ? "moe_forward (both projections)"
                 : "plan + permute_quantize (BF16 -> MXFP4) + grouped_gemm (F32 out)");
    printf("%-14s %6s %12s %10s %10s %9s %6s\n", "shape", "tokens", "median_us", "min_us",
           "GFLOP/s", "ggml", "x ggml");

    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape* s = &shapes[si];
        if (strstr(shape_list, s->name) == NULL) {
            continue;
        }
        /* weights: grouped [E, N, K]; layer w13 [E, 2I, H] and w2 [E, H, I] */
        int64_t E = s->experts, H = s->hidden, I = s->inter;
        int64_t wn = layer ? 2 * I : s->n, wk = layer ? H : s->k;
        uint8_t* wp = xmalloc((size_t)(E * wn * wk / 2));
        uint8_t* wsc = xmalloc((size_t)(E * wn * wk / 32));
        random_mx(wp, wsc, E * wn, wk);
        uint8_t *w2p = NULL, *w2s = NULL;
        if (layer) {
            w2p = xmalloc((size_t)(E * H * I / 2));
            w2s = xmalloc((size_t)(E * H * I / 32));
            random_mx(w2p, w2s, E * H, I);
        }
        for (int64_t ti = 0; ti < num_tokens; ti++) {
            int64_t T = tokens[ti], P = T * s->top_k;
            int64_t xk = layer ? H : s->k;
            uint16_t* x = xmalloc((size_t)(T * xk) * 2);
            for (int64_t i = 0; i < T * xk; i++) {
                x[i] = bf16(rng_normal());
            }
            int32_t* ids = xmalloc((size_t)P * 4 * (size_t)ID_SETS);
            float* weights = xmalloc((size_t)P * 4);
            for (int set = 0; set < ID_SETS; set++) {
                random_ids(ids + (size_t)set * (size_t)P, weights, T, s->top_k, s->experts);
            }
            run_result r;
            double flops;
            if (!layer) {
                grouped_state g;
                memset(&g, 0, sizeof g);
                g.ctx = ctx;
                g.s = s;
                g.tokens = T;
                int32_t* plan = xmalloc((size_t)(2 * E + 1 + 2 * P) * 4);
                uint8_t* ap = xmalloc((size_t)(P * s->k / 2));
                uint8_t* as = xmalloc((size_t)(P * s->k / 32));
                float* out = xmalloc((size_t)(P * s->n) * 4);
                g.x = mxmoe_tensor_make(x, MXMOE_BF16, 2, (int64_t[]){T, s->k});
                g.ids = mxmoe_tensor_make(ids, MXMOE_I32, 2, (int64_t[]){T, s->top_k});
                g.id_sets = ids;
                g.counts = mxmoe_tensor_make(plan, MXMOE_I32, 1, (int64_t[]){E});
                g.offsets = mxmoe_tensor_make(plan + E, MXMOE_I32, 1, (int64_t[]){E + 1});
                g.sorted = mxmoe_tensor_make(plan + 2 * E + 1, MXMOE_I32, 1, (int64_t[]){P});
                g.row_of = mxmoe_tensor_make(plan + 2 * E + 1 + P, MXMOE_I32, 1, (int64_t[]){P});
                g.a.packed = mxmoe_tensor_make(ap, MXMOE_U8, 2, (int64_t[]){P, s->k / 2});
                g.a.scales = mxmoe_tensor_make(as, MXMOE_U8, 2, (int64_t[]){P, s->k / 32});
                g.a.scale_layout = MXMOE_SCALES_LINEAR;
                g.w.packed = mxmoe_tensor_make(wp, MXMOE_U8, 3, (int64_t[]){E, s->n, s->k / 2});
                g.w.scales = mxmoe_tensor_make(wsc, MXMOE_U8, 3, (int64_t[]){E, s->n, s->k / 32});
                g.w.scale_layout = MXMOE_SCALES_LINEAR;
                g.out = mxmoe_tensor_make(out, MXMOE_F32, 2, (int64_t[]){P, s->n});
                r = time_it(grouped_fn, &g, min_time);
                flops = 2.0 * (double)P * (double)s->n * (double)s->k;
                free(plan), free(ap), free(as), free(out);
            } else {
                layer_state l;
                memset(&l, 0, sizeof l);
                l.ctx = ctx;
                uint16_t* out = xmalloc((size_t)(T * H) * 2);
                l.x = mxmoe_tensor_make(x, MXMOE_BF16, 2, (int64_t[]){T, H});
                l.ids = mxmoe_tensor_make(ids, MXMOE_I32, 2, (int64_t[]){T, s->top_k});
                l.id_sets = ids;
                l.pairs = P;
                l.weights = mxmoe_tensor_make(weights, MXMOE_F32, 2, (int64_t[]){T, s->top_k});
                l.out = mxmoe_tensor_make(out, MXMOE_BF16, 2, (int64_t[]){T, H});
                l.wt.w13.packed = mxmoe_tensor_make(wp, MXMOE_U8, 3, (int64_t[]){E, 2 * I, H / 2});
                l.wt.w13.scales =
                    mxmoe_tensor_make(wsc, MXMOE_U8, 3, (int64_t[]){E, 2 * I, H / 32});
                l.wt.w2.packed = mxmoe_tensor_make(w2p, MXMOE_U8, 3, (int64_t[]){E, H, I / 2});
                l.wt.w2.scales = mxmoe_tensor_make(w2s, MXMOE_U8, 3, (int64_t[]){E, H, I / 32});
                l.params = mxmoe_moe_params_default();
                l.params.num_experts = (int32_t)E;
                CHECK(mxmoe_moe_workspace_size(ctx, &l.params, T, s->top_k, H, I, &l.ws_bytes));
                l.ws = xmalloc(l.ws_bytes);
                r = time_it(layer_fn, &l, min_time);
                flops = 2.0 * (double)P * (double)(3 * H * I);
                free(l.ws), free(out);
            }
            double gf = flops / r.median_us * 1e-3;
            double anchor = layer ? 0.0 : ggml_anchor(s->name, T);
            if (anchor > 0) {
                printf("%-14s %6lld %12.1f %10.1f %10.1f %9.1f %6.2f\n", s->name, (long long)T,
                       r.median_us, r.min_us, gf, anchor, gf / anchor);
            } else {
                printf("%-14s %6lld %12.1f %10.1f %10.1f %9s %6s\n", s->name, (long long)T,
                       r.median_us, r.min_us, gf, "-", "-");
            }
            fflush(stdout);
            free(x), free(ids), free(weights);
        }
        free(wp), free(wsc), free(w2p), free(w2s);
    }
    mxmoe_ctx_free(ctx);
    return 0;
}
