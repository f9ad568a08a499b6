/*
 * quantize.cuh — the row quantization launcher shared by quantize, experts_quantize and the
 * gather step of moe_forward.
 */
#ifndef MXMOE_CUDA_QUANTIZE_CUH
#define MXMOE_CUDA_QUANTIZE_CUH

#include "cuda/cuda_common.cuh"

struct quantize_rows_args {
    const void* x; /* F32/BF16/F16 rows of k */
    mxmoe_dtype dtype;
    int64_t rows; /* rows of the output */
    int64_t k;
    mxmoe_scale_rule rule;
    uint8_t* packed; /* [rows, k/2] */
    uint8_t* scales; /* linear [rows, k/32] or swizzled bytes */
    int64_t scales_numel;
    int swizzled;
    const int32_t* offsets; /* optional [E+1]: rows limited to offsets[E], swizzle per expert */
    int64_t num_experts;
    int check_offsets; /* caller's offsets: block 0 validates them (check_offsets_block) */
    /* optional gather (moe): output row r reads x row gather[r] / top_k (skipped if < 0) and,
     * with weights, multiplies it by weights[gather[r]] rounded to round_dtype */
    const int32_t* gather;
    int64_t gather_limit; /* gather entries must be in [0, gather_limit) */
    int64_t top_k;
    const float* weights;
    mxmoe_dtype round_dtype;
    unsigned* errors;
};

mxmoe_status mxmoe_launch_quantize_rows(mxmoe_ctx* ctx, const quantize_rows_args* args);

#endif /* MXMOE_CUDA_QUANTIZE_CUH */
