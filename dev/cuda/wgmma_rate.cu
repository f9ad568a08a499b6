/*
 * wgmma_rate.cu — lab: how fast can two warpgroups per SM run the sm_90a GEMM's MMA chunk
 * (4 x wgmma m64nNk32 E4M3, A from registers, B from a swizzled shared tile) under each
 * issue structure, with nothing else in the kernel (no copies, no barriers with a producer)?
 *   mode 0: one chunk in flight per warpgroup: issue, wait for all, promote (the kernel's way)
 *   mode 1: as 0 without the promotion
 *   mode 2: two chunks in flight per warpgroup (two accumulator sets, wait<1>), promote the
 *           older while the newer runs
 *   mode 3: no waits inside the loop, one accumulator chain (the tensor cores' own ceiling)
 *   mode 4: as 0 with one FFMA an element (one of the two factors constant over the row)
 *   mode 5: as 0 with the kernel's ping-pong (the two warpgroups issue their chunks in turn)
 * at N = 128 and 64 tokens (mode 2 at 64 only: at 128 the two accumulator sets and the tile's
 * accumulators exceed the registers). Build and run on the device (garbage values, timing only):
 *   nvcc -O3 -std=c++17 -arch=sm_90a -Isrc dev/cuda/wgmma_rate.cu -o /tmp/wgmma_rate && /tmp/wgmma_rate
 */
#include <cstdio>

#include "cuda/sm90_ptx.cuh"
#include "cuda/sm90_wgmma.cuh"

constexpr int kIters = 4096;

template <int Mode, int N> __global__ void __launch_bounds__(256, 1) rate_kernel(float* sink) {
    constexpr int NA = N / 2; /* accumulators per thread */
    __shared__ __align__(1024) uint8_t b_tile[128 * 128];
    for (int i = threadIdx.x; i < 128 * 128 / 4; i += blockDim.x) {
        reinterpret_cast<uint32_t*>(b_tile)[i] = 0x38383838u ^ (uint32_t)(i * 2654435761u);
    }
    __syncthreads();
    const uint64_t desc = smem_desc_sw128(smem_u32(b_tile));
    uint32_t frag[4][4];
    for (int k = 0; k < 4; k++) {
        for (int r = 0; r < 4; r++) {
            frag[k][r] = 0x30303030u + threadIdx.x * 7u + (uint32_t)(k * 4 + r);
        }
    }
    float acc0[NA], acc1[NA], fin[NA];
    for (int i = 0; i < NA; i++) {
        acc0[i] = acc1[i] = fin[i] = 0.0f;
    }
    fence_regs(fin); /* materialised here, not between running wgmmas */
    fence_regs(acc0);
    fence_regs(acc1);
    auto chunk = [&](float(&acc)[NA], bool fresh) {
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; k++) {
            wgmma_e4m3<N>::mma(acc, frag[k], desc + 2 * k, (k > 0 || !fresh) ? 1 : 0);
        }
        wgmma_commit();
    };
    auto promote = [&](float(&acc)[NA]) {
#pragma unroll
        for (int i = 0; i < NA; i++) {
            fin[i] = __fmaf_rn(__fmul_rn(acc[i], 1.0009765625f), 0.5f, fin[i]);
        }
    };
    auto promote1 = [&](float(&acc)[NA]) { /* one FFMA an element */
#pragma unroll
        for (int i = 0; i < NA; i++) {
            fin[i] = __fmaf_rn(acc[i], 0.5f, fin[i]);
        }
    };
    if (Mode == 0 || Mode == 1 || Mode == 4) {
        for (int it = 0; it < kIters; it++) {
            chunk(acc0, true);
            wgmma_wait<0>();
            fence_regs(acc0);
            if (Mode == 0) {
                promote(acc0);
            } else if (Mode == 4) {
                promote1(acc0);
            } else {
                fin[0] += acc0[0];
            }
        }
    } else if (Mode == 5) { /* mode 0 with the kernel's ping-pong: the warpgroups issue in turn */
        const int wg = threadIdx.x / 128;
        for (int it = 0; it < kIters; it++) {
            if (wg == 1 || it > 0) {
                named_barrier_sync(3 + wg, 256);
            }
            chunk(acc0, true);
            if (wg == 0 || it + 1 < kIters) {
                named_barrier_arrive(4 - wg, 256);
            }
            wgmma_wait<0>();
            fence_regs(acc0);
            promote(acc0);
        }
    } else if (Mode == 2) { /* accumulating chains (timing only): no movs into running groups */
        chunk(acc0, false);
        chunk(acc1, false);
        for (int it = 0; it < kIters; it += 2) {
            wgmma_wait<1>();
            fence_regs(acc0);
            promote(acc0);
            chunk(acc0, false);
            wgmma_wait<1>();
            fence_regs(acc1);
            promote(acc1);
            chunk(acc1, false);
        }
        wgmma_wait<0>();
        fence_regs(acc0);
        fence_regs(acc1);
        promote(acc0);
        promote(acc1);
    } else {
        for (int it = 0; it < kIters; it++) {
            chunk(acc0, false);
        }
        wgmma_wait<0>();
        fence_regs(acc0);
        promote(acc0);
    }
    float s = 0.0f;
    for (int i = 0; i < NA; i++) {
        s += fin[i];
    }
    sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

template <int Mode, int N> void run(const char* name, int sms, float* sink) {
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    rate_kernel<Mode, N><<<sms, 256>>>(sink); /* warm-up */
    float best = 1e30f;
    for (int rep = 0; rep < 5; rep++) {
        cudaEventRecord(t0);
        rate_kernel<Mode, N><<<sms, 256>>>(sink);
        cudaEventRecord(t1);
        cudaEventSynchronize(t1);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, t0, t1);
        best = ms < best ? ms : best;
    }
    const double flops = 2.0 * sms * 2 /* warpgroups */ * (double)kIters * 4 * 64 * N * 32;
    printf("n%-3d %-44s %8.1f TFLOP/s (%s)\n", N, name, flops / (best * 1e-3) / 1e12,
           cudaGetErrorString(cudaGetLastError()));
}

int main() {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    float* sink = nullptr;
    cudaMalloc(&sink, (size_t)sms * 256 * sizeof(float));
    run<3, 128>("no waits (one accumulator chain)", sms, sink);
    run<1, 128>("one chunk in flight, wait for all", sms, sink);
    run<0, 128>("one chunk in flight, wait, promote", sms, sink);
    run<4, 128>("one chunk in flight, wait, promote by 1 FFMA", sms, sink);
    run<5, 128>("one chunk in flight, promote, ping-pong", sms, sink);
    run<3, 64>("no waits (one accumulator chain)", sms, sink);
    run<1, 64>("one chunk in flight, wait for all", sms, sink);
    run<0, 64>("one chunk in flight, wait, promote", sms, sink);
    run<4, 64>("one chunk in flight, wait, promote by 1 FFMA", sms, sink);
    run<2, 64>("two chunks in flight, promote the older", sms, sink);
    cudaFree(sink);
    return 0;
}
