/*
 * cpu_kernels.h — the CPU backend's kernel table (one per SIMD tier) and the data formats its
 * kernels share.
 *
 * Tiers, lowest first: scalar (the src/ref kernels themselves, single-threaded), avx2 (AVX2 +
 * FMA + F16C), avx512bw (AVX-512 F/BW/VL/DQ), avx512 (the same + VNNI). Each tier's kernels
 * live in their own translation units (gemm_<isa>.c, quantize_<isa>.c, act_<isa>.c) compiled
 * with that ISA's flags only; generic drivers (gemm_cpu.c, quantize_cpu.c, moe_cpu.c) run them
 * on the thread pool. Operations without SIMD kernels (route, plan, dequantize, GGUF, swizzle)
 * run src/ref on every tier.
 *
 * The GEMM works on two prepared forms:
 *
 *  - an activation row in "act8" form (prepared once per call, shared by every output tile):
 *    48 bytes per 32-block j, at 48j:
 *      vals [32] int8  the block as 2 * E2M1 values (integers in [-12, 12]), in the order of
 *                      packed dwords: for d < 4, elements 8d, 8d+2, 8d+4, 8d+6 (the low nibbles
 *                      of packed bytes 4d..4d+3), then 8d+1, 8d+3, 8d+5, 8d+7. The order inside
 *                      a block is free because a block's dot product is an exact integer sum;
 *                      this one lets the weights decode without shuffles.
 *      int32 [4]       -12 * (sum of the block's vals) (undoes the +12 offset of the weights,
 *                      see below), (sa - 129) << 23 (the FP32 exponent field of
 *                      2^(sa + sb - 256) once sb << 23 is added), sa, 0.
 *    then int32 [2]: the min and max of sa over the row.
 *    sa is the block's scale byte, except that a block whose codes are all +-0 gets 127: its dot
 *    product is 0 whatever the scale, and 127 keeps it out of the rare exact path below.
 *
 *  - a weight tile of tile_n consecutive output rows of one expert: packed rows (K/2 bytes
 *    each, `stride` apart), and its scales transposed to sbT [K/32][tile_n] with the min and
 *    max of each chunk of 16 blocks.
 *
 * Numerics: out[r, n] = sum over blocks j, ascending, in FP32, of the block term
 * (float)(isum * 2^(sa + sb - 256)) (mxmoe_block_term). When sa + sb lies in [130, 370] and
 * neither is 0xFF, the term isum * 2^(sa+sb-256) is an exact normal FP32 number (|isum| < 2^13),
 * so a fused multiply-add acc + isum * f rounds exactly like the reference's acc + term. Chunks
 * where some (row, column) pair falls outside use mxmoe_block_term itself, lane by lane.
 */
#ifndef MXMOE_CPU_CPU_KERNELS_H
#define MXMOE_CPU_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mxmoe.h"

typedef enum mxmoe_cpu_tier {
    MXMOE_CPU_TIER_SCALAR = 0,
    MXMOE_CPU_TIER_AVX2 = 1,     /* AVX2 + FMA + F16C */
    MXMOE_CPU_TIER_AVX512BW = 2, /* AVX-512 F/BW/VL/DQ without VNNI (Skylake-SP/X) */
    MXMOE_CPU_TIER_AVX512 = 3,   /* AVX-512 F/BW/VL/DQ + VNNI */
    MXMOE_CPU_TIER_COUNT
} mxmoe_cpu_tier;

/* Put before the fixed-trip loops of the SIMD kernels (over rows, dwords, lanes): they must
 * unroll fully at any -O level, or their arrays of vectors live in memory (GCC 12 keeps
 * them rolled at -O2: the 8-row tile ran 4x slower, and 10% slower at -O3). */
#if defined(__clang__)
#define MXMOE_UNROLL_ALL /* clang unrolls them by itself, and schedules them worse if told to */
#elif defined(__GNUC__)
#define MXMOE_UNROLL_ALL _Pragma("GCC unroll 16")
#else
#define MXMOE_UNROLL_ALL
#endif

/* Blocks per scale chunk of a weight tile (the unit of the fast/exact path decision). */
#define MXMOE_CPU_CHUNK_BLOCKS 16
/* Fast path: sa + sb within [lo, hi] (and no 0xFF) keeps every block term exact and normal. */
#define MXMOE_CPU_FAST_SUM_LO 130
#define MXMOE_CPU_FAST_SUM_HI 370

/* Bytes of one act8 block and the offsets of its fields. */
#define MXMOE_ACT8_BLOCK   48
#define MXMOE_ACT8_CORR    32 /* int32: -12 * block sum */
#define MXMOE_ACT8_SA_BITS 36 /* int32: (sa - 129) << 23 */
#define MXMOE_ACT8_SA      40 /* int32: sa */

typedef struct mxmoe_cpu_wtile {
    const uint8_t* packed;    /* row 0 of the tile; row i at packed + i * stride */
    int64_t stride;           /* bytes between packed rows */
    const uint8_t* sbT;       /* [kb][tile_n] scale bytes */
    const uint8_t* chunk_min; /* [ceil(kb / 16)] min of sbT over each chunk of 16 blocks */
    const uint8_t* chunk_max; /* [ceil(kb / 16)] max */
    int64_t kb;               /* K / 32 */
    /* The packed bytes of the tile this thread takes next (kb * tile_n * 16 bytes), or NULL:
     * the kernel prefetches them in address order while it works on this one, because its own
     * 16 interleaved row streams are more than the hardware prefetcher follows. */
    const uint8_t* next;
} mxmoe_cpu_wtile;

/* Bytes of one act8 row for reduction length k (64-byte multiple). */
static inline size_t mxmoe_cpu_act8_row_bytes(int64_t k) {
    size_t b = (size_t)(k / 32) * MXMOE_ACT8_BLOCK + 16;
    return (b + 63) & ~(size_t)63;
}

/* The min and max of sa over the act8 row at `row` (reduction length k). */
static inline void mxmoe_cpu_act8_range(const void* row, int64_t k, int32_t* sa_min,
                                        int32_t* sa_max) {
    const uint8_t* p = (const uint8_t*)row + (k / 32) * MXMOE_ACT8_BLOCK;
    memcpy(sa_min, p, sizeof *sa_min);
    memcpy(sa_max, p + 4, sizeof *sa_max);
}

typedef struct mxmoe_cpu_kernels {
    const char* name; /* "avx512-vnni", "avx2" */
    int tile_n;       /* output columns per GEMM tile */
    int max_rows;     /* rows per gemm_tile call */
    /* res[r][c] = the FP32 sum over blocks of tile column c (c < tile_n) for the act8 row at
     * act + r * act_stride, r < m <= max_rows; sa_lo / sa_hi bound sa over those rows. */
    void (*gemm_tile)(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
                      int32_t sa_lo, int32_t sa_hi, float* res);
    /* Scales of `rows` (<= tile_n) weight rows, `stride` bytes apart, kb blocks each -> sbT,
     * chunk_min, chunk_max of a tile (rows beyond `rows` read as 127). */
    void (*transpose_scales)(const uint8_t* src, int64_t stride, int rows, int64_t kb, uint8_t* sbT,
                             uint8_t* chunk_min, uint8_t* chunk_max);
    /* One packed MXFP4 row (k/2 bytes) and its k/32 scale bytes -> act8 row at `dst`. */
    void (*act8_row)(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst);
    /* out[i] = mxmoe_activation_rounded(h, r, i, cols, p) for i < cols (cols % 32 == 0),
     * bit for bit: the sigmoid family in SIMD with Ziv's test against FP32 rounding and the
     * reference for the few lanes that fail it (act_<isa>.c), the rest through the reference. */
    void (*act_row)(const mxmoe_tensor* h, int64_t r, int64_t cols, const mxmoe_act_params* p,
                    float* out);
    /* One row of k F32/BF16/F16 values -> k/2 packed bytes + k/32 scale bytes, byte-identical
     * to mxmoe_quantize_block block by block. */
    void (*quantize_row)(const void* x, mxmoe_dtype dtype, int64_t k, mxmoe_scale_rule rule,
                         uint8_t* packed, uint8_t* scales);
} mxmoe_cpu_kernels;

/* The tiers compiled into this build (NULL where the build lacks them). */
extern const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx2;
extern const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx512bw;
extern const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx512;

/* Tier functions (defined in the ISA files). */
void mxmoe_gemm_tile_avx512(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
                            int32_t sa_lo, int32_t sa_hi, float* res);
void mxmoe_gemm_tile_avx512bw(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride,
                              int m, int32_t sa_lo, int32_t sa_hi, float* res);
void mxmoe_quantize_row_avx512(const void* x, mxmoe_dtype dtype, int64_t k, mxmoe_scale_rule rule,
                               uint8_t* packed, uint8_t* scales);
void mxmoe_act_row_avx512(const mxmoe_tensor* h, int64_t r, int64_t cols, const mxmoe_act_params* p,
                          float* out);
void mxmoe_act_row_avx2(const mxmoe_tensor* h, int64_t r, int64_t cols, const mxmoe_act_params* p,
                        float* out);
void mxmoe_gemm_tile_avx2(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
                          int32_t sa_lo, int32_t sa_hi, float* res);
void mxmoe_act8_row_avx2(const uint8_t* packed, const uint8_t* scales, int64_t k, void* dst);
void mxmoe_quantize_row_avx2(const void* x, mxmoe_dtype dtype, int64_t k, mxmoe_scale_rule rule,
                             uint8_t* packed, uint8_t* scales);

/* The best tier this CPU supports. */
mxmoe_cpu_tier mxmoe_cpu_best_tier(void);
const char* mxmoe_cpu_tier_name(mxmoe_cpu_tier tier);
/* The kernel table of a tier (NULL for the scalar tier, which runs src/ref). */
const mxmoe_cpu_kernels* mxmoe_cpu_tier_kernels(mxmoe_cpu_tier tier);

#endif /* MXMOE_CPU_CPU_KERNELS_H */
