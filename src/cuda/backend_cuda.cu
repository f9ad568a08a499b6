/*
 * backend_cuda.cu — the CUDA backend's table.
 *
 * This build compiles the CUDA toolchain path end to end (nvcc, sm_80 and sm_90a, cudart), but
 * the GPU kernels are not written yet: the backend reports itself unavailable, so AUTO chooses
 * the CPU and an explicit request for CUDA fails with MXMOE_ERR_UNSUPPORTED and a message,
 * never with wrong results. `mxmoe info` still shows the devices it sees.
 */
#include <cuda_runtime.h>

extern "C" {
#include "core/backend.h"
}

namespace {

int cuda_available() {
    return 0; /* TODO: kernels (issue: CUDA backend, complete and exact) */
}

}  // namespace

extern "C" const mxmoe_backend_ops mxmoe_cuda_backend = {
    /* .name = */ "cuda (compiled; kernels not implemented yet)",
    /* .available = */ cuda_available,
};
