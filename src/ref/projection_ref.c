/*
 * projection_ref.c — reference grouped projection (ggml's MUL_MAT_ID on MXFP4 W4A4), written as
 * its definition: for each pair, the token's row quantized alone, then a one-row grouped GEMM on
 * the pair's expert into the pair's output row. No plan: the oracle for backends that fuse one.
 */
#include <stdlib.h>

#include "core/tensor.h"
#include "ref/ref.h"

mxmoe_status mxmoe_grouped_projection_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                          const mxmoe_tensor* topk_ids,
                                          const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                          const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                          mxmoe_tensor* out) {
    int64_t E = w->packed.dims[0], N = w->packed.dims[1], k = w->packed.dims[2] * 2;
    int64_t T = topk_ids->dims[0], top_k = topk_ids->dims[1];
    MXMOE_FORWARD(mxmoe_check_ids_ref(ctx, topk_ids, expert_map, E));
    const int32_t* ids = (const int32_t*)topk_ids->data;
    const int32_t* map = expert_map != NULL ? (const int32_t*)expert_map->data : NULL;

    size_t bytes = (size_t)k / 2 + (size_t)k / 32 + (size_t)(E + 1) * sizeof(int32_t) +
                   mxmoe_gemm_ref_scratch_bytes(k);
    uint8_t* mem = malloc(bytes);
    MXMOE_RETURN_IF(mem == NULL, ctx, MXMOE_ERR_NO_MEMORY,
                    "grouped_projection: cannot allocate %zu bytes of scratch", bytes);
    int32_t* offsets = (int32_t*)mem; /* one row, on expert e: 0 up to e, 1 after */
    uint8_t* packed = mem + (size_t)(E + 1) * sizeof(int32_t);
    uint8_t* scales = packed + k / 2;
    int8_t* gemm_scratch = (int8_t*)(scales + k / 32);
    mxmoe_mx_tensor row;
    row.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, (int64_t[]){1, k / 2});
    row.scales = mxmoe_tensor_make(scales, MXMOE_U8, 2, (int64_t[]){1, k / 32});
    row.scale_layout = MXMOE_SCALES_LINEAR;
    size_t out_row_bytes = (size_t)N * mxmoe_dtype_size(out->dtype);
    for (int64_t t = 0; t < T; t++) {
        mxmoe_quantize_row_ref(x->data, x->dtype, t, 0, k, rule, NULL, 0, &row);
        for (int64_t j = 0; j < top_k; j++) {
            int64_t i = t * top_k + j;
            int32_t e = mxmoe_local_expert_ref(ids, map, i);
            if (e < 0) {
                continue;
            }
            for (int64_t g = 0; g <= E; g++) {
                offsets[g] = g <= e ? 0 : 1;
            }
            mxmoe_tensor dst = mxmoe_tensor_make((uint8_t*)out->data + (size_t)i * out_row_bytes,
                                                 out->dtype, 2, (int64_t[]){1, N});
            mxmoe_grouped_gemm_ref_core(&row, w, offsets, E, bias, &dst, gemm_scratch);
        }
    }
    free(mem);
    return MXMOE_OK;
}
