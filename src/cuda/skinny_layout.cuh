/*
 * skinny_layout.cuh — the few-tokens GEMM's CTA (grouped_gemm_skinny.cu): warps and rows, the
 * per-warp weight ring, the activation slab and the tile's weight scales in shared memory.
 */
#ifndef MXMOE_CUDA_SKINNY_LAYOUT_CUH
#define MXMOE_CUDA_SKINNY_LAYOUT_CUH

#include <stddef.h>
#include <stdint.h>

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                 /* M of one MMA */
constexpr int kTileRows = kWarps * kWarpRows; /* weight rows of a CTA */
constexpr int kGroupTokens = 32;              /* tokens per pass over the weights: 4 MMAs of 8 */
constexpr int kTokenTiles = kGroupTokens / 8;
/* Ring shape and activation slab; lab builds override them (dev/cuda/skinny_variants.sh).
 * Stages of 8 blocks (128 bytes a row), 3 deep: the K loop's head (ring slot, copies, the
 * variant's dispatch, ~50 instructions) runs once per 8 blocks instead of 4, -11..-14 % at one
 * token (H200, bench/NOTES.md v47). The slab is the least that holds a stage of 32 tokens: with
 * a 12 KB one, deepseek-v3's CTAs fit 3 to an SM instead of 4 and its replayed decode step was
 * 7 % slower, though the kernel alone was faster (v47). v5's 5 stages of 4 blocks and 8 KB had
 * beaten 8 stages and 24 KB (deepseek-v3 n = 64 1021 -> 788 us). */
#ifndef MXMOE_SKINNY_STAGES
#define MXMOE_SKINNY_STAGES 3
#endif
#ifndef MXMOE_SKINNY_STAGE_BLOCKS
#define MXMOE_SKINNY_STAGE_BLOCKS 8
#endif
#ifndef MXMOE_SKINNY_ACT_BYTES
#define MXMOE_SKINNY_ACT_BYTES 9216
#endif
constexpr int kStages = MXMOE_SKINNY_STAGES;            /* ring depth per warp */
constexpr int kStageBlocks = MXMOE_SKINNY_STAGE_BLOCKS; /* K blocks a stage */
constexpr int kStageRow = kStageBlocks * 16 + 16; /* padded: rows g = 0..7 on distinct banks */
constexpr int kLanesPerRow = kStageBlocks;        /* one 16-byte copy each */
constexpr int kCopies = kWarpRows * kStageBlocks / 32;
constexpr int kWarpStage = kWarpRows * kStageRow;
constexpr int kRingBytes = kWarps * kStages * kWarpStage;
constexpr int kActBytes = MXMOE_SKINNY_ACT_BYTES; /* decoded activation slab (int8) */
constexpr int kActEntries = kActBytes / 32;       /* its (token, block) pairs at most */
static_assert((kActBytes / kGroupTokens - 32) / 32 >= kStageBlocks, "32 tokens' slab: a stage");
constexpr int kMaxBlocks = 768;   /* K <= 24576: the tile's weight scales fit */
constexpr int kMaxExperts = 1024; /* the offsets fit the activation slab at start */
static_assert((kMaxExperts + 1) * 4 <= kActBytes, "the offsets fit the slab");
constexpr int32_t kBias = 0x4B400000; /* FP32 bits of 1.5 * 2^23 */
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

} // namespace

#endif /* MXMOE_CUDA_SKINNY_LAYOUT_CUH */
