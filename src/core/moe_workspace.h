/*
 * moe_workspace.h — how a backend carves the caller's moe_forward workspace into regions.
 *
 * Every backend uses the same regions (plan arrays, quantized activations, FP32 GEMM outputs);
 * a backend may ask for an FP32 copy of the gathered input rows and for scratch of its own.
 */
#ifndef MXMOE_CORE_MOE_WORKSPACE_H
#define MXMOE_CORE_MOE_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

/* Byte offsets of the regions, each 256-byte aligned (whole cache lines / DRAM sectors). */
typedef struct mxmoe_moe_workspace {
    size_t counts;    /* I32 [E] */
    size_t offsets;   /* I32 [E+1] */
    size_t sorted;    /* I32 [P], P = tokens * top_k */
    size_t row_of;    /* I32 [P] */
    size_t x_rows;    /* F32 [P, H] (only if asked for) */
    size_t a1_packed; /* U8 [P, H/2] */
    size_t a1_scales; /* U8 [P, H/32] */
    size_t h1;        /* F32 [P, N13], N13 = 2I (gated) or I */
    size_t a2_packed; /* U8 [P, I/2] */
    size_t a2_scales; /* U8 [P, I/32] */
    size_t c3;        /* F32 [P, H] */
    size_t scratch;   /* backend scratch */
    size_t total;
} mxmoe_moe_workspace;

/* Lays out the regions; returns 0 if a size overflows. */
int mxmoe_moe_workspace_layout(int64_t experts, int64_t pairs, int64_t hidden, int64_t n13,
                               int64_t inter, int with_x_rows, size_t scratch_bytes,
                               mxmoe_moe_workspace* layout);

#endif /* MXMOE_CORE_MOE_WORKSPACE_H */
