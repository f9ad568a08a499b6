/*
 * int8_mma.cuh — the building blocks of the exact (int8 tensor core) GEMMs, sm_80+:
 * E2M1 nibbles to doubled int8 values, the m16n8k32 s8 MMA (its K of 32 is one MX block), and
 * cp.async with zero fill for the staged operands.
 */
#ifndef MXMOE_CUDA_INT8_MMA_CUH
#define MXMOE_CUDA_INT8_MMA_CUH

#include <stdint.h>

/* Doubled E2M1 values (integers in [-12, 12]) of the 4 nibbles in the low 16 bits of `c`, as 4
 * int8 in one word, in 5 instructions. prmt's selector nibble picks one of 8 table bytes with
 * its low 3 bits and, with bit 3 (the E2M1 sign) set, yields the picked byte's sign instead
 * (0x00 for this all-positive table). So `pos` is the magnitude of every positive nibble
 * (0 elsewhere) and `neg`, selected with the sign bits flipped, the magnitude of every
 * negative one; pos - neg per byte, without borrows between bytes, is done on bytes biased by
 * 0x80 (magnitudes are <= 12, so no byte leaves [0x74, 0x8C]). */
__device__ __forceinline__ uint32_t e2m1x4_to_int8x4(uint32_t c, uint32_t table_lo = 0x03020100u) {
    uint32_t pos, neg;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(pos) : "r"(table_lo), "r"(0x0C080604u), "r"(c));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(neg) : "r"(table_lo), "r"(0x0C080604u), "r"(c ^ 0x8888u));
    return (pos + 0x80808080u - neg) ^ 0x80808080u;
}

/* The doubled E2M1 magnitudes of the 4 nibbles in the low 16 bits of `c`, split by sign: `pos`
 * holds those of the positive nibbles and `neg` those of the negative ones, 0 elsewhere, so that
 * the signed values are pos - neg byte by byte (e2m1x4_to_int8x4's two picks before its
 * subtraction: 3 instructions for 4 values, against 5). */
__device__ __forceinline__ void e2m1x4_magnitudes(uint32_t c, uint32_t table_lo, uint32_t& pos,
                                                  uint32_t& neg) {
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(pos) : "r"(table_lo), "r"(0x0C080604u), "r"(c));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(neg) : "r"(table_lo), "r"(0x0C080604u), "r"(c ^ 0x8888u));
}

/* d = a (16 x 32, row) * b (32 x 8, col) + c in int32: with `c` = 0 one block's exact integer
 * dot product per element. Fragments as in the PTX ISA: lane = 4 g + t holds rows g and g + 8,
 * K 4t..4t+3 (a[0], a[1]) and 16+4t.. (a[2], a[3]); b: K 4t.. and 16+4t.. of column g;
 * d: rows g, g + 8 x columns 2t, 2t + 1. */
__device__ __forceinline__ void mma_s8_16x8x32(const uint32_t (&a)[4], const uint32_t (&b)[2],
                                               int32_t c, int32_t (&d)[4]) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %10, %10, %10};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c));
}

/* 16-byte global -> shared copy; `src_bytes` 0 zero-fills the destination without a read. */
__device__ __forceinline__ void cp_async16_zfill(void* dst, const void* src, uint32_t src_bytes) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most `Pending` of this thread's committed copy groups are still in flight. */
template <int Pending> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

#endif /* MXMOE_CUDA_INT8_MMA_CUH */
