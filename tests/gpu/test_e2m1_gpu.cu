/*
 * test_e2m1_gpu.cu — the FP16 E2M1 encoder for BF16 values (cuda/e2m1_half2.cuh) against the
 * reference's encoder (mxmoe_e2m1_code_rne, itself checked against the reference's compare
 * chain by tests/c/test_e2m1_round.c), on the GPU: every finite BF16 value at every scale byte
 * for which it is a valid input (|v| 2^(127 - b) < 8, as the block scale guarantees), in each of
 * the eight nibble positions. Needs a GPU: tests/gpu/run.sh runs it.
 */
#include <stdio.h>

#include <cuda_runtime.h>

#include "cuda/e2m1_half2.cuh"

struct counts {
    unsigned long long checked, wrong;
    unsigned first; /* the first wrong value's BF16 bits << 8 | the scale byte, + 1 */
};

/* A thread: eight BF16 patterns (8 t .. 8 t + 7, rotated by the scale so each value visits every
 * nibble) at scale byte b; a pattern that is NaN, Inf or too large for b enters as 0 and is
 * checked too. */
__global__ void sweep(counts* c) {
    unsigned long long checked = 0, wrong = 0;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < 8192u * 255u;
         i += gridDim.x * blockDim.x) {
        const uint32_t group = i % 8192u, b = i / 8192u;
        const float f = mxmoe_pow2f(127 - (int32_t)b);
        float v[8];
        uint32_t pattern[8];
#pragma unroll
        for (int q = 0; q < 8; q++) {
            pattern[q] = 8 * group + (uint32_t)((q + b) % 8);
            const float x = __uint_as_float(pattern[q] << 16);
            v[q] = isfinite(x) && fabsf(x * f) < 8.0f ? x : 0.0f;
        }
        const uint32_t got = e2m1_codes8_bf16(v, (uint8_t)b);
#pragma unroll
        for (int q = 0; q < 8; q++) {
            checked++;
            if (((got >> (4 * q)) & 0xFu) != mxmoe_e2m1_code_rne(v[q], (uint8_t)b)) {
                wrong++;
                atomicCAS(&c->first, 0u, (pattern[q] << 8 | b) + 1);
            }
        }
    }
    atomicAdd(&c->checked, checked);
    atomicAdd(&c->wrong, wrong);
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("test_e2m1_gpu: no GPU\n");
        return 1;
    }
    counts* c = nullptr;
    if (cudaMallocManaged(&c, sizeof *c) != cudaSuccess) {
        printf("FAIL cudaMallocManaged\n");
        return 1;
    }
    *c = counts{};
    sweep<<<1024, 256>>>(c);
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        printf("FAIL sweep: %s\n", cudaGetErrorString(e));
        return 1;
    }
    const bool ok = c->checked == 8ull * 8192u * 255u && c->wrong == 0;
    printf("%llu codes checked, %llu wrong", c->checked, c->wrong);
    if (c->wrong != 0) {
        const unsigned first = c->first - 1;
        printf(" (first: BF16 0x%04x at scale byte %u)", first >> 8, first & 0xFFu);
    }
    printf("\ntest_e2m1_gpu: %s\n", ok ? "ok" : "FAIL");
    cudaFree(c);
    return ok ? 0 : 1;
}
