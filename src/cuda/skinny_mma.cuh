/*
 * skinny_mma.cuh — the few-tokens GEMM's K loop body (grouped_gemm_skinny.cu): one ring stage of
 * a warp's 16 weight rows against the slab's tokens on the int8 tensor cores, each block's
 * integer dot product scaled into the FP32 accumulators.
 */
#ifndef MXMOE_CUDA_SKINNY_MMA_CUH
#define MXMOE_CUDA_SKINNY_MMA_CUH

#include <stdint.h>

#include "cuda/cuda_common.cuh"
#include "cuda/int8_mma.cuh"
#include "cuda/skinny_layout.cuh"

namespace {

/* (float)isum for |isum| < 2^22 without the quarter-rate I2F: isum added to the bits of
 * 1.5 * 2^23 (one integer add, merged with the subtraction that forms isum) are that number plus
 * isum exactly, and one FADD takes 1.5 * 2^23 away. */
__device__ __forceinline__ float as_float(int32_t isum) {
    return __int_as_float(isum + kBias) - kBiasF;
}

/* One warp's view of the work: its rows' ring, scales and fragment coordinates, and the E2M1
 * table word, read by each lane from its own shared-memory copy so that it stays in a register:
 * a constant (even one passed through an empty asm), or a word every lane reads from one
 * address, ptxas kept in a uniform register and copied out before every PRMT that used it, 8 of
 * the ~57 instructions a block (counted in the cubin's SASS: dev/cuda/sass.sh). */
struct warp_ctx {
    const uint8_t* ring;    /* this warp's kStages stages */
    const uint8_t* w_scale; /* row g of this warp's 16 in the tile's scale table */
    int kb, g, t;
    uint32_t table_lo;
};

/* e2m1x4_magnitudes of one half of a word in the Hopper sign packing (core/sign_packing.h; the
 * high half: High): the magnitudes by the table, and the signs, at the byte msbs (or 4 bits
 * below them for the high half), as byte masks by a sign-replicating prmt. Two instructions a
 * half more than the canonical form (bench/NOTES.md v45: 6-14 % at one token). */
template <bool High>
__device__ __forceinline__ void packed_magnitudes(uint32_t y, uint32_t table_lo, uint32_t& pos,
                                                  uint32_t& neg) {
    const uint32_t magnitudes = y & 0x77777777u, s = High ? y << 4 : y;
    uint32_t m, negative;
    asm("prmt.b32 %0, %1, %2, %3;"
        : "=r"(m)
        : "r"(table_lo), "r"(0x0C080604u), "r"(High ? magnitudes >> 16 : magnitudes));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(negative) : "r"(s), "r"(s), "r"(0xBA98u));
    pos = m & ~negative;
    neg = m & negative;
}

/* Accumulates ring stage `stage` (K blocks 4 stage ..) into acc. Fast: the biased-FFMA form;
 * otherwise mxmoe_block_term per element (see the file comment). kOne: the group is one token
 * (every CTA of a decode step), so only each lane's even token column is worth computing: 7 of
 * the ~65 instructions a block at n = 1 went to the odd column, always dropped. kPacked: the
 * weights' codes are in the Hopper sign packing (packed_magnitudes). */
template <bool kFast, int kTiles, bool kFull = false, bool kOne = false, bool kPacked = false>
__device__ __forceinline__ void mma_stage(const warp_ctx& w, const smem_view& s, int stage,
                                          int64_t slab0, int slab_n, int act_stride, int count,
                                          int tiles, float (&acc)[kTokenTiles][4]) {
    const uint8_t* slot = w.ring + (stage % kStages) * kWarpStage;
    const int j0 = stage * kStageBlocks;
#pragma unroll
    for (int bi = 0; bi < kStageBlocks; bi++) {
        const int j = j0 + bi;     /* one K block: 16 rows x 32 of the warp */
        if (!kFull && j >= w.kb) { /* kFull: the stage's blocks are all inside K */
            break;
        }
        const uint32_t w0 =
            *reinterpret_cast<const uint32_t*>(slot + w.g * kStageRow + bi * 16 + 4 * w.t);
        const uint32_t w1 =
            *reinterpret_cast<const uint32_t*>(slot + (w.g + 8) * kStageRow + bi * 16 + 4 * w.t);
        /* The weights as two unsigned fragments, the magnitudes of the positive codes and of the
         * negative ones, each multiplied by the activations: the difference of the two integer
         * sums is the signed block's, for 8 fewer instructions a block than forming the signed
         * bytes (the conversion was a third of the block's instructions) against an MMA and
         * 2-4 subtractions more. */
        uint32_t pos[4], neg[4];
        if constexpr (kPacked) {
            packed_magnitudes<false>(w0, w.table_lo, pos[0], neg[0]);
            packed_magnitudes<false>(w1, w.table_lo, pos[1], neg[1]);
            packed_magnitudes<true>(w0, w.table_lo, pos[2], neg[2]);
            packed_magnitudes<true>(w1, w.table_lo, pos[3], neg[3]);
        } else {
            e2m1x4_magnitudes(w0, w.table_lo, pos[0], neg[0]);
            e2m1x4_magnitudes(w1, w.table_lo, pos[1], neg[1]);
            e2m1x4_magnitudes(w0 >> 16, w.table_lo, pos[2], neg[2]);
            e2m1x4_magnitudes(w1 >> 16, w.table_lo, pos[3], neg[3]);
        }
        const uint32_t sw0 = w.w_scale[j], sw1 = w.w_scale[8 * w.kb + j];
        const float ws0 = __uint_as_float(sw0 << 23), ws1 = __uint_as_float(sw1 << 23);
        const int jl = j - (int)slab0;
#pragma unroll
        for (int ti = 0; ti < kTokenTiles; ti++) {
            if (ti < kTiles && (kTiles < kTokenTiles || ti < tiles)) {
                /* tokens past the group's count read its last token; their results are dropped */
                const int tb = min(ti * 8 + w.g, count - 1);
                const uint2 bv =
                    *reinterpret_cast<const uint2*>(s.act + tb * act_stride + jl * 32 + 8 * w.t);
                const uint32_t b[2] = {bv.x, bv.y};
                int32_t d[4], e[4];
                mma_s8_16x8x32(pos, b, 0, d);
                mma_s8_16x8x32(neg, b, 0, e);
                int32_t isum[4]; /* the block's integer dot products */
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    isum[q] = d[q] - e[q];
                }
                const int c0 = min(ti * 8 + 2 * w.t, count - 1) * slab_n + jl;
                const int c1 = min(ti * 8 + 2 * w.t + 1, count - 1) * slab_n + jl;
                if (kFast && kOne) {
                    const float as0 = s.act_scale[c0];
                    acc[ti][0] = fmaf(as_float(isum[0]), ws0 * as0, acc[ti][0]);
                    acc[ti][2] = fmaf(as_float(isum[2]), ws1 * as0, acc[ti][2]);
                } else if (kFast) {
                    const float as0 = s.act_scale[c0], as1 = s.act_scale[c1];
                    acc[ti][0] = fmaf(as_float(isum[0]), ws0 * as0, acc[ti][0]);
                    acc[ti][1] = fmaf(as_float(isum[1]), ws0 * as1, acc[ti][1]);
                    acc[ti][2] = fmaf(as_float(isum[2]), ws1 * as0, acc[ti][2]);
                    acc[ti][3] = fmaf(as_float(isum[3]), ws1 * as1, acc[ti][3]);
                } else {
                    const uint32_t sa0 = s.act_sbyte[c0], sa1 = s.act_sbyte[c1];
                    acc[ti][0] += mxmoe_block_term(isum[0], sa0, sw0);
                    acc[ti][1] += mxmoe_block_term(isum[1], sa1, sw0);
                    acc[ti][2] += mxmoe_block_term(isum[2], sa0, sw1);
                    acc[ti][3] += mxmoe_block_term(isum[3], sa1, sw1);
                }
            }
        }
    }
}

} // namespace

#endif /* MXMOE_CUDA_SKINNY_MMA_CUH */
