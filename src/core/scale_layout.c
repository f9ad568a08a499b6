/*
 * scale_layout.c — public size queries of the swizzled scale layout.
 */
#include "core/scale_layout.h"

#include "core/tensor.h"

size_t mxmoe_swizzled_scale_bytes(int64_t rows, int64_t k) {
    int64_t bytes;
    if (rows < 0 || k <= 0 || k % 32 != 0 || rows > INT64_MAX - 127 ||
        !mxmoe_mul_i64(mxmoe_round_up(rows, 128), mxmoe_swizzled_cols(k), &bytes) ||
        (uint64_t)bytes > SIZE_MAX) {
        return 0;
    }
    return (size_t)bytes;
}

size_t mxmoe_grouped_swizzled_scale_bytes(int64_t rows, int64_t num_experts, int64_t k) {
    int64_t pad;
    if (num_experts <= 0 || !mxmoe_mul_i64(127, num_experts, &pad) || rows < 0 ||
        rows > INT64_MAX - pad) {
        return 0;
    }
    return mxmoe_swizzled_scale_bytes(rows + pad, k);
}
