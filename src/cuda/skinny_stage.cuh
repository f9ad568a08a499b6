/*
 * skinny_stage.cuh — the few-tokens GEMM's activation slab (grouped_gemm_skinny.cu): a group's
 * MXFP4 rows decoded to int8, or for a projection its tokens quantized here with the reference's
 * encoder, each block's scale beside it.
 */
#ifndef MXMOE_CUDA_SKINNY_STAGE_CUH
#define MXMOE_CUDA_SKINNY_STAGE_CUH

#include <stdint.h>

#include "core/e2m1_round.h"
#include "cuda/cuda_common.cuh"
#include "cuda/e2m1_half2.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/int8_mma.cuh"
#include "cuda/quantize.cuh"
#include "cuda/skinny_layout.cuh"

namespace {

/* Half `half` of token i's block jl in the slab, from its 8 packed bytes (16 codes). */
__device__ __forceinline__ void put_act_half(const smem_view& s, int i, int jl, int act_stride,
                                             int half, uint32_t p0, uint32_t p1) {
    uint4 q;
    q.x = e2m1x4_to_int8x4(p0), q.y = e2m1x4_to_int8x4(p0 >> 16);
    q.z = e2m1x4_to_int8x4(p1), q.w = e2m1x4_to_int8x4(p1 >> 16);
    reinterpret_cast<uint4*>(s.act + i * act_stride + jl * 32)[half] = q;
}

/* The scale of token i's block jl in the slab. */
__device__ __forceinline__ void put_act_scale(const smem_view& s, int i, int jl, int slab_n,
                                              uint32_t sa) {
    s.act_sbyte[i * slab_n + jl] = (uint8_t)sa;
    s.act_scale[i * slab_n + jl] = sa == MXMOE_E8M0_NAN ? 0.0f : mxmoe_pow2f((int32_t)sa - 129);
}

/* Token i's block jl of the slab from its 16 packed bytes and scale byte. */
__device__ __forceinline__ void put_act_block(const smem_view& s, int i, int jl, int slab_n,
                                              int act_stride, uint4 p, uint32_t sa) {
    put_act_half(s, i, jl, act_stride, 0, p.x, p.y);
    put_act_half(s, i, jl, act_stride, 1, p.z, p.w);
    put_act_scale(s, i, jl, slab_n, sa);
}

/* Decodes tokens [0, count) of the group starting at row `row0`, blocks [j0, j0 + slab_n), into
 * the slab; returns this thread's smallest and largest scale byte (0xFF counted as 1000, so a
 * NaN scale fails the fast path's range check). */
__device__ int2 stage_activations(const gemm_args& a, const smem_view& s, int64_t row0, int count,
                                  int64_t j0, int slab_n, int act_stride) {
    const int64_t kb = a.k / 32;
    int lo = 1000, hi = 0;
    for (int idx = threadIdx.x; idx < count * slab_n; idx += kThreads) {
        const int i = idx / slab_n, jl = idx % slab_n;
        const int64_t row = row0 + i, j = j0 + jl;
        const uint4 p =
            __ldg(reinterpret_cast<const uint4*>(a.a_packed + row * (a.k / 2) + j * 16));
        const int64_t off = row * kb + j;
        uint32_t sa = 0;
        if (off < a.a_scales_numel) {
            sa = a.a_scales[off];
        } else {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
        }
        put_act_block(s, i, jl, slab_n, act_stride, p, sa);
        lo = min(lo, (int)sa);
        hi = max(hi, sa == MXMOE_E8M0_NAN ? 1000 : (int)sa);
    }
    return make_int2(lo, hi);
}

/* The kN (16 or 32) elements of x from element `first` (a multiple of kN) as FP32: BF16 and F32
 * rows in 16-byte loads where x is 16-byte aligned (rows are multiples of 64 bytes). */
template <int kN>
__device__ __forceinline__ void load_elements(const projection_tokens& tk, int64_t first,
                                              float (&v)[kN]) {
    const bool aligned = (uintptr_t)tk.x % 16 == 0;
    if (aligned && tk.x_dtype == MXMOE_BF16) {
        load_bf16_block(static_cast<const uint16_t*>(tk.x) + first, v);
    } else if (aligned && tk.x_dtype == MXMOE_F32) {
        const float4* src =
            reinterpret_cast<const float4*>(static_cast<const float*>(tk.x) + first);
#pragma unroll
        for (int q = 0; q < kN / 4; q++) {
            const float4 f = __ldg(src + q);
            v[4 * q] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int e = 0; e < kN; e++) {
            v[e] = mxmoe_load_float(tk.x, tk.x_dtype, first + e);
        }
    }
}

/* The codes of v's kN values at scale byte sa (not 0xFF), as packed: element 8 w + i in nibble
 * i of word w (e2m1_codes8: BF16 tokens two values an FP16 instruction). */
template <int kN>
__device__ __forceinline__ void encode_elements(const float (&v)[kN], uint32_t sa, bool bf16,
                                                uint32_t (&codes)[kN / 8]) {
#pragma unroll
    for (int w = 0; w < kN / 8; w++) {
        float g[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            g[i] = v[8 * w + i];
        }
        codes[w] = e2m1_codes8(g, (uint8_t)sa, bf16);
    }
}

/* stage_activations for the projection: the group's tokens (pairs list[row0 ..] / top_k) are
 * quantized here, block by block, to the bytes mxmoe_quantize gives (e2m1_round.h). */
__device__ int2 stage_tokens(const projection_tokens& tk, int64_t k, const smem_view& s,
                             const int32_t* list, int64_t row0, int count, int64_t j0, int slab_n,
                             int act_stride) {
    int lo = 1000, hi = 0;
    for (int idx = threadIdx.x; idx < count * slab_n; idx += kThreads) {
        const int i = idx / slab_n, jl = idx % slab_n;
        const int64_t first = (int64_t)(list[row0 + i] / tk.top_k) * k + (j0 + jl) * 32;
        float v[32];
        load_elements(tk, first, v);
        const uint32_t sa =
            mxmoe_scale_byte_add(mxmoe_amax_bits(v, 32), mxmoe_scale_rule_add(tk.rule));
        uint32_t codes[4] = {0, 0, 0, 0};
        if (sa != MXMOE_E8M0_NAN) {
            encode_elements(v, sa, tk.x_dtype == MXMOE_BF16, codes);
        }
        put_act_block(s, i, jl, slab_n, act_stride,
                      make_uint4(codes[0], codes[1], codes[2], codes[3]), sa);
        lo = min(lo, (int)sa);
        hi = max(hi, sa == MXMOE_E8M0_NAN ? 1000 : (int)sa);
    }
    return make_int2(lo, hi);
}

/* stage_tokens with two lanes a block, for slabs of at most kThreads / 2 blocks (one token of
 * K <= 2048, as qwen3's): each lane loads and encodes one half of the block, and the pair agrees
 * on the scale by one shuffle. The same bytes; half the serial encoder on the decode path
 * (bench/NOTES.md v24: qwen3 n = 1 10.4 -> 9.2 us with the early exit above). */
__device__ int2 stage_tokens_halves(const projection_tokens& tk, int64_t k, const smem_view& s,
                                    const int32_t* list, int64_t row0, int count, int64_t j0,
                                    int slab_n, int act_stride) {
    int lo = 1000, hi = 0;
    const int idx = threadIdx.x / 2, half = threadIdx.x % 2;
    if (idx < count * slab_n) { /* both lanes of a pair or neither */
        const int i = idx / slab_n, jl = idx % slab_n;
        const int64_t first = (int64_t)(list[row0 + i] / tk.top_k) * k + (j0 + jl) * 32 + 16 * half;
        float v[16];
        load_elements(tk, first, v);
        uint32_t amax = mxmoe_amax_bits(v, 16);
        const unsigned pair_lanes = 3u << (threadIdx.x % 32 & ~1u);
        amax = max(amax, __shfl_xor_sync(pair_lanes, amax, 1));
        const uint32_t sa = mxmoe_scale_byte_add(amax, mxmoe_scale_rule_add(tk.rule));
        uint32_t codes[2] = {0, 0}; /* elements 16 half .. as packed: the lower one low */
        if (sa != MXMOE_E8M0_NAN) {
            encode_elements(v, sa, tk.x_dtype == MXMOE_BF16, codes);
        }
        put_act_half(s, i, jl, act_stride, half, codes[0], codes[1]);
        if (half == 0) {
            put_act_scale(s, i, jl, slab_n, sa);
        }
        lo = (int)sa;
        hi = sa == MXMOE_E8M0_NAN ? 1000 : (int)sa;
    }
    return make_int2(lo, hi);
}

} // namespace

#endif /* MXMOE_CUDA_SKINNY_STAGE_CUH */
