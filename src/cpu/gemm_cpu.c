/*
 * gemm_cpu.c — the grouped GEMM driver of the CPU backend (see cpu_gemm.h): activation rows to
 * act8 once, then (expert, column tile) tasks on the thread pool, each calling the tier's
 * gemm_tile for groups of rows and storing the FP32 sums (+ bias, one rounding) to the output.
 */
#include <string.h>

#include "core/scale_layout.h"
#include "core/tensor.h"
#include "cpu/cpu_gemm.h"
#include "ref/ref.h"

/* Tasks per thread to aim for: enough to balance uneven experts, few enough that most tiles
 * follow another tile of the same task (and so find their weights prefetched). */
#define TASKS_PER_THREAD 16

#define ALIGN64(x) (((x) + (size_t)63) & ~(size_t)63)

/* Per-thread tile scratch: sbT [round_up(kb, 16)][tile_n], chunk min/max, padded rows. */
static size_t thread_bytes(const mxmoe_cpu_kernels* kern, int64_t k) {
    size_t kb = (size_t)(k / 32), chunks = (kb + 15) / 16;
    return ALIGN64(chunks * 16 * (size_t)kern->tile_n) + ALIGN64(2 * chunks) +
           ALIGN64((size_t)kern->tile_n * (size_t)(k / 2)) + 64;
}

size_t mxmoe_cpu_gemm_scratch_bytes(const mxmoe_cpu_state* st, int64_t num_experts, int64_t k) {
    return ALIGN64((size_t)num_experts * sizeof(int32_t)) +
           (size_t)st->threads * thread_bytes(st->kern, k);
}

typedef struct gemm_job {
    const mxmoe_cpu_gemm_args* a;
    const mxmoe_cpu_kernels* kern;
    int64_t N, K, kb;
    int64_t tiles; /* column tiles per expert */
    int64_t tiles_per_task;
    int64_t tasks_per_expert;
    const int32_t* active;
    uint8_t* thread_scratch;
    size_t thread_stride;
} gemm_job;

/* Asks for the scale rows of tile (e, n0), one tile ahead: the scale transposition at the
 * start of a tile would otherwise wait on a few cold misses. */
static void prefetch_tile_scales(const gemm_job* job, int64_t e, int64_t n0) {
    const int64_t N = job->N, kb = job->kb;
    const int tn = job->kern->tile_n;
    if (n0 >= N || job->a->w->scale_layout != MXMOE_SCALES_LINEAR) {
        return;
    }
    int rows = (int)(N - n0 < tn ? N - n0 : tn);
    const uint8_t* sc = (const uint8_t*)job->a->w->scales.data + (e * N + n0) * kb;
    for (int64_t b = 0; b < rows * kb; b += 64) {
        __builtin_prefetch(sc + b);
    }
}

/* out[r0 + i, n0 + c] = res[i][c] (+ bias[e, n0 + c]), one rounding to out's dtype (row
 * out_rows[r0 + i] instead where the rows are mapped). */
static void store_rows(const mxmoe_cpu_gemm_args* a, const float* res, int tn, int m, int64_t r0,
                       int64_t e, int64_t n0, int cols) {
    const int64_t N = a->w->packed.dims[1];
    float b[16];
    if (a->bias != NULL) {
        for (int c = 0; c < cols; c++) {
            b[c] = mxmoe_load_float(a->bias->data, a->bias->dtype, e * N + n0 + c);
        }
    }
    for (int i = 0; i < m; i++) {
        const float* v = res + i * tn;
        int64_t o = (a->out_rows != NULL ? a->out_rows[r0 + i] : r0 + i) * N + n0;
        if (a->out->dtype == MXMOE_F32) { /* the common case, in loops the compiler vectorizes */
            float* dst = (float*)a->out->data + o;
            if (a->bias != NULL) {
                for (int c = 0; c < cols; c++) {
                    dst[c] = v[c] + b[c];
                }
            } else {
                memcpy(dst, v, (size_t)cols * sizeof(float));
            }
            continue;
        }
        for (int c = 0; c < cols; c++) {
            mxmoe_store_float(a->out->data, a->out->dtype, o + c,
                              a->bias != NULL ? v[c] + b[c] : v[c]);
        }
    }
}

/* Tile (e, n0) for every row of expert e; `next` = the packed bytes of the thread's next tile
 * (NULL if none) for the kernel to prefetch. */
static void gemm_tile_task(const gemm_job* job, int64_t e, int64_t n0, const uint8_t* next,
                           int thread) {
    const mxmoe_cpu_gemm_args* a = job->a;
    const mxmoe_cpu_kernels* kern = job->kern;
    const int tn = kern->tile_n;
    const int64_t N = job->N, K = job->K, kb = job->kb;
    const int rows_valid = (int)(N - n0 < tn ? N - n0 : tn);

    uint8_t* s = job->thread_scratch + (size_t)thread * job->thread_stride;
    size_t chunks = (size_t)(kb + 15) / 16;
    uint8_t* sbT = s;
    uint8_t* cmin = sbT + ALIGN64(chunks * 16 * (size_t)tn);
    uint8_t* cmax = cmin + chunks;
    uint8_t* pad = cmin + ALIGN64(2 * chunks);

    const uint8_t* w_packed = (const uint8_t*)a->w->packed.data + (e * N + n0) * (K / 2);
    const uint8_t* w_scales = (const uint8_t*)a->w->scales.data;
    if (rows_valid < tn) { /* last tile: copy the rows that exist, zero the rest */
        memcpy(pad, w_packed, (size_t)rows_valid * (size_t)(K / 2));
        memset(pad + (size_t)rows_valid * (size_t)(K / 2), 0,
               (size_t)(tn - rows_valid) * (size_t)(K / 2));
        w_packed = pad;
    }
    if (a->w->scale_layout == MXMOE_SCALES_LINEAR) {
        kern->transpose_scales(w_scales + (e * N + n0) * kb, kb, rows_valid, kb, sbT, cmin, cmax);
    } else {
        const uint8_t* base = w_scales + e * (int64_t)mxmoe_swizzled_scale_bytes(N, K);
        for (int64_t c = 0; c * 16 < kb; c++) {
            uint8_t mn = 255, mx = 0;
            for (int64_t j = c * 16; j < kb && j < c * 16 + 16; j++) {
                for (int i = 0; i < tn; i++) {
                    uint8_t b = i < rows_valid ? base[mxmoe_swizzled_offset(n0 + i, j, K)] : 127;
                    sbT[j * tn + i] = b;
                    mn = b < mn ? b : mn;
                    mx = b > mx ? b : mx;
                }
            }
            cmin[c] = mn;
            cmax[c] = mx;
        }
    }
    mxmoe_cpu_wtile wt = {w_packed, K / 2, sbT, cmin, cmax, kb, next};

    float res[16 * 16];
    const int32_t r_begin = a->offsets[e], r_end = a->offsets[e + 1];
    /* groups of at most max_rows rows, as even as possible (9 rows: 5 + 4, not 8 + 1) */
    const int64_t groups = mxmoe_ceil_div(r_end - r_begin, kern->max_rows);
    for (int64_t gi = 0; gi < groups; gi++) {
        int32_t r0 = r_begin + (int32_t)((r_end - r_begin) * gi / groups);
        int32_t r1 = r_begin + (int32_t)((r_end - r_begin) * (gi + 1) / groups);
        int m = (int)(r1 - r0);
        const uint8_t* act = a->act8 + (size_t)r0 * a->act8_stride;
        int32_t sa_lo = 255, sa_hi = 0;
        for (int i = 0; i < m; i++) {
            int32_t lo, hi;
            mxmoe_cpu_act8_range(act + (size_t)i * a->act8_stride, K, &lo, &hi);
            sa_lo = lo < sa_lo ? lo : sa_lo;
            sa_hi = hi > sa_hi ? hi : sa_hi;
        }
        kern->gemm_tile(&wt, act, a->act8_stride, m, sa_lo, sa_hi, res);
        wt.next = NULL; /* later row groups: the next tile is on its way already */
        store_rows(a, res, tn, m, r0, e, n0, rows_valid);
    }
}

/* A task: tiles_per_task consecutive column tiles of one expert, one after the other. */
static void gemm_task(void* arg, int64_t task, int thread) {
    const gemm_job* job = (const gemm_job*)arg;
    const int tn = job->kern->tile_n;
    const int64_t tiles_per_task = job->tiles_per_task;
    const int64_t e = job->active[task / job->tasks_per_expert];
    const int64_t t0 = (task % job->tasks_per_expert) * tiles_per_task;
    const int64_t t1 = t0 + tiles_per_task < job->tiles ? t0 + tiles_per_task : job->tiles;
    const uint8_t* packed = (const uint8_t*)job->a->w->packed.data;
    for (int64_t t = t0; t < t1; t++) {
        /* the next tile of this task, if it is a whole one (a partial last tile is copied) */
        const uint8_t* next = NULL;
        if (t + 1 < t1 && (t + 2) * tn <= job->N) {
            next = packed + (e * job->N + (t + 1) * tn) * (job->K / 2);
            prefetch_tile_scales(job, e, (t + 1) * tn);
        }
        gemm_tile_task(job, e, t * tn, next, thread);
    }
}

void mxmoe_cpu_gemm_run(mxmoe_cpu_state* st, const mxmoe_cpu_gemm_args* a) {
    gemm_job job;
    job.a = a;
    job.kern = st->kern;
    job.N = a->w->packed.dims[1];
    job.K = a->w->packed.dims[2] * 2;
    job.kb = job.K / 32;
    job.tiles = mxmoe_ceil_div(job.N, st->kern->tile_n);

    int32_t* active = (int32_t*)a->scratch;
    int64_t num_active = 0;
    for (int64_t e = 0; e < a->num_experts; e++) {
        if (a->offsets[e + 1] > a->offsets[e]) {
            active[num_active++] = (int32_t)e;
        }
    }
    job.active = active;
    job.thread_scratch = (uint8_t*)a->scratch + ALIGN64((size_t)a->num_experts * sizeof(int32_t));
    job.thread_stride = thread_bytes(st->kern, job.K);
    if (job.N == 0) {
        return;
    }
    if (num_active == 0) {
        return;
    }
    int64_t want = mxmoe_ceil_div((int64_t)TASKS_PER_THREAD * st->threads, num_active);
    job.tasks_per_expert = want < job.tiles ? want : job.tiles;
    job.tiles_per_task = mxmoe_ceil_div(job.tiles, job.tasks_per_expert);
    job.tasks_per_expert = mxmoe_ceil_div(job.tiles, job.tiles_per_task);
    mxmoe_pool_run(st->pool, num_active * job.tasks_per_expert, gemm_task, &job);
}

/* --- activation rows -> act8 ------------------------------------------------------------------ */

#define ACT8_ROWS_PER_TASK 8

typedef struct act8_job {
    const mxmoe_cpu_kernels* kern;
    const mxmoe_mx_tensor* a;
    int64_t k, rows;
    const int32_t* offsets;
    int64_t num_experts;
    const int64_t* swizzle_base;
    uint8_t* gather; /* per thread: one row's scales */
    uint8_t* dst;
    size_t stride;
} act8_job;

static void act8_task(void* arg, int64_t task, int thread) {
    const act8_job* job = (const act8_job*)arg;
    const int64_t k = job->k, kb = k / 32;
    const uint8_t* packed = (const uint8_t*)job->a->packed.data;
    const uint8_t* scales = (const uint8_t*)job->a->scales.data;
    int64_t r1 =
        (task + 1) * ACT8_ROWS_PER_TASK < job->rows ? (task + 1) * ACT8_ROWS_PER_TASK : job->rows;
    for (int64_t r = task * ACT8_ROWS_PER_TASK; r < r1; r++) {
        uint8_t* dst = job->dst + (size_t)r * job->stride;
        if (job->a->scale_layout == MXMOE_SCALES_LINEAR) {
            job->kern->act8_row(packed + r * (k / 2), scales + r * kb, k, dst);
            continue;
        }
        /* grouped swizzled: the row's expert gives its atom base */
        int64_t lo = 0, hi = job->num_experts - 1;
        while (lo < hi) { /* the last expert e with offsets[e] <= r holds r */
            int64_t mid = (lo + hi + 1) / 2;
            if (job->offsets[mid] <= r) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        const uint8_t* base = scales + job->swizzle_base[lo] * mxmoe_swizzled_cols(k);
        int64_t rr = r - job->offsets[lo];
        uint8_t* row_scales = job->gather + (size_t)thread * ALIGN64((size_t)kb);
        for (int64_t j = 0; j < kb; j++) {
            row_scales[j] = base[mxmoe_swizzled_offset(rr, j, k)];
        }
        job->kern->act8_row(packed + r * (k / 2), row_scales, k, dst);
    }
}

size_t mxmoe_cpu_act8_scratch_bytes(const mxmoe_cpu_state* st, int64_t num_experts, int64_t k) {
    return ALIGN64((size_t)(num_experts + 1) * sizeof(int64_t)) +
           (size_t)st->threads * ALIGN64((size_t)(k / 32));
}

void mxmoe_cpu_act8_rows(mxmoe_cpu_state* st, const mxmoe_mx_tensor* a, int64_t k, int64_t rows,
                         const int32_t* offsets, int64_t num_experts, void* scratch, uint8_t* dst,
                         size_t stride) {
    int64_t* swizzle_base = (int64_t*)scratch;
    uint8_t* gather = (uint8_t*)scratch + ALIGN64((size_t)(num_experts + 1) * sizeof(int64_t));
    act8_job job = {st->kern, a, k, rows, offsets, num_experts, swizzle_base, gather, dst, stride};
    if (a->scale_layout == MXMOE_SCALES_SWIZZLED) {
        swizzle_base[0] = 0;
        for (int64_t e = 0; e < num_experts; e++) {
            swizzle_base[e + 1] =
                swizzle_base[e] + mxmoe_round_up(offsets[e + 1] - offsets[e], 128);
        }
    }
    mxmoe_pool_run(st->pool, mxmoe_ceil_div(rows, ACT8_ROWS_PER_TASK), act8_task, &job);
}

/* --- the grouped_gemm operation -----------------------------------------------------------------
 */

mxmoe_status mxmoe_cpu_grouped_gemm(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                    const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets_t,
                                    const mxmoe_tensor* bias, mxmoe_tensor* out) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (st->kern == NULL) {
        return mxmoe_grouped_gemm_ref(ctx, a, w, offsets_t, bias, out);
    }
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
    int64_t rows = offsets[num_experts];
    double estimate = (double)rows * (1.5 * (double)k + 128.0) +
                      (double)st->threads * (16.0 * (double)k + 4096.0) +
                      16.0 * (double)num_experts;
    MXMOE_RETURN_IF(estimate > MXMOE_CPU_MAX_BYTES, ctx, MXMOE_ERR_OVERFLOW,
                    "grouped_gemm: CPU scratch for %lld rows of K = %lld overflows",
                    (long long)rows, (long long)k);
    size_t stride = mxmoe_cpu_act8_row_bytes(k);
    size_t act8_bytes = ALIGN64((size_t)rows * stride);
    size_t prep_bytes = ALIGN64(mxmoe_cpu_act8_scratch_bytes(st, num_experts, k));
    size_t gemm_bytes = mxmoe_cpu_gemm_scratch_bytes(st, num_experts, k);
    void* scratch = NULL;
    MXMOE_FORWARD(mxmoe_cpu_scratch(ctx, act8_bytes + prep_bytes + gemm_bytes, &scratch));
    uint8_t* act8 = (uint8_t*)scratch;
    mxmoe_cpu_act8_rows(st, a, k, rows, offsets, num_experts, act8 + act8_bytes, act8, stride);
    mxmoe_cpu_gemm_args args = {
        w, offsets, num_experts, act8, stride, bias, out, act8 + act8_bytes + prep_bytes, NULL};
    mxmoe_cpu_gemm_run(st, &args);
    return MXMOE_OK;
}
