/*
 * copy_ring.cuh — the hand-off of a shared-memory ring filled by one producer warp's cp.async
 * copies, sm_80+: mbarriers that complete when the producer's copies land (cp.async's arrival on
 * completion) or when the consumers are done with a slot, and named barriers for the consumer
 * warps alone (the producer never reaches their __syncthreads). sm90_ptx.cuh has the Hopper
 * forms for the sm_90a GEMM; these also run on sm_80 (test_wait instead of try_wait).
 */
#ifndef MXMOE_CUDA_COPY_RING_CUH
#define MXMOE_CUDA_COPY_RING_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t ring_smem_u32(const void* p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void ring_bar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(ring_smem_u32(bar)), "r"(count)
                 : "memory");
}

__device__ __forceinline__ void ring_bar_arrive(uint64_t* bar) {
    asm volatile(
        "{\n.reg .b64 state;\nmbarrier.arrive.shared.b64 state, [%0];\n}" ::"r"(ring_smem_u32(bar))
        : "memory");
}

/* One of the barrier's expected arrivals, made when every cp.async this thread issued before it
 * has landed. */
__device__ __forceinline__ void ring_bar_arrive_on_copies(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(ring_smem_u32(bar))
                 : "memory");
}

/* Spins until the barrier's phase of parity `parity` has completed. */
__device__ __forceinline__ void ring_bar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done;
    do {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(ring_smem_u32(bar)), "r"(parity)
                     : "memory");
#else
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(ring_smem_u32(bar)), "r"(parity)
                     : "memory");
#endif
    } while (!done);
}

/* Named barrier `id` over `threads` threads (a multiple of 32): wait, arrive only, and wait with
 * the OR of every thread's `flag`. */
__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ bool named_sync_or(int id, int threads, bool flag) {
    uint32_t any;
    asm volatile("{\n.reg .pred p, q;\n"
                 "setp.ne.u32 p, %1, 0;\n"
                 "bar.red.or.pred q, %2, %3, p;\n"
                 "selp.u32 %0, 1, 0, q;\n}"
                 : "=r"(any)
                 : "r"((uint32_t)flag), "r"(id), "r"(threads)
                 : "memory");
    return any != 0;
}

#endif /* MXMOE_CUDA_COPY_RING_CUH */
