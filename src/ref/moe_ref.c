/*
 * moe_ref.c — the reference MoE layer, composed from the reference operations:
 *   plan -> gather (router weight optionally folded into the input copy) -> quantize
 *   -> GEMM-1 (+b13, FP32, kept in gemm_dtype) -> activation rounded to act_dtype + quantize
 *   -> GEMM-2 (+b2, FP32, kept in gemm_dtype) -> un-permute and weighted sum over slots in
 *   ascending j (FP32)
 * Everything lives in the caller's workspace; nothing is allocated.
 */
#include "core/moe_workspace.h"
#include "core/tensor.h"
#include "ref/ref.h"

static int layout_workspace(int64_t experts, int64_t pairs, int64_t hidden, int64_t n13,
                            int64_t inter, mxmoe_moe_workspace* L) {
    int64_t k_max = hidden > inter ? hidden : inter;
    return mxmoe_moe_workspace_layout(experts, pairs, hidden, n13, inter, 1,
                                      mxmoe_gemm_ref_scratch_bytes(k_max), L);
}

static int activation_is_gated(mxmoe_activation a) {
    return a == MXMOE_ACT_SILU_MUL || a == MXMOE_ACT_GELU_TANH_MUL || a == MXMOE_ACT_SWIGLU_OAI;
}

mxmoe_status mxmoe_moe_workspace_size_ref(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                          int64_t tokens, int32_t top_k, int64_t hidden,
                                          int64_t intermediate, size_t* bytes) {
    int64_t pairs;
    mxmoe_moe_workspace L;
    int64_t n13 = activation_is_gated(params->act.activation) ? 2 * intermediate : intermediate;
    MXMOE_RETURN_IF(
        !mxmoe_mul_i64(tokens, top_k, &pairs) ||
            !layout_workspace(params->num_experts, pairs, hidden, n13, intermediate, &L),
        ctx, MXMOE_ERR_OVERFLOW,
        "moe workspace for %lld tokens x top-%d, hidden %lld, intermediate %lld "
        "overflows size_t",
        (long long)tokens, (int)top_k, (long long)hidden, (long long)intermediate);
    *bytes = L.total;
    return MXMOE_OK;
}

static mxmoe_tensor tensor2(void* data, mxmoe_dtype dtype, int64_t d0, int64_t d1) {
    return mxmoe_tensor_make(data, dtype, 2, (int64_t[]){d0, d1});
}

mxmoe_status mxmoe_moe_forward_ref(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                   const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                   const mxmoe_moe_weights* wt, const mxmoe_moe_params* p,
                                   void* workspace, size_t workspace_bytes, mxmoe_tensor* out) {
    int64_t T = x->dims[0], H = x->dims[1];
    int64_t k = topk_ids->dims[1];
    int64_t E = p->num_experts;
    int64_t n13 = wt->w13.packed.dims[1];
    int64_t I = wt->w2.packed.dims[2] * 2;
    int64_t pairs = T * k;
    mxmoe_moe_workspace L;
    MXMOE_RETURN_IF(!layout_workspace(E, pairs, H, n13, I, &L), ctx, MXMOE_ERR_OVERFLOW,
                    "moe workspace size overflows");
    MXMOE_RETURN_IF(workspace == NULL || workspace_bytes < L.total, ctx, MXMOE_ERR_WORKSPACE,
                    "moe_forward needs %zu bytes of workspace, got %zu", L.total,
                    workspace == NULL ? (size_t)0 : workspace_bytes);
    char* ws = (char*)workspace;

    /* 1. plan (validates every id before anything is written to out) */
    mxmoe_tensor counts = mxmoe_tensor_make(ws + L.counts, MXMOE_I32, 1, (int64_t[]){E});
    mxmoe_tensor offsets_t = mxmoe_tensor_make(ws + L.offsets, MXMOE_I32, 1, (int64_t[]){E + 1});
    mxmoe_tensor sorted_t = mxmoe_tensor_make(ws + L.sorted, MXMOE_I32, 1, (int64_t[]){pairs});
    mxmoe_tensor row_of_t = mxmoe_tensor_make(ws + L.row_of, MXMOE_I32, 1, (int64_t[]){pairs});
    MXMOE_FORWARD(mxmoe_plan_ref(ctx, topk_ids, p->expert_map, (int32_t)E, &counts, &offsets_t,
                                 &sorted_t, &row_of_t));
    const int32_t* offsets = (const int32_t*)offsets_t.data;
    const int32_t* sorted = (const int32_t*)sorted_t.data;
    const int32_t* row_of = (const int32_t*)row_of_t.data;
    const float* weights = (const float*)topk_weights->data;
    int64_t rows = offsets[E];

    /* 2. gather the input row of every kept pair; the caller's x is only read */
    float* x_rows = (float*)(ws + L.x_rows);
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = sorted[r], t = i / k;
        for (int64_t h = 0; h < H; h++) {
            float v = mxmoe_load_float(x->data, x->dtype, t * H + h);
            if (p->router_weight_on_input) {
                v = mxmoe_round_to_dtype(v * weights[i], p->act.act_dtype);
            }
            x_rows[r * H + h] = v;
        }
    }
    mxmoe_mx_tensor a1 = {tensor2(ws + L.a1_packed, MXMOE_U8, pairs, H / 2),
                          tensor2(ws + L.a1_scales, MXMOE_U8, pairs, H / 32), MXMOE_SCALES_LINEAR};
    for (int64_t r = 0; r < rows; r++) {
        mxmoe_quantize_row_ref(x_rows, MXMOE_F32, r, r, H, p->act.rule, NULL, 0, &a1);
    }

    /* 3. GEMM-1, 4. activation + requantization, 5. GEMM-2 */
    int8_t* scratch = (int8_t*)(ws + L.scratch);
    mxmoe_tensor h1 = tensor2(ws + L.h1, p->gemm_dtype, pairs, n13);
    mxmoe_grouped_gemm_ref_core(&a1, &wt->w13, offsets, E, wt->b13, &h1, scratch);
    mxmoe_mx_tensor a2 = {tensor2(ws + L.a2_packed, MXMOE_U8, pairs, I / 2),
                          tensor2(ws + L.a2_scales, MXMOE_U8, pairs, I / 32), MXMOE_SCALES_LINEAR};
    MXMOE_FORWARD(mxmoe_act_and_quantize_ref(ctx, &h1, &offsets_t, &p->act, &a2));
    mxmoe_tensor c3_t = tensor2(ws + L.c3, p->gemm_dtype, pairs, H);
    mxmoe_grouped_gemm_ref_core(&a2, &wt->w2, offsets, E, wt->b2, &c3_t, scratch);

    /* 6. un-permute and reduce over the k slots in ascending j */
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < k; j++) {
                int32_t r = row_of[t * k + j];
                if (r < 0) {
                    continue;
                }
                const float y = mxmoe_load_float(c3_t.data, c3_t.dtype, r * H + h);
                acc += p->router_weight_on_input ? y : weights[t * k + j] * y;
            }
            mxmoe_store_float(out->data, out->dtype, t * H + h, acc);
        }
    }
    return MXMOE_OK;
}
