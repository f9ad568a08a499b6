/*
 * backend_cpu.c — the CPU backend's function table and context life cycle.
 *
 * BLIS style: every slot starts as the scalar reference kernel (src/ref); the drivers of the
 * operations that have SIMD kernels (quantization, grouped GEMM, the MoE layer) run the
 * context's tier on its thread pool, and fall back to the reference on the scalar tier.
 * The tier is the best the CPU has (dispatch.c), lowered by
 * MXMOE_CPU_ISA=scalar|avx2|avx512bw|avx512.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign, clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "cpu/cpu_state.h"
#include "ref/ref.h"

static int cpu_available(void) {
    return 1;
}

/* The tier MXMOE_CPU_ISA asks for, or -1 for a value that names none. */
static int parse_tier(const char* s) {
    if (strcmp(s, "scalar") == 0 || strcmp(s, "ref") == 0) {
        return MXMOE_CPU_TIER_SCALAR;
    }
    if (strcmp(s, "avx2") == 0) {
        return MXMOE_CPU_TIER_AVX2;
    }
    if (strcmp(s, "avx512bw") == 0) {
        return MXMOE_CPU_TIER_AVX512BW;
    }
    if (strcmp(s, "avx512") == 0) {
        return MXMOE_CPU_TIER_AVX512;
    }
    return -1;
}

static mxmoe_status cpu_init(mxmoe_ctx* ctx) {
    mxmoe_cpu_tier best = mxmoe_cpu_best_tier(), tier = best;
    const char* env = getenv("MXMOE_CPU_ISA");
    int capped = 0;
    if (env != NULL && env[0] != '\0') {
        int want = parse_tier(env);
        MXMOE_RETURN_IF(want < 0, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                        "MXMOE_CPU_ISA='%s' is not one of scalar, avx2, avx512bw, avx512", env);
        if (want <= (int)best) {
            tier = (mxmoe_cpu_tier)want;
        } else {
            capped = 1; /* never above what the CPU has */
        }
    }
    mxmoe_cpu_state* st = calloc(1, sizeof *st);
    MXMOE_RETURN_IF(st == NULL, ctx, MXMOE_ERR_NO_MEMORY, "cannot allocate the CPU backend state");
    st->tier = tier;
    st->kern = mxmoe_cpu_tier_kernels(tier);
    /* The scalar tier is the reference itself: single-threaded. */
    st->threads = st->kern == NULL              ? 1
                  : ctx->params.num_threads > 0 ? ctx->params.num_threads
                                                : mxmoe_cpu_count();
    st->pool = mxmoe_pool_create(st->threads);
    if (st->pool == NULL) {
        free(st);
        return mxmoe_fail(ctx, MXMOE_ERR_BACKEND, "cannot start %d CPU threads",
                          ctx->params.num_threads);
    }
    ctx->backend_state = st;
    if (st->kern == NULL) {
        snprintf(ctx->detail, sizeof ctx->detail,
                 "cpu: scalar tier (reference kernels), 1 thread%s",
                 capped ? "; MXMOE_CPU_ISA above this CPU" : "");
    } else {
        snprintf(ctx->detail, sizeof ctx->detail,
                 "cpu: %s tier (%s gemm, quantize, activation; other ops scalar), %d thread%s%s",
                 mxmoe_cpu_tier_name(tier), st->kern->name, st->threads,
                 st->threads == 1 ? "" : "s", capped ? "; MXMOE_CPU_ISA above this CPU" : "");
    }
    return MXMOE_OK;
}

static void cpu_release(mxmoe_ctx* ctx) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (st == NULL) {
        return;
    }
    mxmoe_pool_destroy(st->pool);
    free(st->scratch);
    free(st);
    ctx->backend_state = NULL;
}

mxmoe_status mxmoe_cpu_scratch(mxmoe_ctx* ctx, size_t bytes, void** out) {
    mxmoe_cpu_state* st = mxmoe_cpu_state_of(ctx);
    if (bytes > st->scratch_bytes) {
        free(st->scratch);
        st->scratch = NULL;
        st->scratch_bytes = 0;
        void* p = NULL;
        MXMOE_RETURN_IF(posix_memalign(&p, 64, bytes) != 0, ctx, MXMOE_ERR_NO_MEMORY,
                        "cannot allocate %zu bytes of CPU scratch", bytes);
        st->scratch = p;
        st->scratch_bytes = bytes;
    }
    *out = st->scratch;
    return MXMOE_OK;
}

static mxmoe_status cpu_alloc(mxmoe_ctx* ctx, size_t bytes, void** ptr) {
    *ptr = malloc(bytes ? bytes : 1);
    MXMOE_RETURN_IF(*ptr == NULL, ctx, MXMOE_ERR_NO_MEMORY, "cannot allocate %zu bytes", bytes);
    return MXMOE_OK;
}

static void cpu_dealloc(mxmoe_ctx* ctx, void* ptr) {
    (void)ctx;
    free(ptr);
}

static mxmoe_status cpu_copy(mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                             mxmoe_copy_kind kind) {
    (void)ctx, (void)kind;
    memmove(dst, src, bytes);
    return MXMOE_OK;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static mxmoe_status cpu_timer_start(mxmoe_ctx* ctx) {
    ctx->timer_mark_us = now_us();
    return MXMOE_OK;
}

static mxmoe_status cpu_timer_stop(mxmoe_ctx* ctx, double* microseconds) {
    *microseconds = now_us() - ctx->timer_mark_us;
    return MXMOE_OK;
}

const mxmoe_backend_ops mxmoe_cpu_backend = {
    .name = "cpu",
    .compiled = 1,
    .available = cpu_available,
    .init = cpu_init,
    .release = cpu_release,
    .synchronize = NULL,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .copy = cpu_copy,
    .timer_start = cpu_timer_start,
    .timer_stop = cpu_timer_stop,
    .quantize = mxmoe_cpu_quantize,
    .dequantize = mxmoe_dequantize_ref,
    .gguf_from_mx = mxmoe_gguf_from_mx_ref,
    .mx_from_gguf = mxmoe_mx_from_gguf_ref,
    .swizzle_scales = mxmoe_swizzle_scales_ref,
    .unswizzle_scales = mxmoe_unswizzle_scales_ref,
    .route = mxmoe_route_ref,
    .plan = mxmoe_plan_ref,
    .experts_quantize = mxmoe_cpu_experts_quantize,
    .permute_quantize = mxmoe_cpu_permute_quantize,
    .act_and_quantize = mxmoe_cpu_act_and_quantize,
    .weights_prepare = NULL, /* the CPU kernels read the scales as they are */
    .weights_release = NULL,
    .weights_repack = NULL, /* the CPU kernels decode the canonical packing */
    .grouped_gemm = mxmoe_cpu_grouped_gemm,
    .grouped_projection = mxmoe_cpu_grouped_projection,
    .moe_workspace_size = mxmoe_cpu_moe_workspace_size,
    .moe_forward = mxmoe_cpu_moe_forward,
};
