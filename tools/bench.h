/*
 * bench.h — the pieces of `mxmoe bench`: benchmark shapes and routing (bench_shapes.c), weights
 * rotated past the last-level cache (bench_weights.c), the two timed operations (bench_ops.c),
 * the roofline numbers of a point and the JSON report (bench_report.c).
 *
 * The interface and JSON are SPEC §6's; bench/torch_baseline.py reads the JSON, runs PyTorch's
 * grouped GEMMs on the same per-expert row counts and merges its numbers in.
 */
#ifndef MXMOE_TOOLS_BENCH_H
#define MXMOE_TOOLS_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* --- shapes and routing --- */

/* A MoE layer of a real model, and the one grouped projection of it that issue 4 benchmarks. */
typedef struct bench_shape {
    const char* name;
    int32_t experts, top_k;
    int64_t hidden, intermediate;
    int gpt_oss;            /* SwiGLU (alpha 1.702, limit 7), gate/up interleaved, biases */
    const char* projection; /* which projection the grouped op is ("down", "gate half") */
    int64_t proj_n, proj_k; /* its output features N and reduction K */
} bench_shape;

extern const bench_shape bench_shapes[];
extern const int bench_shape_count;
const bench_shape* bench_find_shape(const char* name);

/* Top-k expert ids for `tokens` tokens: each token draws top_k distinct experts uniformly at
 * random (partial Fisher-Yates on splitmix64, seeded by (seed, tokens)), and random positive
 * router weights summing to 1. Counts are what the baselines rebuild their groups from. */
typedef struct bench_routing {
    int64_t tokens;
    int32_t top_k, experts;
    int32_t* ids;    /* I32 [tokens, top_k] */
    float* weights;  /* F32 [tokens, top_k] */
    int32_t* counts; /* [experts] rows per expert */
    int32_t active;  /* experts with at least one row */
    int32_t busiest; /* largest count */
} bench_routing;

int bench_routing_make(bench_routing* r, const bench_shape* s, int64_t tokens, uint64_t seed);
void bench_routing_free(bench_routing* r);

/* splitmix64: the generator of every synthetic value of the benchmark. */
uint64_t bench_next(uint64_t* state);

/* --- options --- */

enum { BENCH_OP_GROUPED = 0, BENCH_OP_LAYER = 1, BENCH_OP_COUNT };
extern const char* const bench_op_names[BENCH_OP_COUNT];

typedef struct bench_options {
    int iters;            /* most timed runs per point */
    double budget_s;      /* a point stops timing once its runs add up to this */
    double rotate_mb;     /* weight bytes a run's active experts cycle through (> 4x L2) */
    double rotate_max_mb; /* cap on the rotated copies' memory */
    uint64_t seed;
    int prepare; /* weights prepared once (mxmoe_weights_prepare), as a model loader would; 2:
                  * with leave to repack (mxmoe_weights_prepare_repack) */
    int graph;   /* also time replays of runs recorded in a graph (mxmoe_graph_*) */
    mxmoe_dtype gemm_dtype; /* the layer's moe_params.gemm_dtype (F32 or BF16) */
    FILE* log;              /* progress and the human table (stderr when the JSON goes to stdout) */
} bench_options;

/* --- weights --- */

/* One MXFP4 weight matrix per expert, [E, rows, K]: codes then scales in one allocation. */
typedef struct bench_matrix {
    int64_t rows, k;
} bench_matrix;

/* `count` copies of the same weights (up to 2 matrices: the grouped op's, or a layer's w13 and
 * w2), at distinct addresses: runs cycle through them so each run reads its weights from memory,
 * not from the last-level cache. Codes are random bytes, scales random in [2^-9, 2^-3]. */
typedef struct bench_weights {
    int32_t experts;
    int num_matrices;
    bench_matrix matrix[2];
    size_t matrix_bytes[2]; /* codes + scales of all experts */
    int prepare;            /* each copy prepared (1, or 2: repacked) once it is filled */
    int count, capacity;
    void** copies; /* [count][num_matrices] backend pointers */
} bench_weights;

/* Prepares (allocating nothing yet) the weights of the op on shape s. */
void bench_weights_init(bench_weights* w, const bench_shape* s, int op);
/* Grows the copies to `count` (filling new ones). Returns the copies to rotate over: `count`,
 * fewer (with a warning) if the backend's memory ran out first, or -1 after printing an error. */
int bench_weights_reserve(const char* cmd, mxmoe_ctx* ctx, bench_weights* w, int count);
void bench_weights_free(mxmoe_ctx* ctx, bench_weights* w);
/* The MXFP4 view of matrix m in copy c: [E, rows, K], linear scales. */
mxmoe_mx_tensor bench_weights_view(const mxmoe_ctx* ctx, const bench_weights* w, int c, int m);
/* MXFP4 bytes (codes + scales) of one expert over all matrices: rows*K*17/32 summed. */
double bench_expert_bytes(const bench_weights* w);

/* Fills `bytes` bytes of backend memory at dst with random bytes in [lo, hi]: a host pattern of
 * at most 64 MB is uploaded once and repeated by copies inside the backend's memory. */
int bench_fill(const char* cmd, mxmoe_ctx* ctx, void* dst, size_t bytes, uint64_t seed, int lo,
               int hi);

/* --- a point --- */

typedef struct bench_point {
    int op;
    const bench_shape* shape;
    int64_t tokens, rows; /* rows = tokens * top_k */
    int64_t n, k;         /* grouped: the projection's N, K */
    const bench_routing* routing;
    int copies; /* weight copies cycled through */
    int warmup, runs;
    double time_us, min_us, max_us; /* median, fastest, slowest run */
    double host_us;                /* median host time to issue a run (its API calls, no waiting) */
    int graph_replays;             /* replays timed (0: not asked for, or not supported here) */
    int graph_runs_per_replay;     /* runs recorded in the graph, each weight copy in turn */
    double graph_us, graph_min_us; /* median and fastest replay, over its runs */
    double weight_bytes;           /* active experts' MXFP4 bytes */
    double flops;
    double floor_us, target_us, gflops;
    int floor_has_fp8; /* 0: floor_us is the memory floor alone (FP8 rate unknown) */
    char error[256];   /* why the point failed ("" if it did not) */
} bench_point;

/* Sets up and times one point (bench_ops.c). Returns 0, or -1 after printing. */
int bench_run_point(const char* cmd, mxmoe_ctx* ctx, const bench_options* o, bench_weights* w,
                    bench_point* p);

/* --- report --- */

typedef struct bench_ceilings {
    double copy_GBps;  /* device-to-device copy, bytes read + written per second */
    double copy_bytes; /* bytes copied per run */
    double fp8_TFLOPs; /* dense FP8 rate; 0 = not measured here (the baseline script does) */
} bench_ceilings;

/* W, F, floor, target and rate of a timed point (issue 4's target formula). */
void bench_point_metrics(bench_point* p, const bench_ceilings* c);

/* The JSON report (SPEC §6). */
typedef struct bench_report {
    FILE* out;
    int points;
} bench_report;
void bench_report_begin(bench_report* r, FILE* out, mxmoe_ctx* ctx, const bench_options* o,
                        const bench_ceilings* c);
void bench_report_point(bench_report* r, const bench_point* p);
void bench_report_end(bench_report* r);

/* --- roofline plot (SVG) --- */

enum { BENCH_ROOFLINE_MAX = 1024 };

typedef struct bench_roof_point {
    int op;
    const char* shape;
    int64_t tokens;
    double intensity;    /* FLOPs per byte of MXFP4 weights */
    double tflops;       /* achieved */
    double floor_tflops; /* at the floor */
} bench_roof_point;

typedef struct bench_roofline {
    bench_roof_point points[BENCH_ROOFLINE_MAX];
    int count;
} bench_roofline;

/* Collects a timed point (failed points are left out). */
void bench_roofline_add(bench_roofline* roof, const bench_point* p);
/* Writes the plot: points at their intensity against min(copy x intensity, FP8 peak). */
void bench_roofline_write_svg(const bench_roofline* roof, const bench_ceilings* c,
                              const char* title, FILE* f);

#endif /* MXMOE_TOOLS_BENCH_H */
