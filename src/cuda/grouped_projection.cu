/*
 * grouped_projection.cu — mxmoe_grouped_projection on CUDA: tokens and top-k ids in, one row per
 * pair out. Where the grouped GEMM would run its few-tokens kernel and the pairs are few (decode),
 * that kernel does everything in one launch, each CTA finding its expert's tokens in the ids and
 * quantizing them itself (grouped_gemm_skinny.cu): no plan, no quantizer, no scratch, and no
 * dependent launches between them (bench/NOTES.md v13: those were ~10 of the ~16 us a decode
 * projection took on the device). Otherwise the three steps run as mxmoe_plan,
 * mxmoe_permute_quantize and mxmoe_grouped_gemm would, on scratch from the context's pool, the
 * GEMM writing each row straight to its pair's row (gemm_args.out_rows = the plan's sorted);
 * on the Hopper path each token is quantized once, not once per pair, by the GEMM's own prepass
 * beside the plan (gemm_args.tokens; see composed()).
 * MXMOE_CUDA_PROJECTION=composed takes the second way everywhere (A/Bs, tests), the layer's
 * decode form included (moe.cu).
 */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"
#include "cuda/plan.cuh"
#include "cuda/quantize.cuh"

namespace {

constexpr size_t align256(size_t bytes) {
    return (bytes + 255) & ~(size_t)255;
}

/* plan -> quantize -> grouped GEMM into the pairs' rows, on the scratch laid out below (after
 * the plan's arrays: the quantized rows, then the Hopper GEMM's own scratch). The Hopper GEMM
 * re-encodes its activation rows in a prepass anyway: there the prepass quantizes each token
 * itself, beside the plan, and writes it to each of its pairs' rows (gemm_args.tokens; K past
 * its limit: the tokens quantized once, read by the MXFP4 prepass per pair, gemm_args.a_rows);
 * the other kernels read MXFP4 rows in the plan's order, which permute_quantize writes. */
mxmoe_status composed(mxmoe_ctx* ctx, const mxmoe_tensor* x, const plan_args& plan,
                      const mxmoe_mx_tensor* w, const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                      mxmoe_tensor* out, int64_t top_k, bool sm90, bool token_prepass,
                      uint8_t* gemm_scratch, size_t gemm_scratch_bytes) {
    MXMOE_FORWARD(mxmoe_launch_plan(ctx, &plan));
    const int64_t P = plan.pairs, E = plan.num_experts, K = x->dims[1];
    /* quantized rows: none (the prepass quantizes), tokens, or pairs */
    const int64_t rows = token_prepass ? 0 : sm90 ? x->dims[0] : P;
    const int64_t d_sorted[1] = {P}, d_offsets[1] = {E + 1};
    const int64_t d_packed[2] = {rows, K / 2}, d_scales[2] = {rows, K / 32};
    mxmoe_tensor sorted = mxmoe_tensor_make(plan.sorted, MXMOE_I32, 1, d_sorted);
    mxmoe_tensor offsets = mxmoe_tensor_make(plan.offsets, MXMOE_I32, 1, d_offsets);
    uint8_t* packed = reinterpret_cast<uint8_t*>(plan.row_of) + align256((size_t)P * 4);
    mxmoe_mx_tensor a;
    a.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, d_packed);
    a.scales = mxmoe_tensor_make(packed + align256((size_t)(rows * K / 2)), MXMOE_U8, 2, d_scales);
    a.scale_layout = MXMOE_SCALES_LINEAR;
    if (token_prepass) {
        /* quantized by the GEMM's prepass, beside the plan */
    } else if (sm90) {
        /* the tokens, not the pairs: the plan's result is not needed, so the two overlap */
        MXMOE_FORWARD(mxmoe_quantize_beside_plan_cuda(ctx, x, rule, &a));
    } else {
        MXMOE_FORWARD(
            mxmoe_permute_quantize_cuda(ctx, x, &sorted, &offsets, (int32_t)top_k, rule, &a));
    }
    gemm_args g = mxmoe_gemm_args_from(ctx, &a, w, &offsets, bias, out);
    g.rows = P;
    g.out_rows = plan.sorted;
    g.check_offsets = 0; /* the plan's own */
    g.scratch = gemm_scratch;
    g.scratch_bytes = gemm_scratch_bytes;
    if (token_prepass) {
        g.tokens.x = x->data;
        g.tokens.dtype = x->dtype;
        g.tokens.count = x->dims[0];
        g.tokens.top_k = top_k;
        g.tokens.rule = rule;
        g.tokens.row_of = plan.row_of;
        return mxmoe_launch_grouped_gemm_sm90(ctx, &g);
    }
    if (sm90) {
        g.a_rows = plan.sorted;
        g.a_rows_div = top_k;
        return mxmoe_launch_grouped_gemm_sm90(ctx, &g);
    }
    return mxmoe_launch_grouped_gemm(ctx, &g);
}

} // namespace

bool mxmoe_projection_one_launch(mxmoe_ctx* ctx, const gemm_args* args, int64_t pairs, int64_t k) {
    const char* force = getenv("MXMOE_CUDA_PROJECTION"); /* =composed: A/B and tests */
    if (force != nullptr && strcmp(force, "composed") == 0) {
        return false;
    }
    /* One launch while the active weights are small: each of an expert's N/64 row tiles
     * quantizes its tokens again, which costs more than the removed launches and kernels saved
     * once the stream is long (H100, same call, eager / replayed us: gpt-oss-20b n = 8, 141 MB,
     * 74.5 / 68.2 against 72.7 / ~59; qwen3-30b-a3b n = 8, 53 MB, 45.9 / 38.7 against
     * 50.8 / 39.8; deepseek-v3 n = 1, 62 MB, 49.1 / 43.1 against 52.1 / 42.8). */
    const int64_t E = args->num_experts;
    const double active_bytes = mxmoe_weight_bytes(pairs < E ? pairs : E, args->n, k);
    return pairs <= kProjectionMaxPairs && active_bytes <= kFewTokensWeightBytes &&
           mxmoe_grouped_gemm_pick(ctx, args) == GEMM_SKINNY;
}

mxmoe_status mxmoe_grouped_projection_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                           const mxmoe_tensor* topk_ids,
                                           const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                           const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                           mxmoe_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    const int64_t top_k = topk_ids->dims[1], P = x->dims[0] * top_k, K = x->dims[1];
    const int64_t E = w->packed.dims[0];
    if (P == 0) {
        return MXMOE_OK;
    }
    const int32_t* ids = static_cast<const int32_t*>(topk_ids->data);
    const int32_t* map =
        expert_map != nullptr ? static_cast<const int32_t*>(expert_map->data) : nullptr;
    const int64_t id_limit = expert_map != nullptr ? expert_map->dims[0] : E;

    gemm_args g = {};
    mxmoe_gemm_args_set_weights(ctx, &g, w);
    g.num_experts = E;
    g.rows = P;
    g.bias = bias != nullptr ? bias->data : nullptr;
    g.bias_dtype = bias != nullptr ? bias->dtype : MXMOE_F32;
    g.out = out->data;
    g.out_dtype = out->dtype;
    g.errors = cuda_state(ctx)->errors;
    const gemm_kernel kernel = mxmoe_grouped_gemm_pick(ctx, &g);
    if (mxmoe_projection_one_launch(ctx, &g, P, K)) {
        const projection_tokens tk = {x->data, x->dtype, ids, map, id_limit, top_k, rule};
        return mxmoe_launch_projection_skinny(ctx, &g, &tk);
    }

    /* One allocation a call (the plan's and the Hopper GEMM's scratch in it too: a second
     * stream-ordered allocation inside the first cost the bench ~60 us of host time at some
     * shapes): counts [E], offsets [E+1], sorted [P], row_of [P], packed [rows, K/2], scales
     * [rows, K/32] (rows: none or T for the Hopper GEMM, as composed() quantizes, else P), the
     * plan's scratch */
    const bool sm90 = kernel == GEMM_SM90, token_prepass = sm90 && mxmoe_sm90_tokens_fit(K);
    const int64_t rows = token_prepass ? 0 : sm90 ? x->dims[0] : P;
    const size_t plan_at = align256((size_t)(2 * E + 1) * 4) + 2 * align256((size_t)P * 4) +
                           align256((size_t)(rows * K / 2)) + align256((size_t)(rows * K / 32));
    const size_t own = plan_at + align256(mxmoe_plan_scratch_bytes(P, E));
    const size_t gemm = sm90 ? mxmoe_grouped_gemm_sm90_scratch(P, K, E, g.n) : 0;
    if (gemm == SIZE_MAX) {
        return mxmoe_fail(ctx, MXMOE_ERR_OVERFLOW, "grouped_projection: scratch size overflows");
    }
    const size_t bytes = own + gemm;
    void* scratch = nullptr;
    MXMOE_CUDA_CHECK(
        ctx, cudaMallocFromPoolAsync(&scratch, bytes, cuda_state(ctx)->pool, cuda_stream(ctx)));
    int32_t* counts = static_cast<int32_t*>(scratch);
    int32_t* sorted = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(scratch) +
                                                 align256((size_t)(2 * E + 1) * 4));
    int32_t* row_of =
        reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(sorted) + align256((size_t)P * 4));
    plan_args plan = {};
    plan.ids = ids, plan.pairs = P, plan.map = map, plan.id_limit = id_limit;
    plan.num_experts = (int32_t)E, plan.counts = counts, plan.offsets = counts + E;
    plan.sorted = sorted, plan.row_of = row_of, plan.errors = cuda_state(ctx)->errors;
    plan.scratch = static_cast<uint8_t*>(scratch) + plan_at;
    const mxmoe_status st = composed(ctx, x, plan, w, bias, rule, out, top_k, sm90, token_prepass,
                                     static_cast<uint8_t*>(scratch) + own, gemm);
    MXMOE_CUDA_CHECK(ctx, cudaFreeAsync(scratch, cuda_stream(ctx)));
    return st;
}
