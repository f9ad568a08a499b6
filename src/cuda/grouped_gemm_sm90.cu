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
 * growing with K (DeepGEMM's scheme).
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
 * groups, the first half of the tokens promoted while the second half's MMAs run (-1.5 % at
 * qwen3 n = 8192 and gpt-oss-20b n = 4096).
 */
#include <cuda.h>         /* CUtensorMap and its enums only: the encoder comes from the runtime */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/lab_stamps.cuh"
#include "cuda/sm90_e4m3.cuh"
#include "cuda/sm90_prepass.cuh"
#include "cuda/sm90_ptx.cuh"
#include "cuda/sm90_wgmma.cuh"

/* Lab bits: sm90_e4m3.cuh lists them. Bit 1024 (results right, timing perturbed): a timeline of
 * the consumers' chunks
 * (dev/cuda/timeline.sh). Thread 0 of each consumer warpgroup of CTAs 0 .. kStampCtas - 1
 * stamps clock64() at points of each of its first kStampChunks chunks: before the stage wait,
 * after it, after the conversion (the MMAs about to issue), after the MMAs completed, after the
 * promotion (points 0-4); three-warpgroup tiles: after half 0's MMAs, after its promotion, after
 * half 1's MMAs (= the previous point where the tile skips it), after the chunk (points 0-2,
 * 3-6). After each eager launch the host writes them to $MXMOE_SM90_STAMPS (raw uint64
 * [cta][3 warpgroups][chunk][7 points], unwritten entries 0). */
#if (MXMOE_SM90_LAB & 1024)
constexpr int kStampCtas = 8, kStampChunks = 512, kStampPoints = 7;
__device__ unsigned long long g_sm90_stamps[kStampCtas][3][kStampChunks][kStampPoints];

/* Chunk g's points, from thread 0 of each consumer warpgroup of the first kStampCtas CTAs. */
__device__ __forceinline__ void lab_stamps_put(int g, const unsigned long long (&t)[kStampPoints]) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 128 == 0 && g < kStampChunks) {
        for (int i = 0; i < kStampPoints; i++) {
            g_sm90_stamps[blockIdx.x][threadIdx.x / 128 - 1][g][i] = t[i];
        }
    }
}

/* ... and around each unit's epilogue (its first kEpiUnits units): retire's start (the last
 * chunk promoted), the tokens' units applied and the stage released, the slab acquired (its
 * previous pass read out), the slab written, the slab handed over or stored (points 0-4;
 * three-warpgroup tiles and 16-bit results only; $MXMOE_SM90_EPI_STAMPS, raw uint64
 * [cta][3 warpgroups][unit][5]). */
constexpr int kEpiUnits = 64, kEpiPoints = 5;
__device__ unsigned long long g_sm90_epi_stamps[kStampCtas][3][kEpiUnits][kEpiPoints];
#define MXMOE_SM90_EPI_STAMP(i) (epi[i] = clock64())

__device__ __forceinline__ void lab_epi_put(int u, const unsigned long long (&t)[kEpiPoints]) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 128 == 0 && u < kEpiUnits) {
        for (int i = 0; i < kEpiPoints; i++) {
            g_sm90_epi_stamps[blockIdx.x][threadIdx.x / 128 - 1][u][i] = t[i];
        }
    }
}
#else
#define MXMOE_SM90_EPI_STAMP(i) ((void)0)
#endif

namespace {

constexpr int kMaxExperts = 1024;
/* Bytes of each weight row a stage's box holds: the chunk's 64 (lab: 128, the next chunk's
 * too, unused, to see whether the TMA's 64-byte rows cost more than their bytes; it needs
 * MXMOE_SM90_STAGES=4 and MXMOE_SM90_TWO_CTAS_MAX_BN=32 to fit). */
#ifndef MXMOE_SM90_WBOX
#define MXMOE_SM90_WBOX 64
#endif
constexpr int kWeightBox = MXMOE_SM90_WBOX;

__host__ __device__ constexpr int round_up(int x, int m) {
    return (x + m - 1) / m * m;
}

/* CTAs per SM for BN tokens per tile. At small BN a chunk's MMAs are short and each consumer
 * warp's chunk is a chain of dependent shared-memory loads, conversion and the MMA's wait; with
 * two consumer warps per SM sub-partition the sub-partitions sat idle (deepseek-v3 n = 512 at
 * BN = 16: 55 % issue, DRAM at 45 %), so tiles up to BN = 64 run two CTAs per SM (half the
 * registers and shared memory each) to double the warps that hide those latencies. Measured
 * (H100, bench/NOTES.md "v11"): deepseek-v3 n = 512 -15 %, qwen3 n = 512 -7 %, gpt-oss
 * n = 512 -6 %; two CTAs at BN <= 32 only left gpt-oss (BN = 64) unchanged. */
#ifndef MXMOE_SM90_TWO_CTAS_MAX_BN /* lab: the largest BN that runs two CTAs per SM */
#define MXMOE_SM90_TWO_CTAS_MAX_BN 64
#endif
template <int BN> constexpr int ctas_per_sm() {
    return BN <= MXMOE_SM90_TWO_CTAS_MAX_BN ? 2 : 1;
}

/* Consumer warpgroups per CTA (64 weight rows each) for BN tokens per tile. At BN = 128 three
 * (v19): each warpgroup's chunk is a chain (wait, convert, MMAs, promote) that left the tensor
 * cores idle half the time with two (v17's timeline; reordering inside a warpgroup did not
 * help, v18), so a third chain; its registers come from splitting the chunk's tokens into two
 * halves of 64 that share one set of 32 MMA accumulators (token_halves). */
#ifndef MXMOE_SM90_WG3 /* lab: 0 keeps two consumer warpgroups at BN = 128 */
#define MXMOE_SM90_WG3 1
#endif
template <int BN> __host__ __device__ constexpr int consumer_wgs() {
    return BN == 128 && MXMOE_SM90_WG3 ? 3 : 2;
}
template <int BN> __host__ __device__ constexpr bool token_halves() {
    return consumer_wgs<BN>() == 3;
}
/* Output columns (weight rows) per CTA, and its threads (a producer warpgroup first). */
template <int BN> __host__ __device__ constexpr int tile_n() {
    return 64 * consumer_wgs<BN>();
}
template <int BN> __host__ __device__ constexpr int cta_threads() {
    return 128 * (1 + consumer_wgs<BN>());
}

template <int BN> constexpr int bn_index() {
    static_assert(BN == 16 || BN == 32 || BN == 64 || BN == 128 || BN == 192,
                  "the kernel's tile widths");
    return BN == 16 ? 0 : BN == 32 ? 1 : BN == 64 ? 2 : BN == 128 ? 3 : 4;
}

/* Shared-memory layout of one pipeline stage for BN tokens per tile: four TMA boxes. */
template <int BN> struct stage_layout {
    static constexpr int b_tile = 0;                                  /* BN x 128 E4M3, swizzled */
    static constexpr int w_raw = b_tile + BN * 128;                   /* tile_n rows x 64 bytes */
    static constexpr int w_words = w_raw + tile_n<BN>() * kWeightBox; /* the rows' words */
    static constexpr int factor_box = BN + 4;                         /* from the tile's row & ~3 */
    static constexpr int a_factor = w_words + tile_n<BN>() * 4;       /* factor_box FP32 factors */
    static constexpr int a_units = a_factor + round_up(factor_box * 4, 128); /* unit words */
    static constexpr int tile_at = a_units + factor_box * 4; /* the tile, at its first chunk */
    static constexpr int bytes = round_up(tile_at + 32, 1024);
    /* TMA writes shared memory at 128-byte aligned addresses only (the swizzled tile: 1024) */
    static_assert(w_raw % 128 == 0 && w_words % 128 == 0 && a_factor % 128 == 0 &&
                      a_units % 128 == 0,
                  "a stage's TMA boxes must start 128-byte aligned");
#ifdef MXMOE_SM90_STAGES /* lab: ring depth override */
    static constexpr int stages = MXMOE_SM90_STAGES;
#else
    /* Three-warpgroup tiles: 4 stages since the 16-bit slab (v27; 5 measured no better), 192
     * tokens: 3 (4 measured slower, v17b and v27). */
    static constexpr int stages = ctas_per_sm<BN>() == 2 ? (BN >= 64 ? 4 : (BN >= 32 ? 6 : 8))
                                  : BN >= 192            ? 3
                                  : token_halves<BN>()   ? 4
                                  : BN >= 128            ? 5
                                  : BN >= 64             ? 7
                                                         : 8;
#endif
};

/* Header of the dynamic shared memory, before the stages. */
struct smem_header {
    uint64_t full[10], empty[10];
    /* E4M3 bytes of the 8 E2M1 magnitudes times 2^(i - 13); entries kShifts..31 zero, so that
     * any 5-bit index stays inside (rows past the tile may hold words nobody wrote) */
    uint2 table[32];
    int tile_prefix[kMaxExperts + 1];
    int slab_col0[3]; /* the first output column of each warpgroup's slab, for its store warp */
};

constexpr int kHeaderBytes = round_up((int)sizeof(smem_header), 1024);

/* The epilogue's slabs: per consumer warpgroup BN token rows of 64 16-bit columns + 16 bytes
 * (the row's out row); FP32 results go through the same bytes in two passes of BN / 2 rows. At
 * BN = 128 a slab of FP32 rows took the room of a stage (v27). */
template <int ES> __host__ __device__ constexpr int slab_pitch() {
    return 64 * ES + 16;
}
/* Where one CTA holds an SM, a store warp writes each consumer warpgroup's results out of its
 * slab (v27: -3 % at the 192-token points, the rest even); with two CTAs an SM the warpgroups
 * store their own (with store warps 0.5-1 % slower there). */
template <int BN> constexpr bool kStoreWarps = ctas_per_sm<BN>() == 1;
/* Named barriers of the hand-off of consumer warpgroup wg's slab to its store warp (v27): the
 * slab read out (kSlabFree + wg), the slab written (kSlabFull + wg); 128 + 32 threads each.
 * Both sides bar.sync on both: the store warp goes from one to the other at once, so the
 * warpgroup finds it waiting at each and passes without a stall, and every hand-off is a
 * full barrier, which racecheck follows (with bar.arrive on one side it reported hazards
 * that PTX's ordering of bar.arrive rules out). Barriers 1 .. 3 are the warpgroups' own. */
[[maybe_unused]] constexpr int kSlabFull = 4, kSlabFree = 7, kSlabThreads = 128 + 32;
template <int BN> __host__ __device__ constexpr int slab_bytes() {
    static_assert(BN / 2 * slab_pitch<4>() <= BN * slab_pitch<2>(), "an FP32 pass fits the slab");
    return BN * slab_pitch<2>();
}
/* Token rows a pass puts in the slab: all BN of 16-bit results, BN / 2 of FP32 ones. */
template <int BN, int ES> __host__ __device__ constexpr int pass_rows() {
    return ES == 2 ? BN : BN / 2;
}
template <int BN> constexpr int epilogue_bytes() {
    return consumer_wgs<BN>() * slab_bytes<BN>();
}

template <int BN> constexpr int smem_bytes() {
    return 1024 /* alignment slack */ + kHeaderBytes +
           stage_layout<BN>::stages * stage_layout<BN>::bytes + epilogue_bytes<BN>();
}
/* An SM has 228 KB, of which the system reserves 1 KB per CTA; a CTA may have 227 KB. */
template <int BN> constexpr bool smem_fits() {
    return smem_bytes<BN>() <= (ctas_per_sm<BN>() == 1 ? 227 * 1024 : 228 * 1024 / 2 - 1024);
}
static_assert(smem_fits<16>() && smem_fits<32>() && smem_fits<64>() && smem_fits<128>() &&
                  smem_fits<192>(),
              "the sm_90 GEMM's shared memory exceeds what its CTAs per SM may have");

/* The tensor maps of the four operands a stage holds. */
struct operand_maps {
    CUtensorMap a;       /* E4M3 activations [rows, chunk_cols(K) bytes], 128-byte swizzled */
    CUtensorMap w;       /* packed weights [E*N rows, K/2 bytes] */
    CUtensorMap words;   /* weight-scale words [chunks, E * words_per_expert(N)] */
    CUtensorMap factors; /* activation factors [chunks, rows], then the unit words [rows] */
};

/* Device code below is compiled for the host pass and sm_90a only (sm_80 gets an empty kernel). */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* Registers per thread after setmaxnreg. A CTA is launched with 64K / its threads per thread
 * and CTA per SM, rounded down to 8 (168 at one CTA per SM, 80 at two, 128 with three consumer
 * warpgroups); setmaxnreg.inc waits until the registers it asks for have been released by
 * setmaxnreg.dec, so asking for more than the producer gives back hangs the kernel (seen in
 * the v8 experiment with 96 / 208). ptxas fits each side's code into its count. The producer
 * warpgroup keeps 24, or 32 with store warps (at 24 their loop made ptxas spill the
 * consumers' unit walk, v27), so that at BN = 192 the consumers get 232: their 96 + 96
 * accumulators, the fragments and the loop; with three consumer warpgroups they get 160:
 * 64 + 32 accumulators (token_halves), the fragments and the loop. */
template <int BN> struct regs {
    static constexpr int launch = 65536 / cta_threads<BN>() / ctas_per_sm<BN>() / 8 * 8;
    static constexpr int producer =
        ctas_per_sm<BN>() == 1 ? (BN <= 128 && !token_halves<BN>() ? 56 : 32) : 24;
    static constexpr int consumer = ctas_per_sm<BN>() == 1 ? (token_halves<BN>() ? 160
                                                              : BN > 128         ? 232
                                                                                 : 224)
                                                           : 104;
    static_assert(128 * (launch - producer) >= 128 * consumer_wgs<BN>() * (consumer - launch),
                  "the consumers ask for more registers than the producer releases");
};

__device__ __forceinline__ uint2 word_table(const smem_header& h, uint32_t word, int q) {
    return h.table[(word >> (5 * q)) & 31];
}

/* One tile: expert, its output columns [n0, n0 + 128) and token rows [row_begin, row_end). */
struct tile {
    int32_t expert, n0, row_begin, row_end; /* rows <= INT32_MAX / 2 (supported()), N < 2^31 */
};

/* The chunks a CTA works through, the same sequence for its producer and its consumers: its
 * units u = blockIdx.x, + gridDim.x, ... (unit u = tile u / ks, K part u % ks, ks = 1 or 2),
 * each over its chunks [c0, c1). With ks = 2 a tile's K range is split in halves, each summed
 * into FP32 partials that split_reduce_kernel adds (K-split: where the persistent grid's last
 * round of tiles would run mostly empty). */
struct unit_walk {
    int unit, step, nc, c, c0, c1, tile, part; /* unit = (tile, part); no divisions per chunk */
    bool halves;                               /* ks = 2 */
    __device__ unit_walk(int first, int step_, int ks, int nc_)
        : unit(first), step(step_), nc(nc_), halves(ks == 2) {
        range();
    }
    __device__ void range() {
        tile = halves ? unit >> 1 : unit;
        part = halves ? unit & 1 : 0;
        c0 = part * ((nc + 1) >> 1);
        c1 = halves && part == 0 ? c0 + ((nc + 1) >> 1) : nc;
        c = c0;
    }
    __device__ int tile_index() const {
        return tile;
    }
    __device__ bool first() const {
        return c == c0;
    }
    __device__ bool last() const {
        return c == c1 - 1;
    }
    __device__ void advance() {
        if (++c == c1) {
            unit += step;
            range();
        }
    }
};

template <int BN>
__device__ tile decode_tile(const gemm_args& a, const smem_header& h, int n_tiles, int t) {
    int lo = 0, hi = (int)a.num_experts; /* prefix[lo] <= t < prefix[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (h.tile_prefix[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    tile r;
    int64_t b, end;
    expert_rows(a.offsets, lo, a.rows, &b, &end);
    const int local = t - h.tile_prefix[lo];
    const int token_tiles = (int)((end - b + BN - 1) / BN);
    r.expert = lo;
    r.n0 = (local / token_tiles) * tile_n<BN>();
    r.row_begin = (int32_t)(b + (int64_t)(local % token_tiles) * BN);
    r.row_end = (int32_t)min(end, (int64_t)r.row_begin + BN);
    return r;
}

/* Starts the copies of chunk c of tile t into stage `st` (one thread): tile_n weight rows x 64
 * packed bytes, BN activation rows x 128 E4M3 bytes (swizzled by the TMA as wgmma reads them),
 * the rows' scale words and the BN rows' factors, all counted on the stage's full barrier.
 * Rows past the tile (the next expert's, or zeros past the tensor) only feed outputs the
 * epilogue skips. */
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
                                        ((MXMOE_SM90_LAB & 32) ? 0 : BN * kChunk) +
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

/* A consumer thread: rows r0, r1 of the tile (of its warpgroup's 64), block q of each chunk. */
template <int BN> struct consumer {
    using L = stage_layout<BN>;
    static constexpr int S = L::stages, NA = BN / 2;
    /* At BN = 192 a chunk's MMAs go out as kParts commit groups of BN / kParts tokens, so that a
     * part is promoted while the later parts' MMAs run (v30: -1.5 % at qwen3 n = 8192; three
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
    bool fast = false; /* the tile's tokens are all on their references (units word bit 8) */
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
            fast = __all_sync(0xFFFFFFFFu, (any & kOffReference) == 0);
        }
        cs.t = t;
        cs.s = s;
        cs.c = c;
        cs.part = walk.part;
        cs.last = walk.last();
        cs.fast = fast;
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
            frag[k][0] = e4m3x4<false>(w0[k], tab0);
            frag[k][1] = e4m3x4<false>(w1[k], tab1);
            frag[k][2] = e4m3x4<true>(w0[k], tab0);
            frag[k][3] = e4m3x4<true>(w1[k], tab1);
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
                wgmma_e4m3<BN>::mma_ss(acc, a_desc + 2 * k, desc + 2 * k, k > 0);
                continue;
            }
            wgmma_e4m3<BN>::mma(acc, frag[k], desc + 2 * k, k > 0);
        }
        wgmma_commit();
    }

    /* Parts P.. of chunk cs's MMAs at BN = 192, part p's tokens BN / kParts * p onwards (whole
     * 1024-byte atoms into the swizzled tile), each a commit group of its own, into acc[p]. */
    template <int P>
    __device__ __forceinline__ void issue_parts(float (&acc)[kParts][NA / kParts],
                                                const uint32_t (&frag)[4][4],
                                                const chunk_state& cs) {
        const uint64_t desc = desc0 + (uint64_t)(cs.s * (L::bytes >> 4)) +
                              (uint64_t)(P * (BN / kParts * kChunk >> 4));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; k++) {
            wgmma_e4m3<BN / kParts>::mma(acc[P], frag[k], desc + 2 * k, k > 0);
        }
        wgmma_commit();
        if constexpr (P + 1 < kParts) {
            issue_parts<P + 1>(acc, frag, cs);
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

    /* Chunk cs at BN = 192 in kParts commit groups. In a tile whose tokens are all on their
     * references each part's promotion runs while the later parts' MMAs do; otherwise all
     * complete before the tokens' factors are applied. Each branch issues and completes its
     * own groups (ptxas serialises every wgmma where a branch lies inside a group's flight,
     * C7514). */
    __device__ __forceinline__ void chunk_in_parts(float (&acc)[kParts][NA / kParts],
                                                   const uint32_t (&frag)[4][4],
                                                   const chunk_state& cs) {
        if (cs.fast) {
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

    /* Which of tokens 8j + 2q, 8j + 2q + 1 (bits 2j, 2j + 1) of the tile are off their
     * references (unit word with kOffReference): the token prepass stores chunk factors only for
     * those, and the others' factor is 1 in every chunk. Read from global memory (L2) in a
     * rolled loop: only tiles with some token off its reference come here, and the common path
     * keeps its registers. */
    __device__ __forceinline__ uint32_t off_reference_mask(const tile& tt, int j0, int nj) const {
        const uint32_t* units =
            reinterpret_cast<const uint32_t*>(a.a_factors) + (int64_t)nc * (word_pitch(a.rows) / 4);
        uint32_t mask = 0; /* nj <= 16 */
#pragma unroll 1
        for (int i = 0; i < 2 * nj; i++) {
            const int64_t row = (int64_t)tt.row_begin + 8 * (j0 + i / 2) + 2 * q + (i & 1);
            const uint32_t u = row < a.rows ? __ldg(units + row) : 0u;
            mask |= (uint32_t)((u & kOffReference) != 0) << i;
        }
        return mask;
    }

    /* Token pair j's factors fa with bits i, i + 1 of off_reference_mask: 1 where on. */
    static __device__ __forceinline__ float2 factor_pair(uint32_t off, int i, float2 fa) {
        return make_float2((off >> i) & 1 ? fa.x : 1.0f, (off >> (i + 1)) & 1 ? fa.y : 1.0f);
    }

    /* finish()'s promotion of token groups J0 .. J0 + NJ - 1 with the tokens' chunk factors. */
    template <int J0, int NJ>
    __device__ __forceinline__ void promote_off_reference(const chunk_state& cs, const uint8_t* st,
                                                          const float (&acc)[NA]) {
        const uint32_t off = off_reference_mask(cs.t, J0, NJ);
        for_token_pairs<J0, NJ, float2>(st + L::a_factor, cs.t, q, [&](int j, float2 f) {
            const float2 fa = factor_pair(off, 2 * (j - J0), f);
            fin[4 * j + 0] = __fmaf_rn(__fmul_rn(acc[4 * j + 0], cs.f0), fa.x, fin[4 * j + 0]);
            fin[4 * j + 1] = __fmaf_rn(__fmul_rn(acc[4 * j + 1], cs.f0), fa.y, fin[4 * j + 1]);
            fin[4 * j + 2] = __fmaf_rn(__fmul_rn(acc[4 * j + 2], cs.f1), fa.x, fin[4 * j + 2]);
            fin[4 * j + 3] = __fmaf_rn(__fmul_rn(acc[4 * j + 3], cs.f1), fa.y, fin[4 * j + 3]);
        });
    }

    /* Chunk cs's MMAs are complete: promote acc into the tile's accumulators (in the tokens'
     * units), release the stage, and after the tile's last chunk turn the accumulators into
     * values with the tokens' unit factors and store the tile. (Kept apart from promote and
     * retire below, which the three-warpgroup tiles use: built from them, the two-warpgroup
     * kernels compiled differently and measured 1-3 % slower at BN = 192.) */
    __device__ __forceinline__ void finish(const chunk_state& cs, const float (&acc)[NA]) {
        const uint8_t* st = stages + cs.s * L::bytes;
        const bool last = cs.last;
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
            const float ux = chunk_factor((int)(u.x & 0xFF)), uy = chunk_factor((int)(u.y & 0xFF));
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
        const int wg = warp / 4 - 1;
        const mxmoe_dtype dtype = split ? MXMOE_F32 : a.out_dtype;
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
        const bool mapped = !split && a.out_rows != nullptr;
        int32_t out_row[(BN + 127) / 128];
#pragma unroll
        for (int j = 0; j < (BN + 127) / 128; j++) {
            const int i = thread + 128 * j;
            const int64_t r = t.row_begin + i;
            out_row[j] = i >= BN || r >= t.row_end ? -1 : mapped ? a.out_rows[r] : (int32_t)r;
        }
        const int col0 = t.n0 + 64 * wg;
        void* out = split ? static_cast<void*>(a.partials + (int64_t)part * a.rows * a.n) : a.out;
        if (dtype == MXMOE_F32) {
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
            if (dtype == MXMOE_BF16) {
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
        for (int j = 0; j < BN / 8; j += 2) {
            stmatrix_x4_trans(base + 8 * j * pitch, pack_half2<Bf16>(fin[4 * j], fin[4 * j + 1]),
                              pack_half2<Bf16>(fin[4 * j + 2], fin[4 * j + 3]),
                              pack_half2<Bf16>(fin[4 * j + 4], fin[4 * j + 5]),
                              pack_half2<Bf16>(fin[4 * j + 6], fin[4 * j + 7]));
        }
#pragma unroll
        for (int j = 0; j < BN / 2; j++) {
            fin[j] = 0.0f;
        }
    }

    /* FP32 results, pass P: token columns 8j.. for j in [P BN / 16, (P + 1) BN / 16). */
    template <int P> __device__ __forceinline__ void slab_f32(uint8_t* slab) {
        constexpr int pitch = slab_pitch<4>();
        const int c0 = 16 * (warp % 4) + lane / 4; /* the thread's columns c0, c0 + 8 */
#pragma unroll
        for (int j = P * BN / 16; j < (P + 1) * BN / 16; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = 8 * j + 2 * q + (e & 1) - P * BN / 2, col = c0 + (e < 2 ? 0 : 8);
                *reinterpret_cast<float*>(slab + row * pitch + col * 4) = fin[4 * j + e];
                fin[4 * j + e] = 0.0f;
            }
        }
    }
};


/* The two-warpgroup consumers' loop with each chunk's MMAs as one commit group: BN <= 64, and
 * BN = 192 in lab builds (the knock-outs and the timeline measure that form there). */
template <int BN> __device__ __forceinline__ void consume_whole_chunks(consumer<BN>& cs, int G) {
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

/* K parts per tile: 2 (a K-split) where it shortens the schedule of `total` tiles on `grid`
 * CTAs: rounds of whole tiles against twice the rounds of half tiles (5 % margin for the
 * partials' reduction; every CTA decides alike). */
[[maybe_unused]] __device__ __forceinline__ int k_parts(const gemm_args& a, int total, int grid,
                                                        int nc) {
    bool split = a.partials != nullptr && a.force_split;
    if (a.partials != nullptr && nc >= 32) {
        const int64_t rounds1 = (total + grid - 1) / grid, rounds2 = (2 * total + grid - 1) / grid;
        split = split || rounds2 * ((nc + 1) / 2) * 20 < rounds1 * nc * 19;
    }
    return split ? 2 : 1;
}

/* A store warp (warps 1 .. consumer_wgs of the producer warpgroup, v27) writes consumer
 * warpgroup wg's results out: at each of the CTA's units it takes the slab the warpgroup filled
 * (one pass, two for FP32) and hands it back, so that the warpgroup goes on to its next unit
 * at once. (Stored by the consumers, the rows took ~1500-2100 of a unit's ~3100-3500 cycles of
 * epilogue; knocked out, the stores measured 4-9 % of the op.) */
template <int BN> __device__ void store_warp(const gemm_args& a, const smem_header& h, int wg) {
    /* what it needs, taken again here: values carried past setmaxnreg from the common set-up
     * made the consumers spill */
    const int lane = threadIdx.x % 32, nc = (int)((a.k + kChunk - 1) / kChunk);
    const int total = h.tile_prefix[a.num_experts];
    const int ks = k_parts(a, total, (int)gridDim.x, nc), units = total * ks;
    const uint8_t* slab = reinterpret_cast<const uint8_t*>(&h) + kHeaderBytes +
                          stage_layout<BN>::stages * stage_layout<BN>::bytes +
                          wg * slab_bytes<BN>();
    const bool f32 = ks == 2 || a.out_dtype == MXMOE_F32;
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
                store_slab<BN, 4>(a, slab, out, h.slab_col0[wg], lane, 32);
            } else {
                store_slab<BN, 2>(a, slab, out, h.slab_col0[wg], lane, 32);
            }
        }
    }
}

template <int BN>
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
                store_warp<BN>(a, h, warp - 1);
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
    consumer<BN> cs(a, h, stages, nc, warp, lane, unit_walk((int)blockIdx.x, grid, ks, nc));
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
    if constexpr (BN == 192 && MXMOE_SM90_LAB == 0) { /* consumer::kParts groups a chunk */
        float acc[consumer<BN>::kParts][NA / consumer<BN>::kParts];
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

template <int BN> mxmoe_status launch(mxmoe_ctx* ctx, const gemm_args* args) {
    auto kernel = grouped_gemm_sm90_kernel<BN>;
    constexpr int bytes = smem_bytes<BN>(); /* allowed once, in mxmoe_grouped_gemm_sm90_init */
    const int64_t n_tiles = (args->n + tile_n<BN>() - 1) / tile_n<BN>();
    const int64_t bound = ((args->rows + BN - 1) / BN + args->num_experts) * n_tiles;
    const int64_t sms =
        (int64_t)cuda_state(ctx)->sm_count * cuda_state(ctx)->sm90_resident[bn_index<BN>()];
    const unsigned grid = (unsigned)(bound < sms ? bound : sms);
    const uint64_t rows = (uint64_t)args->rows, en = (uint64_t)(args->num_experts * args->n);
    const uint64_t en4 = (uint64_t)(args->num_experts * words_per_expert(args->n));
    const uint64_t nc = (uint64_t)((args->k + kChunk - 1) / kChunk), kc = chunk_cols(args->k);
    operand_maps m;
    MXMOE_RETURN_IF(!encode_map(ctx, &m.a, args->a_e4m3, false, kc, rows, kc, kChunk, BN, true) ||
                        !encode_map(ctx, &m.w, args->w_packed, false, (uint64_t)(args->k / 2), en,
                                    (uint64_t)(args->k / 2), kWeightBox, tile_n<BN>(), false) ||
                        !encode_map(ctx, &m.words, args->w_words, true, en4, nc, en4 * 4,
                                    tile_n<BN>(), 1, false) ||
                        !encode_map(ctx, &m.factors, args->a_factors, true, rows, nc + 1,
                                    word_pitch(rows), stage_layout<BN>::factor_box, 1, false),
                    ctx, MXMOE_ERR_BACKEND,
                    "grouped_gemm: cuTensorMapEncodeTiled refused the operands");
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

/* Grants the kernel its shared memory (all of the SM's carveout, so that two CTAs fit where
 * ctas_per_sm asks for them) and records how many CTAs the SM then holds: the persistent grid. */
template <int BN> bool allow_smem(mxmoe_ctx* ctx) {
    const auto kernel = grouped_gemm_sm90_kernel<BN>;
    int& resident = cuda_state(ctx)->sm90_resident[bn_index<BN>()];
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                smem_bytes<BN>()) == cudaSuccess &&
           cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                cudaSharedmemCarveoutMaxShared) == cudaSuccess &&
           cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, cta_threads<BN>(),
                                                         smem_bytes<BN>()) == cudaSuccess &&
           resident >= 1;
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
    ok = ok && allow_smem<16>(ctx) && allow_smem<32>(ctx) && allow_smem<64>(ctx) &&
         allow_smem<128>(ctx) && allow_smem<192>(ctx);
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
static bool weights_supported(mxmoe_ctx* ctx, const gemm_args* args) {
    return cuda_state(ctx)->sm90_ready && args->num_experts <= kMaxExperts && args->k % 32 == 0 &&
           /* TMA box coordinates are int32 */
           args->num_experts * words_per_expert(args->n) <= INT32_MAX &&
           ((uintptr_t)args->w_packed | (uintptr_t)args->w_scales) % 16 == 0;
}

bool mxmoe_grouped_gemm_sm90_supported(mxmoe_ctx* ctx, const gemm_args* args) {
    return weights_supported(ctx, args) && !args->a_swizzled && args->rows <= INT32_MAX / 2 &&
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
    if (!weights_supported(ctx, &args) || lay.total == SIZE_MAX) {
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

    /* Tokens per tile from the mean rows of an active expert (the offsets stay on the device):
     * at least twice the mean. An expert's rows scatter around the mean (with uniform routing
     * nearly half the experts are above it); a tile that holds almost every expert whole
     * converts and streams each weight chunk once, where a tile of the mean took two for those
     * experts (deepseek-v3 n = 512: 16 -> 32 tokens, 885 -> 803 us; gpt-oss n = 256 -7 %; the
     * mean itself, or 1.5x it, measured slower or the same again in v16). From 384 rows a
     * mean, 192 tokens (v17): at most a sixth more tiles' padding, for a third fewer weight
     * conversions; at a mean of 256 it would pad a half. From 768 rows a mean, 128 tokens
     * again, now with three warpgroups (v19: gpt-oss-20b n = 8192, 1024 rows a mean, 836 ->
     * 782 us against 192; at 512 a mean, 192 stays 1.5-3 % ahead). */
    const int64_t active = args.num_experts < args.rows ? args.num_experts : args.rows;
    const int64_t mean = (args.rows + active - 1) / active;
    mxmoe_status st = 2 * mean <= 16              ? launch<16>(ctx, &args)
                      : 2 * mean <= 32            ? launch<32>(ctx, &args)
                      : 2 * mean <= 64            ? launch<64>(ctx, &args)
                      : mean < 384 || mean >= 768 ? launch<128>(ctx, &args)
                                                  : launch<192>(ctx, &args);
    if (st == MXMOE_OK && args.partials != nullptr) { /* a no-op unless the GEMM split K */
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, split_reduce_kernel,
                                         grid_for(ctx, args.rows * args.n, 256), 256, 0, args));
    }
    if (owned != nullptr) {
        MXMOE_CUDA_CHECK(ctx, cudaFreeAsync(owned, cuda_stream(ctx)));
    }
    return st;
}
