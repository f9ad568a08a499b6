/*
 * scale_layout.h — where scale (r, j) lives in the swizzled layout of SPEC §3 (the NVIDIA
 * block-scaled MMA layout the seed kernel uses): 512-byte atoms of 128 rows x 4 scale columns,
 * M-tile-major then K-tile; inside an atom, rows r, r+32, r+64, r+96 share a 16-byte line.
 */
#ifndef MXMOE_CORE_SCALE_LAYOUT_H
#define MXMOE_CORE_SCALE_LAYOUT_H

#include <stdint.h>

#include "core/hd.h"

/* Scale columns of the swizzled layout: K/32 rounded up to a multiple of 4. */
static inline MXMOE_HD int64_t mxmoe_swizzled_cols(int64_t k) {
    return ((k / 32 + 3) / 4) * 4;
}

/* Byte offset of scale (r, j) in one swizzled matrix with Kb = k/32 scale columns. */
static inline MXMOE_HD int64_t mxmoe_swizzled_offset(int64_t r, int64_t j, int64_t k) {
    int64_t k_tiles = mxmoe_swizzled_cols(k) / 4;
    return ((r / 128) * k_tiles + j / 4) * 512 + (r % 32) * 16 + ((r / 32) % 4) * 4 + j % 4;
}

/* Bytes of one swizzled matrix (rows padded to 128, columns to 4). */
static inline MXMOE_HD int64_t mxmoe_swizzled_matrix_bytes(int64_t rows, int64_t k) {
    return ((rows + 127) / 128) * 128 * mxmoe_swizzled_cols(k);
}

#endif /* MXMOE_CORE_SCALE_LAYOUT_H */
