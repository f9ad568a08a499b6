/*
 * quantize.cuh — the row quantization launcher shared by quantize, experts_quantize and the
 * gather step of moe_forward.
 */
#ifndef MXMOE_CUDA_QUANTIZE_CUH
#define MXMOE_CUDA_QUANTIZE_CUH

#include "core/e2m1_round.h"
#include "cuda/cuda_common.cuh"
#include "cuda/e2m1_half2.cuh"

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
    /* 1: nothing the rows read is written by the kernel before (the plan, which a Hopper
     * projection's per-token quantizer follows: no gather, no offsets), so the kernel starts
     * beside it and waits for it only before exiting; the kernels after still find both done */
    int wait_late;
};

/* The kN (a multiple of 8) BF16 elements at src (16-byte aligned) as FP32, in 16-byte loads. */
template <int kN>
static __device__ __forceinline__ void load_bf16_block(const uint16_t* src, float (&block)[kN]) {
    const uint4* v = reinterpret_cast<const uint4*>(src);
#pragma unroll
    for (int u = 0; u < kN / 8; u++) {
        const uint4 w = __ldg(v + u);
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            block[8 * u + 2 * i] = mxmoe_bf16_to_f32((uint16_t)words[i]);
            block[8 * u + 2 * i + 1] = mxmoe_bf16_to_f32((uint16_t)(words[i] >> 16));
        }
    }
}

/* Rows a grouped kernel writes: all of them, or those before offsets[E] (clamped). */
static __device__ inline int64_t grouped_row_limit(const int32_t* offsets, int64_t num_experts,
                                                   int64_t rows) {
    if (offsets == nullptr) {
        return rows;
    }
    const int64_t end = offsets[num_experts];
    return end < 0 ? 0 : (end > rows ? rows : end);
}

/* Quantizes block j of row r held by 32 / E lanes, E = 1, 4 or 8 elements each
 * (lane % (32 / E) = sub holds elements E sub .. E sub + E - 1): the block's absolute maximum by
 * shuffles, then each lane encodes its elements with the reference's scale rule and the
 * arithmetic E2M1 encoder (core/e2m1_round.h, equal to the reference's on every input), so the
 * bytes are those of mxmoe_quantize_block; E = 4 and 8 store a lane's codes as one 16- or 32-bit
 * word (bytes where the buffer is not aligned for it), E = 1 pairs lanes into bytes. Lane sub = 0
 * writes the scale where the (linear or grouped swizzled) layout puts it, flagging a scale buffer
 * too small. Every lane of the warp calls it (the shuffles), the lanes of a block with the same
 * `live`; the lanes of a block that is not live store nothing. E = 4 shares each block's index work
 * among 8 lanes (a warp per block was 15 us for qwen3's 512 tokens, 7.3 so); E = 1 gives tiny calls
 * more lanes to spread their latency over. Bf16Values: every v[i] is a BF16 value (E = 8 then
 * encodes in FP16 pairs, cuda/e2m1_half2.cuh). */
template <int E, bool Bf16Values = false>
static __device__ inline void
quantize_block_lanes(const float (&v)[E], bool live, mxmoe_scale_rule rule, uint8_t* packed,
                     uint8_t* scales, int64_t scales_numel, int swizzled, const int32_t* offsets,
                     int64_t num_experts, int64_t rows, int64_t r, int64_t j, int64_t k,
                     unsigned* errors) {
    static_assert(E == 1 || E == 4 || E == 8, "one, four or eight elements a lane");
    constexpr int lanes = 32 / E;
    const int sub = threadIdx.x & (lanes - 1);
    /* NaN/Inf bit patterns are the largest, as in mxmoe_quantize_block */
    uint32_t amax = 0;
#pragma unroll
    for (int i = 0; i < E; i++) {
        amax = max(amax, live ? mxmoe_f32_bits(v[i]) & 0x7fffffffu : 0u);
    }
#pragma unroll
    for (int d = 1; d < lanes; d *= 2) {
        amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, d));
    }
    const uint8_t scale = mxmoe_scale_byte_add(amax, mxmoe_scale_rule_add(rule));
    uint32_t codes = 0;
    if (live && scale != MXMOE_E8M0_NAN) {
        if constexpr (E == 8) { /* Bf16Values: two values an FP16 instruction */
            codes = e2m1_codes8(v, scale, Bf16Values);
        } else {
#pragma unroll
            for (int i = 0; i < E; i++) {
                codes |= mxmoe_e2m1_code_rne(v[i], scale) << (4 * i);
            }
        }
    }
    if (E == 1) {
        codes |= __shfl_down_sync(0xffffffffu, codes, 1) << 4; /* the odd lane's code */
    }
    if (!live) {
        return;
    }
    /* rows of k / 2 bytes (k a multiple of 32: 16-byte pitch), E / 2 bytes a lane: dst is
     * aligned to E / 2 wherever the base is */
    uint8_t* dst = packed + r * (k / 2) + j * 16 + E * sub / 2;
    if (E == 1) {
        if ((sub & 1) == 0) {
            *dst = (uint8_t)codes;
        }
    } else if (E == 8 && (uintptr_t)packed % 4 == 0) {
        *reinterpret_cast<uint32_t*>(dst) = codes;
    } else if (E == 4 && (uintptr_t)packed % 2 == 0) {
        *reinterpret_cast<uint16_t*>(dst) = (uint16_t)codes;
    } else {
#pragma unroll
        for (int i = 0; i < E / 2; i++) {
            dst[i] = (uint8_t)(codes >> (8 * i));
        }
    }
    if (sub == 0) {
        const int64_t off = grouped_scale_offset(swizzled, offsets, num_experts, rows, r, j, k);
        if (off < 0 || off >= scales_numel) {
            atomicOr(errors, MXMOE_DEVERR_SCALE_SPACE);
        } else {
            scales[off] = scale;
        }
    }
}

/* A grid-stride loop over `blocks` 32-element blocks, 32 / E lanes a block (E blocks a warp per
 * pass), in warp-uniform passes so that every lane reaches quantize_block_lanes's shuffles: b is
 * this lane's block, at or past `blocks` in a last pass where the warp has fewer. Needs
 * blockDim.x a multiple of 32. */
#define BLOCK_LANES_GRID_STRIDE_LOOP(E, b, blocks)                                                 \
    for (int64_t b##_base = (((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5) * (E),         \
                 b = b##_base + (threadIdx.x & 31) / (32 / (E));                                   \
         b##_base < (blocks); b##_base += ((int64_t)gridDim.x * blockDim.x) / (32 / (E)),          \
                 b = b##_base + (threadIdx.x & 31) / (32 / (E)))

mxmoe_status mxmoe_launch_quantize_rows(mxmoe_ctx* ctx, const quantize_rows_args* args);

/* mxmoe_quantize_cuda issued right after the plan of the same call (wait_late): x must be
 * complete before the plan's kernels run and untouched by them. */
mxmoe_status mxmoe_quantize_beside_plan_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                             mxmoe_scale_rule rule, mxmoe_mx_tensor* out);

/* The same rows for a gather (args->gather, no weights, linear scales) with many pairs: each of
 * the `tokens` source rows quantized once into `scratch` (mxmoe_quantize_once_scratch bytes),
 * then copied to its pairs' rows. Whether it applies: mxmoe_quantize_once_applies. */
bool mxmoe_quantize_once_applies(const quantize_rows_args* args);
size_t mxmoe_quantize_once_scratch(int64_t tokens, int64_t k);
mxmoe_status mxmoe_launch_quantize_once(mxmoe_ctx* ctx, const quantize_rows_args* args,
                                        int64_t tokens, uint8_t* scratch);

#endif /* MXMOE_CUDA_QUANTIZE_CUH */
