/*
 * cpu_gemm.h — the CPU grouped GEMM driver, shared by grouped_gemm and moe_forward.
 *
 * The work is split into tasks of (expert, run of consecutive column tiles of tile_n columns),
 * about 16 per thread; a tile decodes its weights block by block once per group of up to
 * max_rows activation rows and sums K in ascending order, so a task's outputs do not depend on
 * which thread runs it. Splitting over columns and experts (not tokens) keeps every core busy
 * at 1 token; each tile prefetches the next tile of its task in address order.
 */
#ifndef MXMOE_CPU_CPU_GEMM_H
#define MXMOE_CPU_CPU_GEMM_H

#include "cpu/cpu_state.h"

typedef struct mxmoe_cpu_gemm_args {
    const mxmoe_mx_tensor* w; /* MXFP4 [E, N, K], linear or per-expert swizzled scales */
    const int32_t* offsets;   /* [E+1], checked */
    int64_t num_experts;
    const uint8_t* act8; /* act8 row r (GEMM row r) at act8 + r * act8_stride */
    size_t act8_stride;
    const mxmoe_tensor* bias; /* optional [E, N] */
    mxmoe_tensor* out;        /* [R, N], F32/BF16/F16 */
    void* scratch;            /* mxmoe_cpu_gemm_scratch_bytes() bytes, 64-byte aligned */
    const int32_t* out_rows;  /* optional [R]: GEMM row r goes to out row out_rows[r] */
} mxmoe_cpu_gemm_args;

/* Scratch bytes the driver needs (per-thread tiles, the list of experts with rows). */
size_t mxmoe_cpu_gemm_scratch_bytes(const mxmoe_cpu_state* st, int64_t num_experts, int64_t k);

void mxmoe_cpu_gemm_run(mxmoe_cpu_state* st, const mxmoe_cpu_gemm_args* args);

/* Converts rows of an MX tensor with k columns to act8 rows, in parallel: row r of `a`
 * (scales linear, or grouped swizzled by `offsets`) -> dst + r * stride, r < rows.
 * `scratch`: mxmoe_cpu_act8_scratch_bytes() bytes, 64-byte aligned. */
size_t mxmoe_cpu_act8_scratch_bytes(const mxmoe_cpu_state* st, int64_t num_experts, int64_t k);
void mxmoe_cpu_act8_rows(mxmoe_cpu_state* st, const mxmoe_mx_tensor* a, int64_t k, int64_t rows,
                         const int32_t* offsets, int64_t num_experts, void* scratch, uint8_t* dst,
                         size_t stride);

#endif /* MXMOE_CPU_CPU_GEMM_H */
