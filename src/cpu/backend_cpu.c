/*
 * backend_cpu.c — the CPU backend's function table.
 *
 * Today every slot holds the scalar reference kernel (BLIS style: reference kernels fill every
 * slot first; SIMD tiers will override them where the CPU supports them).
 */
#include <stdio.h>

#include "core/backend.h"
#include "ref/ref.h"

static int cpu_available(void) {
    return 1;
}

static mxmoe_status cpu_init(mxmoe_ctx* ctx) {
    snprintf(ctx->detail, sizeof ctx->detail, "cpu (scalar reference kernels, 1 thread)");
    return MXMOE_OK;
}

const mxmoe_backend_ops mxmoe_cpu_backend = {
    .name = "cpu",
    .available = cpu_available,
    .init = cpu_init,
    .release = NULL,
    .synchronize = NULL,
    .quantize = mxmoe_quantize_ref,
    .dequantize = mxmoe_dequantize_ref,
    .gguf_from_mx = mxmoe_gguf_from_mx_ref,
    .mx_from_gguf = mxmoe_mx_from_gguf_ref,
    .swizzle_scales = mxmoe_swizzle_scales_ref,
    .unswizzle_scales = mxmoe_unswizzle_scales_ref,
    .route = mxmoe_route_ref,
    .plan = mxmoe_plan_ref,
    .experts_quantize = mxmoe_experts_quantize_ref,
    .act_and_quantize = mxmoe_act_and_quantize_ref,
    .grouped_gemm = mxmoe_grouped_gemm_ref,
    .moe_workspace_size = mxmoe_moe_workspace_size_ref,
    .moe_forward = mxmoe_moe_forward_ref,
};
