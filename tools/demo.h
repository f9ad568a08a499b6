/*
 * demo.h — the pieces of `mxmoe demo`: a synthetic MoE layer of a real model's shape, its
 * deterministic weights, the forward pass on any backend, and the checks of its output.
 *
 * Every synthetic value is a pure function of (seed, what, expert, index) — a counter-based
 * generator — so the check can regenerate one expert's BF16 weights when it needs them instead
 * of keeping all of them (1.6 GB for gpt-oss-20b) in memory.
 */
#ifndef MXMOE_TOOLS_DEMO_H
#define MXMOE_TOOLS_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "mxmoe.h"

/* What a generated value is for: selects an independent stream. */
typedef enum demo_stream {
    DEMO_W13 = 1,   /* [2I, H] per expert, scale 1/sqrt(H) */
    DEMO_W2 = 2,    /* [H, I] per expert, scale 1/sqrt(I) */
    DEMO_B13 = 3,   /* [2I] per expert */
    DEMO_B2 = 4,    /* [H] per expert */
    DEMO_X = 5,     /* [T, H] tokens */
    DEMO_LOGITS = 6 /* [T, E] router logits */
} demo_stream;

/* n values of stream `what` (of `expert`; 0 for tokens and logits) starting at element `first`,
 * approximately N(0, scale^2) (Irwin-Hall of four uniforms: cheap, bounded at 3.5 sigma),
 * rounded to BF16. */
void demo_generate_bf16(uint64_t seed, demo_stream what, int64_t expert, float scale, int64_t first,
                        int64_t n, uint16_t* out);
/* The same values kept in FP32 (router logits). */
void demo_generate_f32(uint64_t seed, demo_stream what, int64_t expert, float scale, int64_t first,
                       int64_t n, float* out);

/* Standard deviations of the synthetic tensors: weights 1/sqrt(K) keep every activation O(1). */
#define DEMO_BIAS_SCALE 0.1f

/* A MoE layer with MXFP4 expert weights in host memory. */
typedef struct demo_layer {
    int32_t experts, top_k;
    int64_t hidden, intermediate; /* H, I */
    uint64_t seed;
    uint8_t* w13_packed; /* [E, 2I, H/2]: gate/up rows interleaved (row 2j gate, 2j+1 up) */
    uint8_t* w13_scales; /* [E, 2I, H/32] */
    uint8_t* w2_packed;  /* [E, H, I/2] */
    uint8_t* w2_scales;  /* [E, H, I/32] */
    uint16_t* b13;       /* BF16 [E, 2I] */
    uint16_t* b2;        /* BF16 [E, H] */
} demo_layer;

/* Allocates the layer, synthesises each expert's BF16 weights and quantizes them (rule EVEN),
 * one expert per worker at a time (demo_run_workers). Prints progress. Returns 0 or -1
 * (printed). */
int demo_layer_build(const char* cmd, demo_layer* layer);
void demo_layer_free(demo_layer* layer);

/* The MXFP4 views of expert e's weights (w13: [2I, H], w2: [H, I]). */
mxmoe_mx_tensor demo_expert_w13(const demo_layer* layer, int64_t e);
mxmoe_mx_tensor demo_expert_w2(const demo_layer* layer, int64_t e);

/* FP64 references for the first `tokens` tokens of a forward pass (out: [tokens, H] each):
 *   mirror:      the quantized pipeline's own rounding points, in FP64 — quantize/dequantize x
 *                through the library, GEMM-1 on the dequantized weights + bias, the activation
 *                from GEMM-1's output rounded as the layer keeps it (params->gemm_dtype),
 *                rounded to FP32 then BF16, quantized and dequantized through the library,
 *                GEMM-2 + bias (kept likewise), weighted sum over the k slots;
 *   unquantized: the same layer on the BF16 weights and tokens without any MXFP4 step.
 * x: BF16 [T, H]; ids: I32 [T, k]; weights: F32 [T, k]. Returns 0 or -1 (printed). */
int demo_reference(const char* cmd, mxmoe_ctx* ctx, const demo_layer* layer,
                   const mxmoe_moe_params* params, const uint16_t* x, const int32_t* ids,
                   const float* weights, int64_t tokens, double* mirror, double* unquantized);

/* A batch of tokens routed through the layer, in host memory. */
typedef struct demo_batch {
    int64_t tokens;
    uint16_t* x;    /* BF16 [T, H] */
    float* logits;  /* F32 [T, E] */
    int32_t* ids;   /* I32 [T, k] */
    float* weights; /* F32 [T, k] */
    float* out;     /* F32 [T, H]: the output of the backend under test */
} demo_batch;

/* The layer parameters of the demo: gpt-oss SwiGLU (alpha 1.702, limit 7), interleaved gate/up,
 * BF16 intermediate, rule EVEN, router weights on the output. */
mxmoe_moe_params demo_layer_params(const demo_layer* layer);

/* What one forward pass reads and writes, in the backend's memory (demo_run.c): each host array
 * with its backend twin (the array itself on the CPU backend), plus the workspace. */
typedef struct demo_backend_data {
    cli_buffer w13_packed, w13_scales, w2_packed, w2_scales, b13, b2;
    cli_buffer x, ids, weights, out, workspace;
    const demo_layer* layer;
    int prepared; /* w13 and w2 prepared on the context (mxmoe_weights_prepare) */
} demo_backend_data;

/* Places the layer and batch where ctx computes (copies on a GPU) with `out` (host, F32 [T, H])
 * as the output's host side, prepares the weights once (as a model loader would), and sizes the
 * workspace. Returns 0 or -1 (printed). */
int demo_backend_init(const char* cmd, mxmoe_ctx* ctx, const demo_layer* layer,
                      const demo_batch* batch, float* out, demo_backend_data* d);
void demo_backend_free(mxmoe_ctx* ctx, demo_backend_data* d);
/* One forward pass of the batch on ctx. With `checked`, the output is poisoned with NaN first
 * (so a kernel that skips an element cannot pass on stale values), the pass is waited for and
 * its device-side errors collected, and the output is copied back to its host array; without,
 * the pass is only issued (for timing). Returns 0 or -1 (printed). */
int demo_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* layer, int64_t tokens,
                 demo_backend_data* d, int checked);
/* Times the forward pass and prints the median: on the CPU a few wall-clock runs, each checked;
 * on a GPU warm-up runs, then at least 20 runs timed with mxmoe_timer_start/stop. */
int demo_time_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* layer, int64_t tokens,
                      demo_backend_data* d);

/* --- workers (demo_workers.c) */
/* One worker's share of a parallel job: worker `index` of `workers`, on its own single-threaded
 * CPU context. Returns 0 or -1 (printed). */
typedef int (*demo_worker_fn)(mxmoe_ctx* ctx, int index, int workers, void* arg);
/* How many workers share `jobs` independent jobs: one per core, at most `jobs` and 16. */
int demo_worker_count(int64_t jobs);
/* Runs fn(ctx_i, i, workers, arg_i) on one thread each for i < workers, where arg_i is the i-th
 * of `workers` structs of arg_size bytes at `args`; waits for all. Returns 0 if every worker
 * returned 0, else -1 (printed). */
int demo_run_workers(const char* cmd, int workers, demo_worker_fn fn, void* args, size_t arg_size);

/* --- checks (demo_check.c) */
/* Compares the backend output with the FP64 mirror of the first `check` tokens and prints the
 * result; returns 0 if it passes the criterion described in demo_check.c. */
int demo_fp64_check(const char* cmd, mxmoe_ctx* cpu, const demo_layer* layer,
                    const demo_batch* batch, int64_t check);
/* Prints how out differs from the CPU backend's output ref ([T, H] each): the number of outputs
 * whose FP32 bits differ (the generic GPU path reproduces the CPU bit for bit) and the error
 * norms; returns the number of differing outputs. */
int64_t demo_compare_to_cpu(const float* out, const float* ref, int64_t tokens, int64_t hidden);

#endif /* MXMOE_TOOLS_DEMO_H */
