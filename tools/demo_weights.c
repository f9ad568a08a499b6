/*
 * demo_weights.c — deterministic synthetic values and the MXFP4 expert weights of `mxmoe demo`.
 *
 * Weights are generated and quantized one expert at a time per worker (one per core): only one
 * expert's BF16 matrix per worker (33 MB for gpt-oss-20b's w13) exists at once, next to the
 * 4.25-bit result for all experts. Every value is a function of its position, so the layer is
 * the same whichever worker made which expert.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; /* splitmix64's finaliser */
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const uint64_t golden_gamma = 0x9E3779B97F4A7C15ull;

static uint64_t stream_key(uint64_t seed, demo_stream what, int64_t expert) {
    return mix64(seed ^ mix64(((uint64_t)what << 40) ^ (uint64_t)expert ^ golden_gamma));
}

/* One approximately standard normal value: the sum of four 16-bit uniforms of one 64-bit draw,
 * centred and scaled to unit variance (each uniform has variance 2^32/12, the sum 2^32/3). */
static float normal_at(uint64_t key, int64_t index) {
    uint64_t u = mix64(key + (uint64_t)(index + 1) * golden_gamma);
    uint32_t s = (uint32_t)(u & 0xFFFF) + (uint32_t)((u >> 16) & 0xFFFF) +
                 (uint32_t)((u >> 32) & 0xFFFF) + (uint32_t)(u >> 48);
    return ((float)s - 131070.0f) * (1.7320508f / 65536.0f);
}

void demo_generate_bf16(uint64_t seed, demo_stream what, int64_t expert, float scale, int64_t first,
                        int64_t n, uint16_t* out) {
    uint64_t key = stream_key(seed, what, expert);
    for (int64_t i = 0; i < n; i++) {
        out[i] = cli_bf16_from_float(scale * normal_at(key, first + i));
    }
}

void demo_generate_f32(uint64_t seed, demo_stream what, int64_t expert, float scale, int64_t first,
                       int64_t n, float* out) {
    uint64_t key = stream_key(seed, what, expert);
    for (int64_t i = 0; i < n; i++) {
        out[i] = scale * normal_at(key, first + i);
    }
}

static mxmoe_mx_tensor expert_view(uint8_t* packed, uint8_t* scales, int64_t e, int64_t rows,
                                   int64_t k) {
    int64_t p_dims[2] = {rows, k / 2}, s_dims[2] = {rows, k / MXMOE_BLOCK};
    mxmoe_mx_tensor t;
    t.packed = mxmoe_tensor_make(packed + e * rows * (k / 2), MXMOE_U8, 2, p_dims);
    t.scales = mxmoe_tensor_make(scales + e * rows * (k / MXMOE_BLOCK), MXMOE_U8, 2, s_dims);
    t.scale_layout = MXMOE_SCALES_LINEAR;
    return t;
}

mxmoe_mx_tensor demo_expert_w13(const demo_layer* L, int64_t e) {
    return expert_view(L->w13_packed, L->w13_scales, e, 2 * L->intermediate, L->hidden);
}

mxmoe_mx_tensor demo_expert_w2(const demo_layer* L, int64_t e) {
    return expert_view(L->w2_packed, L->w2_scales, e, L->hidden, L->intermediate);
}

void demo_layer_free(demo_layer* L) {
    free(L->w13_packed);
    free(L->w13_scales);
    free(L->w2_packed);
    free(L->w2_scales);
    free(L->b13);
    free(L->b2);
    L->w13_packed = L->w13_scales = L->w2_packed = L->w2_scales = NULL;
    L->b13 = L->b2 = NULL;
}

/* Generates one weight matrix (rows x k, BF16) of expert e into `tmp` and quantizes it. */
static int quantize_matrix(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, demo_stream what,
                           int64_t e, int64_t rows, int64_t k, uint16_t* tmp,
                           mxmoe_mx_tensor* dst) {
    demo_generate_bf16(L->seed, what, e, 1.0f / sqrtf((float)k), 0, rows * k, tmp);
    int64_t dims[2] = {rows, k};
    mxmoe_tensor x = mxmoe_tensor_make(tmp, MXMOE_BF16, 2, dims);
    mxmoe_status st = mxmoe_quantize(ctx, &x, MXMOE_RULE_EVEN, dst);
    if (st != MXMOE_OK) {
        cli_error(cmd, "mxmoe_quantize of expert %lld's %s: %s (%s)", (long long)e,
                  what == DEMO_W13 ? "w13" : "w2", mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        return -1;
    }
    return 0;
}

/* Progress shared by the build's workers. */
typedef struct build_progress {
    pthread_mutex_t lock;
    int64_t done;
    double t0;
} build_progress;

typedef struct build_share {
    const char* cmd;
    demo_layer* L;
    build_progress* progress;
} build_share;

/* Experts e with e % workers == index: generated, quantized, and their biases written. */
static int build_experts(mxmoe_ctx* ctx, int index, int workers, void* arg) {
    build_share* b = arg;
    demo_layer* L = b->L;
    int64_t E = L->experts, H = L->hidden, I = L->intermediate;
    size_t tmp_elems = (size_t)(2 * I * H > H * I ? 2 * I * H : H * I);
    uint16_t* tmp = malloc(tmp_elems * sizeof(uint16_t));
    if (tmp == NULL) {
        return cli_error(b->cmd, "out of memory for an expert's BF16 weights (%.0f MB)",
                         (double)tmp_elems * 2.0 / 1e6);
    }
    int rc = 0;
    for (int64_t e = index; e < E && rc == 0; e += workers) {
        mxmoe_mx_tensor w13 = demo_expert_w13(L, e), w2 = demo_expert_w2(L, e);
        rc = quantize_matrix(b->cmd, ctx, L, DEMO_W13, e, 2 * I, H, tmp, &w13);
        if (rc == 0) {
            rc = quantize_matrix(b->cmd, ctx, L, DEMO_W2, e, H, I, tmp, &w2);
        }
        demo_generate_bf16(L->seed, DEMO_B13, e, DEMO_BIAS_SCALE, 0, 2 * I, L->b13 + e * 2 * I);
        demo_generate_bf16(L->seed, DEMO_B2, e, DEMO_BIAS_SCALE, 0, H, L->b2 + e * H);
        if (rc == 0) {
            build_progress* p = b->progress;
            pthread_mutex_lock(&p->lock); /* under the lock, so the counts print in order */
            int64_t done = ++p->done;
            if (done % 8 == 0 || done == E) {
                printf("      %lld/%lld experts quantized (%.1f s)\n", (long long)done,
                       (long long)E, cli_seconds() - p->t0);
                fflush(stdout);
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    free(tmp);
    return rc;
}

int demo_layer_build(const char* cmd, demo_layer* L) {
    int64_t E = L->experts, H = L->hidden, I = L->intermediate;
    size_t w13_elems = (size_t)(E * 2 * I * H), w2_elems = (size_t)(E * H * I);
    L->w13_packed = malloc(w13_elems / 2);
    L->w13_scales = malloc(w13_elems / MXMOE_BLOCK);
    L->w2_packed = malloc(w2_elems / 2);
    L->w2_scales = malloc(w2_elems / MXMOE_BLOCK);
    L->b13 = malloc((size_t)(E * 2 * I) * sizeof(uint16_t));
    L->b2 = malloc((size_t)(E * H) * sizeof(uint16_t));
    int workers = demo_worker_count(E);
    build_share* shares = calloc((size_t)workers, sizeof *shares);
    if (L->w13_packed == NULL || L->w13_scales == NULL || L->w2_packed == NULL ||
        L->w2_scales == NULL || L->b13 == NULL || L->b2 == NULL || shares == NULL) {
        free(shares);
        demo_layer_free(L);
        cli_error(cmd, "out of memory for the layer (%.0f MB)",
                  (double)(w13_elems + w2_elems) * 17.0 / 32.0 / 1e6);
        return -1;
    }
    build_progress progress;
    pthread_mutex_init(&progress.lock, NULL);
    progress.done = 0;
    progress.t0 = cli_seconds();
    for (int i = 0; i < workers; i++) {
        build_share one = {cmd, L, &progress};
        shares[i] = one;
    }
    int rc = demo_run_workers(cmd, workers, build_experts, shares, sizeof *shares);
    pthread_mutex_destroy(&progress.lock);
    free(shares);
    if (rc != 0) {
        demo_layer_free(L);
    }
    return rc;
}
