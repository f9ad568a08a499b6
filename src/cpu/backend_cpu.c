/*
 * backend_cpu.c — the CPU backend's function table.
 *
 * Today every slot holds the scalar reference kernel (BLIS style: reference kernels fill every
 * slot first; SIMD tiers will override them where the CPU supports them).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "ref/ref.h"

static int cpu_available(void) {
    return 1;
}

static mxmoe_status cpu_init(mxmoe_ctx* ctx) {
    snprintf(ctx->detail, sizeof ctx->detail, "cpu (scalar reference kernels, single-threaded)");
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
    .release = NULL,
    .synchronize = NULL,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .copy = cpu_copy,
    .timer_start = cpu_timer_start,
    .timer_stop = cpu_timer_stop,
    .quantize = mxmoe_quantize_ref,
    .dequantize = mxmoe_dequantize_ref,
    .gguf_from_mx = mxmoe_gguf_from_mx_ref,
    .mx_from_gguf = mxmoe_mx_from_gguf_ref,
    .swizzle_scales = mxmoe_swizzle_scales_ref,
    .unswizzle_scales = mxmoe_unswizzle_scales_ref,
    .route = mxmoe_route_ref,
    .plan = mxmoe_plan_ref,
    .experts_quantize = mxmoe_experts_quantize_ref,
    .permute_quantize = mxmoe_permute_quantize_ref,
    .act_and_quantize = mxmoe_act_and_quantize_ref,
    .grouped_gemm = mxmoe_grouped_gemm_ref,
    .moe_workspace_size = mxmoe_moe_workspace_size_ref,
    .moe_forward = mxmoe_moe_forward_ref,
};
