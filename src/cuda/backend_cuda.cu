/*
 * backend_cuda.cu — the CUDA backend's table, context set-up and asynchronous error reporting.
 *
 * Every operation is issued on the context's stream and returns without waiting. Data errors
 * found on the device are collected in a word of device memory and reported by
 * mxmoe_ctx_synchronize (see cuda_common.cuh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/grouped_gemm.cuh"

namespace {

int cuda_available() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError(); /* clear the error of a machine without a driver or device */
        return 0;
    }
    return count > 0;
}

mxmoe_status cuda_init(mxmoe_ctx* ctx) {
    int count = 0;
    MXMOE_CUDA_CHECK(ctx, cudaGetDeviceCount(&count));
    if (ctx->params.cuda_device >= count) {
        return mxmoe_fail(ctx, MXMOE_ERR_INVALID_ARGUMENT, "cuda_device %d: only %d device(s)",
                          (int)ctx->params.cuda_device, count);
    }
    MXMOE_CUDA_CHECK(ctx, cudaSetDevice(ctx->params.cuda_device));
    cudaDeviceProp prop;
    MXMOE_CUDA_CHECK(ctx, cudaGetDeviceProperties(&prop, ctx->params.cuda_device));
    if (prop.major < 8) {
        return mxmoe_fail(ctx, MXMOE_ERR_UNSUPPORTED,
                          "%s has compute capability %d.%d; mxmoe needs 8.0 or newer", prop.name,
                          prop.major, prop.minor);
    }
    auto* state = static_cast<mxmoe_cuda_state*>(calloc(1, sizeof(mxmoe_cuda_state)));
    if (state == nullptr) {
        return mxmoe_fail(ctx, MXMOE_ERR_NO_MEMORY, "cannot allocate the CUDA backend state");
    }
    state->device = ctx->params.cuda_device;
    state->sm_count = prop.multiProcessorCount;
    cudaError_t err = cudaMalloc(&state->errors, sizeof(unsigned));
    if (err == cudaSuccess) {
        err = cudaMemset(state->errors, 0, sizeof(unsigned));
    }
    if (err == cudaSuccess) {
        err = cudaEventCreate(&state->timer_start);
    }
    if (err == cudaSuccess) {
        err = cudaEventCreate(&state->timer_stop);
    }
    if (err == cudaSuccess) { /* stream-ordered scratch that stays mapped between calls */
        cudaMemPoolProps props = {};
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = state->device;
        err = cudaMemPoolCreate(&state->pool, &props);
        uint64_t keep = UINT64_MAX;
        if (err == cudaSuccess) {
            err = cudaMemPoolSetAttribute(state->pool, cudaMemPoolAttrReleaseThreshold, &keep);
        }
    }
    if (err != cudaSuccess) {
        if (state->pool != nullptr) {
            cudaMemPoolDestroy(state->pool);
        }
        cudaFree(state->errors);
        cudaEventDestroy(state->timer_start);
        cudaEventDestroy(state->timer_stop);
        free(state);
        return mxmoe_fail(ctx, MXMOE_ERR_BACKEND, "cannot allocate the device error word: %s",
                          cudaGetErrorString(err));
    }
    ctx->backend_state = state;
    state->sm90_ready = mxmoe_grouped_gemm_sm90_init(ctx);
    state->skinny_ready = mxmoe_grouped_gemm_skinny_init(ctx);
    const char* pdl = getenv("MXMOE_CUDA_PDL");
    state->pdl = prop.major >= 9 && !(pdl != nullptr && strcmp(pdl, "0") == 0);
    snprintf(ctx->detail, sizeof ctx->detail, "cuda: %.64s (sm_%d%d, %d SMs), %s", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount,
             state->sm90_ready ? "int8 + sm_90a FP8 GEMMs" : "int8 GEMMs");
    return MXMOE_OK;
}

void cuda_release(mxmoe_ctx* ctx) {
    mxmoe_cuda_state* state = cuda_state(ctx);
    if (state != nullptr) {
        cudaFree(state->errors);
        cudaEventDestroy(state->timer_start);
        cudaEventDestroy(state->timer_stop);
        cudaMemPoolDestroy(state->pool);
        if (state->capture_stream != nullptr) {
            cudaStreamDestroy(state->capture_stream);
        }
        free(state);
        ctx->backend_state = nullptr;
    }
}

mxmoe_status cuda_synchronize(mxmoe_ctx* ctx) {
    mxmoe_cuda_state* state = cuda_state(ctx);
    MXMOE_CUDA_CHECK(ctx, cudaStreamSynchronize(cuda_stream(ctx)));
    unsigned errors = 0;
    MXMOE_CUDA_CHECK(ctx,
                     cudaMemcpy(&errors, state->errors, sizeof errors, cudaMemcpyDeviceToHost));
    if (errors == 0) {
        return MXMOE_OK;
    }
    MXMOE_CUDA_CHECK(ctx, cudaMemset(state->errors, 0, sizeof(unsigned)));
    return mxmoe_fail(ctx, MXMOE_ERR_OUT_OF_RANGE,
                      "the device found bad data since the last synchronize (skipped, not "
                      "followed):%s%s%s%s%s%s",
                      (errors & MXMOE_DEVERR_EXPERT_ID) ? " expert id out of range;" : "",
                      (errors & MXMOE_DEVERR_EXPERT_MAP) ? " expert_map entry out of range;" : "",
                      (errors & MXMOE_DEVERR_OFFSETS) ? " invalid expert offsets;" : "",
                      (errors & MXMOE_DEVERR_SCALE_SPACE) ? " swizzled scales too small;" : "",
                      (errors & MXMOE_DEVERR_LOGITS) ? " non-finite router logits;" : "",
                      (errors & MXMOE_DEVERR_ROW_INDEX) ? " permutation entry out of range;" : "");
}

mxmoe_status cuda_alloc(mxmoe_ctx* ctx, size_t bytes, void** ptr) {
    MXMOE_CUDA_ENTER(ctx);
    MXMOE_CUDA_CHECK(ctx, cudaMalloc(ptr, bytes ? bytes : 1));
    return MXMOE_OK;
}

void cuda_dealloc(mxmoe_ctx* ctx, void* ptr) {
    cudaSetDevice(cuda_state(ctx)->device);
    cudaFree(ptr);
}

mxmoe_status cuda_copy(mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                       mxmoe_copy_kind kind) {
    MXMOE_CUDA_ENTER(ctx);
    cudaMemcpyKind k = kind == MXMOE_COPY_HOST_TO_BACKEND   ? cudaMemcpyHostToDevice
                       : kind == MXMOE_COPY_BACKEND_TO_HOST ? cudaMemcpyDeviceToHost
                                                            : cudaMemcpyDeviceToDevice;
    MXMOE_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, k, cuda_stream(ctx)));
    MXMOE_CUDA_CHECK(ctx, cudaStreamSynchronize(cuda_stream(ctx)));
    return MXMOE_OK;
}

mxmoe_status cuda_timer_start(mxmoe_ctx* ctx) {
    MXMOE_CUDA_ENTER(ctx);
    MXMOE_CUDA_CHECK(ctx, cudaEventRecord(cuda_state(ctx)->timer_start, cuda_stream(ctx)));
    return MXMOE_OK;
}

mxmoe_status cuda_timer_stop(mxmoe_ctx* ctx, double* microseconds) {
    MXMOE_CUDA_ENTER(ctx);
    mxmoe_cuda_state* state = cuda_state(ctx);
    MXMOE_CUDA_CHECK(ctx, cudaEventRecord(state->timer_stop, cuda_stream(ctx)));
    MXMOE_CUDA_CHECK(ctx, cudaEventSynchronize(state->timer_stop));
    float ms = 0.0f;
    MXMOE_CUDA_CHECK(ctx, cudaEventElapsedTime(&ms, state->timer_start, state->timer_stop));
    *microseconds = (double)ms * 1000.0;
    return MXMOE_OK;
}

} // namespace

extern "C" const mxmoe_backend_ops mxmoe_cuda_backend = {
    /* .name = */ "cuda",
    /* .compiled = */ 1,
    /* .available = */ cuda_available,
    /* .init = */ cuda_init,
    /* .release = */ cuda_release,
    /* .synchronize = */ cuda_synchronize,
    /* .alloc = */ cuda_alloc,
    /* .dealloc = */ cuda_dealloc,
    /* .copy = */ cuda_copy,
    /* .timer_start = */ cuda_timer_start,
    /* .timer_stop = */ cuda_timer_stop,
    /* .graph_begin = */ mxmoe_graph_begin_cuda,
    /* .graph_end = */ mxmoe_graph_end_cuda,
    /* .graph_replay = */ mxmoe_graph_replay_cuda,
    /* .graph_free = */ mxmoe_graph_free_cuda,
    /* .quantize = */ mxmoe_quantize_cuda,
    /* .dequantize = */ mxmoe_dequantize_cuda,
    /* .gguf_from_mx = */ mxmoe_gguf_from_mx_cuda,
    /* .mx_from_gguf = */ mxmoe_mx_from_gguf_cuda,
    /* .swizzle_scales = */ mxmoe_swizzle_scales_cuda,
    /* .unswizzle_scales = */ mxmoe_unswizzle_scales_cuda,
    /* .route = */ mxmoe_route_cuda,
    /* .plan = */ mxmoe_plan_cuda,
    /* .permute_quantize = */ mxmoe_permute_quantize_cuda,
    /* .experts_quantize = */ mxmoe_experts_quantize_cuda,
    /* .act_and_quantize = */ mxmoe_act_and_quantize_cuda,
    /* .weights_prepare = */ mxmoe_weights_prepare_cuda,
    /* .weights_release = */ mxmoe_weights_release_cuda,
    /* .weights_repack = */ mxmoe_weights_repack_cuda,
    /* .grouped_gemm = */ mxmoe_grouped_gemm_cuda,
    /* .grouped_projection = */ mxmoe_grouped_projection_cuda,
    /* .moe_workspace_size = */ mxmoe_moe_workspace_size_cuda,
    /* .moe_forward = */ mxmoe_moe_forward_cuda,
};
