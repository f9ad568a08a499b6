/*
 * bench_weights.c — benchmark weights in the backend's memory, in enough copies that the runs
 * of a point, cycling through them, read their weights from memory and not from the last-level
 * cache (H100: 50 MB of L2, so the active experts of consecutive runs must span > 200 MB).
 *
 * Values do not matter for speed, only that they are finite and typical: codes are random bytes
 * (every E2M1 value, both signs) and scales random in [2^-9, 2^-3] (bytes 118..124), which keep
 * a layer's activations O(1). One copy is filled from a host pattern; the others are copies of
 * it made inside the backend's memory, which is fast on a GPU.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { SCALE_LO = 118, SCALE_HI = 124 };
#define PATTERN_BYTES ((size_t)64 << 20)
#define SCALES_ALIGN  ((size_t)256)

static size_t codes_bytes(const bench_weights* w, int m) {
    return (size_t)w->experts * (size_t)w->matrix[m].rows * (size_t)(w->matrix[m].k / 2);
}

static size_t scales_offset(const bench_weights* w, int m) {
    return (codes_bytes(w, m) + SCALES_ALIGN - 1) / SCALES_ALIGN * SCALES_ALIGN;
}

static size_t scales_bytes(const bench_weights* w, int m) {
    return (size_t)w->experts * (size_t)w->matrix[m].rows * (size_t)(w->matrix[m].k / MXMOE_BLOCK);
}

void bench_weights_init(bench_weights* w, const bench_shape* s, int op) {
    memset(w, 0, sizeof *w);
    w->experts = s->experts;
    if (op == BENCH_OP_GROUPED) {
        w->num_matrices = 1;
        w->matrix[0] = (bench_matrix){s->proj_n, s->proj_k};
    } else {
        w->num_matrices = 2;
        w->matrix[0] = (bench_matrix){2 * s->intermediate, s->hidden}; /* w13 [E, 2I, H] */
        w->matrix[1] = (bench_matrix){s->hidden, s->intermediate};     /* w2  [E, H, I] */
    }
    for (int m = 0; m < w->num_matrices; m++) {
        w->matrix_bytes[m] = scales_offset(w, m) + scales_bytes(w, m);
    }
}

double bench_expert_bytes(const bench_weights* w) {
    double bytes = 0;
    for (int m = 0; m < w->num_matrices; m++) {
        bytes += (double)w->matrix[m].rows * (double)w->matrix[m].k * 17.0 / 32.0;
    }
    return bytes;
}

int bench_fill(const char* cmd, mxmoe_ctx* ctx, void* dst, size_t bytes, uint64_t seed, int lo,
               int hi) {
    size_t n = bytes < PATTERN_BYTES ? bytes : PATTERN_BYTES;
    if (n == 0) {
        return 0;
    }
    unsigned char* pattern = calloc(n, 1);
    if (pattern == NULL) {
        cli_error(cmd, "out of memory for a %zu-byte fill pattern", n);
        return -1;
    }
    uint64_t state = seed, span = (uint64_t)(hi - lo + 1);
    for (size_t i = 0; i < n; i++) {
        pattern[i] = (unsigned char)(lo + (int)((bench_next(&state) >> 32) % span));
    }
    mxmoe_status st = mxmoe_memcpy(ctx, dst, pattern, n, MXMOE_COPY_HOST_TO_BACKEND);
    free(pattern);
    /* Double the filled prefix until the buffer is full. */
    for (size_t filled = n; st == MXMOE_OK && filled < bytes;) {
        size_t chunk = filled < bytes - filled ? filled : bytes - filled;
        st = mxmoe_memcpy(ctx, (unsigned char*)dst + filled, dst, chunk,
                          MXMOE_COPY_BACKEND_TO_BACKEND);
        filled += chunk;
    }
    if (st != MXMOE_OK) {
        cli_error(cmd, "filling %zu bytes of backend memory: %s (%s)", bytes,
                  mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
        return -1;
    }
    return 0;
}

/* Frees copy c, unpreparing its first `prepared` matrices first (a prepared tensor must not
 * outlive its memory: a later allocation at the same address would look prepared). */
static void free_copy(mxmoe_ctx* ctx, const bench_weights* w, int c, int prepared) {
    for (int m = 0; m < prepared; m++) {
        mxmoe_mx_tensor t = bench_weights_view(ctx, w, c, m);
        mxmoe_weights_unprepare(ctx, &t);
    }
    for (int m = 0; m < w->num_matrices; m++) {
        mxmoe_free(ctx, w->copies[(size_t)c * (size_t)w->num_matrices + (size_t)m]);
    }
}

/* Allocates and fills copy c (copies of copy 0 after the first), prepared if asked. */
static int make_copy(const char* cmd, mxmoe_ctx* ctx, bench_weights* w, int c) {
    void** slots = w->copies + (size_t)c * (size_t)w->num_matrices;
    for (int m = 0; m < w->num_matrices; m++) {
        slots[m] = NULL;
    }
    for (int m = 0; m < w->num_matrices; m++) {
        mxmoe_status st = mxmoe_malloc(ctx, w->matrix_bytes[m], &slots[m]);
        if (st != MXMOE_OK) {
            /* Not fatal: the caller may settle for fewer copies. */
            for (int j = 0; j < m; j++) {
                mxmoe_free(ctx, slots[j]);
            }
            return 1;
        }
        unsigned char* base = slots[m];
        int rc = 0;
        if (c == 0 || w->prepare == 2) { /* repacked copies each from the canonical codes */
            rc = bench_fill(cmd, ctx, base, codes_bytes(w, m), 0xC0DE5ull + (uint64_t)m, 0, 255);
            if (rc == 0) {
                rc = bench_fill(cmd, ctx, base + scales_offset(w, m), scales_bytes(w, m),
                                0x5CA1Eull + (uint64_t)m, SCALE_LO, SCALE_HI);
            }
        } else {
            mxmoe_status cs = mxmoe_memcpy(ctx, base, w->copies[m], w->matrix_bytes[m],
                                           MXMOE_COPY_BACKEND_TO_BACKEND);
            if (cs != MXMOE_OK) {
                rc = cli_error(cmd, "copying the weights: %s (%s)", mxmoe_ctx_last_error(ctx),
                               mxmoe_status_string(cs));
            }
        }
        if (rc != 0) {
            for (int j = 0; j <= m; j++) {
                mxmoe_free(ctx, slots[j]);
            }
            return -1;
        }
    }
    for (int m = 0; m < w->num_matrices && w->prepare; m++) {
        mxmoe_mx_tensor t = bench_weights_view(ctx, w, c, m);
        mxmoe_status st = w->prepare == 2 ? mxmoe_weights_prepare_repack(ctx, &t)
                                          : mxmoe_weights_prepare(ctx, &t);
        if (st != MXMOE_OK) {
            cli_error(cmd, "preparing the weights: %s (%s)", mxmoe_ctx_last_error(ctx),
                      mxmoe_status_string(st));
            free_copy(ctx, w, c, m);
            return -1;
        }
    }
    return 0;
}

int bench_weights_reserve(const char* cmd, mxmoe_ctx* ctx, bench_weights* w, int count) {
    if (count > w->capacity) {
        void** p = realloc(w->copies, (size_t)count * (size_t)w->num_matrices * sizeof *p);
        if (p == NULL) {
            cli_error(cmd, "out of memory");
            return -1;
        }
        w->copies = p;
        w->capacity = count;
    }
    while (w->count < count) {
        int rc = make_copy(cmd, ctx, w, w->count);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            if (w->count == 0) {
                cli_error(cmd, "cannot allocate %.1f MB of %s memory for the weights",
                          (double)(w->matrix_bytes[0] + w->matrix_bytes[1]) / 1e6,
                          mxmoe_backend_name(mxmoe_ctx_backend(ctx)));
                return -1;
            }
            cli_warn(cmd, "backend memory ran out after %d of %d weight copies; rotating over %d",
                     w->count, count, w->count);
            break;
        }
        w->count++;
    }
    return w->count < count ? w->count : count;
}

void bench_weights_free(mxmoe_ctx* ctx, bench_weights* w) {
    for (int c = 0; c < w->count; c++) {
        free_copy(ctx, w, c, w->prepare ? w->num_matrices : 0);
    }
    free(w->copies);
    w->copies = NULL;
    w->count = w->capacity = 0;
}

mxmoe_mx_tensor bench_weights_view(const mxmoe_ctx* ctx, const bench_weights* w, int c, int m) {
    unsigned char* base = w->copies[(size_t)c * (size_t)w->num_matrices + (size_t)m];
    int64_t E = w->experts, rows = w->matrix[m].rows, k = w->matrix[m].k;
    int64_t p_dims[3] = {E, rows, k / 2}, s_dims[3] = {E, rows, k / MXMOE_BLOCK};
    mxmoe_mx_tensor t;
    t.packed = cli_tensor(ctx, base, MXMOE_U8, 3, p_dims);
    t.scales = cli_tensor(ctx, base + scales_offset(w, m), MXMOE_U8, 3, s_dims);
    t.scale_layout = MXMOE_SCALES_LINEAR;
    return t;
}
