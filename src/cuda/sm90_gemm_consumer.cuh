/*
 * sm90_gemm_consumer.cuh — the Hopper GEMM's consumer warpgroups (grouped_gemm_sm90.cu): each
 * chunk's weights converted to E4M3 A fragments, its wgmma chain, the promotion into the tile's
 * FP32 accumulators, and the epilogue through the shared-memory slab.
 */
#ifndef MXMOE_CUDA_SM90_GEMM_CONSUMER_CUH
#define MXMOE_CUDA_SM90_GEMM_CONSUMER_CUH

#include <stdint.h>

#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/sm90_e4m3.cuh"
#include "cuda/sm90_gemm_layout.cuh"
#include "cuda/sm90_gemm_schedule.cuh"
#include "cuda/sm90_gemm_stamps.cuh"
#include "cuda/sm90_ptx.cuh"
#include "cuda/sm90_wgmma.cuh"

namespace {

/* Device code below is compiled for the host pass and sm_90a only. */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* Calls f(j, pair) for j = J0 .. J0 + NJ - 1 with entries (8j + 2q, 8j + 2q + 1) of a tile's box of
 * per-token words (the factors), which starts at the tile's first row rounded down to a multiple
 * of 4 (issue_copies); the pairs are 8-byte aligned where that skew is even (uniform per tile,
 * so the branch costs no divergence). One pair at a time: at BN = 192 a whole array of them
 * beside the accumulators spilled. */
template <int J0, int NJ, typename T, typename F>
__device__ __forceinline__ void for_token_pairs(const uint8_t* box, const tile& t, int q, F f) {
    static_assert(sizeof(T) == 8, "pairs of 4-byte entries");
    const int skew = (int)(t.row_begin & 3);
    const uint32_t* p = reinterpret_cast<const uint32_t*>(box) + skew + 2 * q;
    if (skew & 1) {
#pragma unroll
        for (int j = J0; j < J0 + NJ; j++) {
            const uint2 u = make_uint2(p[8 * j], p[8 * j + 1]);
            f(j, *reinterpret_cast<const T*>(&u));
        }
    } else {
#pragma unroll
        for (int j = J0; j < J0 + NJ; j++) {
            f(j, *reinterpret_cast<const T*>(p + 8 * j));
        }
    }
}

/* What a consumer keeps about a chunk between issuing its MMAs and promoting them. */
struct chunk_state {
    tile t;
    int s, c, part; /* stage, chunk, K part of the unit */
    float f0, f1;   /* reference factors of rows r0, r1 */
    bool fast;      /* the tile's tokens are all on their references */
    bool last;      /* the unit's last chunk */
    bool carry;     /* its sum stays in the accumulators for the next chunk (spans_shared) */
    bool acc_in;    /* the accumulators hold the previous chunk's sum: its MMAs add to it */
};

/* A slab pass's ES-byte results to out, each row to the out row left in its padding, by
 * `threads` threads (this one: `first`), 16 bytes a thread and copy (element by element at a
 * ragged right edge or an unaligned output). */
template <int BN, int ES>
__device__ __forceinline__ void store_slab(const gemm_args& a, const uint8_t* slab, void* out,
                                           int col0, int first, int threads) {
    if ((MXMOE_SM90_LAB & 128)) {
        return;
    }
    constexpr int pitch = slab_pitch<ES>(), units = 4 * ES, per_unit = 16 / ES;
    const int n_cols = (int)a.n; /* N < 2^31 */
    const bool vector_ok = ((uintptr_t)out % 16 == 0) && (n_cols * ES) % 16 == 0;
#pragma unroll 1
    for (int u = first; u < pass_rows<BN, ES>() * units; u += threads) {
        const uint8_t* src = slab + (u / units) * pitch;
        const int32_t out_r = *reinterpret_cast<const int32_t*>(src + 64 * ES);
        const int n = col0 + (u % units) * per_unit;
        src += (u % units) * 16;
        if (out_r < 0 || n >= n_cols) {
            continue;
        }
        uint8_t* dst = static_cast<uint8_t*>(out) + ((int64_t)out_r * n_cols + n) * ES;
        if (vector_ok && n + per_unit <= n_cols) {
            *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
            for (int e = 0; e < per_unit * ES && n + e / ES < n_cols; e++) {
                dst[e] = src[e];
            }
        }
    }
}

/* A narrow tile's (BN <= 64) FP32 sums, by value: what the lean consumers hand to their
 * out-of-line promotion of tokens off their references. */
template <int BN> struct tile_sums { float v[BN / 2]; };

/* Which of tokens 8j + 2q, 8j + 2q + 1 (bits 2(j - j0), 2(j - j0) + 1) of tile tt are off their
 * references (the unit words after the nc chunks' factors in a_factors, with kOffReference):
 * the token prepass stores chunk factors only for those, and the others' factor is 1 in every
 * chunk. Read from global memory (L2) in a rolled loop: only tiles with some token off its
 * reference come here, and the common path keeps its registers. */
__device__ __forceinline__ uint32_t off_reference_bits(const float* a_factors, int64_t rows, int nc,
                                                       const tile& tt, int q, int j0, int nj) {
    const uint32_t* units =
        reinterpret_cast<const uint32_t*>(a_factors) + (int64_t)nc * (word_pitch(rows) / 4);
    uint32_t mask = 0; /* nj <= 16 */
#pragma unroll 1
    for (int i = 0; i < 2 * nj; i++) {
        const int64_t row = (int64_t)tt.row_begin + 8 * (j0 + i / 2) + 2 * q + (i & 1);
        const uint32_t u = row < rows ? __ldg(units + row) : 0u;
        mask |= (uint32_t)((u & kOffReference) != 0) << i;
    }
    return mask;
}

/* Token pair j's factors fa with bits i, i + 1 of off_reference_bits: 1 where on. */
__device__ __forceinline__ float2 factor_pair(uint32_t off, int i, float2 fa) {
    return make_float2((off >> i) & 1 ? fa.x : 1.0f, (off >> (i + 1)) & 1 ? fa.y : 1.0f);
}

/* Token groups J0 .. J0 + NJ - 1 (8 tokens each) of a chunk with some token of the tile off its
 * reference, promoted into fin with the tokens' chunk factors (factors: the stage's factor box;
 * off: off_reference_mask's bits for those groups; f0, f1: the rows' reference factors). */
template <int BN, int J0, int NJ>
__device__ __forceinline__ void
promote_with_factors(float (&fin)[BN / 2], const float (&acc)[BN / 2], const uint8_t* factors,
                     const tile& t, int q, uint32_t off, float f0, float f1) {
    for_token_pairs<J0, NJ, float2>(factors, t, q, [&](int j, float2 f) {
        const float2 fa = factor_pair(off, 2 * (j - J0), f);
        fin[4 * j + 0] = __fmaf_rn(__fmul_rn(acc[4 * j + 0], f0), fa.x, fin[4 * j + 0]);
        fin[4 * j + 1] = __fmaf_rn(__fmul_rn(acc[4 * j + 1], f0), fa.y, fin[4 * j + 1]);
        fin[4 * j + 2] = __fmaf_rn(__fmul_rn(acc[4 * j + 2], f1), fa.x, fin[4 * j + 2]);
        fin[4 * j + 3] = __fmaf_rn(__fmul_rn(acc[4 * j + 3], f1), fa.y, fin[4 * j + 3]);
    });
}

/* promote_with_factors over a whole narrow tile, out of line: the lean consumers' only copy of
 * the promotion that tiles with tokens off their references need (rare: a token's chunks more
 * than 14 binades apart). Inlined beside the hot loop, that code cost the narrow kernels 2 % though
 * it never ran (bench/NOTES.md v40); a call keeps it out of the loop's schedule. */
template <int BN>
__device__ __noinline__ tile_sums<BN>
promote_off_reference_call(tile_sums<BN> fin, tile_sums<BN> acc, const uint8_t* factors,
                           const float* a_factors, int64_t rows, int nc, tile t, int q, float f0,
                           float f1) {
    const uint32_t off = off_reference_bits(a_factors, rows, nc, t, q, 0, BN / 8);
    promote_with_factors<BN, 0, BN / 8>(fin.v, acc.v, factors, t, q, off, f0, f1);
    return fin;
}

/* Whether a kernel instance keeps the FP32 epilogue pass (its consumers' store_tile and its store
 * warps agree through this): the full instances, and the lean 192-token one, which its calls never
 * send through it but which without it spilled 8 bytes a chunk in its consumers (232 registers);
 * the other lean instances store BF16 only. */
template <int BN, bool Lean> __host__ __device__ constexpr bool keeps_f32_pass() {
    return !Lean || BN == 192;
}

/* A consumer thread: rows r0, r1 of the tile (of its warpgroup's 64), block q of each chunk.
 * Lean: a call whose results are BF16 and whose K is never split (the host decides,
 * mxmoe_launch_grouped_gemm_sm90) has one epilogue (at BN = 192 two: store_tile), and at
 * BN <= 64 the promotion of tokens off their references out of line: the code a call never
 * runs costs the kernels it sits in (NOTES v41: -1..-2 % at most points). */
template <int BN, bool Lean = false, bool Packed = false> struct consumer {
    using L = stage_layout<BN>;
    static constexpr int S = L::stages, NA = BN / 2;
    /* At BN >= 144 a chunk's MMAs go out as kParts commit groups of BN / kParts tokens, so
     * that a part is promoted while the later parts' MMAs run (v30: -1.6 % at qwen3 n = 8192; three
     * parts measured 2-3 % slower than two). */
    static constexpr int kParts = 2;
    const gemm_args& a;
    const smem_header& h;
    uint8_t* stages;
    uint8_t* epilogue; /* a slab of slab_bytes<BN>() per consumer warpgroup */
    int nc, warp, lane, q, r0, r1;
    tile t;
    unit_walk walk;                 /* the next chunk's unit and place in it */
    int next_s = 0, next_phase = 0; /* ... and its stage */
    bool split;                     /* ks = 2: FP32 partials (a.partials) instead of out */
    uint64_t desc0;                 /* wgmma descriptor of stage 0's activation tile */
    /* 0: some token of the tile is off its reference (units word bit 8); 1: none is (fast);
     * 2: moreover the warpgroup's weight rows are all on their spans' references (kChunkReference
     * clear): the spans may be carried. One value: at BN = 64 two spilled. */
    int fast = 0;
    /* Both chunks of a weight row's 256-K span share its factor (chunk_word, unless that would
     * round more: kChunkReference), so where every token of the tile is on its reference
     * (factor 1) and every weight row on the span's, one wgmma chain sums the span and one
     * promotion takes it: half the promotions' FFMAs. The span's sum stays in the accumulators
     * while the next chunk's weights are converted: in the narrow tiles (BN <= 48) and at 80 and 96
     * all of it; at BN >= 144 only the first part's tokens (chunk_in_parts), since at 192 the whole
     * span's 96 accumulators beside the tile's 96 and the fragments spilled; none in the
     * three-warpgroup tiles, whose two token halves share one set of accumulators. */
    static constexpr bool spans_shared = BN <= 96 || BN >= 144;
#if (MXMOE_SM90_LAB & 1024)
    unsigned long long waited = 0;           /* lab timeline: when the last stage wait returned */
    unsigned long long halves[kStampPoints]; /* the three-warpgroup chunk's points */
    unsigned long long epi[kEpiPoints];      /* the unit's epilogue's points */
    int epi_unit = 0;
#define MXMOE_SM90_HALF_STAMP(i) (halves[i] = clock64())
#else
#define MXMOE_SM90_HALF_STAMP(i) ((void)0)
#endif
    float fin[NA]; /* the tile's FP32 accumulators, in units of each token's reference */

    __device__ consumer(const gemm_args& a_, const smem_header& h_, uint8_t* stages_, int nc_,
                        int warp_, int lane_, const unit_walk& walk_)
        : a(a_), h(h_), stages(stages_), epilogue(stages_ + L::stages * L::bytes), nc(nc_),
          warp(warp_), lane(lane_), q(lane_ & 3), walk(walk_), split(walk_.halves) {
        r0 = 64 * (warp / 4 - 1) + 16 * (warp % 4) + lane / 4;
        r1 = r0 + 8;
        desc0 = smem_desc_sw128(smem_u32(stages + L::b_tile));
        static_assert(L::bytes % 1024 == 0, "stage tiles stay 1024-byte aligned");
        t = tile{};
#pragma unroll
        for (int i = 0; i < NA; i++) {
            fin[i] = 0.0f;
        }
    }

    /* Waits for the next chunk's stage and turns its weights into A fragments; cs: the chunk's
     * place, tile, row factors and vote. */
    __device__ __forceinline__ void prepare(uint32_t (&frag)[4][4], chunk_state& cs) {
        const int c = walk.c, s = next_s;
        uint8_t* st = stages + s * L::bytes;
        mbar_wait(const_cast<uint64_t*>(&h.full[s]), next_phase);
#if (MXMOE_SM90_LAB & 1024)
        waited = clock64();
#endif
        if (walk.first()) { /* a new unit: one branch, taken once a unit (not predicated) */
            /* decoded by the producer, which runs stages ahead */
            t = *reinterpret_cast<const tile*>(st + L::tile_at);
            /* every warp covers all BN tokens: the same vote in each */
            uint32_t any = 0;
            for_token_pairs<0, BN / 8, uint2>(st + L::a_units, t, q,
                                              [&](int, uint2 u) { any |= u.x | u.y; });
            /* and the warpgroup's weight rows below N all on their spans' references: each
             * warp reads all 64 words, so that vote is the warpgroup's; the unit's first chunk
             * speaks for all (the choice is a row's: weight_words_kernel). Rows past N count as
             * on them: their words are the next expert's, or never written, and must not decide
             * how the real rows are summed (the bits would vary). */
            const uint2 two =
                reinterpret_cast<const uint2*>(st + L::w_words)[32 * (warp / 4 - 1) + lane];
            const int64_t row = (int64_t)t.n0 + 64 * (warp / 4 - 1) + 2 * lane;
            const uint32_t flags = (row < a.n ? two.x : 0u) | (row + 1 < a.n ? two.y : 0u);
            fast = __all_sync(0xFFFFFFFFu, (any & kOffReference) == 0)
                       ? 1 + __all_sync(0xFFFFFFFFu, (flags & kChunkReference) == 0)
                       : 0;
        }
        cs.t = t;
        cs.s = s;
        cs.c = c;
        cs.part = walk.part;
        cs.last = walk.last();
        cs.fast = fast != 0;
        /* a span's chunks in one unit: the first carries, the second adds to it */
        cs.carry = spans_shared && fast == 2 && c % kSpanChunks == 0 && !cs.last;
        cs.acc_in = spans_shared && fast == 2 && c % kSpanChunks != 0 && !walk.first();
        walk.advance();
        if (++next_s == S) {
            next_s = 0, next_phase ^= 1;
        }
        const uint32_t* words = reinterpret_cast<const uint32_t*>(st + L::w_words);
        const uint32_t word0 = words[r0], word1 = words[r1];
        cs.f0 = word_factor(word0);
        cs.f1 = word_factor(word1);
        const uint2 tab0 = word_table(h, word0, q), tab1 = word_table(h, word1, q);
        const uint8_t* w_raw = st + L::w_raw + q * 16;
        const uint4 x0 = *reinterpret_cast<const uint4*>(w_raw + r0 * kWeightBox);
        const uint4 x1 = *reinterpret_cast<const uint4*>(w_raw + r1 * kWeightBox);
        const uint32_t w0[4] = {x0.x, x0.y, x0.z, x0.w}, w1[4] = {x1.x, x1.y, x1.z, x1.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if ((MXMOE_SM90_LAB & 2)) {
                frag[k][0] = w0[k];
                frag[k][1] = w1[k];
                frag[k][2] = w0[k] ^ tab0.x;
                frag[k][3] = w1[k] ^ tab1.y;
                continue;
            }
            frag[k][0] = e4m3x4<false, Packed>(w0[k], tab0);
            frag[k][1] = e4m3x4<false, Packed>(w1[k], tab1);
            frag[k][2] = e4m3x4<true, Packed>(w0[k], tab0);
            frag[k][3] = e4m3x4<true, Packed>(w1[k], tab1);
        }
    }

    /* Issues chunk cs's 4 MMAs into acc. The descriptor of stage s's tile is stage 0's plus
     * s stages in its 16-byte address field (shared memory stays below 256 KB: no carry). */
    __device__ __forceinline__ void mma(float (&acc)[NA], const uint32_t (&frag)[4][4],
                                        const chunk_state& cs) {
        const uint64_t desc = desc0 + (uint64_t)(cs.s * (L::bytes >> 4));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if ((MXMOE_SM90_LAB & 8)) {
                if (frag[k][0] == 12345u)
                    acc[0] += 1.0f;
                continue;
            }
            if ((MXMOE_SM90_LAB & 256)) { /* both operands from shared memory (A: B's rows) */
                const uint8_t* st = stages + cs.s * L::bytes;
                const int wg = warp / 4 - 1;
                const uint64_t a_desc = smem_desc_sw128(smem_u32(st + L::b_tile + wg * 64 * 128));
                wgmma_e4m3<BN>::mma_ss(acc, a_desc + 2 * k, desc + 2 * k, k > 0 || cs.acc_in);
                continue;
            }
            wgmma_e4m3<BN>::mma(acc, frag[k], desc + 2 * k, k > 0 || cs.acc_in);
        }
        wgmma_commit();
    }

    /* Parts P.. of chunk cs's MMAs at BN >= 144, part p's tokens BN / kParts * p onwards
     * (whole 1024-byte atoms into the swizzled tile), each a commit group of its own, into acc[p].
     */
    template <int P, bool AccIn0 = false>
    __device__ __forceinline__ void issue_parts(float (&acc)[kParts][NA / kParts],
                                                const uint32_t (&frag)[4][4],
                                                const chunk_state& cs) {
        const uint64_t desc = desc0 + (uint64_t)(cs.s * (L::bytes >> 4)) +
                              (uint64_t)(P * (BN / kParts * kChunk >> 4));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; k++) {
            wgmma_e4m3<BN / kParts>::mma(acc[P], frag[k], desc + 2 * k,
                                         k > 0 || (P == 0 && AccIn0));
        }
        wgmma_commit();
        if constexpr (P + 1 < kParts) {
            issue_parts<P + 1, AccIn0>(acc, frag, cs);
        }
    }

    /* Parts P.. of a chunk whose tokens are all on their references: each promoted as soon as
     * its group is complete, while the later parts' MMAs run; the stage released once all
     * are (unless it is the unit's last chunk: its unit words are read after). */
    template <int P>
    __device__ __forceinline__ void promote_parts_fast(const chunk_state& cs,
                                                       float (&acc)[kParts][NA / kParts]) {
        wgmma_wait<kParts - 1 - P>();
        fence_regs(acc[P]);
        if (P + 1 == kParts && !cs.last) {
            release(cs.s);
        }
        promote_fast<P * BN / 8 / kParts, BN / 8 / kParts>(cs, acc[P]);
        if constexpr (P + 1 < kParts) {
            promote_parts_fast<P + 1>(cs, acc);
        }
    }

    /* Parts P.. of a chunk with tokens off their references, all complete. */
    template <int P>
    __device__ __forceinline__ void promote_parts(const chunk_state& cs,
                                                  float (&acc)[kParts][NA / kParts]) {
        fence_regs(acc[P]);
        promote<P * BN / 8 / kParts, BN / 8 / kParts>(cs, acc[P]);
        if constexpr (P + 1 < kParts) {
            promote_parts<P + 1>(cs, acc);
        }
    }

    /* Chunk cs at BN >= 144 in kParts commit groups. In a tile whose tokens are all on their
     * references each part's promotion runs while the later parts' MMAs do; otherwise all
     * complete before the tokens' factors are applied. Each branch issues and completes its
     * own groups (ptxas serialises every wgmma where a branch lies inside a group's flight,
     * C7514). */
    __device__ __forceinline__ void chunk_in_parts(float (&acc)[kParts][NA / kParts],
                                                   const uint32_t (&frag)[4][4],
                                                   const chunk_state& cs) {
        if (cs.carry) { /* a span's first chunk: part 0 summed on, part 1 promoted */
            issue_parts<0>(acc, frag, cs);
            wgmma_wait<0>();
#pragma unroll
            for (int p = 0; p < kParts; p++) {
                fence_regs(acc[p]);
            }
            promote_fast<BN / 8 / kParts, BN / 8 / kParts>(cs, acc[1]);
            release(cs.s);
        } else if (cs.acc_in) { /* its second: part 0 on top of the first's */
            issue_parts<0, true>(acc, frag, cs);
            promote_parts_fast<0>(cs, acc);
            retire(cs, !cs.last);
        } else if (cs.fast) {
            issue_parts<0>(acc, frag, cs);
            promote_parts_fast<0>(cs, acc);
            retire(cs, !cs.last);
        } else {
            issue_parts<0>(acc, frag, cs);
            wgmma_wait<0>();
            promote_parts<0>(cs, acc);
            retire(cs, false);
        }
    }

    /* This thread is done with stage s: each consumer thread arrives (its own reads before its
     * release), which spares the warp's sync and the branch to one lane. */
    __device__ __forceinline__ void release(int s) {
        mbar_arrive(const_cast<uint64_t*>(&h.empty[s]));
    }

    /* off_reference_bits of tile tt. */
    __device__ __forceinline__ uint32_t off_reference_mask(const tile& tt, int j0, int nj) const {
        return off_reference_bits(a.a_factors, a.rows, nc, tt, q, j0, nj);
    }

    /* finish()'s promotion of token groups J0 .. J0 + NJ - 1 with the tokens' chunk factors. */
    template <int J0, int NJ>
    __device__ __forceinline__ void promote_off_reference(const chunk_state& cs, const uint8_t* st,
                                                          const float (&acc)[NA]) {
        promote_with_factors<BN, J0, NJ>(fin, acc, st + L::a_factor, cs.t, q,
                                         off_reference_mask(cs.t, J0, NJ), cs.f0, cs.f1);
    }

    /* Chunk cs's MMAs are complete: promote acc into the tile's accumulators (in the tokens'
     * units), release the stage, and after the tile's last chunk turn the accumulators into
     * values with the tokens' unit factors and store the tile. (Kept apart from promote and
     * retire below, which the three-warpgroup tiles use: built from them, the two-warpgroup
     * kernels compiled differently and measured 1-3 % slower at BN = 192.) */
    __device__ __forceinline__ void finish(const chunk_state& cs, const float (&acc)[NA]) {
        const uint8_t* st = stages + cs.s * L::bytes;
        const bool last = cs.last;
        if (cs.carry) { /* the span's first chunk: its sum goes on into the next chunk's MMAs */
            release(cs.s);
            return;
        }
        if ((MXMOE_SM90_LAB & 1)) { /* lab: no promotion */
            release(cs.s);
            if (last) {
                fin[0] += acc[0];
            }
        } else if (cs.fast) { /* every token on its reference: one FFMA an element */
            if (!last) {
                release(cs.s);
            }
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                fin[4 * j + 0] = __fmaf_rn(acc[4 * j + 0], cs.f0, fin[4 * j + 0]);
                fin[4 * j + 1] = __fmaf_rn(acc[4 * j + 1], cs.f0, fin[4 * j + 1]);
                fin[4 * j + 2] = __fmaf_rn(acc[4 * j + 2], cs.f1, fin[4 * j + 2]);
                fin[4 * j + 3] = __fmaf_rn(acc[4 * j + 3], cs.f1, fin[4 * j + 3]);
            }
        } else if constexpr (Lean && BN <= 64) { /* the same, out of line */
            tile_sums<BN> f, s;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                f.v[i] = fin[i], s.v[i] = acc[i];
            }
            f = promote_off_reference_call<BN>(f, s, st + L::a_factor, a.a_factors, a.rows, nc,
                                               cs.t, q, cs.f0, cs.f1);
#pragma unroll
            for (int i = 0; i < NA; i++) {
                fin[i] = f.v[i];
            }
            if (!last) {
                release(cs.s);
            }
        } else { /* the tokens' chunk factors, relative to their units */
            /* a 32-bit mask a part (at BN = 192 one 64-bit mask spilled 28 bytes) */
            if constexpr (BN / 8 > 16) {
                promote_off_reference<0, BN / 16>(cs, st, acc);
                promote_off_reference<BN / 16, BN / 16>(cs, st, acc);
            } else {
                promote_off_reference<0, BN / 8>(cs, st, acc);
            }
            if (!last) { /* the factors are read */
                release(cs.s);
            }
        }
        if (!last) {
            return;
        }
        if (!(MXMOE_SM90_LAB & 1)) { /* units to values: powers of two, exact */
            scale_to_values(st, cs.t);
            release(cs.s);
        }
        if (!(MXMOE_SM90_LAB & 4)) {
            store_tile(cs.t, cs.part);
        }
    }

    /* The tile's accumulators, in the tokens' units, turned into values (powers of two). */
    __device__ __forceinline__ void scale_to_values(const uint8_t* st, const tile& tt) {
        for_token_pairs<0, BN / 8, uint2>(st + L::a_units, tt, q, [&](int j, uint2 u) {
            const float ux = unit_factor(u.x), uy = unit_factor(u.y);
            fin[4 * j + 0] = __fmul_rn(fin[4 * j + 0], ux);
            fin[4 * j + 1] = __fmul_rn(fin[4 * j + 1], uy);
            fin[4 * j + 2] = __fmul_rn(fin[4 * j + 2], ux);
            fin[4 * j + 3] = __fmul_rn(fin[4 * j + 3], uy);
        });
    }

    /* promote() where every token of the tile is on its reference: one FFMA an element. */
    template <int J0, int NJ>
    __device__ __forceinline__ void promote_fast(const chunk_state& cs,
                                                 const float (&acc)[4 * NJ]) {
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            float* f = fin + 4 * (J0 + j);
            f[0] = __fmaf_rn(acc[4 * j + 0], cs.f0, f[0]);
            f[1] = __fmaf_rn(acc[4 * j + 1], cs.f0, f[1]);
            f[2] = __fmaf_rn(acc[4 * j + 2], cs.f1, f[2]);
            f[3] = __fmaf_rn(acc[4 * j + 3], cs.f1, f[3]);
        }
    }

    /* Token groups J0 .. J0 + NJ - 1 (8 tokens each) of chunk cs, in acc, promoted into fin. */
    template <int J0, int NJ>
    __device__ __forceinline__ void promote(const chunk_state& cs, const float (&acc)[4 * NJ]) {
        if (cs.fast) { /* every token on its reference: one FFMA an element */
            promote_fast<J0, NJ>(cs, acc);
        } else { /* the tokens' chunk factors, relative to their units */
            const uint8_t* st = stages + cs.s * L::bytes;
            const uint32_t off = off_reference_mask(cs.t, J0, NJ);
            for_token_pairs<J0, NJ, float2>(st + L::a_factor, cs.t, q, [&](int j, float2 f2) {
                const float2 fa = factor_pair(off, 2 * (j - J0), f2);
                float* f = fin + 4 * j;
                const int i = 4 * (j - J0);
                f[0] = __fmaf_rn(__fmul_rn(acc[i + 0], cs.f0), fa.x, f[0]);
                f[1] = __fmaf_rn(__fmul_rn(acc[i + 1], cs.f0), fa.y, f[1]);
                f[2] = __fmaf_rn(__fmul_rn(acc[i + 2], cs.f1), fa.x, f[2]);
                f[3] = __fmaf_rn(__fmul_rn(acc[i + 3], cs.f1), fa.y, f[3]);
            });
        }
    }

    /* After chunk cs's promotion: its stage released (unless `released` already), and after
     * the tile's last chunk the accumulators turned into values with the tokens' unit factors
     * and the tile stored. */
    __device__ __forceinline__ void retire(const chunk_state& cs, bool released) {
        if (!cs.last) {
            if (!released) {
                release(cs.s);
            }
            return;
        }
        MXMOE_SM90_EPI_STAMP(0);
        scale_to_values(stages + cs.s * L::bytes, cs.t);
        release(cs.s);
        MXMOE_SM90_EPI_STAMP(1);
        if (!(MXMOE_SM90_LAB & 4)) {
            store_tile(cs.t, cs.part);
        }
#if (MXMOE_SM90_LAB & 1024)
        MXMOE_SM90_EPI_STAMP(4);
        lab_epi_put(epi_unit++, epi);
#endif
    }

    /* Three-warpgroup tiles (token_halves): chunk cs's tokens in two halves of 64, each half's
     * MMAs into the same 32 accumulators and promoted before the next half; the second half
     * only where the tile has rows there (a tile of at most 64 rows skips half its MMAs). */
    __device__ __forceinline__ void
    chunk_in_halves(float (&acc)[BN / 4], const uint32_t (&frag)[4][4], const chunk_state& cs) {
        mma_half<0>(acc, frag, cs);
        wgmma_wait<0>();
        fence_regs(acc);
        MXMOE_SM90_HALF_STAMP(3);
        promote<0, BN / 16>(cs, acc);
        MXMOE_SM90_HALF_STAMP(4);
        MXMOE_SM90_HALF_STAMP(5);
        if (cs.t.row_end - cs.t.row_begin > BN / 2) {
            mma_half<1>(acc, frag, cs);
            wgmma_wait<0>();
            fence_regs(acc);
            MXMOE_SM90_HALF_STAMP(5);
            promote<BN / 16, BN / 16>(cs, acc);
        }
        retire(cs, false);
    }

    /* Half H of chunk cs's MMAs (tokens 64H .. 64H + 63 of the tile: 8 KB further into the
     * swizzled tile, whole 1024-byte atoms), from the same fragments. */
    template <int H>
    __device__ __forceinline__ void mma_half(float (&acc)[BN / 4], const uint32_t (&frag)[4][4],
                                             const chunk_state& cs) {
        const uint64_t desc =
            desc0 + (uint64_t)(cs.s * (L::bytes >> 4)) + (uint64_t)(H * (64 * kChunk >> 4));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; k++) {
            wgmma_e4m3<BN / 2>::mma(acc, frag[k], desc + 2 * k, k > 0);
        }
        wgmma_commit();
    }

    /* The tile's results, out[token][column] (+ bias), through shared memory: the warpgroup
     * puts its [BN tokens][64 columns] block, in the output dtype, into its slab (16-bit types:
     * packed pairs stored transposed by stmatrix, 8 per thread at BN = 128), and its store warp
     * writes whole 16-byte runs of each token row (store_warp). (Stored straight from the
     * fragment, every warp store touched four token rows 2 bytes at a time; element by element
     * with the dtype and bias decided per element, the epilogue was 65 KB of code and a quarter
     * of the consumers' time.) K-split: part p's FP32 partials go to a.partials + p * rows * N
     * instead, the bias with part 0's. */
    __device__ void store_tile(const tile& t, int part) {
        constexpr bool LeanOut = !keeps_f32_pass<BN, Lean>(); /* BF16 results only */
        const int wg = warp / 4 - 1;
        const mxmoe_dtype dtype = LeanOut ? MXMOE_BF16
                                  : split ? MXMOE_F32
                                  : Lean  ? MXMOE_BF16
                                          : a.out_dtype;
        if (a.bias != nullptr && part == 0) {
            const float b0 =
                t.n0 + r0 < a.n ? mxmoe_load_float(a.bias, a.bias_dtype, t.expert * a.n + t.n0 + r0)
                                : 0.0f;
            const float b1 =
                t.n0 + r1 < a.n ? mxmoe_load_float(a.bias, a.bias_dtype, t.expert * a.n + t.n0 + r1)
                                : 0.0f;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                fin[4 * j + 0] = __fadd_rn(fin[4 * j + 0], b0);
                fin[4 * j + 1] = __fadd_rn(fin[4 * j + 1], b0);
                fin[4 * j + 2] = __fadd_rn(fin[4 * j + 2], b1);
                fin[4 * j + 3] = __fadd_rn(fin[4 * j + 3], b1);
            }
        }
        uint8_t* slab = epilogue + wg * slab_bytes<BN>();
        /* Each slab row's out row (-1: past the tile) goes into its 16 padding bytes for the
         * store warp; thread i looks up rows i and i + 128 (< BN) before the slab is free. */
        const int thread = threadIdx.x - 128 * (wg + 1);
        const bool mapped = (LeanOut || !split) && a.out_rows != nullptr;
        int32_t out_row[(BN + 127) / 128];
#pragma unroll
        for (int j = 0; j < (BN + 127) / 128; j++) {
            const int i = thread + 128 * j;
            const int64_t r = t.row_begin + i;
            out_row[j] = i >= BN || r >= t.row_end ? -1 : mapped ? a.out_rows[r] : (int32_t)r;
        }
        const int col0 = t.n0 + 64 * wg;
        void* out = !LeanOut && split
                        ? static_cast<void*>(a.partials + (int64_t)part * a.rows * a.n)
                        : a.out;
        if (!LeanOut && dtype == MXMOE_F32) {
            slab_acquire(wg, col0);
            slab_f32<0>(slab);
            put_out_rows<4>(slab, thread, out_row, 0);
            slab_release<4>(wg, slab, out, col0, thread);
            slab_acquire(wg, col0);
            slab_f32<1>(slab);
            put_out_rows<4>(slab, thread, out_row, BN / 2);
            slab_release<4>(wg, slab, out, col0, thread);
        } else {
            slab_acquire(wg, col0);
            MXMOE_SM90_EPI_STAMP(2);
            if (Lean || dtype == MXMOE_BF16) {
                slab_16<true>(slab);
            } else {
                slab_16<false>(slab);
            }
            put_out_rows<2>(slab, thread, out_row, 0);
            MXMOE_SM90_EPI_STAMP(3);
            slab_release<2>(wg, slab, out, col0, thread);
        }
    }

    /* The slab to fill: read out by the store warp (kStoreWarps) or by the warpgroup itself. */
    __device__ __forceinline__ void slab_acquire(int wg, int col0) {
        if constexpr (kStoreWarps<BN>) {
            named_barrier_sync(kSlabFree + wg, kSlabThreads);
            if (threadIdx.x % 128 == 0) {
                const_cast<smem_header&>(h).slab_col0[wg] = col0;
            }
        } else {
            named_barrier_sync(1 + wg, 128);
        }
    }

    /* The filled slab (ES-byte results) to the store warp, or out by the warpgroup's threads. */
    template <int ES>
    __device__ __forceinline__ void slab_release(int wg, const uint8_t* slab, void* out, int col0,
                                                 int thread) {
        if constexpr (kStoreWarps<BN>) {
            named_barrier_sync(kSlabFull + wg, kSlabThreads);
        } else {
            named_barrier_sync(1 + wg, 128);
            store_slab<BN, ES>(a, slab, out, col0, thread, 128);
        }
    }

    /* The out rows store_tile looked up, into the padding of the pass's slab rows (ES: output
     * bytes; the pass holds tile rows lo .. lo + pass_rows - 1). */
    template <int ES>
    __device__ __forceinline__ void
    put_out_rows(uint8_t* slab, int thread, const int32_t (&out_row)[(BN + 127) / 128], int lo) {
#pragma unroll
        for (int h = 0; h < (BN + 127) / 128; h++) {
            const int i = thread + 128 * h - lo;
            if (i >= 0 && i < pass_rows<BN, ES>()) {
                *reinterpret_cast<int32_t*>(slab + i * slab_pitch<ES>() + 64 * ES) = out_row[h];
            }
        }
    }

    /* 16-bit results: matrix (j, h) = token columns 8j.. and weight rows r0 (h = 0) or r1,
     * transposed into slab[token][column]; four per stmatrix. */
    template <bool Bf16> __device__ __forceinline__ void slab_16(uint8_t* slab) {
        constexpr int pitch = slab_pitch<2>();
        const int i = lane / 8, k = lane % 8;
        const uint32_t base =
            smem_u32(slab) + (8 * (i / 2) + k) * pitch + (16 * (warp % 4) + 8 * (i % 2)) * 2;
#pragma unroll
        for (int j = 0; j < BN / 8 - 1; j += 2) {
            stmatrix_x4_trans(base + 8 * j * pitch, pack_half2<Bf16>(fin[4 * j], fin[4 * j + 1]),
                              pack_half2<Bf16>(fin[4 * j + 2], fin[4 * j + 3]),
                              pack_half2<Bf16>(fin[4 * j + 4], fin[4 * j + 5]),
                              pack_half2<Bf16>(fin[4 * j + 6], fin[4 * j + 7]));
        }
        if constexpr (BN / 8 % 2 == 1) { /* an odd last group: its two matrices */
            constexpr int j = BN / 8 - 1;
            stmatrix_x2_trans(base + 8 * j * pitch, pack_half2<Bf16>(fin[4 * j], fin[4 * j + 1]),
                              pack_half2<Bf16>(fin[4 * j + 2], fin[4 * j + 3]));
        }
#pragma unroll
        for (int j = 0; j < BN / 2; j++) {
            fin[j] = 0.0f;
        }
    }

    /* FP32 results, pass P: token columns 8j.. for j in [P BN / 16, (P + 1) BN / 16); at
     * BN = 8, one group, tokens 4P .. 4P + 3 (the threads with q / 2 == P). */
    template <int P> __device__ __forceinline__ void slab_f32(uint8_t* slab) {
        constexpr int pitch = slab_pitch<4>();
        const int c0 = 16 * (warp % 4) + lane / 4; /* the thread's columns c0, c0 + 8 */
        if constexpr (BN == 8) {
            if (q / 2 == P) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int row = 2 * q + (e & 1) - 4 * P, col = c0 + (e < 2 ? 0 : 8);
                    *reinterpret_cast<float*>(slab + row * pitch + col * 4) = fin[e];
                    fin[e] = 0.0f;
                }
            }
        } else {
#pragma unroll
            for (int j = P * BN / 16; j < (P + 1) * BN / 16; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int row = 8 * j + 2 * q + (e & 1) - P * BN / 2,
                              col = c0 + (e < 2 ? 0 : 8);
                    *reinterpret_cast<float*>(slab + row * pitch + col * 4) = fin[4 * j + e];
                    fin[4 * j + e] = 0.0f;
                }
            }
        }
    }
};


/* The two-warpgroup consumers' loop with each chunk's MMAs as one commit group: BN <= 64, and
 * BN >= 144 in lab builds (the knock-outs and the timeline measure that form there). */
template <int BN, bool Lean, bool Packed>
__device__ __forceinline__ void consume_whole_chunks(consumer<BN, Lean, Packed>& cs, int G) {
    constexpr int NA = BN / 2;
    float acc[NA];
    /* One chunk's MMAs at a time per warpgroup; while one warpgroup waits for its MMAs, the
     * other (and at BN <= 64 the other CTA's) promote and convert. (Two chunks' MMAs in flight
     * per warpgroup made ptxas serialise every wgmma of the kernel, warning C7514, and measured
     * 5-10 % slower; converting chunk g + 1 while chunk g's MMAs run, with two fragment sets,
     * measured 4-11 % slower with v10b; the warpgroups issuing in turn (v8's ping-pong) measured
     * 2-4 % slower than this in v11, NOTES.) */
    uint32_t frag[4][4];
    chunk_state st;
#if (MXMOE_SM90_LAB & 1024)
    unsigned long long t[kStampPoints] = {};
#define MXMOE_SM90_STAMP(i) (t[i] = clock64())
#else
#define MXMOE_SM90_STAMP(i) ((void)0)
#endif
    for (int g = 0; g < G; g++) {
        MXMOE_SM90_STAMP(0);
        cs.prepare(frag, st);
        MXMOE_SM90_STAMP(2);
        cs.mma(acc, frag, st);
        wgmma_wait<0>();
        fence_regs(acc);
        MXMOE_SM90_STAMP(3);
        cs.finish(st, acc);
#if (MXMOE_SM90_LAB & 1024)
        MXMOE_SM90_STAMP(4);
        t[1] = cs.waited;
        lab_stamps_put(g, t);
#endif
    }
#undef MXMOE_SM90_STAMP
}

#endif /* host or sm_90a */

} // namespace

#endif /* MXMOE_CUDA_SM90_GEMM_CONSUMER_CUH */
