/*
 * grouped_gemm_sm90.cu — the Hopper (sm_90a) W4A4 grouped GEMM on FP8 tensor cores.
 *
 * Numerics. 2·E2M1 values need 4 significant bits, so every E2M1 value times a power of two in
 * [2^-8, 2^6] is an exact E4M3 number. Per output row and 128-K chunk (4 MX blocks) we take the
 * chunk's largest block scale smax and encode each block's elements as e2m1 · 2^(s - smax + 6)
 * in E4M3 (a 16-entry byte table per shift, E4M3 subnormals included): blocks down to 14
 * binades below the chunk's largest are exact; blocks further down are rounded to nearest in
 * E4M3 (at worst flushed to zero, never worse than dropping them). Both operands are encoded so;
 * one wgmma chain of 4 x k32 sums the chunk on the tensor cores, and the chunk's partial sum is
 * promoted into FP32 accumulators with the factor 2^(smax_w - 133) · 2^(smax_a - 133) (for the
 * weights smax_w is at least 7, which keeps the factor a normal FP32 number). Hopper's
 * FP8 MMA keeps about 13 mantissa bits while it accumulates (products are exact), so the chunk
 * sum carries a relative error of order 2^-13 of the chunk's sum of |products| — the documented
 * bound (include/mxmoe.h, tested in tests/gpu) — and the promotion every 128 K keeps it from
 * growing with K (DeepGEMM's scheme). (v33: a weight row's reference is its 256-K span's
 * largest scale, so that where every token of a tile is on its reference the narrow tiles sum
 * a span in one wgmma chain and promote once, half their promotions; the 160- and 192-token
 * tiles do so for their first part's tokens. v35: only where the span's reference rounds no
 * block the chunk's own keeps exact, as the contract asks; else the row's words keep their
 * chunks' references and say so, and its warpgroup sums chunk by chunk.)
 * Token units (v10b). A token's chunk may be encoded against the token's largest scale over K
 * instead (where that keeps it exact, which it nearly always does); then its factor is 1 in
 * units of that scale, the tile accumulates in the tokens' units, and a tile whose tokens are
 * all so encoded promotes with one FFMA an element and no factor loads (the promotion was a
 * third of the MMA pipeline's rate, dev/cuda/wgmma_rate.cu); the units become values in the
 * epilogue (powers of two: exact). The encoding is as exact as the chunk-relative one.
 *
 * Operands. The weights are the wgmma A operand, straight from registers: a consumer thread
 * reads its rows' packed nibbles from shared memory and turns them into the A fragment with two
 * byte permutes per 4 values. The K order inside a chunk is permuted (thread q of a quad holds
 * block q, word t at k-step t) — any permutation is fine as long as both operands use it, and
 * this one needs no data exchange between threads. The tokens are the B operand (swapped
 * operands: the expert's weights fill the 64-row side even for one token); a prepass converts
 * them once into E4M3 rows in the same permuted order (plus one FP32 factor per row and chunk),
 * so the GEMM's producer only copies them into the 128-byte swizzled layout wgmma reads. The
 * prepass (sm90_prepass.cu) reads MXFP4 rows (act_e4m3_kernel), or for a projection the tokens
 * themselves, which it quantizes beside the plan (token_e4m3_kernel, v26). The encoding both
 * sides share (the shift tables, the chunk and unit words) is in sm90_e4m3.cuh.
 *
 * Scales. Two passes before the GEMM (sm90_prepass.cu) take all scale work off its copy path:
 * the activation prepass above writes one FP32 factor per row and chunk, and the weight-scale
 * pass one word per weight row and chunk (the chunk's largest scale and each block's shift-table
 * index) for the experts this call uses (one word per 64 packed weight bytes), or once for all
 * of them where the weights are prepared (mxmoe_weights_prepare).
 *
 * Work split. A CTA = one producer thread (per chunk, four TMA boxes: packed weights, their
 * words, E4M3 activations swizzled by the TMA itself, their factors; a fifth at a tile's first
 * and last chunk, the tokens' unit words; all counted on the stage's mbarrier) + two consumer
 * warpgroups (64 weight rows each; three at BN = 128), hand-off through an S-stage ring of
 * mbarriers; results leave through a shared-memory slab as 16-byte row runs, written out by a
 * store warp per consumer warpgroup where one CTA holds the SM (v27).
 * Tiles (expert, 64 output columns a consumer warpgroup, BN tokens) are enumerated per expert
 * from the device offsets (no host synchronisation) and distributed persistently over the CTAs
 * that fit on the SMs (one per SM, two at BN <= 64); consecutive tiles share weights so they
 * meet in L2. The consumer warpgroups run freely, each issuing one chunk's MMAs at a time.
 * Files. sm90_gemm_layout.cuh: the CTA (warpgroups, stages, slabs, registers);
 * sm90_gemm_schedule.cuh: tiles and units; sm90_gemm_consumer.cuh: conversion, MMAs, promotion,
 * epilogue; this file: the producer, the store warps, the kernel and its launch. sm90_e4m3.cuh:
 * the encoding shared with the operand passes (sm90_prepass.cu); sm90_ptx.cuh and
 * sm90_wgmma.cuh: PTX wrappers; sm90_gemm_stamps.cuh: the lab timeline.
 * History (dev/cuda/, bench/NOTES.md): v3 converted the activations in the producer for every
 * tile (23x redundant for gpt-oss), which made the producer the bottleneck; v4 = the prepass;
 * v7 = TMA and the staged epilogue; v8 = stmatrix epilogue, ping-pong, and at BN = 128 the
 * scale decode in the producer (converting the weights there too was measured slower, with one
 * ring and with three: four producer warps cannot convert what eight consumers do). v9 found
 * the producer's per-chunk path (its scale loads and decode, 128 cp.async, 257 arrivals a
 * chunk) to be the copies' ceiling: every instruction added there slowed the whole kernel, and
 * the copies alone took ~80 % of its time although L2 bandwidth, ring depth and load distance
 * were ruled out. v10 = the weight-scale pass and the one-thread producer (-6 % at gpt-oss
 * n = 8192), v10b = token units (-9 % more); after them the copies no longer set the pace, the
 * consumers' conversion and promotion do (NOTES, v10 outcome: knock-outs). v11 = two CTAs per
 * SM at BN <= 64 (-6..-15 % at n = 512), prepared weight words (mxmoe_weights_prepare), and
 * v8's ping-pong removed (the warpgroups issuing their MMAs in turn measured 2-4 % slower
 * than free-running once the consumers were issue-bound). v17 = 192-token tiles where experts
 * average 384 rows or more: a chunk's weight conversion (a fixed cost per weight row) then
 * feeds 1.5x the MMA work; the producer thread gives its registers down to 24 so that the
 * consumers hold 96 + 96 accumulators in 240 (-4..-13 % at n = 4096 and 8192, NOTES v16).
 * v19 = three consumer warpgroups at BN = 128: each warpgroup's chunk is a chain (wait,
 * convert, MMAs, promote) and two such chains left the tensor cores idle half the time; the
 * third fits in 160 registers because each chunk's tokens go through the MMAs in two halves
 * sharing 32 accumulators (-5..-10 % at the 128-token points, NOTES v19). v20 = the first
 * stages' weights copied before the PDL wait, with the prepass releasing the GEMM early where
 * its grid is small (-2..-5 % at n = 64), and every consumer thread arriving on the empty
 * barrier (no warp sync a chunk: -2..-4 % from n = 512). Measured and dropped (NOTES v20/v21):
 * L2 prefetch of the weights, token rows gathered by one-row TMA copies (4x slower: the TMA
 * unit's cost is per copy instruction), the loop unrolled by the ring, 256-token tiles in
 * four parts. v26 = the token prepass: quantizer and MXFP4 prepass in one kernel beside the
 * plan (-4 us at n = 512, -1 % .. -5 % at gpt-oss n >= 4096). v27 = the epilogue's slabs at
 * 16-bit pitch (FP32 results in two passes), which gives the three-warpgroup ring a 4th stage
 * (-2..-3 % at gpt-oss-20b n = 512 and 4096, the rest even or within 1 %). v28 = store warps:
 * where one CTA holds the SM, warps 1-3 of the producer warpgroup write the consumers' slabs
 * out (-3 % at qwen3 n = 8192; an mbarrier hand-off measured +10 %: its waits cost the
 * consumers' loop its uniform registers), and the token prepass's rows leave as 512
 * contiguous bytes a warp store (its pair-row stores were 80 % of its time; -5.5 % at qwen3
 * n = 4096 and 8192). v29 = the token prepass's scattered factor stores with an L2 evict_last
 * policy (that kernel -10 % at n = 8192). v30 = at BN = 192 each chunk's MMAs in two commit
 * groups, the first half of the tokens promoted while the second half's MMAs run (-1.6 % at
 * qwen3 n = 8192, -1 % eager at gpt-oss-20b n = 4096). v33 = the narrow tiles' 256-K spans in
 * one wgmma chain (qwen3 n = 512 -7 %). v34 = the token tile from the padding each width costs
 * (padded_work) and a 160-token tile for experts averaging ~128 rows (deepseek-v3 n = 4096
 * -8 % and -8 % more, gpt-oss-120b n = 4096 -10 %, same-call A/Bs). v37 = the tokens' unit
 * words carry their unit's FP32 bits (the epilogue decoded each token's unit in ~8
 * instructions), and at BN = 192 the store warps copy whole rows without a branch (a 6-chunk
 * tile's slab outlasted the tile: GEMM-2 at qwen3 n = 8192 334 -> 290 us, Nsight). v41 = lean
 * instances for BF16 results without a K-split. v42 = a 176-token tile where experts' rows
 * pad less in it than in 192 (gpt-oss-20b n = 8192: 1024 rows a mean, 8 % fewer tokens
 * through the MMAs in as many tiles: -4.5 %), and a 144-token tile where they pad less in it
 * than in 160 (256 rows a mean: deepseek-v3 and gpt-oss-120b n = 8192 -5 and -6.6 %), and
 * 48 tokens instead of 64 (17-32 rows a mean). v43 = 8-token tiles up to 4 rows a mean
 * (deepseek-v3 n = 64 -6 %), and 80 tokens by two warpgroups for 56-72, where three
 * warpgroups' 128 ran their second half of 64 tokens for half the experts (gpt-oss-20b
 * n = 512 -15 %). v44 = 96-token tiles for 73-84 a mean over K of 20 chunks or more, to 88
 * over 32, and 8 tokens at 5 a mean over 32 (deepseek-v3 n = 2720 -9.5 %, n = 160 -4 %); the
 * token-tile rule in its own header (sm90_tile_rule.cuh).
 */
#include <cuda.h>         /* CUtensorMap and its enums only: the encoder comes from the runtime */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/lab_stamps.cuh"
#include "cuda/sm90_e4m3.cuh"
#include "cuda/sm90_gemm_consumer.cuh"
#include "cuda/sm90_gemm_layout.cuh"
#include "cuda/sm90_gemm_schedule.cuh"
#include "cuda/sm90_gemm_stamps.cuh"
#include "cuda/sm90_prepass.cuh"
#include "cuda/sm90_ptx.cuh"
#include "cuda/sm90_tile_rule.cuh"
#include "cuda/sm90_wgmma.cuh"

namespace {

/* Device code below is compiled for the host pass and sm_90a only (sm_80 gets an empty kernel). */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* Starts the copies of chunk c of tile t into stage `st` (one thread): tile_n weight rows x 64
 * packed bytes, BN activation rows x 128 E4M3 bytes (swizzled by the TMA as wgmma reads them),
 * the rows' scale words and the BN rows' factors, all counted on the stage's full barrier.
 * Rows past the tile (the next expert's, or zeros past the tensor) only feed outputs the
 * epilogue skips (and their words are left out of the consumers' span vote). */
template <int BN>
__device__ __forceinline__ void issue_copies(const operand_maps& m, const tile& t, int64_t n, int c,
                                             int nc, bool units, uint8_t* st, uint64_t* full,
                                             bool weights, bool words, bool activations) {
    /* units: the unit's first chunk (the consumers vote) or its last (they scale). The packed
     * weights (with the stage's whole byte count), their words and the activation boxes may be
     * issued apart: the first stages' weights go before the GEMM waits for the prepass. */
    using L = stage_layout<BN>;
    const int w_row = (int)(t.expert * n + t.n0), a_row = (int)t.row_begin;
    const int word_row = (int)(t.expert * words_per_expert(n) + t.n0);
    constexpr int rows = tile_n<BN>();
    if (weights) {
        mbar_arrive_expect_tx(full, ((MXMOE_SM90_LAB & 16) ? 0 : rows * kWeightBox + rows * 4) +
                                        ((MXMOE_SM90_LAB & 32) ? 0 : kActRows<BN> * kChunk) +
                                        ((MXMOE_SM90_LAB & 64) ? 0 : L::factor_box * 4) +
                                        (units ? L::factor_box * 4 : 0));
        if (!(MXMOE_SM90_LAB & 16)) {
            tma_load_2d(st + L::w_raw, &m.w, c * 64, w_row, full);
        }
    }
    if (words && !(MXMOE_SM90_LAB & 16)) {
        tma_load_2d(st + L::w_words, &m.words, word_row, c, full);
    }
    if (!activations) {
        return;
    }
    if (units) {
        tma_load_2d(st + L::a_units, &m.factors, a_row & ~3, nc, full);
    }
    if (!(MXMOE_SM90_LAB & 32)) {
        tma_load_2d(st + L::b_tile, &m.a, c * kChunk, a_row, full);
    }
    if (!(MXMOE_SM90_LAB & 64)) {
        tma_load_2d(st + L::a_factor, &m.factors, a_row & ~3, c, full);
    }
}

#endif /* host or sm_90a */

/* A K-split's two FP32 partials (the first with the bias) summed into out, in out's dtype, for
 * the rows the experts cover (rows from offsets[E] on stay untouched); nothing when the GEMM
 * did not split. */
__global__ void split_reduce_kernel(gemm_args a) {
    pdl_wait(); /* launched by launch_pdl after the GEMM: its partials and flag are complete */
    pdl_release();
    if (*a.split_flag == 0) {
        return;
    }
    const int64_t end = a.offsets[a.num_experts];
    const int64_t count = (end < 0 ? 0 : (end > a.rows ? a.rows : end)) * a.n;
    const float* p1 = a.partials + a.rows * a.n;
    GRID_STRIDE_LOOP(i, count) {
        const int64_t o = a.out_rows != nullptr ? gemm_out_row(a, i / a.n) * a.n + i % a.n : i;
        mxmoe_store_float(a.out, a.out_dtype, o, __fadd_rn(a.partials[i], p1[i]));
    }
}

/* K parts per tile: 2 (a K-split) where K is long and the grid's one round of whole tiles would
 * leave half its CTAs or more idle: then a tile's two halves run side by side (every CTA decides
 * alike). Only there: the rule before also split where the last of several rounds was under half
 * full, which shortened the count of rounds but not the time (v39: without those splits
 * deepseek-v3 n = 8 143 -> 137 us, n = 16 -1.5 %), and this way the host can tell from the rows
 * alone when no split can happen and leave out the partials' reduction (launch). */
[[maybe_unused]] __device__ __forceinline__ int k_parts(const gemm_args& a, int total, int grid,
                                                        int nc) {
    const bool split = a.partials != nullptr && (a.force_split || (nc >= 32 && 2 * total <= grid));
    return split ? 2 : 1;
}

/* store_slab for a store warp (at 176 and 192 tokens), where every copy is a whole 16 bytes
 * (aligned output, the lane's columns inside N): no branch a row, the store one predicated
 * instruction, so that the out rows of kRows rows load together and no load waits behind a branch.
 * (Row by row, behind a branch, each row took two dependent round trips to shared memory, and
 * beside the MMAs' shared-memory reads a 6-chunk tile's slab took longer than the tile: GEMM-2 at
 * K = 768, whose consumers waited 12 % of the time for it, Nsight.) The three-warpgroup kernel
 * keeps the row-at-a-time copy: its producer warpgroup has 32 registers, and this loop there
 * made ptxas spill the consumers' unit walk. */
template <int BN, int ES>
__device__ __forceinline__ void store_warp_slab(const gemm_args& a, const uint8_t* slab, void* out,
                                                int col0, int lane) {
    constexpr int pitch = slab_pitch<ES>(), units = 4 * ES, per_unit = 16 / ES;
    constexpr int rows = pass_rows<BN, ES>(), step = 32 / units, kRows = 4;
    const int n_cols = (int)a.n, n = col0 + (lane % units) * per_unit;
    if (BN < 176 || (MXMOE_SM90_LAB & 128) || (uintptr_t)out % 16 != 0 || (n_cols * ES) % 16 != 0 ||
        n + per_unit > n_cols) {
        store_slab<BN, ES>(a, slab, out, col0, lane, 32);
        return;
    }
    static_assert(BN < 176 || rows % (kRows * step) == 0, "every lane copies as many rows");
    const uint8_t* src = slab + (lane % units) * 16;
    uint8_t* col = static_cast<uint8_t*>(out) + (int64_t)n * ES;
#pragma unroll kRows
    for (int r = lane / units; r < rows; r += step) {
        const int32_t out_r = *reinterpret_cast<const int32_t*>(slab + r * pitch + 64 * ES);
        const uint4 v = *reinterpret_cast<const uint4*>(src + r * pitch);
        store16_if(out_r >= 0, col + (int64_t)out_r * n_cols * ES, v);
    }
}

/* A store warp (warps 1 .. consumer_wgs of the producer warpgroup, v27) writes consumer
 * warpgroup wg's results out: at each of the CTA's units it takes the slab the warpgroup filled
 * (one pass, two for FP32) and hands it back, so that the warpgroup goes on to its next unit
 * at once. (Stored by the consumers, the rows took ~1500-2100 of a unit's ~3100-3500 cycles of
 * epilogue; knocked out, the stores measured 4-9 % of the op.) */
template <int BN, bool Lean>
__device__ void store_warp(const gemm_args& a, const smem_header& h, int wg) {
    /* what it needs, taken again here: values carried past setmaxnreg from the common set-up
     * made the consumers spill */
    const int lane = threadIdx.x % 32, nc = (int)((a.k + kChunk - 1) / kChunk);
    const int total = h.tile_prefix[a.num_experts];
    const int ks = k_parts(a, total, (int)gridDim.x, nc), units = total * ks;
    const uint8_t* slab = reinterpret_cast<const uint8_t*>(&h) + kHeaderBytes +
                          stage_layout<BN>::stages * stage_layout<BN>::bytes +
                          wg * slab_bytes<BN>();
    const bool f32 = keeps_f32_pass<BN, Lean>() && (ks == 2 || a.out_dtype == MXMOE_F32);
    /* the consumers' units (unit_walk), in as few registers as this warp has */
    for (int unit = (int)blockIdx.x; unit < units; unit += (int)gridDim.x) {
        const int part = ks == 2 ? unit & 1 : 0;
        if (part == 1 && nc == 1) { /* a K part without chunks has no epilogue */
            continue;
        }
        void* out = ks == 2 ? static_cast<void*>(a.partials + (int64_t)part * a.rows * a.n) : a.out;
        for (int p = 0; p < (f32 ? 2 : 1); p++) {
            /* the warpgroup about to fill the slab (read out by the previous pass), then filled */
            named_barrier_sync(kSlabFree + wg, kSlabThreads);
            named_barrier_sync(kSlabFull + wg, kSlabThreads);
            if (f32) {
                store_warp_slab<BN, 4>(a, slab, out, h.slab_col0[wg], lane);
            } else {
                store_warp_slab<BN, 2>(a, slab, out, h.slab_col0[wg], lane);
            }
        }
    }
}

/* Packed: the weights' codes are in the Hopper sign packing (gemm_args.w_repacked). */
template <int BN, bool Lean = false, bool Packed = false>
__global__ void __launch_bounds__(cta_threads<BN>(), ctas_per_sm<BN>())
    grouped_gemm_sm90_kernel(gemm_args a, const __grid_constant__ operand_maps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) /* empty elsewhere, and never launched there */
    using L = stage_layout<BN>;
    constexpr int S = L::stages;
    extern __shared__ uint8_t smem_raw[];
    uint8_t* base = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    smem_header& h = *reinterpret_cast<smem_header*>(base);
    uint8_t* stages = base + kHeaderBytes;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int E = (int)a.num_experts;
    const int n_tiles = (int)((a.n + tile_n<BN>() - 1) / tile_n<BN>());
    if (warp == 0) { /* tiles per expert, prefix-summed */
        int running = 0;
        for (int base_e = 0; base_e < E; base_e += 32) {
            const int e = base_e + lane;
            int count = 0;
            if (e < E) {
                int64_t b, end;
                expert_rows(a.offsets, e, a.rows, &b, &end);
                count = (int)((end - b + BN - 1) / BN) * n_tiles;
            }
#pragma unroll
            for (int d = 1; d < 32; d *= 2) {
                int v = __shfl_up_sync(0xFFFFFFFFu, count, d);
                count += lane >= d ? v : 0;
            }
            if (e < E) {
                h.tile_prefix[e + 1] = running + count;
            }
            running += __shfl_sync(0xFFFFFFFFu, count, 31);
        }
        if (lane == 0) {
            h.tile_prefix[0] = 0;
        }
    } else if (warp == 1) {
        if (lane < S) {
            mbar_init(&h.full[lane], 1); /* the producer's expect_tx; the TMA's bytes */
            mbar_init(&h.empty[lane], 128 * consumer_wgs<BN>()); /* each consumer thread */
        }
    } else if (tid >= 64 && tid < 128) {
        reinterpret_cast<uint32_t*>(h.table)[tid - 64] = kE4m3Tables.words[tid - 64];
    }
    __syncthreads();

    const int total = h.tile_prefix[E], grid = (int)gridDim.x;
    const int nc = (int)((a.k + kChunk - 1) / kChunk);
    const int ks = k_parts(a, total, grid, nc), units = total * ks;
    const bool split = ks == 2;
    int G = 0; /* chunks this CTA processes */
    for (unit_walk w((int)blockIdx.x, grid, ks, nc); w.unit < units; w.unit += grid, w.range()) {
        G += w.c1 - w.c0;
    }
    /* The weights need nothing from the prepass (they are the caller's, complete before this
     * call's first kernel waited), nor do their words where prepared (else the weight-scale
     * pass writes them just before: after the wait): the first stages' weight boxes start
     * before the wait, their activation boxes after it, so the GEMM streams while the prepass
     * runs. */
    const int early = (MXMOE_SM90_LAB & 512) ? 0 : min(G, S);
    const bool words_early = a.w_words_prepared != nullptr;
    if (tid == 0) {
        unit_walk w((int)blockIdx.x, grid, ks, nc);
        tile t = {};
        for (int g = 0; g < early; g++) {
            if (w.first()) { /* published to the consumers by the stage's arrival */
                t = decode_tile<BN>(a, h, n_tiles, w.tile_index());
                *reinterpret_cast<tile*>(stages + g * L::bytes + L::tile_at) = t;
            }
            issue_copies<BN>(maps, t, a.n, w.c, nc, w.first() || w.last(), stages + g * L::bytes,
                             &h.full[g], true, words_early, false);
            w.advance();
        }
    }
    pdl_wait(); /* launched by launch_pdl: the activation prepass's rows are complete from here
                 * (the set-up above read only the offsets, complete before that prepass ran,
                 * and the weights) */
    if (a.partials != nullptr && blockIdx.x == 0 && tid == 0) {
        *a.split_flag = split ? 1u : 0u; /* for split_reduce_kernel */
    }
    if ((MXMOE_SM90_LAB & 512)) { /* lab: no GEMM at all (what the prepasses and launches cost) */
        return;
    }

    if (warp < 4) { /* ---------------- producer warpgroup ---------------- */
        setmaxnreg_dec<regs<BN>::producer>();
        if (kStoreWarps<BN> && warp >= 1 && warp <= consumer_wgs<BN>()) {
            if (!(MXMOE_SM90_LAB & 4)) {
                store_warp<BN, Lean>(a, h, warp - 1);
            }
            return;
        }
        if (tid != 0) {
            return;
        }
        /* One thread: the stage's four boxes are all there is to a chunk, so the ring is fed as
         * fast as the TMA and the empty barriers allow. (Four warps decoding each row's scales
         * and copying factors per chunk, before the weight-scale pass, set the kernel's pace.) */
        tile t = {};
        unit_walk w((int)blockIdx.x, grid, ks, nc);
        int s = 0, phase = 0; /* chunk g's stage, kept without divisions */
        for (int g = 0; g < G; g++) {
            if (w.first()) { /* for the consumers too: their copy arrives with the stage */
                t = decode_tile<BN>(a, h, n_tiles, w.tile_index());
            }
            if (g >= S) {
                mbar_wait(&h.empty[s], phase ^ 1); /* chunk g - S released */
            }
            if (w.first() && g >= early) { /* published to the consumers by the arrival */
                *reinterpret_cast<tile*>(stages + s * L::bytes + L::tile_at) = t;
            }
            issue_copies<BN>(maps, t, a.n, w.c, nc, w.first() || w.last(), stages + s * L::bytes,
                             &h.full[s], g >= early, g >= early || !words_early, true);
            w.advance();
            if (++s == S) {
                s = 0, phase ^= 1;
            }
        }
        return;
    }

    /* ---------------- consumer warpgroups ---------------- */
    setmaxnreg_inc<regs<BN>::consumer>();
    consumer<BN, Lean, Packed> cs(a, h, stages, nc, warp, lane,
                                  unit_walk((int)blockIdx.x, grid, ks, nc));
    if constexpr (token_halves<BN>()) {
        float acc[BN / 4];
        uint32_t frag[4][4];
        chunk_state st;
        for (int g = 0; g < G; g++) {
#if (MXMOE_SM90_LAB & 1024)
            cs.halves[0] = clock64();
#endif
            cs.prepare(frag, st);
#if (MXMOE_SM90_LAB & 1024)
            cs.halves[1] = cs.waited;
            cs.halves[2] = clock64();
#endif
            cs.chunk_in_halves(acc, frag, st);
#if (MXMOE_SM90_LAB & 1024)
            cs.halves[6] = clock64();
            lab_stamps_put(g, cs.halves);
#endif
        }
        return;
    }
    constexpr int NA = BN / 2;
    if constexpr (BN >= 144 && MXMOE_SM90_LAB == 0) { /* consumer::kParts groups a chunk */
        constexpr int kParts = consumer<BN, Lean, Packed>::kParts;
        float acc[kParts][NA / kParts];
        uint32_t frag[4][4];
        chunk_state st;
        for (int g = 0; g < G; g++) {
            cs.prepare(frag, st);
            cs.chunk_in_parts(acc, frag, st);
        }
    } else {
        consume_whole_chunks(cs, G);
    }
#else
    (void)a, (void)maps;
#endif
}

/* A 2-D tensor map of bytes (`words` false) or of 4-byte words: `outer` rows of `inner` entries,
 * `pitch` bytes apart; boxes of box_outer x box_inner entries. */
bool encode_map(mxmoe_ctx* ctx, CUtensorMap* map, const void* base, bool words, uint64_t inner,
                uint64_t outer, uint64_t pitch, uint32_t box_inner, uint32_t box_outer,
                bool swizzle_128) {
    auto encode =
        reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(cuda_state(ctx)->encode_tensor_map);
    const cuuint64_t dims[2] = {inner, outer}, strides[1] = {pitch};
    const cuuint32_t box[2] = {box_inner, box_outer}, element_strides[2] = {1, 1};
    return encode(map, words ? CU_TENSOR_MAP_DATA_TYPE_UINT32 : CU_TENSOR_MAP_DATA_TYPE_UINT8, 2,
                  const_cast<void*>(base), dims, strides, box, element_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE,
                  swizzle_128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* The instance for args: lean or not (below), and for canonical or packed codes. */
template <int BN, bool Lean> auto instance(bool packed) {
    return packed ? grouped_gemm_sm90_kernel<BN, Lean, true> : grouped_gemm_sm90_kernel<BN, Lean>;
}

template <int BN> mxmoe_status launch(mxmoe_ctx* ctx, gemm_args* args) {
    constexpr int bytes = smem_bytes<BN>(); /* allowed once, in mxmoe_grouped_gemm_sm90_init */
    const int64_t n_tiles = (args->n + tile_n<BN>() - 1) / tile_n<BN>();
    const int64_t bound = ((args->rows + BN - 1) / BN + args->num_experts) * n_tiles;
    const int64_t sms =
        (int64_t)cuda_state(ctx)->sm_count * cuda_state(ctx)->sm90_resident[bn_index<BN>()];
    const unsigned grid = (unsigned)(bound < sms ? bound : sms);
    /* No K-split can happen (k_parts) where even the fewest tiles these rows make, all in as few
     * experts as possible, fill more than half the grid: then no partials, and no reduction
     * launched after the GEMM. (Rows that no expert here covers count as covered: where many
     * are dropped, a split that would pay may be missed; the result is the same.) */
    if (!args->force_split && 2 * ((args->rows + BN - 1) / BN) * n_tiles > (int64_t)grid) {
        args->partials = nullptr;
        args->split_flag = nullptr;
    }
    /* The lean instance where the results are BF16 and no K-split can happen. */
    const bool packed = args->w_repacked != 0;
    const auto kernel = args->out_dtype == MXMOE_BF16 && args->partials == nullptr
                            ? instance<BN, true>(packed)
                            : instance<BN, false>(packed);
    const uint64_t rows = (uint64_t)args->rows, en = (uint64_t)(args->num_experts * args->n);
    const uint64_t en4 = (uint64_t)(args->num_experts * words_per_expert(args->n));
    const uint64_t nc = (uint64_t)((args->k + kChunk - 1) / kChunk), kc = chunk_cols(args->k);
    operand_maps m;
    MXMOE_RETURN_IF(
        !encode_map(ctx, &m.a, args->a_e4m3, false, kc, rows, kc, kChunk, kActRows<BN>, true) ||
            !encode_map(ctx, &m.w, args->w_packed, false, (uint64_t)(args->k / 2), en,
                        (uint64_t)(args->k / 2), kWeightBox, tile_n<BN>(), false) ||
            !encode_map(ctx, &m.words, args->w_words, true, en4, nc, en4 * 4, tile_n<BN>(), 1,
                        false) ||
            !encode_map(ctx, &m.factors, args->a_factors, true, rows, nc + 1, word_pitch(rows),
                        stage_layout<BN>::factor_box, 1, false),
        ctx, MXMOE_ERR_BACKEND, "grouped_gemm: cuTensorMapEncodeTiled refused the operands");
#if (MXMOE_SM90_LAB & 1024)
    lab_stamps_clear(ctx, &g_sm90_stamps, sizeof g_sm90_stamps, "MXMOE_SM90_STAMPS");
    lab_stamps_clear(ctx, &g_sm90_epi_stamps, sizeof g_sm90_epi_stamps, "MXMOE_SM90_EPI_STAMPS");
#endif
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, kernel, grid, cta_threads<BN>(), bytes, *args, m));
#if (MXMOE_SM90_LAB & 1024)
    lab_stamps_write(ctx, &g_sm90_stamps, sizeof g_sm90_stamps, "MXMOE_SM90_STAMPS");
    lab_stamps_write(ctx, &g_sm90_epi_stamps, sizeof g_sm90_epi_stamps, "MXMOE_SM90_EPI_STAMPS");
#endif
    return MXMOE_OK;
}

/* Grants one instance of the kernel its shared memory (all of the SM's carveout, so that two CTAs
 * fit where ctas_per_sm asks for them); the CTAs an SM then holds, 0 where refused. */
template <int BN, bool Lean, bool Packed> int grant_smem() {
    const auto kernel = grouped_gemm_sm90_kernel<BN, Lean, Packed>;
    int resident = 0;
    const bool ok = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         smem_bytes<BN>()) == cudaSuccess &&
                    cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         cudaSharedmemCarveoutMaxShared) == cudaSuccess &&
                    cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                        &resident, kernel, cta_threads<BN>(), smem_bytes<BN>()) == cudaSuccess;
    return ok ? resident : 0;
}

/* Every instance at BN, and the CTAs an SM holds: the persistent grid, one for all (launch
 * takes any with the same grid). */
template <int BN> bool allow_smem(mxmoe_ctx* ctx) {
    const int full = grant_smem<BN, false, false>(), lean = grant_smem<BN, true, false>();
    const int full_packed = grant_smem<BN, false, true>(),
              lean_packed = grant_smem<BN, true, true>();
    cuda_state(ctx)->sm90_resident[bn_index<BN>()] = full;
    return full >= 1 && lean == full && full_packed == full && lean_packed == full;
}
static_assert(sizeof(mxmoe_cuda_state::sm90_resident) == tile_widths::count * sizeof(int),
              "a resident count for each tile width");
template <int... BNs> bool allow_smem_all(mxmoe_ctx* ctx, width_list<BNs...>) {
    return (allow_smem<BNs>(ctx) && ...);
}

/* The instance of tile width bn (one of tile_widths: sm90_tile_rule.cuh picks among them). */
template <int... BNs>
mxmoe_status launch_width(mxmoe_ctx* ctx, gemm_args* args, int bn, width_list<BNs...>) {
    mxmoe_status st = MXMOE_OK;
    const bool found = ((bn == BNs && (st = launch<BNs>(ctx, args), true)) || ...);
    return found ? st
                 : mxmoe_fail(ctx, MXMOE_ERR_BACKEND, "grouped_gemm: no %d-token tile kernel", bn);
}

} // namespace

bool mxmoe_grouped_gemm_sm90_init(mxmoe_ctx* ctx) {
    int major = 0, minor = 0;
    const int dev = cuda_state(ctx)->device;
    cudaFuncAttributes attr;
    /* a compute capability 9.0 device and a binary built for it (the sm_80 build is empty) */
    bool ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
        major == 9 && minor == 0 &&
        cudaFuncGetAttributes(&attr, grouped_gemm_sm90_kernel<16>) == cudaSuccess &&
        attr.binaryVersion == 90;
    ok = ok && allow_smem_all(ctx, tile_widths{});
    /* the TMA descriptors' encoder, from the driver through the runtime (no libcuda link) */
    void* encode = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    ok = ok &&
         cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &encode, 12000,
                                          cudaEnableDefault, &found) == cudaSuccess &&
         found == cudaDriverEntryPointSuccess && encode != nullptr;
    cuda_state(ctx)->encode_tensor_map = ok ? encode : nullptr;
    cudaGetLastError(); /* a failed query above only means: not here */
    return ok;
}

/* The weights' side of mxmoe_grouped_gemm_sm90_supported. */
bool mxmoe_grouped_gemm_sm90_takes_weights(mxmoe_ctx* ctx, const gemm_args* args) {
    return cuda_state(ctx)->sm90_ready && args->num_experts <= kMaxExperts && args->k % 32 == 0 &&
           /* TMA box coordinates are int32 */
           args->num_experts * words_per_expert(args->n) <= INT32_MAX &&
           ((uintptr_t)args->w_packed | (uintptr_t)args->w_scales) % 16 == 0;
}

bool mxmoe_grouped_gemm_sm90_supported(mxmoe_ctx* ctx, const gemm_args* args) {
    return mxmoe_grouped_gemm_sm90_takes_weights(ctx, args) && !args->a_swizzled &&
           args->rows <= INT32_MAX / 2 &&
           ((uintptr_t)args->a_packed | (uintptr_t)args->a_scales) % 16 == 0;
}

/* Scratch: E4M3 activations, their factors and unit words, the weight-scale words; each
 * 256-byte aligned.
 * total = SIZE_MAX where a size overflows (the workspace layout then reports it). */
namespace {
struct scratch_layout {
    size_t factors, partials, words, total; /* partials == words: no K-split possible */
};
/* MXMOE_CUDA_KSPLIT=1 makes the GEMM split K wherever it has two chunks (tests). */
bool ksplit_forced() {
    const char* v = getenv("MXMOE_CUDA_KSPLIT");
    return v != nullptr && strcmp(v, "1") == 0;
}

/* A K-split's partials, 2 x rows x n FP32 and a flag word, where one may pay off: K of 32
 * chunks or more (2 when forced; with fewer, each half tile's fixed costs and the partials'
 * traffic outweighed the shorter schedule: gpt-oss n = 512 146 -> 182 µs at K = 23 chunks),
 * and at most 256 MB (few tiles mean few rows). */
int64_t partial_bytes(int64_t rows, int64_t k, int64_t n) {
    const int64_t nc = (k + kChunk - 1) / kChunk;
    return nc >= (ksplit_forced() ? 2 : 32) && rows <= (int64_t(1) << 25) &&
                   n <= (int64_t(1) << 25) && rows * n <= (int64_t(1) << 25)
               ? 2 * rows * n * 4 + 256
               : 0;
}
scratch_layout scratch_of(int64_t rows, int64_t k, int64_t experts, int64_t n) {
    const int64_t nc = (k + kChunk - 1) / kChunk, limit = INT64_MAX / 4;
    int64_t act = 0, fac = 0, en = 0, words = 0;
    scratch_layout l = {0, 0, 0, SIZE_MAX};
    if (k < 0 || k > limit || rows > limit || n < 0 || n > limit ||
        !mxmoe_mul_i64(rows, chunk_cols(k), &act) ||
        !mxmoe_mul_i64(nc + 1, word_pitch(rows), &fac) ||
        !mxmoe_mul_i64(experts, words_per_expert(n), &en) || en > limit ||
        !mxmoe_mul_i64(nc, word_pitch(en), &words) || act > limit || fac > limit || words > limit) {
        return l;
    }
    l.factors = (size_t)(act + 255) / 256 * 256;
    l.partials = l.factors + (size_t)(fac + 255) / 256 * 256;
    l.words = l.partials + (size_t)(partial_bytes(rows, k, n) + 255) / 256 * 256;
    l.total = l.words + (size_t)words;
    return l;
}
} // namespace

size_t mxmoe_grouped_gemm_sm90_scratch(int64_t rows, int64_t k, int64_t experts, int64_t n) {
    return scratch_of(rows, k, experts, n).total;
}

mxmoe_status mxmoe_grouped_gemm_sm90_prepare(mxmoe_ctx* ctx, const gemm_args* in,
                                             uint32_t** words) {
    *words = nullptr;
    gemm_args args = *in; /* the weights' fields only: the activation side stays empty */
    args.offsets = nullptr;
    const scratch_layout lay = scratch_of(0, args.k, args.num_experts, args.n);
    if (!mxmoe_grouped_gemm_sm90_takes_weights(ctx, &args) || lay.total == SIZE_MAX) {
        return MXMOE_OK; /* the Hopper path will not run on these weights: nothing to derive */
    }
    const size_t bytes = lay.total - lay.words;
    MXMOE_CUDA_CHECK(ctx, cudaMalloc(&args.w_words, bytes));
    mxmoe_status st = mxmoe_sm90_launch_weight_words(ctx, args);
    if (st == MXMOE_OK) {
        const cudaError_t err = cudaStreamSynchronize(cuda_stream(ctx));
        st = err == cudaSuccess ? MXMOE_OK
                                : mxmoe_fail(ctx, MXMOE_ERR_BACKEND,
                                             "weights_prepare: the weight-scale pass failed: %s",
                                             cudaGetErrorString(err));
    }
    if (st != MXMOE_OK) {
        cudaFree(args.w_words);
        return st;
    }
    *words = args.w_words;
    return MXMOE_OK;
}

mxmoe_status mxmoe_launch_grouped_gemm_sm90(mxmoe_ctx* ctx, const gemm_args* in) {
    if (in->rows == 0) { /* the dispatcher checks the offsets of such calls itself */
        return MXMOE_OK;
    }
    gemm_args args = *in;
    /* The converted activations: in the caller's workspace, else stream-ordered scratch. */
    const scratch_layout lay = scratch_of(args.rows, args.k, args.num_experts, args.n);
    const size_t need = lay.total;
    void* owned = nullptr;
    uint8_t* scratch = args.scratch;
    if (scratch == nullptr || args.scratch_bytes < need) {
        MXMOE_CUDA_CHECK(
            ctx, cudaMallocFromPoolAsync(&owned, need, cuda_state(ctx)->pool, cuda_stream(ctx)));
        scratch = static_cast<uint8_t*>(owned);
    }
    args.a_e4m3 = scratch;
    args.a_factors = reinterpret_cast<float*>(scratch + lay.factors);
    if (lay.words > lay.partials) { /* the GEMM may split K (it decides from the tile count) */
        args.partials = reinterpret_cast<float*>(scratch + lay.partials);
        args.split_flag = reinterpret_cast<unsigned*>(args.partials + 2 * args.rows * args.n);
        args.force_split = ksplit_forced();
    }
    MXMOE_FORWARD(mxmoe_sm90_launch_prepass(ctx, &args));
    if (args.w_words_prepared != nullptr) {
        args.w_words = const_cast<uint32_t*>(args.w_words_prepared); /* only read from here */
    } else {
        args.w_words = reinterpret_cast<uint32_t*>(scratch + lay.words);
        MXMOE_FORWARD(mxmoe_sm90_launch_weight_words(ctx, args));
    }

    /* Tokens per tile: sm90_tile_rule.cuh. */
    const int bn = token_tile_width(args.rows, args.num_experts, args.n, args.k);
    mxmoe_status st = launch_width(ctx, &args, bn, tile_widths{});
    if (st == MXMOE_OK && args.partials != nullptr) { /* a no-op unless the GEMM split K */
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, split_reduce_kernel,
                                         grid_for(ctx, args.rows * args.n, 256), 256, 0, args));
    }
    if (owned != nullptr) {
        MXMOE_CUDA_CHECK(ctx, cudaFreeAsync(owned, cuda_stream(ctx)));
    }
    return st;
}
