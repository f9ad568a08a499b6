/*
 * lab_stamps.cuh — host side of the kernels' lab timelines (MXMOE_SM90_LAB bit 1024,
 * MXMOE_SKINNY_LAB bit 8; never in a library build): the stamp array, a __device__ symbol, is
 * zeroed before each launch and, after an eager one (not while a graph records), copied to the
 * file the environment variable `env` names, overwritten each launch.
 */
#ifndef MXMOE_CUDA_LAB_STAMPS_CUH
#define MXMOE_CUDA_LAB_STAMPS_CUH

#include <stdio.h>
#include <stdlib.h>

#include "cuda/cuda_common.cuh"

static inline bool lab_stamps_eager(mxmoe_ctx* ctx, const char* env) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    return getenv(env) != nullptr &&
           cudaStreamIsCapturing(cuda_stream(ctx), &capturing) == cudaSuccess &&
           capturing == cudaStreamCaptureStatusNone;
}

static inline void lab_stamps_clear(mxmoe_ctx* ctx, const void* symbol, size_t bytes,
                                    const char* env) {
    void* p = nullptr;
    if (lab_stamps_eager(ctx, env) && cudaGetSymbolAddress(&p, symbol) == cudaSuccess) {
        cudaMemsetAsync(p, 0, bytes, cuda_stream(ctx));
    }
}

static inline void lab_stamps_write(mxmoe_ctx* ctx, const void* symbol, size_t bytes,
                                    const char* env) {
    void* host = malloc(bytes);
    if (host != nullptr && lab_stamps_eager(ctx, env) &&
        cudaStreamSynchronize(cuda_stream(ctx)) == cudaSuccess &&
        cudaMemcpyFromSymbol(host, symbol, bytes) == cudaSuccess) {
        FILE* f = fopen(getenv(env), "wb");
        if (f != nullptr) {
            fwrite(host, 1, bytes, f);
            fclose(f);
        }
    }
    free(host);
}

#endif /* MXMOE_CUDA_LAB_STAMPS_CUH */
