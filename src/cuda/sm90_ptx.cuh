/*
 * sm90_ptx.cuh — the Hopper primitives the sm_90a GEMM uses, one thin inline-PTX wrapper each:
 * mbarriers (stage hand-off between the producer and the consumer warpgroups), cp.async with
 * zero fill (bounds handled by the copy itself) and barrier arrival on completion, the
 * async-proxy fence, wgmma fences/groups, shared-memory matrix descriptors and setmaxnreg.
 * Compiled to nothing outside sm_90a, where the kernel that uses them is never launched.
 */
#ifndef MXMOE_CUDA_SM90_PTX_CUH
#define MXMOE_CUDA_SM90_PTX_CUH

#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MXMOE_SM90_ASM(...) asm volatile(__VA_ARGS__)
#else
#define MXMOE_SM90_ASM(...) ((void)0)
#endif

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    MXMOE_SM90_ASM("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
    (void)bar, (void)count;
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    MXMOE_SM90_ASM("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar))
                   : "memory");
    (void)bar;
}

/* Spins until the barrier's phase with parity `parity` has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 1;
    do {
        MXMOE_SM90_ASM("{\n.reg .pred p;\n"
                       "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%1], %2;\n"
                       "selp.u32 %0, 1, 0, p;\n}\n"
                       : "=r"(done)
                       : "r"(smem_u32(bar)), "r"(parity)
                       : "memory");
    } while (!done);
    (void)bar, (void)parity;
}

/* 16-byte global -> shared copy; bytes past `src_bytes` (0 or 16) are zero-filled. */
__device__ __forceinline__ void cp_async16(void* dst, const void* src, uint32_t src_bytes) {
    MXMOE_SM90_ASM("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src),
                   "r"(src_bytes)
                   : "memory");
    (void)dst, (void)src, (void)src_bytes;
}

/* 4-byte global -> shared copy (src_bytes 0 or 4, the rest zero-filled). */
__device__ __forceinline__ void cp_async4(void* dst, const void* src, uint32_t src_bytes) {
    MXMOE_SM90_ASM("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_u32(dst)), "l"(src),
                   "r"(src_bytes)
                   : "memory");
    (void)dst, (void)src, (void)src_bytes;
}

/* Arrives on `bar` once all of this thread's earlier cp.async copies have landed (counts as one
 * of the barrier's expected arrivals). */
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
    MXMOE_SM90_ASM("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_u32(bar))
                   : "memory");
    (void)bar;
}

/* Arrives on `bar` and adds `bytes` to the transaction count its phase waits for (TMA copies
 * that complete_tx on it). */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    MXMOE_SM90_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
                   "r"(bytes)
                   : "memory");
    (void)bar, (void)bytes;
}

/* TMA: the box at (x, y) of the 2-D tensor map into shared memory (zero-filled outside the
 * tensor), its bytes counted on `bar` when they land. `map` is a __grid_constant__ parameter. */
__device__ __forceinline__ void tma_load_2d(void* dst, const void* map, int x, int y,
                                            uint64_t* bar) {
    MXMOE_SM90_ASM("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                   " [%0], [%1, {%2, %3}], [%4];" ::"r"(smem_u32(dst)),
                   "l"(map), "r"(x), "r"(y), "r"(smem_u32(bar))
                   : "memory");
    (void)dst, (void)map, (void)x, (void)y, (void)bar;
}

__device__ __forceinline__ void cp_async_wait_all() {
    MXMOE_SM90_ASM("cp.async.wait_all;" ::: "memory");
}

/* Orders this thread's generic-proxy shared-memory stores before later async-proxy (wgmma)
 * reads of them. */
__device__ __forceinline__ void fence_proxy_async() {
    MXMOE_SM90_ASM("fence.proxy.async.shared::cta;" ::: "memory");
}

__device__ __forceinline__ void wgmma_fence() {
    MXMOE_SM90_ASM("wgmma.fence.sync.aligned;" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
    MXMOE_SM90_ASM("wgmma.commit_group.sync.aligned;" ::: "memory");
}

template <int Pending> __device__ __forceinline__ void wgmma_wait() {
    MXMOE_SM90_ASM("wgmma.wait_group.sync.aligned %0;" ::"n"(Pending) : "memory");
}

/* Keeps the compiler from moving accumulator reads or writes across a wgmma boundary. */
template <int N> __device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

/* A 4-byte store whose line L2 evicts after others (evict_last): for small arrays written a
 * word at a time beside large streams, so that their sectors fill up in L2 before they are
 * written back (the token prepass's factors: 79.2 -> 71.7 us at qwen3 n = 8192, NOTES v29). */
__device__ __forceinline__ void store_u32_evict_last(void* p, uint32_t v) {
    MXMOE_SM90_ASM("{\n.reg .b64 pol;\n"
                   "createpolicy.fractional.L2::evict_last.b64 pol, 1.0;\n"
                   "st.global.L2::cache_hint.b32 [%0], %1, pol;\n}\n" ::"l"(p),
                   "r"(v)
                   : "memory");
    (void)p, (void)v;
}

/* 16 bytes to global memory where `pred`, as one predicated store: written as `if`, the
 * compiler branches around the store and sinks the loads of its value behind the branch. */
__device__ __forceinline__ void store16_if(bool pred, void* p, uint4 v) {
    MXMOE_SM90_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n"
                   "@p st.global.v4.u32 [%1], {%2, %3, %4, %5};\n}\n" ::"r"((uint32_t)pred),
                   "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                   : "memory");
    (void)pred, (void)p, (void)v;
}

/* Barrier `id` (1..15; 0 is __syncthreads) over the `threads` threads that name it. */
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    MXMOE_SM90_ASM("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
    (void)id, (void)threads;
}


/* Two FP32 values rounded to nearest even into one register of two 16-bit floats (lo in bits
 * 0..15): BF16 (Bf16 = true) or F16. */
template <bool Bf16> __device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    uint32_t d = 0;
    if (Bf16) {
        MXMOE_SM90_ASM("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    } else {
        MXMOE_SM90_ASM("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    }
    (void)lo, (void)hi;
    return d;
}

/* Stores four 8x8 16-bit matrices, each held in the MMA fragment layout (thread t: row t / 4,
 * columns 2 (t % 4) and +1), transposed: row k of matrix i goes to the address thread 8i + k
 * gives (16-byte aligned). */
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1,
                                                  uint32_t r2, uint32_t r3) {
    MXMOE_SM90_ASM(
        "stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr),
        "r"(r0), "r"(r1), "r"(r2), "r"(r3)
        : "memory");
    (void)addr, (void)r0, (void)r1, (void)r2, (void)r3;
}

/* The same for two matrices (addresses from lanes 0-15): an odd last group of 8 tokens. */
__device__ __forceinline__ void stmatrix_x2_trans(uint32_t addr, uint32_t r0, uint32_t r1) {
    MXMOE_SM90_ASM("stmatrix.sync.aligned.m8n8.x2.trans.shared.b16 [%0], {%1, %2};" ::"r"(addr),
                   "r"(r0), "r"(r1)
                   : "memory");
    (void)addr, (void)r0, (void)r1;
}

template <int Regs> __device__ __forceinline__ void setmaxnreg_inc() {
    MXMOE_SM90_ASM("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(Regs));
}

template <int Regs> __device__ __forceinline__ void setmaxnreg_dec() {
    MXMOE_SM90_ASM("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(Regs));
}

/* Descriptor of a K-major operand tile in shared memory with the 128-byte swizzle: rows of
 * 128 bytes, 8-row groups 1024 bytes apart (stride byte offset), tile base 1024-aligned.
 * Advancing K by 32 one-byte elements adds 32 bytes (2 in the >>4 address field). */
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t smem_addr) {
    uint64_t desc = 0;
    desc |= (uint64_t)((smem_addr & 0x3FFFF) >> 4); /* start address */
    desc |= (uint64_t)1 << 16;                      /* leading byte offset (unused) */
    desc |= (uint64_t)(1024 >> 4) << 32;            /* stride byte offset */
    desc |= (uint64_t)1 << 62;                      /* swizzle mode: 128B */
    return desc;
}

#endif /* MXMOE_CUDA_SM90_PTX_CUH */
