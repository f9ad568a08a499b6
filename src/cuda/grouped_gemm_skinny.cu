/*
 * grouped_gemm_skinny.cu — the W4A4 grouped GEMM for few tokens per expert (decode and small
 * batches), exact and bit-identical to the reference, on the int8 tensor cores of sm_80+.
 *
 * With few tokens per expert the GEMM is a stream over the active experts' weights, so the
 * design is about reading them once at full bandwidth and spending few instructions per byte:
 *   - Operands swapped: 16 weight rows are the M side of `mma.m16n8k32.s8`, 8 tokens the N side,
 *     and the MMA's K of 32 is exactly one MX block. A CTA takes 64 rows of one active expert
 *     (4 warps x 16) and passes over them once per group of up to 32 of the expert's tokens.
 *   - Each warp streams its 16 rows through its own cp.async ring (kStages stages of 4 blocks,
 *     64 bytes a row: measured faster than 256-byte runs with fewer stages), so warps never wait
 *     for each other inside a K slab; the group's tokens are decoded to int8 once per slab into
 *     shared memory (a few K blocks for 32 tokens, most of K for one).
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
 */
#include <stdint.h>

#include "core/e2m1_round.h"
#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/int8_mma.cuh"
#include "cuda/lab_stamps.cuh"
#include "cuda/quantize.cuh"

/* Lab (dev/cuda/skinny_timeline.sh; never set in a library build): bits 1 no MMAs (the ring
 * still turns), 2 no token or activation staging (the slab keeps what it holds), 4 no weight
 * copies; these three give wrong results, timing only. Bit 8 is a timeline, results right: thread
 * 0 of each of the first kStampCtas CTAs stamps %globaltimer at entry and exit and clock64() at
 * the kernel's phases (Stamp below); lane 0 of each warp stamps its loop's end. After each eager
 * launch the host writes them to $MXMOE_SKINNY_STAMPS (raw uint64 [cta][kStampPoints]). */
#ifndef MXMOE_SKINNY_LAB
#define MXMOE_SKINNY_LAB 0
#endif
#if (MXMOE_SKINNY_LAB & 8)
enum Stamp {
    kEntryGlobal, /* %globaltimer, ns */
    kEntry,       /* clock64 from here */
    kWaited,      /* after the PDL wait */
    kExpert,      /* the tile's expert known */
    kIssued,      /* the weight scales' and the ring's first copies issued */
    kOwned,       /* the expert's pairs found (projection) */
    kScales,      /* the weight scales landed, their range taken */
    kStaged,      /* the first slab of tokens staged */
    kLoop0,       /* warps 0-3: the K loop's results in */
    kStored = kLoop0 + 4,
    kExitGlobal,
    kSmid,
    kStampPoints
};
constexpr int kStampCtas = 8192;
__device__ unsigned long long g_skinny_stamps[kStampCtas][kStampPoints];
__device__ __forceinline__ void lab_stamp(int point, bool global = false) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 32 == 0 &&
        (threadIdx.x == 0 || (point >= kLoop0 && point < kStored))) {
        unsigned long long t;
        if (global) {
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        } else {
            t = clock64();
        }
        g_skinny_stamps[blockIdx.x][point] = t;
    }
}
#define MXMOE_SKINNY_STAMP(...) lab_stamp(__VA_ARGS__)
#else
#define MXMOE_SKINNY_STAMP(...) ((void)0)
#endif

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                 /* M of one MMA */
constexpr int kTileRows = kWarps * kWarpRows; /* weight rows of a CTA */
constexpr int kGroupTokens = 32;              /* tokens per pass over the weights: 4 MMAs of 8 */
constexpr int kTokenTiles = kGroupTokens / 8;
constexpr int kStageBlocks = 4; /* K blocks per ring stage: 64 bytes a row */
/* Ring depth and activation slab: lab builds override them (dev/cuda/skinny_variants.sh). 5
 * stages and 8 KB measured best: 4 CTAs per SM on an H200, deepseek-v3 n = 64 1021 -> 788 us
 * against 8 stages and 24 KB. */
#ifndef MXMOE_SKINNY_STAGES
#define MXMOE_SKINNY_STAGES 5
#endif
#ifndef MXMOE_SKINNY_ACT_BYTES
#define MXMOE_SKINNY_ACT_BYTES 8192
#endif
constexpr int kStages = MXMOE_SKINNY_STAGES;      /* ring depth per warp */
constexpr int kStageRow = kStageBlocks * 16 + 16; /* padded: rows g = 0..7 on distinct banks */
constexpr int kLanesPerRow = kStageBlocks;        /* one 16-byte copy each */
constexpr int kCopies = kWarpRows * kStageBlocks / 32;
constexpr int kWarpStage = kWarpRows * kStageRow;
constexpr int kRingBytes = kWarps * kStages * kWarpStage;
constexpr int kActBytes = MXMOE_SKINNY_ACT_BYTES; /* decoded activation slab (int8) */
constexpr int kActEntries = kActBytes / 32;       /* its (token, block) pairs at most */
constexpr int kMaxBlocks = 768;                   /* K <= 24576: the tile's weight scales fit */
constexpr int kMaxExperts = 1024;                 /* the offsets fit the activation slab at start */
constexpr int32_t kBias = 0x4B400000;             /* FP32 bits of 1.5 * 2^23 */
constexpr float kBiasF = 12582912.0f;

constexpr size_t smem_bytes(int64_t kb) {
    return (size_t)kRingBytes + kActBytes + kActEntries * 5 +
           (size_t)(kTileRows * kb + 31) / 16 * 16;
}

/* Shared memory of a CTA. The activation slab first holds the offsets (tile lookup). */
struct smem_view {
    uint8_t* ring;      /* [kWarps][kStages][kWarpRows][kStageRow] packed weights */
    uint8_t* act;       /* [tokens][act_stride] doubled int8 activations of the slab */
    float* act_scale;   /* [tokens][slab] 2^(sa-129) */
    uint8_t* act_sbyte; /* [tokens][slab] sa */
    uint8_t* w_scale;   /* [kTileRows][kb], + 16 bytes of alignment slack */
};

__device__ inline smem_view carve(uint8_t* base) {
    smem_view v;
    v.ring = base;
    v.act = base + kRingBytes;
    v.act_scale = reinterpret_cast<float*>(v.act + kActBytes);
    v.act_sbyte = reinterpret_cast<uint8_t*>(v.act_scale + kActEntries);
    v.w_scale = v.act_sbyte + kActEntries;
    return v;
}

/* This thread's rank among the CTA's threads whose `flag` is set, in thread order, counted from
 * *total, which grows by the number set (the same in every thread); ends with a barrier, so
 * warp_count may be reused by the next call. Every thread of the CTA calls it. */
__device__ inline int64_t cta_rank(bool flag, int64_t* total, int* warp_count) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0) {
        warp_count[warp] = __popc(ballot);
    }
    __syncthreads();
    int64_t before = *total;
    for (int w = 0; w < kWarps; w++) {
        before += w < warp ? warp_count[w] : 0;
        *total += warp_count[w];
    }
    __syncthreads();
    return before + __popc(ballot & ((1u << lane) - 1u));
}

/* The expert of the `target`-th active expert (-1 if fewer are active), from offsets already in
 * shared memory; every thread returns the same value. */
__device__ int64_t find_active_expert(const int32_t* off, int64_t num_experts, int64_t rows,
                                      int64_t target) {
    __shared__ int warp_count[kWarps];
    __shared__ int64_t found;
    if (threadIdx.x == 0) {
        found = -1;
    }
    int64_t seen = 0;
    for (int64_t base = 0; base < num_experts && seen <= target; base += kThreads) {
        const int64_t e = base + threadIdx.x;
        int64_t b = 0, n = 0;
        if (e < num_experts) {
            expert_rows(off, e, rows, &b, &n);
        }
        if (cta_rank(n > b, &seen, warp_count) == target && n > b) {
            found = e; /* one writer */
        }
    }
    __syncthreads(); /* `found` is settled */
    return found;
}

/* The CTA-wide smallest and largest of every thread's (lo, hi); ends with a barrier. */
__device__ inline int2 cta_range(int lo, int hi) {
    __shared__ int warp_lo[kWarps], warp_hi[kWarps];
    lo = __reduce_min_sync(0xffffffffu, lo);
    hi = __reduce_max_sync(0xffffffffu, hi);
    if (threadIdx.x % 32 == 0) {
        warp_lo[threadIdx.x / 32] = lo, warp_hi[threadIdx.x / 32] = hi;
    }
    __syncthreads();
    for (int w = 0; w < kWarps; w++) {
        lo = min(lo, warp_lo[w]);
        hi = max(hi, warp_hi[w]);
    }
    return make_int2(lo, hi);
}

__device__ inline uint8_t weight_scale_byte(const gemm_args& a, int64_t e, int64_t n, int64_t j) {
    const int64_t kb = a.k / 32;
    const int64_t off = !a.w_swizzled ? (e * a.n + n) * kb + j
                                      : e * mxmoe_swizzled_matrix_bytes(a.n, a.k) +
                                            mxmoe_swizzled_offset(n, j, a.k);
    return a.w_scales[off];
}

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
        uint4 p;
        const uint32_t sa = mxmoe_quantize_block_rne(v, tk.rule, reinterpret_cast<uint8_t*>(&p));
        put_act_block(s, i, jl, slab_n, act_stride, p, sa);
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
        uint32_t amax = 0; /* NaN/Inf bit patterns are the largest, as in the reference */
#pragma unroll
        for (int e = 0; e < 16; e++) {
            amax = max(amax, mxmoe_f32_bits(v[e]) & 0x7fffffffu);
        }
        const unsigned pair_lanes = 3u << (threadIdx.x % 32 & ~1u);
        amax = max(amax, __shfl_xor_sync(pair_lanes, amax, 1));
        const uint32_t sa = mxmoe_scale_byte(amax, tk.rule);
        uint32_t codes[2] = {0, 0}; /* elements 16 half .. as packed: the lower one low */
        if (sa != MXMOE_E8M0_NAN) {
#pragma unroll
            for (int e = 0; e < 16; e++) {
                codes[e / 8] |= mxmoe_e2m1_code_rne(v[e], (uint8_t)sa) << (4 * (e % 8));
            }
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

/* The local expert of pair i (-1: dropped; an id or map entry out of range is dropped, and
 * flagged as the plan does where errors is not NULL). */
__device__ inline int64_t pair_expert(const projection_tokens& tk, int64_t num_experts, int64_t i,
                                      unsigned* errors) {
    const int32_t id = tk.ids[i];
    if (id < 0 || id >= tk.id_limit) {
        if (id != -1 && errors != nullptr) {
            atomicOr(errors, MXMOE_DEVERR_EXPERT_ID);
        }
        return -1;
    }
    const int32_t e = tk.map != nullptr ? tk.map[id] : id;
    if (e < -1 || e >= num_experts) {
        if (errors != nullptr) {
            atomicOr(errors, MXMOE_DEVERR_EXPERT_MAP);
        }
        return -1;
    }
    return e;
}

/* Whether pair id `id` (any value) is routed to local expert `expert`. */
__device__ __forceinline__ bool pair_is(const projection_tokens& tk, int32_t id, int64_t expert) {
    return id >= 0 && id < tk.id_limit && (tk.map != nullptr ? tk.map[id] : id) == expert;
}

/* Whether a pair before `slot` has `expert` (every thread returns the same; ends with a barrier):
 * the CTAs of such a slot leave before they stream anything. Each thread's first id is read with
 * the slot's own, so an owner waits for one load, not two. */
__device__ bool earlier_pair_has(const projection_tokens& tk, int64_t expert, int64_t slot,
                                 int32_t first_id) {
    bool earlier = false;
    if (expert >= 0) {
        earlier = (int64_t)threadIdx.x < slot && pair_is(tk, first_id, expert);
        for (int64_t i = threadIdx.x + kThreads; i < slot; i += kThreads) {
            earlier |= pair_is(tk, tk.ids[i], expert);
        }
    }
    return __syncthreads_or(earlier);
}

/* The pairs of `expert`, in ascending order, in list[0 .. *count). */
__device__ void expert_pairs(const projection_tokens& tk, int64_t expert, int64_t pairs,
                             int32_t* list, int* count) {
    __shared__ int warp_count[kWarps];
    int64_t seen = 0;
    for (int64_t base = 0; base < pairs; base += kThreads) {
        const int64_t i = base + threadIdx.x;
        const bool mine = i < pairs && pair_is(tk, tk.ids[i], expert);
        const int64_t rank = cta_rank(mine, &seen, warp_count);
        if (mine) {
            list[rank] = (int32_t)i;
        }
    }
    *count = (int)seen;
}

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

/* Accumulates ring stage `stage` (K blocks 4 stage ..) into acc. Fast: the biased-FFMA form;
 * otherwise mxmoe_block_term per element (see the file comment). kOne: the group is one token
 * (every CTA of a decode step), so only each lane's even token column is worth computing: 7 of
 * the ~65 instructions a block at n = 1 went to the odd column, always dropped. */
template <bool kFast, int kTiles, bool kFull = false, bool kOne = false>
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
        e2m1x4_magnitudes(w0, w.table_lo, pos[0], neg[0]);
        e2m1x4_magnitudes(w1, w.table_lo, pos[1], neg[1]);
        e2m1x4_magnitudes(w0 >> 16, w.table_lo, pos[2], neg[2]);
        e2m1x4_magnitudes(w1 >> 16, w.table_lo, pos[3], neg[3]);
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

/* kTokens = false: the grouped GEMM over a plan's offsets and quantized rows. kTokens = true:
 * the projection, a CTA per (pair, row tile) whose pair's expert no earlier pair has. */
template <bool kTokens>
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
                    mma_stage<true, 1, true, true>(wc, s, stage, slab0, slab_n, act_stride, count,
                                                   tiles, acc);
                } else if (fast && count == 1) {
                    mma_stage<true, 1, false, true>(wc, s, stage, slab0, slab_n, act_stride, count,
                                                    tiles, acc);
                } else if (fast && tiles == 1 && (stage + 1) * kStageBlocks <= kb) {
                    mma_stage<true, 1, true>(wc, s, stage, slab0, slab_n, act_stride, count, tiles,
                                             acc);
                } else if (fast && tiles == 1) {
                    mma_stage<true, 1>(wc, s, stage, slab0, slab_n, act_stride, count, tiles, acc);
                } else if (fast && tiles == 2) {
                    mma_stage<true, 2>(wc, s, stage, slab0, slab_n, act_stride, count, tiles, acc);
                } else if (fast) {
                    mma_stage<true, kTokenTiles>(wc, s, stage, slab0, slab_n, act_stride, count,
                                                 tiles, acc);
                } else {
                    mma_stage<false, kTokenTiles>(wc, s, stage, slab0, slab_n, act_stride, count,
                                                  tiles, acc);
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
    bool ok =
        cudaFuncSetAttribute(grouped_gemm_skinny_kernel<false>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem) == cudaSuccess &&
        cudaFuncSetAttribute(grouped_gemm_skinny_kernel<true>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem) == cudaSuccess;
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
    MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, grouped_gemm_skinny_kernel<kTokens>, (unsigned)ctas,
                                     kThreads, smem_bytes(args->k / 32), *args, tk));
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
