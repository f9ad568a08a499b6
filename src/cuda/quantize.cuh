/*
 * quantize.cuh — the row quantization launcher shared by quantize, experts_quantize and the
 * gather step of moe_forward.
 */
#ifndef MXMOE_CUDA_QUANTIZE_CUH
#define MXMOE_CUDA_QUANTIZE_CUH

#include "core/e2m1_round.h"
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

/* Rows a grouped kernel writes: all of them, or those before offsets[E] (clamped). */
static __device__ inline int64_t grouped_row_limit(const int32_t* offsets, int64_t num_experts,
                                                   int64_t rows) {
    if (offsets == nullptr) {
        return rows;
    }
    const int64_t end = offsets[num_experts];
    return end < 0 ? 0 : (end > rows ? rows : end);
}

/* Quantizes block j of row r (K = k) held one element per lane of a warp: the block's absolute
 * maximum by a warp reduction, then each lane encodes its element with the reference's scale
 * rule and the arithmetic E2M1 encoder (core/e2m1_round.h, equal to the reference's on every
 * input), so the bytes are those of mxmoe_quantize_block. Lane 0 writes the scale where the
 * (linear or grouped swizzled) layout puts it, flagging a scale buffer too small. */
static __device__ inline void quantize_block_warp(float v, mxmoe_scale_rule rule, uint8_t* packed,
                                                  uint8_t* scales, int64_t scales_numel,
                                                  int swizzled, const int32_t* offsets,
                                                  int64_t num_experts, int64_t rows, int64_t r,
                                                  int64_t j, int64_t k, unsigned* errors) {
    const int lane = threadIdx.x & 31;
    /* NaN/Inf bit patterns are the largest, as in mxmoe_quantize_block */
    const uint32_t amax = __reduce_max_sync(0xFFFFFFFFu, mxmoe_f32_bits(v) & 0x7fffffffu);
    const uint8_t scale = mxmoe_scale_byte(amax, rule);
    const uint32_t code = scale != MXMOE_E8M0_NAN ? mxmoe_e2m1_code_rne(v, scale) : 0u;
    const uint32_t high = __shfl_down_sync(0xFFFFFFFFu, code, 1);
    if ((lane & 1) == 0) {
        packed[r * (k / 2) + j * 16 + lane / 2] = (uint8_t)(code | (high << 4));
    }
    if (lane == 0) {
        const int64_t off = grouped_scale_offset(swizzled, offsets, num_experts, rows, r, j, k);
        if (off < 0 || off >= scales_numel) {
            atomicOr(errors, MXMOE_DEVERR_SCALE_SPACE);
        } else {
            scales[off] = scale;
        }
    }
}

mxmoe_status mxmoe_launch_quantize_rows(mxmoe_ctx* ctx, const quantize_rows_args* args);

/* The same rows for a gather (args->gather, no weights, linear scales) with many pairs: each of
 * the `tokens` source rows quantized once into `scratch` (mxmoe_quantize_once_scratch bytes),
 * then copied to its pairs' rows. Whether it applies: mxmoe_quantize_once_applies. */
bool mxmoe_quantize_once_applies(const quantize_rows_args* args);
size_t mxmoe_quantize_once_scratch(int64_t tokens, int64_t k);
mxmoe_status mxmoe_launch_quantize_once(mxmoe_ctx* ctx, const quantize_rows_args* args,
                                        int64_t tokens, uint8_t* scratch);

#endif /* MXMOE_CUDA_QUANTIZE_CUH */
