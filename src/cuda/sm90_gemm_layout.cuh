/*
 * sm90_gemm_layout.cuh — the Hopper GEMM's CTA (grouped_gemm_sm90.cu): its warpgroups, tile widths,
 * pipeline stages and epilogue slabs in shared memory, the operands' tensor maps, registers per
 * side.
 */
#ifndef MXMOE_CUDA_SM90_GEMM_LAYOUT_CUH
#define MXMOE_CUDA_SM90_GEMM_LAYOUT_CUH

#include <cuda.h> /* CUtensorMap */
#include <stdint.h>

#include "cuda/sm90_e4m3.cuh"

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

/* The kernel's tile widths (tokens a tile), in one list that the shared-memory check below,
 * bn_index, and the init's grants and the launch's dispatch (grouped_gemm_sm90.cu) all read:
 * a width is added here and nowhere else. */
template <int... BNs> struct width_list { static constexpr int count = sizeof...(BNs); };
using tile_widths = width_list<8, 16, 32, 48, 80, 96, 128, 144, 160, 176, 192>;

template <int BN, int... BNs> constexpr int index_in(width_list<BNs...>) {
    constexpr int widths[] = {BNs...};
    for (int i = 0; i < (int)sizeof...(BNs); i++) {
        if (widths[i] == BN) {
            return i;
        }
    }
    return -1;
}
/* A width's place in tile_widths (mxmoe_cuda_state::sm90_resident). */
template <int BN> constexpr int bn_index() {
    constexpr int i = index_in<BN>(tile_widths{});
    static_assert(i >= 0, "one of the kernel's tile widths");
    return i;
}

/* Token rows of a stage's activation box: all BN (lab bit 16384: the first half only, the L2
 * traffic a pair of CTAs multicasting the tile would leave each; results wrong, timing only). */
template <int BN> constexpr int kActRows = (MXMOE_SM90_LAB & 16384) ? BN / 2 : BN;

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
     * tokens: 3 (4 measured slower, v17b and v27), 144 to 176 likewise; 80 and 96: 7 (not
     * tuned). Two CTAs an SM at 48 tokens: 5 (6 measured even, v43), at 8 tokens 8 (10 even). */
    static constexpr int stages = ctas_per_sm<BN>() == 2 ? (BN >= 48   ? 5
                                                            : BN >= 32 ? 6
                                                                       : 8)
                                  : BN >= 144            ? 3
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
template <int... BNs> constexpr bool all_fit(width_list<BNs...>) {
    return (smem_fits<BNs>() && ...);
}
static_assert(all_fit(tile_widths{}),
              "the sm_90 GEMM's shared memory exceeds what its CTAs per SM may have");

/* The tensor maps of the four operands a stage holds. */
struct operand_maps {
    CUtensorMap a;       /* E4M3 activations [rows, chunk_cols(K) bytes], 128-byte swizzled */
    CUtensorMap w;       /* packed weights [E*N rows, K/2 bytes] */
    CUtensorMap words;   /* weight-scale words [chunks, E * words_per_expert(N)] */
    CUtensorMap factors; /* activation factors [chunks, rows], then the unit words [rows] */
};

/* Device code below is compiled for the host pass and sm_90a only. */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* Registers per thread after setmaxnreg. A CTA is launched with 64K / its threads per thread
 * and CTA per SM, rounded down to 8 (168 at one CTA per SM, 80 at two, 128 with three consumer
 * warpgroups); setmaxnreg.inc waits until the registers it asks for have been released by
 * setmaxnreg.dec, so asking for more than the producer gives back hangs the kernel (seen in
 * the v8 experiment with 96 / 208). ptxas fits each side's code into its count. The producer
 * warpgroup keeps 24, or 32 with store warps (at 24 their loop made ptxas spill the
 * consumers' unit walk, v27), 40 at BN >= 176 (all that 232 for the consumers leaves: the store
 * warps' copy of whole rows, v37), so that at BN = 192 the consumers get 232: their 96 + 96
 * accumulators, the fragments and the loop; with three consumer warpgroups they get 160:
 * 64 + 32 accumulators (token_halves), the fragments and the loop. */
template <int BN> struct regs {
    static constexpr int launch = 65536 / cta_threads<BN>() / ctas_per_sm<BN>() / 8 * 8;
    static constexpr int producer = ctas_per_sm<BN>() == 1 ? (BN <= 128 && !token_halves<BN>() ? 56
                                                              : BN >= 176                      ? 40
                                                                                               : 32)
                                                           : 24;
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

#endif /* host or sm_90a */

} // namespace

#endif /* MXMOE_CUDA_SM90_GEMM_LAYOUT_CUH */
