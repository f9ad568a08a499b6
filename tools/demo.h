/*
 * demo.h — the pieces of `mxmoe demo`: a synthetic MoE layer of a real model's shape, its
 * deterministic weights, and the FP64 check of a forward pass.
 *
 * Every synthetic value is a pure function of (seed, what, expert, index) — a counter-based
 * generator — so the check can regenerate one expert's BF16 weights when it needs them instead
 * of keeping all of them (1.6 GB for gpt-oss-20b) in memory.
 */
#ifndef MXMOE_TOOLS_DEMO_H
#define MXMOE_TOOLS_DEMO_H

#include <stddef.h>
#include <stdint.h>

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

/* Allocates the layer, synthesises each expert's BF16 weights and quantizes them (rule EVEN) on
 * `ctx` (a host backend), one expert at a time. Prints progress. Returns 0 or -1 (printed). */
int demo_layer_build(const char* cmd, mxmoe_ctx* ctx, demo_layer* layer);
void demo_layer_free(demo_layer* layer);

/* The MXFP4 views of expert e's weights (w13: [2I, H], w2: [H, I]). */
mxmoe_mx_tensor demo_expert_w13(const demo_layer* layer, int64_t e);
mxmoe_mx_tensor demo_expert_w2(const demo_layer* layer, int64_t e);

/* FP64 references for the first `tokens` tokens of a forward pass (out: [tokens, H] each):
 *   mirror:      the quantized pipeline's own rounding points, in FP64 — quantize/dequantize x
 *                through the library, GEMM-1 on the dequantized weights + bias, the activation
 *                from the FP32-rounded GEMM-1 output, rounded to FP32 then BF16, quantized and
 *                dequantized through the library, GEMM-2 + bias, weighted sum over the k slots;
 *   unquantized: the same layer on the BF16 weights and tokens without any MXFP4 step.
 * x: BF16 [T, H]; ids: I32 [T, k]; weights: F32 [T, k]. Returns 0 or -1 (printed). */
int demo_reference(const char* cmd, mxmoe_ctx* ctx, const demo_layer* layer,
                   const mxmoe_act_params* act, const uint16_t* x, const int32_t* ids,
                   const float* weights, int64_t tokens, double* mirror, double* unquantized);

#endif /* MXMOE_TOOLS_DEMO_H */
