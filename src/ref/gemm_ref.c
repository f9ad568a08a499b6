/*
 * gemm_ref.c — reference W4A4 grouped GEMM.
 *
 * Each 32-block dot product is exact in integers: 2*E2M1 values are integers in [-12, 12], so a
 * block sums 32 products of magnitude <= 144 into an int32. The block's value
 * isum * 2^(sa + sb - 254 - 2) is then an exact FP32 number (barring under/overflow), and the
 * blocks are accumulated in FP32 in ascending K — the order the contract fixes, so the result is
 * reproducible to the bit. Operands are decoded to doubled int8 once per weight row and once per
 * chunk of activation rows (scratch), so the inner loop is a plain int8 dot product.
 */
#include <math.h>
#include <stdlib.h>

#include "core/scale_layout.h"
#include "ref/mx_numerics.h"
#include "ref/ref.h"

#define ROW_CHUNK 64

size_t mxmoe_gemm_ref_scratch_bytes(int64_t k) {
    return (size_t)(ROW_CHUNK + 1) * (size_t)k;
}

/* Doubled E2M1 integers of one packed row of k elements. */
static void decode_row(const uint8_t* packed, int64_t k, int8_t* dst) {
    for (int64_t i = 0; i < k / 2; i++) {
        dst[2 * i] = (int8_t)mxmoe_e2m1_doubled(packed[i] & 0xFu);
        dst[2 * i + 1] = (int8_t)mxmoe_e2m1_doubled(packed[i] >> 4u);
    }
}

static int32_t block_dot(const int8_t* a, const int8_t* b) {
    int32_t s = 0;
    for (int i = 0; i < MXMOE_BLOCK; i++) {
        s += (int32_t)a[i] * (int32_t)b[i];
    }
    return s;
}

/* Scale byte of weight row n, block j, of expert e. */
static uint8_t weight_scale(const mxmoe_mx_tensor* w, int64_t e, int64_t n, int64_t j, int64_t N,
                            int64_t k) {
    const uint8_t* s = (const uint8_t*)w->scales.data;
    if (w->scale_layout == MXMOE_SCALES_LINEAR) {
        return s[(e * N + n) * (k / 32) + j];
    }
    return s[(int64_t)e * (int64_t)mxmoe_swizzled_scale_bytes(N, k) +
             mxmoe_swizzled_offset(n, j, k)];
}

void mxmoe_grouped_gemm_ref_core(const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                                 const int32_t* offsets, int64_t num_experts,
                                 const mxmoe_tensor* bias, mxmoe_tensor* out, int8_t* scratch) {
    int64_t N = w->packed.dims[1];
    int64_t k = w->packed.dims[2] * 2;
    int64_t kb = k / 32;
    const uint8_t* a_packed = (const uint8_t*)a->packed.data;
    const uint8_t* a_scales = (const uint8_t*)a->scales.data;
    const uint8_t* w_packed = (const uint8_t*)w->packed.data;
    int8_t* w_row = scratch;
    int8_t* a_rows = scratch + k;
    for (int64_t e = 0; e < num_experts; e++) {
        for (int64_t r0 = offsets[e]; r0 < offsets[e + 1]; r0 += ROW_CHUNK) {
            int64_t rows = offsets[e + 1] - r0 < ROW_CHUNK ? offsets[e + 1] - r0 : ROW_CHUNK;
            for (int64_t r = 0; r < rows; r++) {
                decode_row(a_packed + (r0 + r) * (k / 2), k, a_rows + r * k);
            }
            for (int64_t n = 0; n < N; n++) {
                decode_row(w_packed + (e * N + n) * (k / 2), k, w_row);
                float b =
                    bias != NULL ? mxmoe_load_float(bias->data, bias->dtype, e * N + n) : 0.0f;
                for (int64_t r = 0; r < rows; r++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < kb; j++) {
                        uint8_t sa = a_scales[mxmoe_activation_scale_offset(a, r0 + r, j, k,
                                                                            offsets, num_experts)];
                        uint8_t sb = weight_scale(w, e, n, j, N, k);
                        int32_t isum = block_dot(a_rows + r * k + j * 32, w_row + j * 32);
                        acc += mxmoe_block_term(isum, sa, sb);
                    }
                    if (bias != NULL) {
                        acc += b;
                    }
                    mxmoe_store_float(out->data, out->dtype, (r0 + r) * N + n, acc);
                }
            }
        }
    }
}

mxmoe_status mxmoe_grouped_gemm_ref(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                    const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets_t,
                                    const mxmoe_tensor* bias, mxmoe_tensor* out) {
    const int32_t* offsets = (const int32_t*)offsets_t->data;
    int64_t num_experts = offsets_t->dims[0] - 1;
    MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, a->packed.dims[0]));
    int64_t k = w->packed.dims[2] * 2;
    if (a->scale_layout == MXMOE_SCALES_SWIZZLED) {
        int64_t used = mxmoe_grouped_swizzled_used_bytes(offsets, num_experts, k);
        MXMOE_RETURN_IF(used > mxmoe_tensor_numel(&a->scales), ctx, MXMOE_ERR_SHAPE,
                        "swizzled activation scales hold %lld bytes, these expert groups need %lld",
                        (long long)mxmoe_tensor_numel(&a->scales), (long long)used);
    }
    int8_t* scratch = malloc(mxmoe_gemm_ref_scratch_bytes(k));
    MXMOE_RETURN_IF(scratch == NULL, ctx, MXMOE_ERR_NO_MEMORY,
                    "grouped_gemm: cannot allocate %zu bytes of scratch",
                    mxmoe_gemm_ref_scratch_bytes(k));
    mxmoe_grouped_gemm_ref_core(a, w, offsets, num_experts, bias, out, scratch);
    free(scratch);
    return MXMOE_OK;
}
