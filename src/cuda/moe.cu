/*
 * moe.cu — the CUDA MoE layer: the reference's pipeline as a chain of kernels on one stream,
 * all state in the caller's workspace — no allocation and no host synchronisation, so a
 * forward can be captured in a CUDA graph. Deterministic: the plan is ordered, every GEMM sums
 * in a fixed order, and the reduction over slots is in ascending j. At decode sizes the chain is
 * shorter: no plan and no quantizer, each GEMM quantizing its own rows (decode_forward).
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"
#include "cuda/plan.cuh"
#include "cuda/quantize.cuh"

extern "C" {
#include "core/moe_workspace.h"
#include "ref/activation.h"
}

namespace {

/* 16 bytes q of a GEMM-2 row as FP32 (exact): 4 FP32 or 8 BF16 values (the row's type C picks
 * the form). */
__device__ __forceinline__ void widen(uint4 q, const float*, float (&v)[4]) {
    v[0] = __uint_as_float(q.x), v[1] = __uint_as_float(q.y);
    v[2] = __uint_as_float(q.z), v[3] = __uint_as_float(q.w);
}
__device__ __forceinline__ void widen(uint4 q, const uint16_t*, float (&v)[8]) {
    const float4 lo = bf16x4_to_float4(make_uint2(q.x, q.y)),
                 hi = bf16x4_to_float4(make_uint2(q.z, q.w));
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
    v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

/* One value's bits, where widen reads the first of 16 bytes. */
__device__ __forceinline__ uint32_t value_bits(const float* p) {
    return __float_as_uint(*p);
}
__device__ __forceinline__ uint32_t value_bits(const uint16_t* p) {
    return *p;
}

/* v rounded to BF16 at p: 8 values (16 bytes) or 4 (8 bytes), p aligned to them. */
__device__ __forceinline__ void store_bf16(uint16_t* p, const float (&v)[8]) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[i] = mxmoe_f32_to_bf16(v[2 * i]) | (uint32_t)mxmoe_f32_to_bf16(v[2 * i + 1]) << 16;
    }
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ void store_bf16(uint16_t* p, const float (&v)[4]) {
    *reinterpret_cast<uint2*>(p) =
        make_uint2(mxmoe_f32_to_bf16(v[0]) | (uint32_t)mxmoe_f32_to_bf16(v[1]) << 16,
                   mxmoe_f32_to_bf16(v[2]) | (uint32_t)mxmoe_f32_to_bf16(v[3]) << 16);
}

/* Slots a thread's loads are in flight together: its rows' 16 bytes each issued before any
 * is summed (one slot at a time, 4 BF16 a thread, left ~60 % of copy bandwidth: 118 us at
 * qwen3 n = 8192, H200, NOTES v36). */
constexpr int kReduceSlots = 8;

/* out[t, h] = sum over kept slots j (ascending) of w[t, j] * c3[row, h] (or c3 alone when the
 * weight was applied to the input), in FP32, rounded once to out's dtype; c3 is FP32 (float) or
 * BF16 (uint16_t), the layer's gemm_dtype. V = 16 / sizeof(C) consecutive h a thread where the
 * rows allow 16-byte loads (hidden % V == 0, c3 16-byte aligned), else one. */
template <typename C>
__global__ void reduce_kernel(const C* c3, const int32_t* row_of, const float* weights,
                              int weight_on_input, int64_t tokens, int64_t top_k, int64_t hidden,
                              void* out, mxmoe_dtype out_dtype) {
    constexpr int V = 16 / sizeof(C);
    pdl_wait();
    pdl_release();
    const int per = hidden % V == 0 && (uintptr_t)c3 % 16 == 0 ? V : 1;
    const int64_t groups = hidden / per;
    /* the layer's usual output, BF16, a store a thread where the caller's buffer allows */
    const bool store_vec = per == V && out_dtype == MXMOE_BF16 && (uintptr_t)out % (2 * V) == 0;
    GRID_STRIDE_LOOP(idx, tokens * groups) {
        int64_t t, g;
        split_index(idx, groups, &t, &g);
        const int64_t h = g * per;
        float acc[V] = {};
        for (int64_t j0 = 0; j0 < top_k; j0 += kReduceSlots) {
            int32_t r[kReduceSlots];
            float w[kReduceSlots];
            uint4 q[kReduceSlots];
#pragma unroll
            for (int s = 0; s < kReduceSlots; s++) {
                const bool slot = j0 + s < top_k;
                r[s] = slot ? row_of[t * top_k + j0 + s] : -1;
                w[s] = slot && !weight_on_input ? weights[t * top_k + j0 + s] : 1.0f;
            }
#pragma unroll
            for (int s = 0; s < kReduceSlots; s++) {
                q[s] = make_uint4(0, 0, 0, 0);
                if (r[s] >= 0) {
                    const C* src = c3 + (int64_t)r[s] * hidden + h;
                    if (per == V) {
                        q[s] = __ldcs(reinterpret_cast<const uint4*>(src));
                    } else { /* one value, where widen reads the first */
                        q[s].x = value_bits(src);
                    }
                }
            }
#pragma unroll
            for (int s = 0; s < kReduceSlots; s++) {
                if (r[s] >= 0) {
                    float v[V];
                    widen(q[s], c3, v);
#pragma unroll
                    for (int i = 0; i < V; i++) {
                        acc[i] += weight_on_input ? v[i] : __fmul_rn(w[s], v[i]);
                    }
                }
            }
        }
        if (store_vec) {
            store_bf16(static_cast<uint16_t*>(out) + t * hidden + h, acc);
            continue;
        }
#pragma unroll
        for (int i = 0; i < V; i++) {
            if (i < per) {
                mxmoe_store_float(out, out_dtype, t * hidden + h + i, acc[i]);
            }
        }
    }
}

/* The Hopper GEMMs' scratch: the larger of GEMM-1's (K = hidden, N = n13) and GEMM-2's; at
 * decode sizes at least the decode form's activation rows ([pairs, inter], up to 4 bytes). */
size_t gemm_scratch(int64_t experts, int64_t pairs, int64_t hidden, int64_t n13, int64_t inter) {
    const size_t g1 = mxmoe_grouped_gemm_sm90_scratch(pairs, hidden, experts, n13);
    const size_t g2 = mxmoe_grouped_gemm_sm90_scratch(pairs, inter, experts, hidden);
    const size_t rows = pairs <= kProjectionMaxPairs ? (size_t)(pairs * inter) * 4 : 0;
    const size_t g = g1 > g2 ? g1 : g2;
    return g > rows ? g : rows;
}

/* 6. un-permute and reduce: c3 [pairs, H] in gemm_dtype, row_of the pairs' rows in it. */
mxmoe_status launch_reduce(mxmoe_ctx* ctx, const mxmoe_moe_params* p, const char* c3,
                           const int32_t* row_of, const mxmoe_tensor* topk_weights, int64_t T,
                           int64_t k, int64_t H, mxmoe_tensor* out) {
    const auto* weights = static_cast<const float*>(topk_weights->data);
    const int on_input = (int)p->router_weight_on_input;
    if (p->gemm_dtype == MXMOE_BF16) {
        MXMOE_CUDA_CHECK(ctx,
                         launch_pdl(ctx, reduce_kernel<uint16_t>, grid_for(ctx, T * H / 8, 256),
                                    256, 0, reinterpret_cast<const uint16_t*>(c3), row_of, weights,
                                    on_input, T, k, H, out->data, out->dtype));
    } else {
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, reduce_kernel<float>, grid_for(ctx, T * H / 4, 256),
                                         256, 0, reinterpret_cast<const float*>(c3), row_of,
                                         weights, on_input, T, k, H, out->data, out->dtype));
    }
    return MXMOE_OK;
}

/* The decode form: where both projections take the few-tokens kernel's one launch
 * (mxmoe_projection_one_launch: few pairs, small active weights), each GEMM quantizes its own
 * activations in pair order, and the layer needs no plan and no quantizer: GEMM-1 (x, the ids)
 * into h [pairs, n13], the activation rows [pairs, inter] in act_dtype (and row_of: p or -1),
 * GEMM-2 (those rows, each pair its own token) into c3, the reduction. Four launches instead of
 * six; the same values bit for bit (the same kernel sums in the same order, and it quantizes the
 * rows the quantizer would). d1, d2: the GEMMs' weights, bias, rows; outputs set here. */
mxmoe_status decode_forward(mxmoe_ctx* ctx, const mxmoe_tensor* x, const mxmoe_tensor* topk_ids,
                            const mxmoe_tensor* topk_weights, const mxmoe_moe_params* p,
                            gemm_args d1, gemm_args d2, char* ws, const mxmoe_moe_workspace& L,
                            int64_t I, mxmoe_tensor* out) {
    const int64_t T = x->dims[0], H = x->dims[1], k = topk_ids->dims[1], pairs = T * k;
    const int32_t* ids = static_cast<const int32_t*>(topk_ids->data);
    const int32_t* map =
        p->expert_map != nullptr ? static_cast<const int32_t*>(p->expert_map->data) : nullptr;
    const int64_t id_limit = p->expert_map != nullptr ? p->expert_map->dims[0] : p->num_experts;
    auto* row_of = reinterpret_cast<int32_t*>(ws + L.row_of);
    void* act_rows = ws + L.scratch;

    const projection_tokens tokens = {x->data, x->dtype, ids, map, id_limit, k, p->act.rule};
    d1.out = ws + L.h1;
    MXMOE_FORWARD(mxmoe_launch_projection_skinny(ctx, &d1, &tokens));

    const int64_t h1_dims[2] = {pairs, d1.n};
    mxmoe_tensor h1 = mxmoe_tensor_make(ws + L.h1, p->gemm_dtype, 2, h1_dims);
    h1.device = MXMOE_DEVICE_CUDA;
    const projection_tokens rows = {act_rows, p->act.act_dtype, ids, map, id_limit, 1, p->act.rule};
    MXMOE_FORWARD(mxmoe_launch_activation_rows(ctx, &h1, I, &p->act, &rows, p->num_experts,
                                               act_rows, row_of));

    d2.out = ws + L.c3;
    MXMOE_FORWARD(mxmoe_launch_projection_skinny(ctx, &d2, &rows));
    return launch_reduce(ctx, p, ws + L.c3, row_of, topk_weights, T, k, H, out);
}

/* Where the plan's scratch starts in the backend scratch: past the GEMMs' (whole 256 bytes), so
 * that nothing launched beside the plan can touch it. */
size_t plan_scratch_at(int64_t experts, int64_t pairs, int64_t hidden, int64_t n13, int64_t inter) {
    return (gemm_scratch(experts, pairs, hidden, n13, inter) + 255) / 256 * 256;
}

bool layout(const mxmoe_moe_params* p, int64_t tokens, int64_t top_k, int64_t hidden, int64_t inter,
            mxmoe_moe_workspace* L) {
    int64_t n13 = mxmoe_activation_is_gated(p->act.activation) ? 2 * inter : inter;
    int64_t pairs;
    if (!mxmoe_mul_i64(tokens, top_k, &pairs) || pairs > INT32_MAX) {
        return false;
    }
    /* the GEMMs' scratch, then the plan's (the forward allocates nothing) */
    const size_t scratch = plan_scratch_at(p->num_experts, pairs, hidden, n13, inter) +
                           mxmoe_plan_scratch_bytes(pairs, p->num_experts);
    return mxmoe_moe_workspace_layout(p->num_experts, pairs, hidden, n13, inter, 0, scratch, L);
}

} // namespace

mxmoe_status mxmoe_moe_workspace_size_cuda(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                           int64_t tokens, int32_t top_k, int64_t hidden,
                                           int64_t intermediate, size_t* bytes) {
    mxmoe_moe_workspace L;
    if (!layout(params, tokens, top_k, hidden, intermediate, &L)) {
        return mxmoe_fail(ctx, MXMOE_ERR_OVERFLOW, "moe workspace size overflows size_t");
    }
    *bytes = L.total;
    return MXMOE_OK;
}

mxmoe_status mxmoe_moe_forward_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                    const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                    const mxmoe_moe_weights* wt, const mxmoe_moe_params* p,
                                    void* workspace, size_t workspace_bytes, mxmoe_tensor* out) {
    MXMOE_CUDA_ENTER(ctx);
    (void)workspace_bytes; /* checked by src/api against mxmoe_moe_workspace_size_cuda */
    int64_t T = x->dims[0], H = x->dims[1], k = topk_ids->dims[1];
    int64_t E = p->num_experts;
    int64_t n13 = wt->w13.packed.dims[1];
    int64_t I = wt->w2.packed.dims[2] * 2;
    int64_t pairs = T * k;
    mxmoe_moe_workspace L;
    if (!layout(p, T, k, H, I, &L)) {
        return mxmoe_fail(ctx, MXMOE_ERR_OVERFLOW, "moe workspace size overflows size_t");
    }
    if (T == 0) {
        return MXMOE_OK;
    }
    char* ws = static_cast<char*>(workspace);
    unsigned* errors = cuda_state(ctx)->errors;
    auto* offsets = reinterpret_cast<int32_t*>(ws + L.offsets);
    auto* sorted = reinterpret_cast<int32_t*>(ws + L.sorted);
    auto* row_of = reinterpret_cast<int32_t*>(ws + L.row_of);

    /* decode sizes: both GEMMs in one launch each, no plan (decode_forward) */
    gemm_args d1 = {}, d2 = {};
    mxmoe_gemm_args_set_weights(ctx, &d1, &wt->w13);
    mxmoe_gemm_args_set_weights(ctx, &d2, &wt->w2);
    d1.num_experts = d2.num_experts = E;
    d1.rows = d2.rows = pairs;
    d1.bias = wt->b13 != nullptr ? wt->b13->data : nullptr;
    d1.bias_dtype = wt->b13 != nullptr ? wt->b13->dtype : MXMOE_F32;
    d2.bias = wt->b2 != nullptr ? wt->b2->data : nullptr;
    d2.bias_dtype = wt->b2 != nullptr ? wt->b2->dtype : MXMOE_F32;
    d1.out_dtype = d2.out_dtype = p->gemm_dtype;
    d1.errors = d2.errors = errors;
    if (!p->router_weight_on_input && mxmoe_projection_one_launch(ctx, &d1, pairs, H) &&
        mxmoe_projection_one_launch(ctx, &d2, pairs, I)) {
        return decode_forward(ctx, x, topk_ids, topk_weights, p, d1, d2, ws, L, I, out);
    }

    /* 1. plan */
    plan_args pa = {};
    pa.ids = static_cast<const int32_t*>(topk_ids->data);
    pa.pairs = pairs;
    pa.map = p->expert_map != nullptr ? static_cast<const int32_t*>(p->expert_map->data) : nullptr;
    pa.id_limit = p->expert_map != nullptr ? p->expert_map->dims[0] : E;
    pa.num_experts = (int32_t)E;
    pa.counts = reinterpret_cast<int32_t*>(ws + L.counts);
    pa.offsets = offsets;
    pa.sorted = sorted;
    pa.row_of = row_of;
    pa.errors = errors;
    pa.scratch = ws + L.scratch + plan_scratch_at(E, pairs, H, n13, I);
    MXMOE_FORWARD(mxmoe_launch_plan(ctx, &pa));

    /* 2. gather + quantize the input rows (router weight folded in when asked) */
    quantize_rows_args qa = {};
    qa.x = x->data;
    qa.dtype = x->dtype;
    qa.rows = pairs;
    qa.k = H;
    qa.rule = p->act.rule;
    qa.packed = reinterpret_cast<uint8_t*>(ws + L.a1_packed);
    qa.scales = reinterpret_cast<uint8_t*>(ws + L.a1_scales);
    qa.scales_numel = pairs * (H / 32);
    qa.offsets = offsets; /* rows past offsets[E] are skipped */
    qa.num_experts = E;
    qa.gather = sorted;
    qa.gather_limit = pairs;
    qa.top_k = k;
    qa.weights =
        p->router_weight_on_input ? static_cast<const float*>(topk_weights->data) : nullptr;
    qa.round_dtype = p->act.act_dtype;
    qa.errors = errors;

    gemm_args g1 = d1; /* weights, bias, rows, dtype and errors as above */
    g1.a_packed = qa.packed;
    g1.a_scales = qa.scales;
    g1.a_scales_numel = qa.scales_numel;
    g1.offsets = offsets;
    g1.out = ws + L.h1;
    g1.scratch = reinterpret_cast<uint8_t*>(ws + L.scratch);
    g1.scratch_bytes = gemm_scratch(E, pairs, H, n13, I);
    /* The Hopper GEMM re-encodes its rows in a prepass anyway: there each token is quantized
     * once, by that prepass itself where K allows (gemm_args.tokens), else by the quantizer
     * with the prepass reading it for each of its pairs (no gathered copy); a pair's rows are
     * the same bytes either way. */
    const bool tokens_once =
        !p->router_weight_on_input && mxmoe_grouped_gemm_pick(ctx, &g1) == GEMM_SM90;
    const bool token_prepass = tokens_once && mxmoe_sm90_tokens_fit(H);
    if (token_prepass) { /* quantized by GEMM-1's prepass, beside the plan */
        g1.tokens.x = x->data;
        g1.tokens.dtype = x->dtype;
        g1.tokens.count = T;
        g1.tokens.top_k = k;
        g1.tokens.rule = p->act.rule;
        g1.tokens.row_of = row_of;
    } else if (tokens_once) {
        qa.rows = T;
        qa.scales_numel = T * (H / 32);
        qa.offsets = nullptr;
        qa.gather = nullptr;
        qa.wait_late = 1; /* the tokens need nothing of the plan: the two overlap */
        MXMOE_FORWARD(mxmoe_launch_quantize_rows(ctx, &qa));
    } else if (mxmoe_quantize_once_applies(&qa)) { /* the Hopper scratch is free until GEMM-1 */
        MXMOE_FORWARD(
            mxmoe_launch_quantize_once(ctx, &qa, T, reinterpret_cast<uint8_t*>(ws + L.scratch)));
    } else {
        MXMOE_FORWARD(mxmoe_launch_quantize_rows(ctx, &qa));
    }

    /* 3. GEMM-1 (+b13) into gemm_dtype */
    if (token_prepass) {
        MXMOE_FORWARD(mxmoe_launch_grouped_gemm_sm90(ctx, &g1));
    } else if (tokens_once) {
        g1.a_scales_numel = qa.scales_numel;
        g1.a_rows = sorted;
        g1.a_rows_div = k;
        MXMOE_FORWARD(mxmoe_launch_grouped_gemm_sm90(ctx, &g1));
    } else {
        MXMOE_FORWARD(mxmoe_launch_grouped_gemm(ctx, &g1));
    }

    /* 4. activation, rounded to act_dtype, requantized */
    const int64_t h1_dims[2] = {pairs, n13}, a2_packed_dims[2] = {pairs, I / 2},
                  a2_scale_dims[2] = {pairs, I / 32}, offsets_dims[1] = {E + 1};
    mxmoe_tensor h1 = mxmoe_tensor_make(ws + L.h1, p->gemm_dtype, 2, h1_dims);
    h1.device = MXMOE_DEVICE_CUDA;
    mxmoe_mx_tensor a2;
    a2.packed = mxmoe_tensor_make(ws + L.a2_packed, MXMOE_U8, 2, a2_packed_dims);
    a2.scales = mxmoe_tensor_make(ws + L.a2_scales, MXMOE_U8, 2, a2_scale_dims);
    a2.packed.device = a2.scales.device = MXMOE_DEVICE_CUDA;
    a2.scale_layout = MXMOE_SCALES_LINEAR;
    mxmoe_tensor offsets_t = mxmoe_tensor_make(offsets, MXMOE_I32, 1, offsets_dims);
    offsets_t.device = MXMOE_DEVICE_CUDA;
    MXMOE_FORWARD(mxmoe_act_and_quantize_cuda(ctx, &h1, &offsets_t, &p->act, &a2));

    /* 5. GEMM-2 (+b2) into gemm_dtype */
    gemm_args g2 = d2; /* weights, bias, rows, dtype and errors as above */
    g2.a_packed = static_cast<const uint8_t*>(a2.packed.data);
    g2.a_scales = static_cast<const uint8_t*>(a2.scales.data);
    g2.a_scales_numel = pairs * (I / 32);
    g2.offsets = offsets;
    g2.out = ws + L.c3;
    g2.scratch = g1.scratch; /* free again once GEMM-1 has run */
    g2.scratch_bytes = g1.scratch_bytes;
    MXMOE_FORWARD(mxmoe_launch_grouped_gemm(ctx, &g2));

    /* 6. un-permute and reduce */
    return launch_reduce(ctx, p, ws + L.c3, row_of, topk_weights, T, k, H, out);
}
