/*
 * sign_packing.h — the Hopper packing of MXFP4 codes (mxmoe_weights_prepare_repack): the
 * canonical bytes with, in every aligned 32-bit word of 8 codes, the sign bits moved and the
 * magnitudes left where they are.
 *
 * Why: the Hopper GEMM turns a word into two words of E4M3 bytes, codes 0-3 and codes 4-7, each
 * by one byte-permute table lookup on four 3-bit magnitudes and a merge of the four signs into
 * the byte msbs. The lookup needs a half's magnitudes as contiguous nibbles (its selector is bits
 * 0-15), so in the canonical packing their signs sit 4 bits apart (bits 3, 7, 11, 15) and took
 * one more byte permute per half to reach bits 7, 15, 23, 31: two of the eight ALU instructions
 * a word, which the narrow tiles' chunk waits on (bench/NOTES.md v45: -4..-8 % at n <= 512).
 * Here the signs of codes 0-3 are at bits 7, 15, 23, 31 already (the merge masks them in), and
 * those of codes 4-7 at bits 3, 11, 19, 27 (one shift, on the FMA pipe).
 *
 * Word x (canonical, code j in bits 4j..4j+3, its sign bit 4j+3) <-> word y (packed):
 *   y & 0x77777777 == x & 0x77777777, and sign j at bit 8j + 7 (j < 4), 8(j - 4) + 3 (j >= 4).
 */
#ifndef MXMOE_CORE_SIGN_PACKING_H
#define MXMOE_CORE_SIGN_PACKING_H

#include <stdint.h>

#include "core/hd.h"

/* Where code j's sign bit is in a packed word. */
static inline MXMOE_HD int mxmoe_packed_sign_bit(int j) {
    return j < 4 ? 8 * j + 7 : 8 * (j - 4) + 3;
}

/* The canonical word x in the Hopper packing. */
static inline MXMOE_HD uint32_t mxmoe_sign_pack(uint32_t x) {
    uint32_t y = x & 0x77777777u;
    for (int j = 0; j < 8; j++) {
        y |= ((x >> (4 * j + 3)) & 1u) << mxmoe_packed_sign_bit(j);
    }
    return y;
}

/* The packed word y back in the canonical packing. */
static inline MXMOE_HD uint32_t mxmoe_sign_unpack(uint32_t y) {
    uint32_t x = y & 0x77777777u;
    for (int j = 0; j < 8; j++) {
        x |= ((y >> mxmoe_packed_sign_bit(j)) & 1u) << (4 * j + 3);
    }
    return x;
}

#endif /* MXMOE_CORE_SIGN_PACKING_H */
