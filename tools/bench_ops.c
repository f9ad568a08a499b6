/*
 * bench_ops.c — the two timed operations of `mxmoe bench` and the timing loop.
 *
 *   grouped: one grouped projection, the work of ggml's MUL_MAT_ID — BF16 activations [n, K]
 *            and top-k ids in, BF16 [n*k, N] out (a row per pair), quantization and grouping
 *            included: mxmoe_grouped_projection.
 *   layer:   mxmoe_moe_forward on the whole layer, BF16 in and out.
 *
 * Each run is timed alone between two marks of the stream (mxmoe_timer_start/stop: CUDA events
 * on a GPU, so launch gaps count but host overhead after the last launch does not), cycling
 * through the weight copies; the point reports the median. Warm-up runs come first, and a point
 * stops after `iters` runs or once its runs add up to the time budget, whichever is first.
 * With `graph`, runs on every weight copy in turn are also recorded into one graph
 * (mxmoe_graph_*) and its replays timed the same way, each over its runs: the device's time for
 * the work without the host's cost of issuing each launch, as in a serving engine's captured
 * decode step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { MAX_WARMUP = 5 };

/* Everything a run reads and writes, in the backend's memory. */
typedef struct op_state {
    mxmoe_ctx* ctx;
    const bench_point* p;
    bench_weights* w;
    cli_buffer x, ids, weights, out;
    cli_buffer workspace, b13, b2; /* layer */
    mxmoe_moe_params params;
    mxmoe_dtype gemm_dtype; /* the layer's (bench_options) */
} op_state;

static void state_free(op_state* s) {
    cli_buffer* all[] = {&s->x, &s->ids, &s->weights, &s->out, &s->workspace, &s->b13, &s->b2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]->host);
        cli_buffer_free(s->ctx, all[i]);
    }
}

/* A host array of n random BF16 values, uniform in [-amp, amp). */
static uint16_t* random_bf16(int64_t n, float amp, uint64_t seed) {
    uint16_t* v = malloc((size_t)n * sizeof *v);
    uint64_t state = seed;
    for (int64_t i = 0; v != NULL && i < n; i++) {
        float u = (float)(bench_next(&state) >> 40) / (float)(1 << 24);
        v[i] = cli_bf16_from_float(amp * (2.0f * u - 1.0f));
    }
    return v;
}

/* A host copy of `bytes` bytes at src (NULL if memory runs out). */
static void* host_copy(const void* src, size_t bytes) {
    void* p = malloc(bytes ? bytes : 1);
    if (p != NULL) {
        memcpy(p, src, bytes);
    }
    return p;
}

/* A backend-only buffer (no host side). */
static int buffer(const char* cmd, op_state* s, cli_buffer* b, size_t bytes, const char* what) {
    return cli_buffer_init(cmd, s->ctx, b, NULL, bytes, what);
}

/* A buffer with host data (owned by the state from here on) uploaded to the backend; `host`
 * NULL means its allocation failed. */
static int host_buffer(const char* cmd, op_state* s, cli_buffer* b, void* host, size_t bytes,
                       const char* what) {
    if (host == NULL) {
        cli_error(cmd, "out of memory for %s", what);
        return -1;
    }
    if (cli_buffer_init(cmd, s->ctx, b, host, bytes, what) != 0) {
        free(host);
        return -1;
    }
    return cli_buffer_upload(cmd, s->ctx, b, bytes);
}

static int setup(const char* cmd, op_state* s) {
    const bench_point* p = s->p;
    const bench_shape* sh = p->shape;
    const bench_routing* r = p->routing;
    int64_t T = p->tokens, k = sh->top_k, E = sh->experts;
    uint64_t seed = 0xB5EED ^ (uint64_t)T;
    size_t ids_bytes = (size_t)(T * k) * sizeof(int32_t);
    if (host_buffer(cmd, s, &s->ids, host_copy(r->ids, ids_bytes), ids_bytes, "the expert ids") !=
        0) {
        return -1;
    }
    if (p->op == BENCH_OP_GROUPED) {
        int64_t N = p->n, K = p->k, P = p->rows;
        if (host_buffer(cmd, s, &s->x, random_bf16(T * K, 2.0f, seed), (size_t)(T * K) * 2,
                        "the activations") != 0 ||
            buffer(cmd, s, &s->out, (size_t)(P * N) * 2, "the output") != 0) {
            return -1;
        }
        return 0;
    }
    int64_t H = sh->hidden, I = sh->intermediate;
    mxmoe_moe_params* mp = &s->params;
    *mp = mxmoe_moe_params_default();
    mp->num_experts = sh->experts;
    mp->act = mxmoe_act_params_default();
    mp->act.activation = sh->gpt_oss ? MXMOE_ACT_SWIGLU_OAI : MXMOE_ACT_SILU_MUL;
    mp->act.layout = sh->gpt_oss ? MXMOE_GATE_UP_INTERLEAVED : MXMOE_GATE_UP_CONCAT;
    mp->act.swiglu_alpha = 1.702f;
    mp->act.swiglu_limit = 7.0f;
    mp->act.act_dtype = MXMOE_BF16;
    mp->act.rule = MXMOE_RULE_EVEN;
    mp->gemm_dtype = s->gemm_dtype;
    size_t ws_bytes = 0;
    mxmoe_status st = mxmoe_moe_workspace_size(s->ctx, mp, T, sh->top_k, H, I, &ws_bytes);
    if (st != MXMOE_OK) {
        cli_error(cmd, "mxmoe_moe_workspace_size: %s (%s)", mxmoe_ctx_last_error(s->ctx),
                  mxmoe_status_string(st));
        return -1;
    }
    size_t w_bytes = (size_t)(T * k) * sizeof(float);
    if (host_buffer(cmd, s, &s->x, random_bf16(T * H, 2.0f, seed), (size_t)(T * H) * 2,
                    "the activations") != 0 ||
        host_buffer(cmd, s, &s->weights, host_copy(r->weights, w_bytes), w_bytes,
                    "the router weights") != 0 ||
        buffer(cmd, s, &s->out, (size_t)(T * H) * 2, "the output") != 0 ||
        buffer(cmd, s, &s->workspace, ws_bytes, "the workspace") != 0) {
        return -1;
    }
    if (sh->gpt_oss && (host_buffer(cmd, s, &s->b13, random_bf16(E * 2 * I, 0.1f, seed + 1),
                                    (size_t)(E * 2 * I) * 2, "b13") != 0 ||
                        host_buffer(cmd, s, &s->b2, random_bf16(E * H, 0.1f, seed + 2),
                                    (size_t)(E * H) * 2, "b2") != 0)) {
        return -1;
    }
    return 0;
}

/* Issues one run on weight copy c (no waiting). */
static mxmoe_status run_once(op_state* s, int c) {
    mxmoe_ctx* ctx = s->ctx;
    const bench_point* p = s->p;
    int64_t T = p->tokens, k = p->shape->top_k, P = p->rows, E = p->shape->experts;
    int64_t k_dims[2] = {T, k};
    mxmoe_tensor ids = cli_tensor(ctx, s->ids.backend, MXMOE_I32, 2, k_dims);
    if (p->op == BENCH_OP_GROUPED) {
        int64_t N = p->n, K = p->k;
        int64_t x_dims[2] = {T, K}, o_dims[2] = {P, N};
        mxmoe_tensor x = cli_tensor(ctx, s->x.backend, MXMOE_BF16, 2, x_dims);
        mxmoe_tensor out = cli_tensor(ctx, s->out.backend, MXMOE_BF16, 2, o_dims);
        mxmoe_mx_tensor w = bench_weights_view(ctx, s->w, c, 0);
        return mxmoe_grouped_projection(ctx, &x, &ids, NULL, &w, NULL, MXMOE_RULE_EVEN, &out);
    }
    const bench_shape* sh = p->shape;
    int64_t H = sh->hidden, I = sh->intermediate;
    int64_t x_dims[2] = {T, H}, b13_dims[2] = {E, 2 * I}, b2_dims[2] = {E, H};
    mxmoe_tensor x = cli_tensor(ctx, s->x.backend, MXMOE_BF16, 2, x_dims);
    mxmoe_tensor weights = cli_tensor(ctx, s->weights.backend, MXMOE_F32, 2, k_dims);
    mxmoe_tensor out = cli_tensor(ctx, s->out.backend, MXMOE_BF16, 2, x_dims);
    mxmoe_tensor b13 = cli_tensor(ctx, s->b13.backend, MXMOE_BF16, 2, b13_dims);
    mxmoe_tensor b2 = cli_tensor(ctx, s->b2.backend, MXMOE_BF16, 2, b2_dims);
    mxmoe_moe_weights wts;
    wts.w13 = bench_weights_view(ctx, s->w, c, 0);
    wts.w2 = bench_weights_view(ctx, s->w, c, 1);
    wts.b13 = sh->gpt_oss ? &b13 : NULL;
    wts.b2 = sh->gpt_oss ? &b2 : NULL;
    return mxmoe_moe_forward(ctx, &x, &ids, &weights, &wts, &s->params, s->workspace.backend,
                             s->workspace.bytes, &out);
}

/* Reports a failed call of the point's runs; returns -1. */
static int point_error(const char* cmd, op_state* s, const char* what, mxmoe_status st) {
    cli_error(cmd, "%s %s n=%lld: %s%s (%s)", bench_op_names[s->p->op], s->p->shape->name,
              (long long)s->p->tokens, what, mxmoe_ctx_last_error(s->ctx), mxmoe_status_string(st));
    return -1;
}

/* One run on weight copy c (graph NULL), or one replay of `graph`, between two marks of the
 * stream; returns its microseconds or a negative number, and in *host_us the host's time to
 * issue it (on a GPU, where the runs are short, the device may wait for the host: then this,
 * not the kernels, sets the time). */
static double timed_run(const char* cmd, op_state* s, const mxmoe_graph* graph, int c,
                        double* host_us) {
    double us = -1;
    const double t0 = cli_seconds();
    mxmoe_status st = mxmoe_timer_start(s->ctx);
    if (st == MXMOE_OK) {
        st = graph != NULL ? mxmoe_graph_replay(s->ctx, graph) : run_once(s, c);
    }
    *host_us = 1e6 * (cli_seconds() - t0);
    if (st == MXMOE_OK) {
        st = mxmoe_timer_stop(s->ctx, &us);
    }
    return st == MXMOE_OK ? us : point_error(cmd, s, graph != NULL ? "replay: " : "", st);
}

static int synchronize(const char* cmd, op_state* s) {
    mxmoe_status st = mxmoe_ctx_synchronize(s->ctx);
    return st == MXMOE_OK ? 0 : point_error(cmd, s, "the device reported: ", st);
}

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* Warm-up: at least one run (or replay), then up to MAX_WARMUP while under a quarter of the
 * budget. *c counts the runs issued (their weight copy). Returns the warm-up runs, or -1. */
static int warm_up(const char* cmd, const bench_options* o, op_state* s, const mxmoe_graph* graph,
                   int* c) {
    double warm = 0, host_us = 0;
    int n = 0;
    for (; n == 0 || (n < MAX_WARMUP && warm < 0.25e6 * o->budget_s); n++) {
        double us = timed_run(cmd, s, graph, (*c)++ % s->p->copies, &host_us);
        if (us < 0) {
            return -1;
        }
        warm += us;
    }
    return n;
}

/* The timed runs: at most `iters`, stopping once they add up to the budget; each one's time in
 * times[] and its host issue time in host[]. Returns the runs, or -1. */
static int timed_runs(const char* cmd, const bench_options* o, op_state* s,
                      const mxmoe_graph* graph, int* c, double* times, double* host) {
    double total = 0;
    int n = 0;
    for (; n < o->iters && (n == 0 || total < 1e6 * o->budget_s); n++) {
        times[n] = timed_run(cmd, s, graph, (*c)++ % s->p->copies, &host[n]);
        if (times[n] < 0) {
            return -1;
        }
        total += times[n];
    }
    return n;
}

/* Runs per replayed graph: every weight copy in turn, at least MIN_GRAPH_RUNS. */
enum { MIN_GRAPH_RUNS = 4 };
static int graph_runs(int copies) {
    return copies * ((MIN_GRAPH_RUNS + copies - 1) / copies);
}

/* `runs` runs in a row, cycling through the weight copies, recorded into *graph. */
static int record_runs(const char* cmd, op_state* s, int runs, mxmoe_graph** graph) {
    mxmoe_status st = mxmoe_graph_begin(s->ctx);
    if (st == MXMOE_OK) {
        for (int i = 0; i < runs; i++) {
            run_once(s, i % s->p->copies); /* a failure makes graph_end fail with it */
        }
        st = mxmoe_graph_end(s->ctx, graph);
    }
    return st == MXMOE_OK ? 0 : point_error(cmd, s, "recording the runs: ", st);
}

/* Records graph_runs(copies) runs in a row (each copy in turn) into one graph, then times its
 * replays with the eager runs' warm-up rule, run cap and budget; a run's time is a replay's
 * over its runs. So the graph's own launch is shared by the runs, as the launch of an engine's
 * captured step is shared by its layers, and a run's time is the device's for its work. */
static int time_replays(const char* cmd, const bench_options* o, op_state* s, bench_point* p,
                        double* times, double* host) {
    mxmoe_graph* graph = NULL;
    const int per_graph = graph_runs(p->copies);
    int c = 0, runs = -1;
    if (record_runs(cmd, s, per_graph, &graph) == 0 && warm_up(cmd, o, s, graph, &c) > 0) {
        runs = timed_runs(cmd, o, s, graph, &c, times, host);
    }
    if (runs > 0 && synchronize(cmd, s) == 0) {
        qsort(times, (size_t)runs, sizeof *times, compare_doubles);
        p->graph_us = times[runs / 2] / per_graph;
        p->graph_min_us = times[0] / per_graph;
        p->graph_replays = runs;
        p->graph_runs_per_replay = per_graph;
    }
    mxmoe_graph_free(s->ctx, graph);
    return p->graph_replays > 0 ? 0 : -1;
}

static int time_point(const char* cmd, const bench_options* o, op_state* s, bench_point* p) {
    double* times = malloc(2 * (size_t)o->iters * sizeof *times);
    if (times == NULL) {
        cli_error(cmd, "out of memory");
        return -1;
    }
    double* host = times + o->iters;
    int c = 0, rc = -1;
    p->warmup = warm_up(cmd, o, s, NULL, &c);
    if (p->warmup > 0 && synchronize(cmd, s) == 0) {
        p->runs = timed_runs(cmd, o, s, NULL, &c, times, host);
    }
    if (p->runs > 0 && synchronize(cmd, s) == 0) {
        qsort(times, (size_t)p->runs, sizeof *times, compare_doubles);
        p->time_us = times[p->runs / 2];
        p->min_us = times[0];
        p->max_us = times[p->runs - 1];
        qsort(host, (size_t)p->runs, sizeof *host, compare_doubles);
        p->host_us = host[p->runs / 2];
        rc = 0;
    }
    p->warmup = p->warmup > 0 ? p->warmup : 0; /* -1: failed */
    p->runs = p->runs > 0 ? p->runs : 0;
    if (rc == 0 && o->graph) {
        rc = time_replays(cmd, o, s, p, times, host);
    }
    free(times);
    return rc;
}

int bench_run_point(const char* cmd, mxmoe_ctx* ctx, const bench_options* o, bench_weights* w,
                    bench_point* p) {
    /* Enough copies that the active experts of consecutive runs span rotate_mb, within the
     * memory cap. */
    double active = (double)p->routing->active * bench_expert_bytes(w);
    double full = (double)w->experts * bench_expert_bytes(w);
    double want = active > 0 ? ceil(o->rotate_mb * 1e6 / active) : 1;
    double cap = floor(o->rotate_max_mb * 1e6 / full);
    want = want < cap ? want : cap;
    int copies = bench_weights_reserve(cmd, ctx, w, want > 1 ? (int)want : 1);
    if (copies < 1) {
        return -1;
    }
    p->copies = copies;
    op_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.p = p;
    s.w = w;
    s.gemm_dtype = o->gemm_dtype;
    int rc = setup(cmd, &s);
    if (rc == 0) {
        rc = time_point(cmd, o, &s, p);
    }
    state_free(&s);
    return rc;
}
