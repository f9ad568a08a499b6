/*
 * grouped_gemm_skinny.cu — the W4A4 grouped GEMM for few tokens per expert (decode and small
 * batches), exact and bit-identical to the reference, on the int8 tensor cores of sm_80+.
 *
 * With few tokens per expert the GEMM is a stream over the active experts' weights, so the
 * design is about reading them once at full bandwidth and spending few instructions per byte:
 *   - Operands swapped: 16 weight rows are the M side of `mma.m16n8k32.s8`, 8 tokens the N side,
 *     and the MMA's K of 32 is exactly one MX block. A CTA takes 64 rows of one active expert
 *     (4 warps x 16) and passes over them once per group of up to 32 of the expert's tokens.
 *   - Each warp streams its 16 rows through its own cp.async ring (kStages stages of
 *     kStageBlocks blocks, skinny_layout.cuh), so warps never wait for each other inside a K
 *     slab; the group's tokens are decoded to int8 once per slab into shared memory (a few K
 *     blocks for 32 tokens, most of K for one).
 *   - Launched with programmatic dependent launch (cuda_common.cuh), like the rest of the
 *     small-batch chain.
 *   - The weights enter the MMAs as two unsigned fragments, the magnitudes of their positive and
 *     of their negative codes (one byte permute each for 4 values), and the second MMA's integer
 *     sum is subtracted from the first's: the signed block's dot product, exactly.
 *   - The block's integer dot product isum, added to the bits of 0x4B400000 (with the
 *     subtraction that forms it, one integer add), is the FP32 1.5 * 2^23 + isum, so one FADD
 *     gives (float)isum (no quarter-rate I2F) and one FFMA adds isum * 2^(sa+sw-256) (as_float).
 *     That equals the reference's rounded product plus rounded sum whenever the product is
 *     exact and far from overflow: 107 <= sa + sw <= 370 with no 0xFF and sw > 0, checked once
 *     per CTA and slab from the scale ranges. Otherwise (never with real checkpoints) the slab
 *     takes mxmoe_block_term.
 * Tiles map to active experts through the offsets on the device (no host synchronisation): the
 * grid covers min(E, rows) experts and CTAs past the last active one exit at once. Wherever
 * the CTAs are more than about one an SM the kernel is issue-bound, so instructions a weight
 * byte are what counts (bench/NOTES.md v15: twice the warps at the same count measured slower;
 * so did splitting K over warps with the terms handed over in K order to stay exact, v6).
 * Fed by tokens instead (mxmoe_grouped_projection at decode sizes), a CTA per (pair, row tile)
 * reads its pair's expert from the ids (the lowest pair's CTAs own the expert; the others see
 * the earlier pair and exit before they stream anything), starts its weight stream, finds the
 * expert's pairs and quantizes their tokens into the slab itself, with the reference's encoder:
 * no plan and no quantizer before it.
 * Files: skinny_layout.cuh (the CTA's warps and shared memory), skinny_schedule.cuh (which
 * expert, rows and pairs a CTA takes), skinny_stage.cuh (the activation slab), skinny_mma.cuh
 * (the K loop's body), skinny_stamps.cuh (the lab's knock-outs and timeline); this file: the
 * kernel and its launch.
 */
#include <stdint.h>

#include "core/e2m1_round.h"
#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/int8_mma.cuh"
#include "cuda/lab_stamps.cuh"
#include "cuda/quantize.cuh"
#include "cuda/skinny_layout.cuh"
#include "cuda/skinny_mma.cuh"
#include "cuda/skinny_schedule.cuh"
#include "cuda/skinny_stage.cuh"
#include "cuda/skinny_stamps.cuh"

namespace {

/* Scale byte j of weight row n of expert e (linear or swizzled scales). */
__device__ inline uint8_t weight_scale_byte(const gemm_args& a, int64_t e, int64_t n, int64_t j) {
    const int64_t kb = a.k / 32;
    const int64_t off = !a.w_swizzled ? (e * a.n + n) * kb + j
                                      : e * mxmoe_swizzled_matrix_bytes(a.n, a.k) +
                                            mxmoe_swizzled_offset(n, j, a.k);
    return a.w_scales[off];
}

/* kTokens = false: the grouped GEMM over a plan's offsets and quantized rows. kTokens = true:
 * the projection, a CTA per (pair, row tile) whose pair's expert no earlier pair has. kPacked:
 * the weights' codes are in the Hopper sign packing (gemm_args.w_repacked). */
template <bool kTokens, bool kPacked = false>
__global__ void __launch_bounds__(kThreads, 3)
    grouped_gemm_skinny_kernel(gemm_args args, projection_tokens tk) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    __shared__ int32_t pair_list[kTokens ? kProjectionMaxPairs : 1];
    const smem_view s = carve(smem_raw);
    __shared__ uint32_t table_words[32]; /* the E2M1 table's low word for each lane: warp_ctx */
    if (threadIdx.x < 32) {
        table_words[threadIdx.x] = 0x03020100u;
    }
    MXMOE_SKINNY_STAMP(kEntryGlobal, true);
    MXMOE_SKINNY_STAMP(kEntry);
    pdl_wait();
    MXMOE_SKINNY_STAMP(kWaited);
    pdl_release();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int kb = (int)(args.k / 32);
    const int64_t row_tiles = (args.n + kTileRows - 1) / kTileRows;

    int64_t expert, begin = 0, end = 0;
    if (kTokens) { /* each pair's id is checked by its slot; the slot's first tile reports it */
        const int64_t slot = blockIdx.x / row_tiles;
        const int32_t first_id = (int64_t)threadIdx.x < slot ? tk.ids[threadIdx.x] : -1;
        expert = pair_expert(tk, args.num_experts, slot,
                             blockIdx.x % row_tiles == 0 ? args.errors : nullptr);
        if (earlier_pair_has(tk, expert, slot, first_id)) {
            return; /* that pair's CTAs own the expert */
        }
    } else {
        int32_t* off = reinterpret_cast<int32_t*>(s.act);
        for (int64_t e = threadIdx.x; e <= args.num_experts; e += kThreads) {
            off[e] = args.offsets[e];
        }
        __syncthreads();
        if (args.check_offsets && blockIdx.x == 0) {
            check_offsets_block(off, args.num_experts, args.rows, args.errors);
        }
        expert = find_active_expert(off, args.num_experts, args.rows, blockIdx.x / row_tiles);
        if (expert >= 0) {
            expert_rows(off, expert, args.rows, &begin, &end);
        }
    }
    MXMOE_SKINNY_STAMP(kExpert);
    if (expert < 0) {
        return;
    }
    const int64_t n0 = (int64_t)(blockIdx.x % row_tiles) * kTileRows;

    /* This lane's copies of each ring stage: kLanesPerRow lanes cover one row's run, a warp
     * instruction 32 / kLanesPerRow rows; copy c is row lane / kLanesPerRow + c 32 / kLanesPerRow.
     */
    const int copy_blk = lane % kLanesPerRow, copy_row = lane / kLanesPerRow;
    const int64_t first_row = n0 + warp * kWarpRows + copy_row;
    const uint8_t* src =
        args.w_packed + (expert * args.n + first_row) * (args.k / 2) + copy_blk * 16;
    uint8_t* dst = s.ring + warp * kStages * kWarpStage + copy_row * kStageRow + copy_blk * 16;
    auto issue = [&](int stage) {
#if (MXMOE_SKINNY_LAB & 4)
        return;
#endif
        const bool blk_ok = stage * kStageBlocks + copy_blk < kb;
        uint8_t* slot = dst + (stage % kStages) * kWarpStage;
#pragma unroll
        for (int c = 0; c < kCopies; c++) {
            const int rows_down = c * (32 / kLanesPerRow);
            const bool ok = blk_ok && first_row + rows_down < args.n;
            cp_async16_zfill(slot + rows_down * kStageRow,
                             ok ? src + (int64_t)rows_down * (args.k / 2) +
                                      stage * kStageBlocks * 16
                                : args.w_packed,
                             ok ? 16 : 0);
        }
    };
    const int n_stages = (kb + kStageBlocks - 1) / kStageBlocks;

    auto prologue = [&]() {
        for (int stage = 0; stage < kStages - 1; stage++) {
            if (stage < n_stages) {
                issue(stage);
            }
            cp_async_commit();
        }
    };

    /* The tile's weight scales. Linear ones are one contiguous span (rows n0.. of the expert),
     * copied 16 bytes at a time with every copy in flight (shifted so the copies are aligned on
     * both sides); swizzled ones byte by byte. The first group's weight stream starts meanwhile. */
    const int valid_rows = (int)min((int64_t)kTileRows, args.n - n0);
    uint8_t* w_scale = s.w_scale;
    if (!args.w_swizzled) {
        const uint8_t* span = args.w_scales + (expert * args.n + n0) * kb;
        const int len = valid_rows * kb, shift = (int)((uintptr_t)span & 15);
        w_scale += shift;
        for (int i = threadIdx.x * 16 - shift; i < len; i += kThreads * 16) {
            if (i >= 0 && i + 16 <= len) {
                cp_async16_zfill(w_scale + i, span + i, 16);
            } else {
                for (int b = max(i, 0); b < min(i + 16, len); b++) {
                    w_scale[b] = span[b];
                }
            }
        }
    } else {
        for (int idx = threadIdx.x; idx < valid_rows * kb; idx += kThreads) {
            w_scale[idx] = weight_scale_byte(args, expert, n0 + idx / kb, idx % kb);
        }
    }
    cp_async_commit();
    prologue();
    MXMOE_SKINNY_STAMP(kIssued);
    if (kTokens) { /* while the weights stream: the expert's tokens */
        int count = 0;
        expert_pairs(tk, expert, args.rows, pair_list, &count);
        end = count;
    }
    MXMOE_SKINNY_STAMP(kOwned);
    cp_async_wait<kStages - 1>(); /* the scales (the oldest group) have landed */
    __syncthreads();
    int lo = 255, hi = 0;
    for (int idx = threadIdx.x; idx < valid_rows * kb; idx += kThreads) {
        lo = min(lo, (int)w_scale[idx]);
        hi = max(hi, (int)w_scale[idx]);
    }
    const int2 sw = cta_range(lo, hi);
    MXMOE_SKINNY_STAMP(kScales);

    const int g = lane / 4, t = lane % 4;
    warp_ctx wc;
    wc.ring = s.ring + warp * kStages * kWarpStage;
    wc.w_scale = w_scale + (warp * kWarpRows + g) * kb; /* rows past n read stale bytes: dropped */
    wc.kb = kb, wc.g = g, wc.t = t;
    wc.table_lo = table_words[lane]; /* written before the barriers above */

    for (int64_t row0 = begin; row0 < end; row0 += kGroupTokens) {
        if (row0 != begin) {
            prologue(); /* the first group's was issued with the scales */
        }
        const int count = (int)min((int64_t)kGroupTokens, end - row0);
        const int tiles = (count + 7) / 8;
        /* slab: as many blocks as the activation budget holds, a multiple of the stage */
        int slab = (kActBytes / count - 32) / 32 / kStageBlocks * kStageBlocks;
        slab = min(slab, kActEntries / count / kStageBlocks * kStageBlocks);
        slab = min(slab, kb);
        float acc[kTokenTiles][4];
#pragma unroll
        for (int ti = 0; ti < kTokenTiles; ti++) {
            acc[ti][0] = acc[ti][1] = acc[ti][2] = acc[ti][3] = 0.0f;
        }
        for (int64_t slab0 = 0; slab0 < kb; slab0 += slab) {
            const int slab_n = (int)min((int64_t)slab, kb - slab0);
            const int act_stride =
                (slab_n + 3) / 4 * 128 + 32; /* bytes; = 32 mod 128: no conflicts */
            __syncthreads(); /* the previous slab (or the offsets) is no longer read */
#if (MXMOE_SKINNY_LAB & 2)
            const int2 r = make_int2(127, 127);
#else
            const int2 r = !kTokens
                               ? stage_activations(args, s, row0, count, slab0, slab_n, act_stride)
                           : count * slab_n * 2 <= kThreads
                               ? stage_tokens_halves(tk, args.k, s, pair_list, row0, count, slab0,
                                                     slab_n, act_stride)
                               : stage_tokens(tk, args.k, s, pair_list, row0, count, slab0, slab_n,
                                              act_stride);
#endif
            const int2 sa = cta_range(r.x, r.y); /* its barrier also publishes the slab */
#if (MXMOE_SKINNY_LAB & 8)
            if (slab0 == 0 && row0 == begin) {
                MXMOE_SKINNY_STAMP(kStaged);
            }
#endif
            const bool fast = sw.x >= 1 && sw.y <= 254 && sw.x + sa.x >= 107 && sw.y + sa.y <= 370;
            const int stage_end = (int)((slab0 + slab_n + kStageBlocks - 1) / kStageBlocks);
            for (int stage = (int)(slab0 / kStageBlocks); stage < stage_end; stage++) {
                cp_async_wait<kStages - 2>();
                __syncwarp(); /* every lane's copies of this stage are visible to the warp */
                if (stage + kStages - 1 < n_stages) {
                    issue(stage + kStages - 1); /* into the slot read by the previous stage */
                }
                cp_async_commit();
                /* the common token counts get their own unrolling: fewer instructions a block */
#if (MXMOE_SKINNY_LAB & 1)
                if (false) {
#else
                if (fast && count == 1 && (stage + 1) * kStageBlocks <= kb) {
#endif
                    mma_stage<true, 1, true, true, kPacked>(wc, s, stage, slab0, slab_n, act_stride,
                                                            count, tiles, acc);
                } else if (fast && count == 1) {
                    mma_stage<true, 1, false, true, kPacked>(wc, s, stage, slab0, slab_n,
                                                             act_stride, count, tiles, acc);
                } else if (fast && tiles == 1 && (stage + 1) * kStageBlocks <= kb) {
                    mma_stage<true, 1, true, false, kPacked>(wc, s, stage, slab0, slab_n,
                                                             act_stride, count, tiles, acc);
                } else if (fast && tiles == 1) {
                    mma_stage<true, 1, false, false, kPacked>(wc, s, stage, slab0, slab_n,
                                                              act_stride, count, tiles, acc);
                } else if (fast && tiles == 2) {
                    mma_stage<true, 2, false, false, kPacked>(wc, s, stage, slab0, slab_n,
                                                              act_stride, count, tiles, acc);
                } else if (fast) {
                    mma_stage<true, kTokenTiles, false, false, kPacked>(
                        wc, s, stage, slab0, slab_n, act_stride, count, tiles, acc);
                } else {
                    mma_stage<false, kTokenTiles, false, false, kPacked>(
                        wc, s, stage, slab0, slab_n, act_stride, count, tiles, acc);
                }
                __syncwarp(); /* the slot is read before a later stage overwrites it */
            }
        }
#if (MXMOE_SKINNY_LAB & 8)
        if (row0 == begin) { /* once the loop's last results are in (a move waits for them) */
            uint32_t ready;
            asm volatile("add.u32 %0, %1, %2;"
                         : "=r"(ready)
                         : "r"(__float_as_uint(acc[0][0])), "r"(__float_as_uint(acc[0][2])));
            (void)ready;
            MXMOE_SKINNY_STAMP(kLoop0 + warp);
        }
#endif
        if (count == 1) { /* a decode step: two results a lane of t = 0 in a short, straight
                             path for BF16 (the epilogue runs once a CTA, cold: its instructions
                             come in one miss after another, bench/NOTES.md v23) */
            const int64_t n = n0 + warp * kWarpRows + g;
            if (t == 0) {
                const int64_t out_row = kTokens ? pair_list[row0] : gemm_out_row(args, row0);
                const bool has0 = n < args.n, has1 = n + 8 < args.n;
                float v0 = acc[0][0], v1 = acc[0][2];
                if (args.bias != nullptr) {
                    const int64_t b = expert * args.n + n;
                    v0 += has0 ? mxmoe_load_float(args.bias, args.bias_dtype, b) : 0.0f;
                    v1 += has1 ? mxmoe_load_float(args.bias, args.bias_dtype, b + 8) : 0.0f;
                }
                const int64_t i0 = out_row * args.n + n;
                if (args.out_dtype == MXMOE_BF16) {
                    uint16_t* o = static_cast<uint16_t*>(args.out) + i0;
                    if (has0) {
                        o[0] = mxmoe_f32_to_bf16(v0);
                    }
                    if (has1) {
                        o[8] = mxmoe_f32_to_bf16(v1);
                    }
                } else {
                    if (has0) {
                        mxmoe_store_float(args.out, args.out_dtype, i0, v0);
                    }
                    if (has1) {
                        mxmoe_store_float(args.out, args.out_dtype, i0 + 8, v1);
                    }
                }
            }
            continue;
        }
#pragma unroll
        for (int ti = 0; ti < kTokenTiles; ti++) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int64_t n = n0 + warp * kWarpRows + g + (q / 2) * 8;
                const int tok = ti * 8 + 2 * t + q % 2;
                if (ti < tiles && n < args.n && tok < count) {
                    float v = acc[ti][q];
                    if (args.bias != nullptr) {
                        v += mxmoe_load_float(args.bias, args.bias_dtype, expert * args.n + n);
                    }
                    const int64_t out_row =
                        kTokens ? pair_list[row0 + tok] : gemm_out_row(args, row0 + tok);
                    mxmoe_store_float(args.out, args.out_dtype, out_row * args.n + n, v);
                }
            }
        }
    }
#if (MXMOE_SKINNY_LAB & 8)
    MXMOE_SKINNY_STAMP(kStored);
    MXMOE_SKINNY_STAMP(kExitGlobal, true);
    if (threadIdx.x == 0 && blockIdx.x < kStampCtas) {
        unsigned smid;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
        g_skinny_stamps[blockIdx.x][kSmid] = smid + 1; /* 0: the CTA left early */
    }
#endif
}


} // namespace

bool mxmoe_grouped_gemm_skinny_init(mxmoe_ctx* ctx) {
    (void)ctx;
    const int smem = (int)smem_bytes(kMaxBlocks);
    const auto allow = [smem](auto kernel) {
        return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) ==
               cudaSuccess;
    };
    bool ok = allow(grouped_gemm_skinny_kernel<false>) && allow(grouped_gemm_skinny_kernel<true>) &&
              allow(grouped_gemm_skinny_kernel<false, true>) &&
              allow(grouped_gemm_skinny_kernel<true, true>);
    cudaGetLastError(); /* a failure only means: not here */
    return ok;
}

bool mxmoe_grouped_gemm_skinny_supported(mxmoe_ctx* ctx, const gemm_args* args) {
    return cuda_state(ctx)->skinny_ready && !args->a_swizzled && args->num_experts <= kMaxExperts &&
           args->k / 32 <= kMaxBlocks && args->rows <= INT32_MAX / 2 &&
           ((uintptr_t)args->a_packed | (uintptr_t)args->w_packed) % 16 == 0;
}

/* A grid of `ctas` (1 or more) of the kernel. */
template <bool kTokens>
static mxmoe_status launch_skinny(mxmoe_ctx* ctx, const gemm_args* args,
                                  const projection_tokens& tk, int64_t ctas) {
    if (ctas > INT32_MAX) {
        return mxmoe_fail(ctx, MXMOE_ERR_UNSUPPORTED,
                          "grouped_gemm: %lld tiles exceed the CUDA grid", (long long)ctas);
    }
#if (MXMOE_SKINNY_LAB & 8)
    lab_stamps_clear(ctx, &g_skinny_stamps, sizeof g_skinny_stamps, "MXMOE_SKINNY_STAMPS");
#endif
    const auto kernel = args->w_repacked ? grouped_gemm_skinny_kernel<kTokens, true>
                                         : grouped_gemm_skinny_kernel<kTokens>;
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, kernel, (unsigned)ctas, kThreads,
                                     smem_bytes(args->k / 32), *args, tk));
#if (MXMOE_SKINNY_LAB & 8)
    lab_stamps_write(ctx, &g_skinny_stamps, sizeof g_skinny_stamps, "MXMOE_SKINNY_STAMPS");
#endif
    return MXMOE_OK;
}

mxmoe_status mxmoe_launch_grouped_gemm_skinny(mxmoe_ctx* ctx, const gemm_args* args) {
    if (args->rows == 0) {
        return MXMOE_OK;
    }
    const int64_t row_tiles = (args->n + kTileRows - 1) / kTileRows;
    const int64_t active = args->num_experts < args->rows ? args->num_experts : args->rows;
    return launch_skinny<false>(ctx, args, projection_tokens{}, row_tiles * active);
}

mxmoe_status mxmoe_launch_projection_skinny(mxmoe_ctx* ctx, const gemm_args* args,
                                            const projection_tokens* tokens) {
    if (args->rows == 0) {
        return MXMOE_OK;
    }
    const int64_t row_tiles = (args->n + kTileRows - 1) / kTileRows;
    return launch_skinny<true>(ctx, args, *tokens, row_tiles * args->rows);
}
