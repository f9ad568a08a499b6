/*
 * sm90_prepass.cu — the Hopper GEMM's operand passes: the activations re-encoded as E4M3 rows
 * with chunk factors and unit words (from MXFP4 rows, or from the tokens themselves, quantized
 * on the way), and the weights' chunk words (grouped_gemm_sm90.cu's header comment: "Operands",
 * "Scales"). The GEMM's producer only copies what these write.
 */
#include <stdlib.h>
#include <string.h>

#include "core/e2m1_round.h"
#include "cuda/cuda_common.cuh"
#include "cuda/e2m1_half2.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/quantize.cuh"
#include "cuda/sm90_e4m3.cuh"
#include "cuda/sm90_prepass.cuh"
#include "cuda/sm90_ptx.cuh"

namespace {

/* Device code below is compiled for the host pass and sm_90a only (sm_80 gets empty kernels). */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ int64_t w_scale_offset(const gemm_args& a, int64_t expert, int64_t n,
                                                  int64_t block) {
    return a.w_swizzled ? expert * mxmoe_swizzled_matrix_bytes(a.n, a.k) +
                              mxmoe_swizzled_offset(n, block, a.k)
                        : (expert * a.n + n) * (a.k / 32) + block;
}

/* Scale-offset step from one 128-K chunk to the next: 4 linear bytes, or one 512-byte atom. */
__device__ __forceinline__ int64_t w_scale_chunk_stride(const gemm_args& a) {
    return a.w_swizzled ? 512 : 4;
}

/* A chunk's 4 scale bytes with those of blocks past K (valid of them are inside) set to 0. */
__device__ __forceinline__ uint32_t valid_blocks_only(uint32_t s, int64_t valid) {
    return valid >= 4 ? s : s & ((1u << (8 * valid)) - 1u);
}

/* 4 bytes at the 4-aligned offset `off` of a buffer of `numel` bytes (bytes past it read 0). */
__device__ __forceinline__ uint32_t load_u32(const uint8_t* base, int64_t off, int64_t numel) {
    if (off + 4 <= numel) {
        return __ldg(reinterpret_cast<const uint32_t*>(base + off));
    }
    uint32_t v = 0;
    for (int i = 0; i < 4 && off + i < numel; i++) {
        v |= (uint32_t)base[off + i] << (8 * i);
    }
    return v;
}

/* The 4 scale bytes of chunk c of a weight row whose block 0 sits at `row0` (-1: no such row,
 * all zero); blocks past K are masked to scale byte 0 (their elements are zero-filled). */
__device__ __forceinline__ uint32_t load_chunk_scales(const gemm_args& a, int64_t row0, int c) {
    if (row0 < 0) {
        return 0;
    }
    const int64_t off = row0 + (int64_t)c * w_scale_chunk_stride(a), aligned = off & ~(int64_t)3;
    const int shift = (int)(off & 3);
    uint32_t s = load_u32(a.w_scales, aligned, a.w_scales_numel);
    if (shift != 0) { /* linear scales of a row start anywhere: two words */
        s = __funnelshift_r(s, load_u32(a.w_scales, aligned + 4, a.w_scales_numel), 8 * shift);
    }
    const int64_t valid = a.k / 32 - 4 * (int64_t)c;
    return valid_blocks_only(s, valid);
}

/* The 4 scale bytes of chunk c of activation row r (blocks past K: 0): one word where rows keep
 * them 4-aligned, else the two aligned words around them (byte by byte, each checked and with
 * its error branch, the prepass at gpt-oss's 90 blocks a row ran ~1100 instructions a row,
 * issue-bound; Nsight, H200); a scale past the buffer is flagged and reads 0. */
__device__ __forceinline__ uint32_t act_chunk_scales(const gemm_args& a, int64_t r, int c, int kb,
                                                     bool scale_words) {
    const int64_t off = r * kb + 4 * c;
    if (scale_words) { /* kb % 4 == 0: whole chunks, 4-aligned */
        if (off + 4 > a.a_scales_numel) {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
            return 0;
        }
        return __ldg(reinterpret_cast<const uint32_t*>(a.a_scales + off));
    }
    const int64_t word = off & ~(int64_t)3; /* rows of kb % 4 != 0 bytes: two aligned words */
    if (word + 8 <= a.a_scales_numel && (uintptr_t)a.a_scales % 4 == 0) {
        const uint32_t* w = reinterpret_cast<const uint32_t*>(a.a_scales + word);
        const uint32_t sc = __funnelshift_r(__ldg(w), __ldg(w + 1), 8 * (int)(off - word));
        const int valid = kb - 4 * c; /* the row's blocks in this chunk, >= 1 */
        return valid >= 4 ? sc : sc & ((1u << (8 * valid)) - 1u);
    }
    uint32_t sc = 0;
#pragma unroll
    for (int q = 0; q < 4 && 4 * c + q < kb; q++) {
        if (off + q >= a.a_scales_numel) {
            atomicOr(a.errors, MXMOE_DEVERR_SCALE_SPACE);
            continue;
        }
        sc |= (uint32_t)__ldg(a.a_scales + off + q) << (8 * q);
    }
    return sc;
}

/* 2^d for d <= 0, from its bits (subnormal below 2^-126). */
__device__ __forceinline__ float pow2_nonpositive(int d) {
    return d >= -126 ? __int_as_float((d + 127) << 23) : __int_as_float(1 << (d + 149));
}

/* Word k of a chunk's four blocks in E4M3, as the GEMM reads it (both prepasses): w holds the
 * blocks' packed words k and sc their scale bytes (blocks from `valid` on lie past K: zero
 * words and scales). A chunk is on the row's reference `ref` when every block encodes against
 * it as against the chunk's own largest: exact (within 14 binades of it), or flushed to zero
 * either way (more than 19 binades below the chunk's largest: an all-zero block's scale 0, say);
 * only rows with `units` have one. Writes units 2k and 2k + 1 of the chunk's 128 bytes and
 * returns whether the chunk is on the reference. */
__device__ __forceinline__ bool e4m3_chunk_word(const uint2* table, const uint32_t (&w)[4],
                                                uint32_t sc, int valid, int ref, bool units,
                                                uint4& lo, uint4& hi) {
    const int smax = max_byte(sc);
    bool on_ref = units;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int sq = (int)((sc >> (8 * q)) & 0xFF);
        on_ref = on_ref && (q >= valid || sq + 14 >= ref || sq + 19 < smax);
    }
    const int base = on_ref ? ref : smax;
    uint2 tab[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int i = (int)((sc >> (8 * q)) & 0xFF) - base + 6 + 13;
        tab[q] = table[i < 0 ? 0 : i];
    }
    lo = make_uint4(e4m3x4<false>(w[0], tab[0]), e4m3x4<false>(w[1], tab[1]),
                    e4m3x4<false>(w[2], tab[2]), e4m3x4<false>(w[3], tab[3]));
    hi = make_uint4(e4m3x4<true>(w[0], tab[0]), e4m3x4<true>(w[1], tab[1]),
                    e4m3x4<true>(w[2], tab[2]), e4m3x4<true>(w[3], tab[3]));
    return on_ref;
}

/* A row's chunk factor in its units (a_factors): 1 on the reference, else 2^(smax - ref); rows
 * without units (a chunk more than 100 binades below the reference) take absolute factors. */
__device__ __forceinline__ float e4m3_chunk_factor(bool units, bool on_ref, int smax, int ref) {
    return !units ? chunk_factor(smax) : (on_ref ? 1.0f : pow2_nonpositive(smax - ref));
}

/* A row's unit word (after its chunk factors): its unit, 2^(R - 133) for its reference scale R
 * (1 without units), and whether some chunk is off R. */
__device__ __forceinline__ uint32_t e4m3_unit_word(bool units, int ref, bool off_ref) {
    return __float_as_uint(chunk_factor(units ? ref : 133)) | (off_ref ? kOffReference : 0u);
}

#endif /* host or sm_90a */

/* The prepass: MXFP4 activations (row a_rows[r] / a_rows_div for GEMM row r where mapped) ->
 * E4M3 rows [rows, chunk_cols(K)] in the GEMM's permuted K
 * order (16-byte unit u = 2k + half of a chunk = word k, half `half` of blocks 0..3), their
 * chunk factors [K/128 chunks, rows] and one unit word per row after them (rows
 * word_pitch(rows) bytes apart). Units: a row's reference R is its largest scale over K, and a
 * chunk whose blocks all encode against R exactly as against the chunk's own largest (within 14
 * binades of R, or flushed either way) is encoded against R with factor 1 in units of
 * 2^(R - 133); other chunks keep their own
 * largest scale, with factor 2^(smax - R), and set the row's kOffReference bit. The GEMM
 * accumulates in the tokens' units: a tile of on-reference tokens promotes with one FFMA. A row
 * with a chunk more than 100 binades below R takes the unit 1 (R = 133) and absolute factors,
 * so that no factor underflows. A warp per row: the row's largest and smallest chunk maxima by
 * warp reductions, then a lane per word k of a chunk's four blocks (its two 16-byte output
 * units; a warp's stores cover 1 KB contiguously). (A block per row, with three block barriers
 * and shared atomics a row, was latency-bound: ~2.4x its write floor at qwen3 n = 8192, Nsight;
 * one thread per chunk wrote 128-byte runs 128 bytes apart and ran at a third of the copy rate.) */
constexpr int kE4m3Threads = 256;

__global__ void __launch_bounds__(kE4m3Threads) act_e4m3_kernel(gemm_args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) /* empty elsewhere, like the GEMM */
    __shared__ uint2 table[kShifts];
    for (int t = threadIdx.x; t < 2 * kShifts; t += blockDim.x) {
        reinterpret_cast<uint32_t*>(table)[t] = kE4m3Tables.words[t];
    }
    __syncthreads();
    pdl_wait(); /* the quantizer's rows (launched after it by launch_pdl) */
    if (a.release_early) {
        pdl_release();
    }
    if (a.check_offsets && blockIdx.x == 0) { /* the caller's offsets, here: no launch of its own */
        check_offsets_block(a.offsets, a.num_experts, a.rows, a.errors);
    }
    const int lane = threadIdx.x % 32;
    const int kb = (int)(a.k / 32), nc = (kb + 3) / 4, kc = nc * kChunk;
    const int64_t pitch = word_pitch(a.rows) / 4;
    const bool scale_words = kb % 4 == 0 && (uintptr_t)a.a_scales % 4 == 0;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < a.rows;
         r += warps) {
        int64_t src = r; /* the activation row GEMM row r reads */
        if (a.a_rows != nullptr) {
            const int32_t i = a.a_rows[r];
            src = i < 0 ? 0 : i / a.a_rows_div;
        }
        unsigned hi = 0, lo = 255; /* the row's largest and smallest chunk maxima */
        for (int c = lane; c < nc; c += 32) {
            const unsigned m = (unsigned)max_byte(act_chunk_scales(a, src, c, kb, scale_words));
            hi = max(hi, m), lo = min(lo, m);
        }
        const int ref = (int)__reduce_max_sync(0xFFFFFFFFu, hi);
        const bool units = (int)__reduce_min_sync(0xFFFFFFFFu, lo) + 100 >= ref;
        const uint8_t* packed = a.a_packed + src * (a.k / 2);
        bool off_ref = false;
        for (int t = lane; t < 4 * nc; t += 32) {
            const int c = t / 4, k = t % 4; /* word k of the chunk's 4 blocks: units 2k, 2k+1 */
            const uint32_t sc = act_chunk_scales(a, src, c, kb, scale_words);
            uint32_t w[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int block = 4 * c + q;
                w[q] = block < kb
                           ? __ldg(reinterpret_cast<const uint32_t*>(packed + block * 16) + k)
                           : 0u;
            }
            uint4* dst = reinterpret_cast<uint4*>(a.a_e4m3 + r * kc + c * kChunk) + 2 * k;
            const bool on_ref =
                e4m3_chunk_word(table, w, sc, kb - 4 * c, ref, units, dst[0], dst[1]);
            if (k == 0) {
                a.a_factors[c * pitch + r] = e4m3_chunk_factor(units, on_ref, max_byte(sc), ref);
                off_ref |= !on_ref;
            }
        }
        off_ref = __any_sync(0xFFFFFFFFu, off_ref);
        if (lane == 0) {
            reinterpret_cast<uint32_t*>(a.a_factors)[nc * pitch + r] =
                e4m3_unit_word(units, ref, off_ref);
        }
    }
    pdl_release(); /* the GEMM may start (it waits for these rows before their copies) */
#else
    (void)a;
#endif
}

/* The prepass fed by tokens (gemm_args.tokens), for the projection and the layer's first GEMM:
 * a block per token quantizes its row as mxmoe_quantize would (the scale rule and the RNE
 * encoder of quantize_block_lanes: the same codes and scales), encodes them in E4M3 as
 * act_e4m3_kernel does from those bytes, and writes the result to the GEMM row of each of the
 * token's pairs. Launched right after the plan, it runs beside it up to those writes, which
 * wait for its rows: plan, quantizer and prepass make two kernels on the chain before the GEMM
 * instead of three, and the MXFP4 rows never go through memory. Thread 4c + k holds word k (8
 * elements) of each of the 4 blocks of chunk c, from its loads to its stores, so a token is one
 * round of loads and two block barriers (the row's reference): K <= 128 kTokenMaxChunks
 * (mxmoe_sm90_tokens_fit). (A warp per token, its chunks in rounds, was 13-40 us slower than
 * the quantizer and the MXFP4 prepass at n = 64: a chain of 2 x 4 loads a round.) Rows no pair
 * maps to (dropped pairs, past offsets[E]) are written as zeros, which the last tile reads as
 * padding. */
constexpr int kTokenMaxChunks = 64, kTokenMaxThreads = 4 * kTokenMaxChunks;

#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* A thread's 8 token elements as loaded: 8 FP32 words, or 4 words of two 16-bit elements each,
 * kept packed (the kernel at 39-40 registers instead of 62: 17 blocks of 96 threads an SM instead
 * of 10, 42 -> 33 us at gpt-oss-20b n = 4096, Nsight). */
template <mxmoe_dtype D> struct token_word {
    static constexpr int words = D == MXMOE_F32 ? 8 : 4;
    uint32_t w[words];

    /* Elements first .. first + 7 of x (zeros where not `live`); `vectors`: 16-byte aligned. */
    __device__ __forceinline__ void load(const void* x, int64_t first, bool live, bool vectors) {
        const uint4* v = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(x) +
                                                        first * (D == MXMOE_F32 ? 4 : 2));
#pragma unroll
        for (int i = 0; i < words; i++) {
            w[i] = 0;
        }
        if (!live) {
            return;
        }
        if (vectors) {
#pragma unroll
            for (int u = 0; u < words / 4; u++) {
                const uint4 x4 = __ldg(v + u);
                w[4 * u] = x4.x, w[4 * u + 1] = x4.y, w[4 * u + 2] = x4.z, w[4 * u + 3] = x4.w;
            }
        } else if (D == MXMOE_F32) {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                w[i] = __ldg(static_cast<const uint32_t*>(x) + first + i);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                w[i / 2] |= (uint32_t)__ldg(static_cast<const uint16_t*>(x) + first + i)
                            << (16 * (i % 2));
            }
        }
    }

    /* Element i as FP32 (exact). */
    __device__ __forceinline__ float at(int i) const {
        if (D == MXMOE_F32) {
            return __uint_as_float(w[i]);
        }
        const uint32_t half = i % 2 ? w[i / 2] >> 16 : w[i / 2] & 0xFFFFu;
        if (D == MXMOE_BF16) {
            return __uint_as_float(half << 16);
        }
        float f; /* the hardware's conversion (mxmoe_f16_to_f32 is ~12 instructions) */
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)half));
        return f;
    }

    /* The largest of the magnitudes' FP32 bits (NaN/Inf patterns the largest, as in
     * mxmoe_quantize_block). */
    __device__ __forceinline__ uint32_t amax_bits() const {
        uint32_t m = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            m = max(m, mxmoe_f32_bits(at(i)) & 0x7fffffffu);
        }
        return m;
    }
};
#endif

template <mxmoe_dtype D>
__global__ void __launch_bounds__(kTokenMaxThreads, D == MXMOE_F32 ? 1 : 6)
    token_e4m3_kernel(gemm_args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) /* empty elsewhere, like the GEMM */
    __shared__ uint2 table[kShifts];
    __shared__ unsigned extremes[2][kTokenMaxThreads / 32]; /* each warp's largest, smallest */
    for (int t = threadIdx.x; t < 2 * kShifts; t += blockDim.x) {
        reinterpret_cast<uint32_t*>(table)[t] = kE4m3Tables.words[t];
    }
    __syncthreads();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const int c = threadIdx.x / 4, k = threadIdx.x % 4; /* word k of chunk c's 4 blocks */
    const int kb = (int)(a.k / 32), nc = (kb + 3) / 4;
    const bool chunk = c < nc;
    const int64_t kc = (int64_t)nc * kChunk, pitch = word_pitch(a.rows) / 4;
    const int64_t top_k = a.tokens.top_k;
    const uint32_t rule_add = mxmoe_scale_rule_add(a.tokens.rule);
    /* a thread's 8 elements stay 16-byte aligned from an aligned base (k a multiple of 32) */
    const bool vectors = (uintptr_t)a.tokens.x % 16 == 0;
    for (int64_t t = blockIdx.x; t < a.tokens.count; t += gridDim.x) {
        token_word<D> x[4];
        uint32_t sc = 0, w[4];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int block = 4 * c + q;
            x[q].load(a.tokens.x, t * a.k + 32 * block + 8 * k, chunk && block < kb, vectors);
        }
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int block = 4 * c + q;
            const uint32_t amax = x[q].amax_bits();
            uint32_t m = max(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, 1));
            m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, 2));
            const bool live = chunk && block < kb;
            const uint8_t scale = (MXMOE_SM90_LAB & 4096) ? 127
                                  : live                  ? mxmoe_scale_byte_add(m, rule_add)
                                                          : 0;
            uint32_t codes = 0;
            if ((MXMOE_SM90_LAB & 4096)) {
                codes = x[q].w[0] ^ x[q].w[1] ^ x[q].w[D == MXMOE_F32 ? 7 : 3];
            } else if (live && scale != MXMOE_E8M0_NAN) {
                float v[8];
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    v[i] = x[q].at(i);
                }
                codes = e2m1_codes8(v, scale, D == MXMOE_BF16); /* BF16: FP16 pairs */
            }
            w[q] = codes;
            sc |= (uint32_t)scale << (8 * q);
        }
        /* the row's largest and smallest chunk maxima */
        const unsigned smax = (unsigned)max_byte(sc);
        const unsigned hi = __reduce_max_sync(0xFFFFFFFFu, chunk ? smax : 0u);
        const unsigned lo = __reduce_min_sync(0xFFFFFFFFu, chunk ? smax : 255u);
        if (lane == 0) {
            extremes[0][warp] = hi, extremes[1][warp] = lo;
        }
        __syncthreads();
        unsigned row_hi = 0, row_lo = 255;
        for (int i = 0; i < warps; i++) {
            row_hi = max(row_hi, extremes[0][i]), row_lo = min(row_lo, extremes[1][i]);
        }
        const int ref = (int)row_hi;
        const bool units = (int)row_lo + 100 >= ref;
        uint4 lo4, hi4;
        const bool on_ref = e4m3_chunk_word(table, w, sc, kb - 4 * c, ref, units, lo4, hi4);
        const float factor = e4m3_chunk_factor(units, on_ref, (int)smax, ref);
        /* a barrier too: every thread has read `extremes` before the next token writes them */
        const uint32_t unit_word = e4m3_unit_word(units, ref, __syncthreads_or(chunk && !on_ref));
        pdl_wait(); /* the plan's rows (the kernel before) */
        if (a.release_early) {
            pdl_release();
        }
        /* The warp's 1024 bytes of the row (its lanes' 32 each, in lane order) leave as two
         * stores of 512 contiguous bytes: lane L's 16 bytes of the first are lane L / 2's
         * lo4 (L even) or hi4, of the second lane 16 + L / 2's. (Each lane storing its own 32
         * bytes, every store instruction wrote half of each of 32 sectors.) */
        uint4 first, second;
        {
            const int from = lane / 2;
            const bool odd = lane & 1;
            uint32_t* f = reinterpret_cast<uint32_t*>(&first);
            uint32_t* g = reinterpret_cast<uint32_t*>(&second);
            const uint32_t* l = reinterpret_cast<const uint32_t*>(&lo4);
            const uint32_t* h = reinterpret_cast<const uint32_t*>(&hi4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint32_t l1 = __shfl_sync(0xFFFFFFFFu, l[i], from);
                const uint32_t h1 = __shfl_sync(0xFFFFFFFFu, h[i], from);
                const uint32_t l2 = __shfl_sync(0xFFFFFFFFu, l[i], 16 + from);
                const uint32_t h2 = __shfl_sync(0xFFFFFFFFu, h[i], 16 + from);
                f[i] = odd ? h1 : l1;
                g[i] = odd ? h2 : l2;
            }
        }
        /* chunks of the row this warp's span holds: bytes [0, 128 * span_chunks) */
        const int span_chunks = min(nc - 8 * warp, 8);
        for (int64_t j = 0; j < ((MXMOE_SM90_LAB & 2048) ? 0 : top_k); j++) {
            const int32_t r = a.tokens.row_of[t * top_k + j];
            if (r < 0 || r >= a.rows) { /* dropped (block-uniform) */
                continue;
            }
            uint4* span = reinterpret_cast<uint4*>(a.a_e4m3 + r * kc + (int64_t)warp * 1024);
            if (lane / 8 < span_chunks) {
                span[lane] = first;
            }
            if (4 + lane / 8 < span_chunks) {
                span[32 + lane] = second;
            }
            /* factors only off the reference: the GEMM takes 1 for the others (factor_pair) */
            if (chunk && k == 0 && (unit_word & kOffReference) && !(MXMOE_SM90_LAB & 8192)) {
                store_u32_evict_last(a.a_factors + c * pitch + r, __float_as_uint(factor));
            }
            if (threadIdx.x == 0) {
                store_u32_evict_last(a.a_factors + nc * pitch + r, unit_word);
            }
        }
    }
    pdl_wait(); /* every thread: the grid ends after the plan, as the kernels after it assume */
    /* Rows no pair maps to: zeros, on reference (read only as the last tile's padding). */
    const int64_t kept = grouped_row_limit(a.offsets, a.num_experts, a.rows);
    for (int64_t r = kept + blockIdx.x; r < a.rows; r += gridDim.x) {
        for (int64_t u = threadIdx.x; u < kc / 16; u += blockDim.x) {
            reinterpret_cast<uint4*>(a.a_e4m3 + r * kc)[u] = make_uint4(0, 0, 0, 0);
        }
        for (int i = threadIdx.x; i <= nc; i += blockDim.x) {
            a.a_factors[i * pitch + r] = 0.0f;
        }
    }
    pdl_release(); /* the GEMM may start (it waits for these rows before their copies) */
#else
    (void)a;
#endif
}

/* The weight-scale pass: w_words[c][e * N4 + n] = chunk_word of row n of expert e, chunk c
 * (N4 = words_per_expert(N); rows E * N4 words apart), for the experts that have rows in this call
 * (the others' words only reach outputs the GEMM skips), or for all of them (offsets NULL: once,
 * from mxmoe_weights_prepare). A block per kWordRows weight rows
 * (global rows g = e * N + n), a thread per (row, chunk), rows fastest: the stores are coalesced.
 * Linear scales of consecutive rows are contiguous, so where they fit (`staged_bytes`) the block
 * first copies its rows' scale bytes into shared memory with coalesced word loads. (A thread per
 * row walking its chunks was latency-bound: 22 us at gpt-oss for 17 MB moved.) */
constexpr int kWordRows = 128, kWordThreads = 256;

__host__ __device__ inline int64_t staged_bytes(const gemm_args& a) {
    const int64_t bytes = kWordRows * (a.k / 32) + 8; /* + a word read past the last row */
    return a.w_swizzled || bytes > 48 * 1024 ? 0 : (bytes + 15) / 16 * 16;
}

__global__ void __launch_bounds__(kWordThreads) weight_words_kernel(gemm_args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint4 staged16[];
    const uint32_t* staged = reinterpret_cast<const uint32_t*>(staged16);
    __shared__ int64_t word_at[kWordRows]; /* row r's word offset in a chunk; -1: not needed */
    __shared__ int64_t scale0[kWordRows];  /* row r's block 0 scale offset (unstaged path) */
    __shared__ int on_chunks[kWordRows];   /* row r keeps its chunks' references (chunk_word) */
    const int64_t en = a.num_experts * a.n, n4 = words_per_expert(a.n), pitch = a.num_experts * n4;
    const int nc = (int)((a.k + kChunk - 1) / kChunk), kb = (int)(a.k / 32);
    const bool stage = staged_bytes(a) > 0;
    for (int64_t g0 = blockIdx.x * (int64_t)kWordRows; g0 < en;
         g0 += (int64_t)gridDim.x * kWordRows) {
        const int rows = (int)min((int64_t)kWordRows, en - g0);
        bool active = false;
        if ((int)threadIdx.x < kWordRows) { /* the row's place, once (64-bit divisions) */
            const int r = threadIdx.x;
            word_at[r] = -1;
            on_chunks[r] = 0;
            if (r < rows) {
                const int64_t e = (g0 + r) / a.n, n = g0 + r - e * a.n;
                int64_t b = 0, end = 1; /* no offsets (preparation): every expert */
                if (a.offsets != nullptr) {
                    expert_rows(a.offsets, e, a.rows, &b, &end);
                }
                active = b != end;
                word_at[r] = active ? e * n4 + n : -1;
                scale0[r] = stage ? 0 : w_scale_offset(a, e, n, 0);
            }
        }
        if (!__syncthreads_or(active)) {
            continue;
        }
        if (stage) { /* 16 bytes a load, several in flight (one at a time was latency-bound) */
            const int units = (rows * kb + 8 + 15) / 16;
            const int64_t base = g0 * kb; /* 16-byte aligned: kWordRows * kb is */
#pragma unroll 4
            for (int i = threadIdx.x; i < units; i += blockDim.x) {
                const int64_t off = base + 16 * (int64_t)i;
                staged16[i] = off + 16 <= a.w_scales_numel
                                  ? __ldg(reinterpret_cast<const uint4*>(a.w_scales + off))
                                  : make_uint4(load_u32(a.w_scales, off, a.w_scales_numel),
                                               load_u32(a.w_scales, off + 4, a.w_scales_numel),
                                               load_u32(a.w_scales, off + 8, a.w_scales_numel),
                                               load_u32(a.w_scales, off + 12, a.w_scales_numel));
            }
            __syncthreads();
        }
        /* chunk c's 4 scale bytes and those of the other chunk of its 256-K span (none past K:
         * no scales, no effect on the span's largest) */
        static_assert(kSpanChunks == 2, "a span is chunks c and c ^ 1");
        const auto span_scales = [&](int r, int c, uint32_t* sc, uint32_t* so) {
            const int other = c ^ 1;
            *so = 0;
            if (stage) { /* from two staged words each */
                const int o = r * kb + 4 * c, p = r * kb + 4 * other;
                *sc = valid_blocks_only(
                    __funnelshift_r(staged[o / 4], staged[o / 4 + 1], 8 * (o % 4)), kb - 4 * c);
                if (other < nc) {
                    *so = valid_blocks_only(
                        __funnelshift_r(staged[p / 4], staged[p / 4 + 1], 8 * (p % 4)),
                        kb - 4 * other);
                }
            } else {
                *sc = load_chunk_scales(a, scale0[r], c);
                *so = other < nc ? load_chunk_scales(a, scale0[r], other) : 0u;
            }
        };
        /* first whether every span of each row may share its reference (the consumers decide
         * per tile, from any one chunk's words: the choice is the row's), then the words */
        for (int i = threadIdx.x; i < kWordRows * nc; i += blockDim.x) {
            const int r = i % kWordRows, c = i / kWordRows;
            uint32_t sc, so;
            if (word_at[r] >= 0 && c % kSpanChunks == 0) {
                span_scales(r, c, &sc, &so);
                if (!span_shares_reference(sc, so, c + 1 < nc)) {
                    atomicOr(&on_chunks[r], 1); /* any of the row's threads */
                }
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < kWordRows * nc; i += blockDim.x) {
            const int r = i % kWordRows, c = i / kWordRows;
            const int64_t at = word_at[r];
            if (at < 0) {
                continue;
            }
            uint32_t sc, so;
            span_scales(r, c, &sc, &so);
            a.w_words[c * pitch + at] = weight_chunk_word(sc, so, on_chunks[r] == 0);
        }
        __syncthreads(); /* before the next rows overwrite the shared arrays */
    }
#else
    (void)a;
#endif
}

} // namespace

bool mxmoe_sm90_tokens_fit(int64_t k) {
    const char* v = getenv("MXMOE_CUDA_TOKEN_PREPASS"); /* =0: quantizer + MXFP4 prepass (A/B) */
    return (v == nullptr || strcmp(v, "0") != 0) && k > 0 && (k / 32 + 3) / 4 <= kTokenMaxChunks;
}

mxmoe_status mxmoe_sm90_launch_weight_words(mxmoe_ctx* ctx, const gemm_args& args) {
    const int64_t weight_rows = args.num_experts * args.n;
    weight_words_kernel<<<grid_for(ctx, (weight_rows + kWordRows - 1) / kWordRows, 1), kWordThreads,
                          (size_t)staged_bytes(args), cuda_stream(ctx)>>>(args);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_sm90_launch_prepass(mxmoe_ctx* ctx, gemm_args* args) {
    /* A warp per row. Where its grid is at most a CTA an SM, the prepass lets the GEMM launch at
     * once: the GEMM's CTAs find free SMs and stream their first weights while it runs (n = 64:
     * -2..-5 %). Over more CTAs, the GEMM's would queue behind them and start unevenly, and its
     * tiles are dealt out in advance (gpt-oss-120b n = 512: +3 %; bench/NOTES.md v20). */
    const unsigned grid = grid_for(ctx, args->rows * 32, kE4m3Threads);
    args->release_early = grid <= (unsigned)cuda_state(ctx)->sm_count;
    if (args->tokens.x != nullptr) { /* a block per token, a thread per 32 elements */
        const int threads = (int)((args->k / 32 + 31) / 32 * 32); /* 4 per chunk, whole warps */
        auto kernel = args->tokens.dtype == MXMOE_BF16  ? token_e4m3_kernel<MXMOE_BF16>
                      : args->tokens.dtype == MXMOE_F16 ? token_e4m3_kernel<MXMOE_F16>
                                                        : token_e4m3_kernel<MXMOE_F32>;
        MXMOE_CUDA_CHECK(
            ctx, launch_pdl(ctx, kernel, grid_for(ctx, args->tokens.count, 1), threads, 0, *args));
    } else {
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, act_e4m3_kernel, grid, kE4m3Threads, 0, *args));
    }
    return MXMOE_OK;
}
