/*
 * moe_cpu.c — the MoE layer on the CPU tiers, end to end on the thread pool, and the grouped
 * projection (the layer's first three steps, its rows written in pair order):
 *   plan (reference) -> quantize each token once, straight to act8 (or each (token, slot) copy
 *   when the router weight scales the input) -> GEMM-1 (+b13) -> activation rounded to act_dtype,
 *   quantized to act8 -> GEMM-2 (+b2) -> weighted sum over slots in ascending j.
 * Every step reproduces the reference's values bit for bit (moe_ref.c): a token's quantized
 * bytes are the same for each of its slots, so GEMM-1 rows read the token's act8 row directly.
 * All memory is the caller's workspace: the shared regions of moe_workspace.h plus, in the
 * scratch region, the act8 rows, the GEMM driver's tiles and per-thread quantization rows.
 */
#include <string.h>

#include "core/moe_workspace.h"
#include "core/tensor.h"
#include "cpu/cpu_gemm.h"
#include "ref/activation.h"
#include "ref/ref.h"

#define ALIGN64(x) (((x) + (size_t)63) & ~(size_t)63)

/* Scratch sub-regions of the workspace for T tokens, P pairs and reduction lengths up to k_max. */
typedef struct cpu_scratch_layout {
    size_t act8;       /* P act8 rows (one per kept pair, in plan order) */
    size_t act8_token; /* T act8 rows (one per token) */
    size_t gemm;       /* GEMM driver scratch */
    size_t quant;      /* per thread: k_max floats, k_max/2 packed bytes, k_max/32 scales */
    size_t quant_stride;
    size_t total;
} cpu_scratch_layout;

static cpu_scratch_layout scratch_layout(const mxmoe_cpu_state* st, int64_t experts, int64_t tokens,
                                         int64_t pairs, int64_t k_max) {
    cpu_scratch_layout s;
    size_t row = mxmoe_cpu_act8_row_bytes(k_max);
    s.act8 = 0;
    s.act8_token = ALIGN64((size_t)pairs * row);
    s.gemm = s.act8_token + ALIGN64((size_t)tokens * row);
    s.quant = s.gemm + ALIGN64(mxmoe_cpu_gemm_scratch_bytes(st, experts, k_max));
    s.quant_stride =
        ALIGN64((size_t)k_max * 4) + ALIGN64((size_t)k_max / 2) + ALIGN64((size_t)k_max / 32);
    s.total = s.quant + (size_t)st->threads * s.quant_stride + 64; /* + 64: align the base */
    return s;
}

static int layout_workspace(const mxmoe_cpu_state* st, int64_t experts, int64_t tokens,
                            int64_t pairs, int64_t hidden, int64_t n13, int64_t inter,
                            mxmoe_moe_workspace* L, cpu_scratch_layout* S) {
    int64_t k_max = hidden > inter ? hidden : inter;
    /* the scratch below, roughly: (P + T) act8 rows of 1.5 K + 64 bytes, per-thread tiles of
     * 8.5 K and rows of 4.6 K, 4 bytes per expert (cpu_state.h: checked in FP64 first) */
    double estimate = ((double)pairs + (double)tokens) * (1.5 * (double)k_max + 128.0) +
                      (double)st->threads * (16.0 * (double)k_max + 4096.0) + 8.0 * (double)experts;
    if (estimate > MXMOE_CPU_MAX_BYTES) {
        return 0;
    }
    *S = scratch_layout(st, experts, tokens, pairs, k_max);
    return mxmoe_moe_workspace_layout(experts, pairs, hidden, n13, inter, 0, S->total, L);
}

mxmoe_status mxmoe_cpu_moe_workspace_size(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                          int64_t tokens, int32_t top_k, int64_t hidden,
                                          int64_t intermediate, size_t* bytes) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (st->kern == NULL) {
        return mxmoe_moe_workspace_size_ref(ctx, params, tokens, top_k, hidden, intermediate,
                                            bytes);
    }
    int64_t pairs;
    mxmoe_moe_workspace L;
    cpu_scratch_layout S;
    int64_t n13 =
        mxmoe_activation_is_gated(params->act.activation) ? 2 * intermediate : intermediate;
    MXMOE_RETURN_IF(!mxmoe_mul_i64(tokens, top_k, &pairs) ||
                        !layout_workspace(st, params->num_experts, tokens, pairs, hidden, n13,
                                          intermediate, &L, &S),
                    ctx, MXMOE_ERR_OVERFLOW,
                    "moe workspace for %lld tokens x top-%d, hidden %lld, intermediate %lld "
                    "overflows size_t",
                    (long long)tokens, (int)top_k, (long long)hidden, (long long)intermediate);
    *bytes = L.total;
    return MXMOE_OK;
}

/* --- quantization straight to act8 ---------------------------------------------------------- */

typedef enum act8_source {
    FROM_TOKEN,    /* row t = token t of x */
    FROM_WEIGHTED, /* row r = x[sorted[r] / k] * weight, rounded to act_dtype */
    FROM_H1        /* row r = activation of h1 row r, rounded to act_dtype */
} act8_source;

typedef struct to_act8_job {
    const mxmoe_cpu_kernels* kern;
    act8_source source;
    const mxmoe_tensor* x; /* x or h1 */
    int64_t k, rows;
    const int32_t* sorted;
    int32_t top_k;
    const float* weights;
    const mxmoe_act_params* act;
    uint8_t* act8;
    size_t act8_stride;
    uint8_t* quant;
    size_t quant_stride;
} to_act8_job;

static void to_act8_task(void* arg, int64_t r, int thread) {
    const to_act8_job* job = (const to_act8_job*)arg;
    const int64_t k = job->k;
    uint8_t* s = job->quant + (size_t)thread * job->quant_stride;
    float* values = (float*)s;
    uint8_t* packed = s + ALIGN64((size_t)k * 4);
    uint8_t* scales = packed + ALIGN64((size_t)k / 2);
    const void* src = values;
    mxmoe_dtype dtype = MXMOE_F32;
    if (job->source == FROM_TOKEN) {
        src =
            (const uint8_t*)job->x->data + (size_t)r * (size_t)k * mxmoe_dtype_size(job->x->dtype);
        dtype = job->x->dtype;
    } else if (job->source == FROM_WEIGHTED) {
        int64_t i = job->sorted[r], t = i / job->top_k;
        for (int64_t h = 0; h < k; h++) {
            float v = mxmoe_load_float(job->x->data, job->x->dtype, t * k + h);
            values[h] = mxmoe_round_to_dtype(v * job->weights[i], job->act->act_dtype);
        }
    } else {
        job->kern->act_row(job->x, r, k, job->act, values);
    }
    job->kern->quantize_row(src, dtype, k, job->act->rule, packed, scales);
    job->kern->act8_row(packed, scales, k, job->act8 + (size_t)r * job->act8_stride);
}

/* --- a token's act8 row to each of its kept pairs --------------------------------------------- */

typedef struct gather_job {
    const uint8_t* token_rows;
    uint8_t* pair_rows;
    size_t stride, bytes;
    const int32_t* sorted;
    int64_t top_k;
} gather_job;

static void gather_task(void* arg, int64_t r, int thread) {
    (void)thread;
    const gather_job* job = (const gather_job*)arg;
    memcpy(job->pair_rows + (size_t)r * job->stride,
           job->token_rows + (size_t)(job->sorted[r] / job->top_k) * job->stride, job->bytes);
}

/* --- un-permute and reduce -------------------------------------------------------------------- */

typedef struct reduce_job {
    const mxmoe_tensor* c3; /* [pairs, H], F32 or BF16 (gemm_dtype) */
    const int32_t* row_of;
    const float* weights;
    int64_t H, k;
    int on_input;
    mxmoe_tensor* out;
} reduce_job;

#define REDUCE_COLS 256

static void reduce_task(void* arg, int64_t t, int thread) {
    (void)thread;
    const reduce_job* job = (const reduce_job*)arg;
    const int64_t H = job->H, k = job->k;
    float acc[REDUCE_COLS];
    for (int64_t h0 = 0; h0 < H; h0 += REDUCE_COLS) {
        int64_t n = H - h0 < REDUCE_COLS ? H - h0 : REDUCE_COLS;
        for (int64_t i = 0; i < n; i++) {
            acc[i] = 0.0f;
        }
        for (int64_t j = 0; j < k; j++) {
            int32_t r = job->row_of[t * k + j];
            if (r < 0) {
                continue;
            }
            float widened[REDUCE_COLS]; /* BF16 terms as FP32 (exact) */
            const float* c = widened;
            if (job->c3->dtype == MXMOE_F32) {
                c = (const float*)job->c3->data + (int64_t)r * H + h0;
            } else {
                const uint16_t* src = (const uint16_t*)job->c3->data + (int64_t)r * H + h0;
                for (int64_t i = 0; i < n; i++) {
                    widened[i] = mxmoe_bf16_to_f32(src[i]);
                }
            }
            if (job->on_input) {
                for (int64_t i = 0; i < n; i++) {
                    acc[i] += c[i];
                }
            } else {
                float w = job->weights[t * k + j];
                for (int64_t i = 0; i < n; i++) {
                    acc[i] += w * c[i];
                }
            }
        }
        for (int64_t i = 0; i < n; i++) {
            mxmoe_store_float(job->out->data, job->out->dtype, t * H + h0 + i, acc[i]);
        }
    }
}

static mxmoe_tensor tensor2(void* data, mxmoe_dtype dtype, int64_t d0, int64_t d1) {
    return mxmoe_tensor_make(data, dtype, 2, (int64_t[]){d0, d1});
}

mxmoe_status mxmoe_cpu_moe_forward(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                   const mxmoe_tensor* topk_ids, const mxmoe_tensor* topk_weights,
                                   const mxmoe_moe_weights* wt, const mxmoe_moe_params* p,
                                   void* workspace, size_t workspace_bytes, mxmoe_tensor* out) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (st->kern == NULL) {
        return mxmoe_moe_forward_ref(ctx, x, topk_ids, topk_weights, wt, p, workspace,
                                     workspace_bytes, out);
    }
    int64_t T = x->dims[0], H = x->dims[1];
    int64_t k = topk_ids->dims[1];
    int64_t E = p->num_experts;
    int64_t n13 = wt->w13.packed.dims[1];
    int64_t I = wt->w2.packed.dims[2] * 2;
    int64_t pairs = T * k;
    mxmoe_moe_workspace L;
    cpu_scratch_layout S;
    MXMOE_RETURN_IF(!layout_workspace(st, E, T, pairs, H, n13, I, &L, &S), ctx, MXMOE_ERR_OVERFLOW,
                    "moe workspace size overflows");
    MXMOE_RETURN_IF(workspace == NULL || workspace_bytes < L.total, ctx, MXMOE_ERR_WORKSPACE,
                    "moe_forward needs %zu bytes of workspace, got %zu", L.total,
                    workspace == NULL ? (size_t)0 : workspace_bytes);
    char* ws = (char*)workspace;
    uint8_t* scratch = (uint8_t*)(((uintptr_t)(ws + L.scratch) + 63) & ~(uintptr_t)63);

    /* 1. plan (validates every id before anything is written to out) */
    mxmoe_tensor counts = mxmoe_tensor_make(ws + L.counts, MXMOE_I32, 1, (int64_t[]){E});
    mxmoe_tensor offsets_t = mxmoe_tensor_make(ws + L.offsets, MXMOE_I32, 1, (int64_t[]){E + 1});
    mxmoe_tensor sorted_t = mxmoe_tensor_make(ws + L.sorted, MXMOE_I32, 1, (int64_t[]){pairs});
    mxmoe_tensor row_of_t = mxmoe_tensor_make(ws + L.row_of, MXMOE_I32, 1, (int64_t[]){pairs});
    MXMOE_FORWARD(mxmoe_plan_ref(ctx, topk_ids, p->expert_map, (int32_t)E, &counts, &offsets_t,
                                 &sorted_t, &row_of_t));
    const int32_t* offsets = (const int32_t*)offsets_t.data;
    const int32_t* sorted = (const int32_t*)sorted_t.data;
    const float* weights = (const float*)topk_weights->data;
    int64_t rows = offsets[E];

    size_t stride = mxmoe_cpu_act8_row_bytes(H > I ? H : I);
    to_act8_job q;
    memset(&q, 0, sizeof q);
    q.kern = st->kern;
    q.sorted = sorted;
    q.top_k = (int32_t)k;
    q.weights = weights;
    q.act = &p->act;
    q.act8 = scratch + S.act8;
    q.act8_stride = stride;
    q.quant = scratch + S.quant;
    q.quant_stride = S.quant_stride;

    /* 2. the input rows: quantized once per token and copied to each of its pairs (the same
     *    bytes the reference gets by quantizing every pair), or per pair when weighted */
    q.x = x;
    q.k = H;
    if (p->router_weight_on_input) {
        q.source = FROM_WEIGHTED;
        q.rows = rows;
        mxmoe_pool_run(st->pool, rows, to_act8_task, &q);
    } else {
        q.source = FROM_TOKEN;
        q.rows = T;
        q.act8 = scratch + S.act8_token;
        mxmoe_pool_run(st->pool, T, to_act8_task, &q);
        gather_job gj = {q.act8, scratch + S.act8, stride, mxmoe_cpu_act8_row_bytes(H), sorted, k};
        mxmoe_pool_run(st->pool, rows, gather_task, &gj);
        q.act8 = scratch + S.act8;
    }

    /* 3. GEMM-1 */
    mxmoe_tensor h1 = tensor2(ws + L.h1, p->gemm_dtype, pairs, n13);
    mxmoe_cpu_gemm_args g1 = {&wt->w13, offsets,          E,   q.act8, stride, wt->b13,
                              &h1,      scratch + S.gemm, NULL};
    mxmoe_cpu_gemm_run(st, &g1);

    /* 4. activation, rounded to act_dtype and quantized */
    q.source = FROM_H1;
    q.x = &h1;
    q.k = I;
    q.rows = rows;
    mxmoe_pool_run(st->pool, rows, to_act8_task, &q);

    /* 5. GEMM-2 */
    mxmoe_tensor c3 = tensor2(ws + L.c3, p->gemm_dtype, pairs, H);
    mxmoe_cpu_gemm_args g2 = {&wt->w2, offsets,          E,   q.act8, stride, wt->b2,
                              &c3,     scratch + S.gemm, NULL};
    mxmoe_cpu_gemm_run(st, &g2);

    /* 6. un-permute and reduce over the k slots in ascending j */
    reduce_job red = {&c3, (const int32_t*)row_of_t.data, weights, H,
                      k,   p->router_weight_on_input,     out};
    mxmoe_pool_run(st->pool, T, reduce_task, &red);
    return MXMOE_OK;
}

/* --- the grouped projection: steps 1-3 of the layer, rows to their pairs ---------------------- */

mxmoe_status mxmoe_cpu_grouped_projection(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                          const mxmoe_tensor* topk_ids,
                                          const mxmoe_tensor* expert_map, const mxmoe_mx_tensor* w,
                                          const mxmoe_tensor* bias, mxmoe_scale_rule rule,
                                          mxmoe_tensor* out) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (st->kern == NULL) {
        return mxmoe_grouped_projection_ref(ctx, x, topk_ids, expert_map, w, bias, rule, out);
    }
    int64_t T = x->dims[0], K = x->dims[1], k = topk_ids->dims[1], E = w->packed.dims[0];
    int64_t pairs = T * k;
    size_t stride = mxmoe_cpu_act8_row_bytes(K);
    double estimate = ((double)pairs + (double)T) * ((double)stride + 128.0) +
                      (double)st->threads * (16.0 * (double)K + 4096.0) + 16.0 * (double)E;
    MXMOE_RETURN_IF(estimate > MXMOE_CPU_MAX_BYTES, ctx, MXMOE_ERR_OVERFLOW,
                    "grouped_projection: CPU scratch for %lld pairs of K = %lld overflows",
                    (long long)pairs, (long long)K);
    size_t plan_bytes = ALIGN64((size_t)(2 * E + 1 + 2 * pairs) * sizeof(int32_t));
    size_t pair_rows = ALIGN64((size_t)pairs * stride), token_rows = ALIGN64((size_t)T * stride);
    size_t gemm_bytes = ALIGN64(mxmoe_cpu_gemm_scratch_bytes(st, E, K));
    size_t quant_stride = ALIGN64((size_t)K * 4) + ALIGN64((size_t)K / 2) + ALIGN64((size_t)K / 32);
    void* scratch = NULL;
    MXMOE_FORWARD(mxmoe_cpu_scratch(
        ctx, plan_bytes + pair_rows + token_rows + gemm_bytes + (size_t)st->threads * quant_stride,
        &scratch));
    uint8_t* base = (uint8_t*)scratch;
    int32_t* plan = (int32_t*)base;
    mxmoe_tensor counts = mxmoe_tensor_make(plan, MXMOE_I32, 1, (int64_t[]){E});
    mxmoe_tensor offsets_t = mxmoe_tensor_make(plan + E, MXMOE_I32, 1, (int64_t[]){E + 1});
    mxmoe_tensor sorted_t = mxmoe_tensor_make(plan + 2 * E + 1, MXMOE_I32, 1, (int64_t[]){pairs});
    mxmoe_tensor row_of_t =
        mxmoe_tensor_make(plan + 2 * E + 1 + pairs, MXMOE_I32, 1, (int64_t[]){pairs});
    MXMOE_FORWARD(mxmoe_plan_ref(ctx, topk_ids, expert_map, (int32_t)E, &counts, &offsets_t,
                                 &sorted_t, &row_of_t)); /* checks every id before any write */
    const int32_t* offsets = (const int32_t*)offsets_t.data;
    const int32_t* sorted = (const int32_t*)sorted_t.data;

    /* each token quantized once, its bytes copied to each of its kept pairs' rows */
    mxmoe_act_params act = mxmoe_act_params_default();
    act.rule = rule;
    to_act8_job q;
    memset(&q, 0, sizeof q);
    q.kern = st->kern;
    q.source = FROM_TOKEN;
    q.x = x;
    q.k = K;
    q.rows = T;
    q.act = &act;
    q.act8 = base + plan_bytes + pair_rows;
    q.act8_stride = stride;
    q.quant = base + plan_bytes + pair_rows + token_rows + gemm_bytes;
    q.quant_stride = quant_stride;
    mxmoe_pool_run(st->pool, T, to_act8_task, &q);
    gather_job gj = {q.act8, base + plan_bytes, stride, stride, sorted, k};
    mxmoe_pool_run(st->pool, offsets[E], gather_task, &gj);

    mxmoe_cpu_gemm_args g = {w,      offsets, E,   base + plan_bytes,
                             stride, bias,    out, base + plan_bytes + pair_rows + token_rows,
                             sorted};
    mxmoe_cpu_gemm_run(st, &g);
    return MXMOE_OK;
}
