/*
 * quantize_cpu.c — the CPU backend's quantization operations: rows split over the thread pool,
 * each row quantized by the tier's quantize_row (byte-identical to mxmoe_quantize_block), its
 * scale bytes placed per the output's layout exactly as the reference places them.
 */
#include <string.h>

#include "core/scale_layout.h"
#include "core/tensor.h"
#include "cpu/cpu_state.h"
#include "ref/activation.h"
#include "ref/ref.h"

#define ALIGN64(x)    (((x) + (size_t)63) & ~(size_t)63)
#define ROWS_PER_TASK 4

typedef enum row_source {
    SOURCE_SAME_ROW,  /* quantize, experts_quantize: row r of x */
    SOURCE_PERMUTED,  /* permute_quantize: row sorted[r] / top_k of x */
    SOURCE_ACTIVATION /* act_and_quantize: the activation of row r of h */
} row_source;

typedef struct quant_job {
    const mxmoe_cpu_kernels* kern;
    row_source source;
    const mxmoe_tensor* x; /* x, or h for the activation */
    int64_t k;             /* columns quantized */
    int64_t rows;
    mxmoe_scale_rule rule;
    const int32_t* sorted;
    int32_t top_k;
    const mxmoe_act_params* act;
    mxmoe_mx_tensor* out;
    /* swizzled output: grouped by offsets (NULL: one matrix), with each expert's atom row */
    const int32_t* offsets;
    int64_t num_experts;
    const int64_t* atom_row;
    uint8_t* scratch; /* per thread: k floats + k/32 scale bytes */
    size_t scratch_stride;
} quant_job;

/* The expert whose rows hold r (offsets nondecreasing, offsets[0] <= r < offsets[E]). */
static int64_t row_expert(const int32_t* offsets, int64_t num_experts, int64_t r) {
    int64_t lo = 0, hi = num_experts - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= r) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

static void quant_task(void* arg, int64_t task, int thread) {
    const quant_job* job = (const quant_job*)arg;
    const int64_t k = job->k, kb = k / 32;
    uint8_t* s = job->scratch + (size_t)thread * job->scratch_stride;
    float* values = (float*)s;
    uint8_t* row_scales = s + ALIGN64((size_t)k * sizeof(float));
    uint8_t* packed = (uint8_t*)job->out->packed.data;
    uint8_t* scales = (uint8_t*)job->out->scales.data;
    int swizzled = job->out->scale_layout == MXMOE_SCALES_SWIZZLED;
    size_t esize = mxmoe_dtype_size(job->x->dtype);
    int64_t r1 = (task + 1) * ROWS_PER_TASK < job->rows ? (task + 1) * ROWS_PER_TASK : job->rows;
    for (int64_t r = task * ROWS_PER_TASK; r < r1; r++) {
        const void* src;
        mxmoe_dtype dtype = job->x->dtype;
        if (job->source == SOURCE_ACTIVATION) {
            job->kern->act_row(job->x, r, k, job->act, values);
            src = values;
            dtype = MXMOE_F32;
        } else {
            int64_t src_row = job->source == SOURCE_PERMUTED ? job->sorted[r] / job->top_k : r;
            src = (const uint8_t*)job->x->data + (size_t)src_row * (size_t)k * esize;
        }
        uint8_t* dst_scales = swizzled ? row_scales : scales + r * kb;
        job->kern->quantize_row(src, dtype, k, job->rule, packed + r * (k / 2), dst_scales);
        if (swizzled) {
            int64_t base = 0, rr = r;
            if (job->offsets != NULL) {
                int64_t e = row_expert(job->offsets, job->num_experts, r);
                base = job->atom_row[e] * mxmoe_swizzled_cols(k);
                rr = r - job->offsets[e];
            }
            for (int64_t j = 0; j < kb; j++) {
                scales[base + mxmoe_swizzled_offset(rr, j, k)] = row_scales[j];
            }
        }
    }
}

/* Runs a quantization job over its rows; `job` has everything but the scratch set. */
static mxmoe_status run_quant(mxmoe_ctx* ctx, quant_job* job) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    double estimate =
        (double)st->threads * (4.5 * (double)job->k + 256.0) + 8.0 * (double)job->num_experts;
    MXMOE_RETURN_IF(estimate > MXMOE_CPU_MAX_BYTES, ctx, MXMOE_ERR_OVERFLOW,
                    "CPU scratch for rows of K = %lld overflows", (long long)job->k);
    size_t atoms = job->offsets != NULL ? ALIGN64((size_t)job->num_experts * sizeof(int64_t)) : 0;
    job->scratch_stride = ALIGN64((size_t)job->k * sizeof(float)) + ALIGN64((size_t)(job->k / 32));
    void* scratch = NULL;
    MXMOE_FORWARD(
        mxmoe_cpu_scratch(ctx, atoms + (size_t)st->threads * job->scratch_stride, &scratch));
    if (job->offsets != NULL) {
        int64_t* atom_row = (int64_t*)scratch;
        int64_t acc = 0;
        for (int64_t e = 0; e < job->num_experts; e++) {
            atom_row[e] = acc;
            acc += mxmoe_round_up(job->offsets[e + 1] - job->offsets[e], 128);
        }
        job->atom_row = atom_row;
    }
    job->kern = st->kern;
    job->scratch = (uint8_t*)scratch + atoms;
    mxmoe_pool_run(st->pool, mxmoe_ceil_div(job->rows, ROWS_PER_TASK), quant_task, job);
    return MXMOE_OK;
}

/* Zeroes the used span of grouped swizzled scales (the padding), after checking its size. */
static mxmoe_status clear_grouped_swizzled(mxmoe_ctx* ctx, mxmoe_mx_tensor* out,
                                           const int32_t* offsets, int64_t num_experts, int64_t k) {
    int64_t used = mxmoe_grouped_swizzled_used_bytes(offsets, num_experts, k);
    MXMOE_RETURN_IF(used > mxmoe_tensor_numel(&out->scales), ctx, MXMOE_ERR_SHAPE,
                    "swizzled scales hold %lld bytes, these expert groups need %lld",
                    (long long)mxmoe_tensor_numel(&out->scales), (long long)used);
    memset(out->scales.data, 0, (size_t)used);
    return MXMOE_OK;
}

mxmoe_status mxmoe_cpu_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                mxmoe_mx_tensor* out) {
    if (mxmoe_cpu_state_of(ctx)->kern == NULL) {
        return mxmoe_quantize_ref(ctx, x, rule, out);
    }
    quant_job job;
    memset(&job, 0, sizeof job);
    job.source = SOURCE_SAME_ROW;
    job.x = x;
    job.k = x->dims[x->ndim - 1];
    job.rows = mxmoe_dims_product(x, 0, x->ndim - 1);
    job.rule = rule;
    job.out = out;
    return run_quant(ctx, &job);
}

mxmoe_status mxmoe_cpu_experts_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* offsets_t, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out) {
    if (mxmoe_cpu_state_of(ctx)->kern == NULL) {
        return mxmoe_experts_quantize_ref(ctx, x, offsets_t, rule, out);
    }
    const int32_t* offsets = (const int32_t*)offsets_t->data;
    int64_t num_experts = offsets_t->dims[0] - 1;
    int64_t k = x->dims[1];
    MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, x->dims[0]));
    if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
        MXMOE_FORWARD(clear_grouped_swizzled(ctx, out, offsets, num_experts, k));
    }
    quant_job job;
    memset(&job, 0, sizeof job);
    job.source = SOURCE_SAME_ROW;
    job.x = x;
    job.k = k;
    job.rows = offsets[num_experts];
    job.rule = rule;
    job.out = out;
    job.offsets = offsets;
    job.num_experts = num_experts;
    return run_quant(ctx, &job);
}

mxmoe_status mxmoe_cpu_permute_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                        const mxmoe_tensor* sorted_t, const mxmoe_tensor* offsets_t,
                                        int32_t top_k, mxmoe_scale_rule rule,
                                        mxmoe_mx_tensor* out) {
    if (mxmoe_cpu_state_of(ctx)->kern == NULL) {
        return mxmoe_permute_quantize_ref(ctx, x, sorted_t, offsets_t, top_k, rule, out);
    }
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
        MXMOE_FORWARD(clear_grouped_swizzled(ctx, out, offsets, num_experts, k));
    }
    quant_job job;
    memset(&job, 0, sizeof job);
    job.source = SOURCE_PERMUTED;
    job.x = x;
    job.k = k;
    job.rows = offsets[num_experts];
    job.rule = rule;
    job.sorted = sorted;
    job.top_k = top_k;
    job.out = out;
    job.offsets = offsets;
    job.num_experts = num_experts;
    return run_quant(ctx, &job);
}

mxmoe_status mxmoe_cpu_act_and_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                        const mxmoe_tensor* offsets_t, const mxmoe_act_params* p,
                                        mxmoe_mx_tensor* out) {
    if (mxmoe_cpu_state_of(ctx)->kern == NULL) {
        return mxmoe_act_and_quantize_ref(ctx, h, offsets_t, p, out);
    }
    quant_job job;
    memset(&job, 0, sizeof job);
    job.source = SOURCE_ACTIVATION;
    job.x = h;
    job.k = out->packed.dims[1] * 2;
    job.rows = h->dims[0];
    job.rule = p->rule;
    job.act = p;
    job.out = out;
    if (offsets_t != NULL) {
        const int32_t* offsets = (const int32_t*)offsets_t->data;
        int64_t num_experts = offsets_t->dims[0] - 1;
        MXMOE_FORWARD(mxmoe_check_offsets_ref(ctx, offsets, num_experts, job.rows));
        if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
            MXMOE_FORWARD(clear_grouped_swizzled(ctx, out, offsets, num_experts, job.k));
        }
        job.rows = offsets[num_experts];
        job.offsets = offsets;
        job.num_experts = num_experts;
    } else if (out->scale_layout == MXMOE_SCALES_SWIZZLED) {
        memset(out->scales.data, 0, mxmoe_swizzled_scale_bytes(job.rows, job.k));
    }
    return run_quant(ctx, &job);
}
