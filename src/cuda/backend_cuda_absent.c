/*
 * backend_cuda_absent.c — the CUDA backend's table in a build without nvcc: never available.
 */
#include "core/backend.h"

const mxmoe_backend_ops mxmoe_cuda_backend = {
    .name = "cuda (not built: nvcc was not found at configure time)",
    .compiled = 0,
};
