/*
 * sm90_e4m3.cuh — the W4A4-on-FP8 encoding that the Hopper GEMM (grouped_gemm_sm90.cu) and its
 * operand passes (sm90_prepass.cu) share: E2M1 nibbles to E4M3 bytes by shift tables, the
 * weight rows' chunk words, the tokens' unit words, and the sizes of the converted operands.
 * grouped_gemm_sm90.cu's header comment explains the numerics. Internal linkage: each
 * translation unit that includes it has its own copy of the table.
 */
#ifndef MXMOE_CUDA_SM90_E4M3_CUH
#define MXMOE_CUDA_SM90_E4M3_CUH

#include <stdint.h>

/* Lab knock-outs (dev/cuda/sm90_knockouts.sh; results wrong, timing only), bits: 1 no promotion,
 * 2 no weight conversion, 4 no epilogue, 8 no MMA, 16 no weight copy (packed bytes and scale
 * words), 32 no activation copy, 64 no activation-factor copy, 128 no result stores (the slab
 * is still written), 256 the MMAs with both operands from shared memory (A: rows of the
 * activation tile), 512 no GEMM at all. Bit 4 also drops the MMAs: with nothing reading the
 * accumulators ptxas removes them, so "MMA only" is bits 1 | 2 (the epilogue stays). Bit 1024
 * is no knock-out but a timeline (grouped_gemm_sm90.cu). The three-warpgroup tiles (BN = 128)
 * honour bits 2, 4, 16-128, 512 and 1024 only. The token prepass (token_e4m3_kernel) honours three
 * of its own: 2048 no pair-row stores (nor the row lookups), 4096 no E2M1 quantization (the tokens'
 * bits stand in for the codes, scale 127; the E4M3 encoding stays), 8192 no factor stores. Bit
 * 16384: half of each activation box (sm90_gemm_layout.cuh, kActRows). */
#ifndef MXMOE_SM90_LAB
#define MXMOE_SM90_LAB 0
#endif

namespace {

constexpr int kChunk = 128; /* K per stage and per promotion: 4 MX blocks */
constexpr int kShifts = 20; /* E4M3 tables for shifts -13..6 (row 0: all round to 0) */
static_assert(kShifts <= 32, "a scale word holds each table index in 5 bits");

/* Bytes of one converted activation row: K rounded up to whole 128-K chunks. */
__host__ __device__ constexpr int64_t chunk_cols(int64_t k) {
    return (k + 127) / 128 * 128;
}

/* A TMA box must start 16-byte aligned in its innermost dimension (anywhere else the copy is an
 * illegal instruction on sm_90), so 4-byte entries are addressed in groups of 4: each expert's
 * scale words start at a multiple of 4 (N rounded up), and a tile's factor box starts at its
 * first row rounded down to a multiple of 4, 4 entries wider than the tile. */
__host__ __device__ constexpr int64_t words_per_expert(int64_t n) {
    return (n + 3) / 4 * 4;
}

/* Bytes of one chunk's row of scale words or activation factors (4 bytes an entry): whole 16
 * bytes, as a TMA tensor's row pitch must be. */
__host__ __device__ constexpr int64_t word_pitch(int64_t entries) {
    return words_per_expert(entries) * 4;
}

/* Device code below is compiled for the host pass and sm_90a only. */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* A token's unit word: the FP32 bits of its unit 2^(R - 133) (R its reference scale:
 * chunk_factor(R), whose lowest bit is always clear) and this bit where some chunk of it is not
 * encoded against R (its factor is not 1 in those units). The GEMM's epilogue turns each token's
 * accumulators into values with one mask and one multiply (unit_factor), where decoding R took
 * ~8 instructions a token (v37: GEMM-2 at qwen3 n = 8192 -5 %). */
constexpr uint32_t kOffReference = 1u;

constexpr int kTwiceE2m1[8] = {0, 1, 2, 3, 4, 6, 8, 12}; /* 2 |e2m1| of magnitude codes 0-7 */

/* The E4M3 byte (round to nearest even, subnormals included) of E2M1 magnitude m times
 * 2^(i - 13), from integers: twice the magnitude, x in {0, 1, 2, 3, 4, 6, 8, 12}, makes the value
 * x * 2^(i - 5) in units of 2^-9, E4M3's subnormal step; x has at most 2 significant bits, so
 * every normal result is exact. */
constexpr uint8_t e4m3_shifted(int m, int i) {
    const int x = kTwiceE2m1[m], s = i - 5;
    if (s < 0) { /* under 6 steps: subnormal, rounded */
        const int q = x >> -s, r = x & ((1 << -s) - 1), half = 1 << (-s - 1);
        return (uint8_t)(q + (r > half || (r == half && (q & 1)) ? 1 : 0));
    }
    const int u = x << s;
    if (u < 8) { /* below 2^-6 */
        return (uint8_t)u;
    }
    int p = 3; /* floor(log2 u): the exponent is p - 9, biased by 7 */
    while ((u >> (p + 1)) != 0) {
        p++;
    }
    return (uint8_t)(((p - 2) << 3) | (((u << 3) >> p) - 8));
}
/* Checked at compile time against a search: the nearest of the positive E4M3 codes (ties to the
 * even code), every value in units of 2^-14 (code c = 8e + m is m 2^5 for e = 0, else
 * (8 + m) 2^(e + 4); the input is 2|e2m1| 2^i). */
constexpr bool e4m3_shifted_is_nearest() {
    for (int i = 0; i < kShifts; i++) {
        for (int m = 0; m < 8; m++) {
            const long target = (long)kTwiceE2m1[m] << i;
            int best = 0;
            long best_d = target;
            for (int c = 1; c < 127; c++) {
                const long v =
                    (c >> 3) == 0 ? (long)(c & 7) << 5 : (long)(8 + (c & 7)) << ((c >> 3) + 4);
                const long d = v > target ? v - target : target - v;
                if (d < best_d || (d == best_d && (c & 1) == 0)) {
                    best = c, best_d = d;
                }
            }
            if (best != e4m3_shifted(m, i)) {
                return false;
            }
        }
    }
    return true;
}
static_assert(e4m3_shifted_is_nearest() && e4m3_shifted(7, 13) == 0x4C &&
                  e4m3_shifted(3, 4) == 0x02,
              "E4M3 shift tables: 6 -> 0x4C, 1.5 * 2^-9 -> 2^-8 (to even)");

/* The shift tables as words: row i (E2M1 magnitudes 0-3, then 4-7) at words 2i and 2i + 1,
 * rows kShifts..31 zero. Each kernel copies the rows it uses into shared memory. */
struct e4m3_tables {
    uint32_t words[64];
};
constexpr e4m3_tables make_e4m3_tables() {
    e4m3_tables t = {};
    for (int i = 0; i < kShifts; i++) {
        for (int m = 0; m < 8; m++) {
            t.words[2 * i + m / 4] |= (uint32_t)e4m3_shifted(m, i) << (8 * (m % 4));
        }
    }
    return t;
}
__device__ const e4m3_tables kE4m3Tables = make_e4m3_tables();

/* E4M3 bytes of 4 E2M1 nibbles: those in bits 0..15 of x (High = false) or 16..31 (true). Packed:
 * x is in the Hopper sign packing (core/sign_packing.h), whose signs already sit where the bytes'
 * go (or 4 bits below, for the high half): no byte permute to gather them. */
template <bool High, bool Packed = false>
__device__ __forceinline__ uint32_t e4m3x4(uint32_t x, uint2 table) {
    /* prmt reads selector bits 0..15, so one mask serves both halves of x. Both in asm: the
     * compiler masks __byte_perm's selector again, and splits a shared mask in two. */
    uint32_t magnitudes, mag;
    asm("and.b32 %0, %1, 0x77777777;" : "=r"(magnitudes) : "r"(x));
    asm("prmt.b32 %0, %1, %2, %3;"
        : "=r"(mag)
        : "r"(table.x), "r"(table.y), "r"(High ? magnitudes >> 16 : magnitudes));
    /* Sign of nibble j (bit 4j+3) to bit 7 of byte j: bytes of x << 4 and x interleaved. */
    const uint32_t sign =
        Packed ? (High ? x << 4 : x) : __byte_perm(x << 4, x, High ? 0x7362u : 0x5140u);
    return mag | (sign & 0x80808080u);
}

/* The largest of the four bytes (integer max: __vmaxu4 is emulated on sm_90, ~10 instructions). */
__host__ __device__ __forceinline__ int max_byte(uint32_t s) {
    const int lo = max((int)(s & 0xFFu), (int)((s >> 8) & 0xFFu));
    const int hi = max((int)((s >> 16) & 0xFFu), (int)(s >> 24));
    return max(lo, hi);
}

/* 2^(smax - 133): the chunk's reference factor (NaN for the NaN scale 0xFF), from its bits:
 * normal for smax >= 7, else the subnormal 2^(smax + 16 - 149). */
__device__ __forceinline__ float chunk_factor(int smax) {
    return smax == 255 ? __int_as_float(0x7FC00000)
                       : __int_as_float(smax >= 7 ? (smax - 6) << 23 : 1 << (smax + 16));
}

/* A unit word's unit (the GEMM's epilogue). */
__device__ __forceinline__ float unit_factor(uint32_t unit_word) {
    return __uint_as_float(unit_word & ~kOffReference);
}

/* A weight row's chunk as the consumers need it, one word (the weight-scale pass writes it),
 * against a reference R = max(smax, 7): bits 5q..5q+4 the shift table of block q
 * (s_q - R + 6 + 13, 0 where the block lies more than 19 binades down: all zeros), and bits
 * 22..30 the factor 2^(R - 133) as FP32 bits, so that the consumers read it with one mask
 * (word_factor): 2^(R - 133) is normal for R >= 7, and a chunk whose largest scale is below 7 has
 * every block within 7 binades of 7, exact in E4M3 against it; R = 255 (a NaN scale) puts the
 * quiet NaN 0x7FC00000 there. smax is the largest scale of the chunk's 256-K span (chunks 2p
 * and 2p + 1), so that the consumers may let one wgmma chain sum both before promoting them
 * (kSpanChunks), unless that reference would round, in some span of the row, a block the
 * chunk's own keeps exact (the contract allows losses only below a 128-K chunk's largest
 * block): then smax is the chunk's own largest in every chunk of the row, and bit 20
 * (kChunkReference) says so in each of its words. */
constexpr int kSpanChunks = 2;
constexpr uint32_t kChunkReference = 1u << 20;
__host__ __device__ __forceinline__ uint32_t chunk_word(uint32_t sc, int smax) {
    const int ref = max(smax, 7);
    uint32_t word = ref == 255 ? 0x7FC00000u : (uint32_t)(ref - 6) << 23;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int i = (int)((sc >> (8 * q)) & 0xFF) - ref + 6 + 13;
        word |= (uint32_t)(i < 0 ? 0 : i) << (5 * q);
    }
    return word;
}

/* Whether the reference of span_max keeps every block of the chunk (scale bytes sc) exact that
 * the chunk's own largest keeps exact: exact means at most 14 binades below the reference
 * (e4m3_shifted's shift index >= 5). */
__host__ __device__ __forceinline__ bool span_keeps_chunk(uint32_t sc, int span_max) {
    const int own = max(max_byte(sc), 7) - 14, span = max(span_max, 7) - 14;
    bool keeps = true;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int s = (int)((sc >> (8 * q)) & 0xFF);
        keeps &= !(s >= own && s < span);
    }
    return keeps;
}

/* Whether the chunk with scale bytes sc (0 for blocks past K) and the other chunk of its span,
 * scale bytes so (partner false where there is none: the row's last, even-numbered chunk), may
 * share the span's reference: it rounds no block of either that their own keep exact. */
__host__ __device__ __forceinline__ bool span_shares_reference(uint32_t sc, uint32_t so,
                                                               bool partner) {
    const int span_max = max(max_byte(sc), max_byte(so));
    return span_keeps_chunk(sc, span_max) && (!partner || span_keeps_chunk(so, span_max));
}

/* The word of a weight row's chunk (scale bytes sc, its span partner's so, 0 where none): against
 * the span's largest scale where every span of the row shares its reference (row_on_spans), else
 * against the chunk's own largest, flagged (kChunkReference), so that any one chunk's word says
 * which. */
__host__ __device__ __forceinline__ uint32_t weight_chunk_word(uint32_t sc, uint32_t so,
                                                               bool row_on_spans) {
    return row_on_spans ? chunk_word(sc, max(max_byte(sc), max_byte(so)))
                        : chunk_word(sc, max_byte(sc)) | kChunkReference;
}

/* The chunk factor a chunk_word carries. */
__device__ __forceinline__ float word_factor(uint32_t word) {
    return __int_as_float(word & 0x7FC00000u);
}

#endif /* host or sm_90a */

} // namespace

#endif /* MXMOE_CUDA_SM90_E4M3_CUH */
