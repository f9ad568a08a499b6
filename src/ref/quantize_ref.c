/*
 * quantize_ref.c — reference quantization, dequantization, GGUF conversion, scale swizzling and
 * grouped (per-expert) quantization.
 */
#include <string.h>

#include "core/scale_layout.h"
#include "ref/mx_numerics.h"
#include "ref/ref.h"

/* --- scale placement ---------------------------------------------------------------------- */

int64_t mxmoe_grouped_swizzled_used_bytes(const int32_t* offsets, int64_t num_experts, int64_t k) {
    int64_t rows = 0;
    for (int64_t e = 0; e < num_experts; e++) {
        rows += mxmoe_round_up(offsets[e + 1] - offsets[e], 128);
    }
    return rows * mxmoe_swizzled_cols(k);
}

int64_t mxmoe_activation_scale_offset(const mxmoe_mx_tensor* t, int64_t r, int64_t j, int64_t k,
                                      const int32_t* offsets, int64_t num_experts) {
    if (t->scale_layout == MXMOE_SCALES_LINEAR) {
        return r * (k / 32) + j;
    }
    if (offsets == NULL) {
        return mxmoe_swizzled_offset(r, j, k);
    }
    /* Expert e's rows start a fresh 128-row atom at sf_row = sum_{e'<e} round_up(m_e', 128). */
    int64_t sf_row = 0;
    for (int64_t e = 0; e < num_experts; e++) {
        int64_t m = offsets[e + 1] - offsets[e];
        if (r < offsets[e + 1]) {
            return sf_row * mxmoe_swizzled_cols(k) + mxmoe_swizzled_offset(r - offsets[e], j, k);
        }
        sf_row += mxmoe_round_up(m, 128);
    }
    return -1; /* row beyond offsets[E]: callers never ask */
}

void mxmoe_quantize_row_ref(const void* x, mxmoe_dtype dtype, int64_t src_row, int64_t row,
                            int64_t k, mxmoe_scale_rule rule, const int32_t* offsets,
                            int64_t num_experts, mxmoe_mx_tensor* out) {
    uint8_t* packed = (uint8_t*)out->packed.data + row * (k / 2);
    uint8_t* scales = (uint8_t*)out->scales.data;
    for (int64_t j = 0; j < k / 32; j++) {
        float block[MXMOE_BLOCK];
        for (int i = 0; i < MXMOE_BLOCK; i++) {
            block[i] = mxmoe_load_float(x, dtype, src_row * k + j * 32 + i);
        }
        uint8_t b = mxmoe_quantize_block(block, rule, packed + j * 16);
        scales[mxmoe_activation_scale_offset(out, row, j, k, offsets, num_experts)] = b;
    }
}

mxmoe_status mxmoe_check_offsets_ref(mxmoe_ctx* ctx, const int32_t* offsets, int64_t num_experts,
                                     int64_t rows) {
    MXMOE_RETURN_IF(offsets[0] != 0, ctx, MXMOE_ERR_OUT_OF_RANGE, "offsets[0] = %d, expected 0",
                    (int)offsets[0]);
    for (int64_t e = 0; e < num_experts; e++) {
        MXMOE_RETURN_IF(offsets[e + 1] < offsets[e], ctx, MXMOE_ERR_OUT_OF_RANGE,
                        "offsets decrease at expert %lld (%d -> %d)", (long long)e, (int)offsets[e],
                        (int)offsets[e + 1]);
    }
    MXMOE_RETURN_IF(offsets[num_experts] > rows, ctx, MXMOE_ERR_OUT_OF_RANGE,
                    "offsets[%lld] = %d exceeds the %lld rows", (long long)num_experts,
                    (int)offsets[num_experts], (long long)rows);
    return MXMOE_OK;
}

/* --- rows ---------------------------------------------------------------------------------- */

mxmoe_status mxmoe_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                mxmoe_mx_tensor* out) {
    (void)ctx;
    int64_t k = x->dims[x->ndim - 1];
    int64_t rows = mxmoe_dims_product(x, 0, x->ndim - 1);
    for (int64_t r = 0; r < rows; r++) {
        mxmoe_quantize_row_ref(x->data, x->dtype, r, r, k, rule, NULL, 0, out);
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_dequantize_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* out) {
    (void)ctx;
    int64_t k = out->dims[out->ndim - 1];
    int64_t rows = mxmoe_dims_product(out, 0, out->ndim - 1);
    const uint8_t* packed = (const uint8_t*)in->packed.data;
    const uint8_t* scales = (const uint8_t*)in->scales.data;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++) {
            uint8_t b = scales[r * (k / 32) + i / 32];
            double v =
                mxmoe_dequantize_element(packed + r * (k / 2) + (i / 32) * 16, b, (int)(i % 32));
            /* v has at most 2 significant bits: (float)v is exact or overflows to infinity,
             * so storing it narrower rounds only once. */
            mxmoe_store_float(out->data, out->dtype, r * k + i, (float)v);
        }
    }
    return MXMOE_OK;
}

/* --- GGUF block_mxfp4 ---------------------------------------------------------------------- */

mxmoe_status mxmoe_gguf_from_mx_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in, mxmoe_tensor* gguf) {
    (void)ctx;
    int64_t blocks = mxmoe_tensor_numel(&in->scales);
    const uint8_t* packed = (const uint8_t*)in->packed.data;
    const uint8_t* scales = (const uint8_t*)in->scales.data;
    uint8_t* dst = (uint8_t*)gguf->data;
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t codes[MXMOE_BLOCK];
        for (int i = 0; i < MXMOE_BLOCK; i++) {
            codes[i] = (uint8_t)((packed[b * 16 + i / 2] >> (4 * (i % 2))) & 0xFu);
        }
        dst[b * 17] = scales[b];
        for (int j = 0; j < 16; j++) {
            dst[b * 17 + 1 + j] = (uint8_t)(codes[j] | (codes[j + 16] << 4));
        }
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_mx_from_gguf_ref(mxmoe_ctx* ctx, const mxmoe_tensor* gguf,
                                    mxmoe_mx_tensor* out) {
    (void)ctx;
    int64_t blocks = mxmoe_tensor_numel(&out->scales);
    const uint8_t* src = (const uint8_t*)gguf->data;
    uint8_t* packed = (uint8_t*)out->packed.data;
    uint8_t* scales = (uint8_t*)out->scales.data;
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t codes[MXMOE_BLOCK];
        for (int j = 0; j < 16; j++) {
            codes[j] = src[b * 17 + 1 + j] & 0xFu;
            codes[j + 16] = src[b * 17 + 1 + j] >> 4;
        }
        scales[b] = src[b * 17];
        for (int i = 0; i < 16; i++) {
            packed[b * 16 + i] = (uint8_t)(codes[2 * i] | (codes[2 * i + 1] << 4));
        }
    }
    return MXMOE_OK;
}

/* --- swizzle --------------------------------------------------------------------------------- */

mxmoe_status mxmoe_swizzle_scales_ref(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                      mxmoe_tensor* swizzled) {
    (void)ctx;
    int64_t rows = linear->dims[0];
    const uint8_t* src = (const uint8_t*)linear->data;
    uint8_t* dst = (uint8_t*)swizzled->data;
    memset(dst, 0, mxmoe_swizzled_scale_bytes(rows, k));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < k / 32; j++) {
            dst[mxmoe_swizzled_offset(r, j, k)] = src[r * (k / 32) + j];
        }
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_unswizzle_scales_ref(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled, int64_t k,
                                        mxmoe_tensor* linear) {
    (void)ctx;
    int64_t rows = linear->dims[0];
    const uint8_t* src = (const uint8_t*)swizzled->data;
    uint8_t* dst = (uint8_t*)linear->data;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < k / 32; j++) {
            dst[r * (k / 32) + j] = src[mxmoe_swizzled_offset(r, j, k)];
        }
    }
    return MXMOE_OK;
}

/* --- grouped -----------------------------------------------------------------------------------
 */

mxmoe_status mxmoe_experts_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* offsets_t, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out) {
    const int32_t* offsets = (const int32_t*)offsets_t->data;
    int64_t num_experts = offsets_t->dims[0] - 1;
    int64_t rows = x->dims[0];
    int64_t k = x->dims[1];
    MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, rows));
    if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
        int64_t used = mxmoe_grouped_swizzled_used_bytes(offsets, num_experts, k);
        MXMOE_RETURN_IF(used > mxmoe_tensor_numel(&out->scales), ctx, MXMOE_ERR_SHAPE,
                        "swizzled scales hold %lld bytes, these expert groups need %lld",
                        (long long)mxmoe_tensor_numel(&out->scales), (long long)used);
        memset(out->scales.data, 0, (size_t)used);
    }
    for (int64_t r = 0; r < offsets[num_experts]; r++) {
        mxmoe_quantize_row_ref(x->data, x->dtype, r, r, k, rule, offsets, num_experts, out);
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_permute_quantize_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* sorted_t, const mxmoe_tensor* offsets_t,
                                        int32_t top_k, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out) {
    const int32_t* offsets = (const int32_t*)offsets_t->data;
    const int32_t* sorted = (const int32_t*)sorted_t->data;
    int64_t num_experts = offsets_t->dims[0] - 1;
    int64_t pairs = sorted_t->dims[0];
    int64_t k = x->dims[1];
    MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, pairs));
    for (int64_t r = 0; r < offsets[num_experts]; r++) {
        MXMOE_RETURN_IF(sorted[r] < 0 || sorted[r] >= pairs, ctx, MXMOE_ERR_OUT_OF_RANGE,
                        "sorted[%lld] = %d is outside [0, %lld)", (long long)r, (int)sorted[r],
                        (long long)pairs);
    }
    if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
        int64_t used = mxmoe_grouped_swizzled_used_bytes(offsets, num_experts, k);
        MXMOE_RETURN_IF(used > mxmoe_tensor_numel(&out->scales), ctx, MXMOE_ERR_SHAPE,
                        "swizzled scales hold %lld bytes, these expert groups need %lld",
                        (long long)mxmoe_tensor_numel(&out->scales), (long long)used);
        memset(out->scales.data, 0, (size_t)used);
    }
    for (int64_t r = 0; r < offsets[num_experts]; r++) {
        mxmoe_quantize_row_ref(x->data, x->dtype, sorted[r] / top_k, r, k, rule, offsets,
                               num_experts, out);
    }
    return MXMOE_OK;
}
