/*
 * backend_cuda_absent.c — the CUDA backend's table in a build without nvcc: never available.
 */
#include "core/backend.h"

static int cuda_absent(void) {
    return 0;
}

const mxmoe_backend_ops mxmoe_cuda_backend = {
    .name = "cuda (not built: nvcc was not found at configure time)",
    .available = cuda_absent,
};
