/*
 * skinny_stamps.cuh — the few-tokens GEMM's (grouped_gemm_skinny.cu) lab switches and timeline:
 * knock-outs and per-CTA phase stamps, compiled in only where a lab build sets MXMOE_SKINNY_LAB.
 */
#ifndef MXMOE_CUDA_SKINNY_STAMPS_CUH
#define MXMOE_CUDA_SKINNY_STAMPS_CUH

#include <stdint.h>

/* Lab (dev/cuda/skinny_timeline.sh; never set in a library build): bits 1 no MMAs (the ring
 * still turns), 2 no token or activation staging (the slab keeps what it holds), 4 no weight
 * copies; these three give wrong results, timing only. Bit 8 is a timeline, results right: thread
 * 0 of each of the first kStampCtas CTAs stamps %globaltimer at entry and exit and clock64() at
 * the kernel's phases (Stamp below); lane 0 of each warp stamps its loop's end. After each eager
 * launch the host writes them to $MXMOE_SKINNY_STAMPS (raw uint64 [cta][kStampPoints]). */
#ifndef MXMOE_SKINNY_LAB
#define MXMOE_SKINNY_LAB 0
#endif
#if (MXMOE_SKINNY_LAB & 8)
enum Stamp {
    kEntryGlobal, /* %globaltimer, ns */
    kEntry,       /* clock64 from here */
    kWaited,      /* after the PDL wait */
    kExpert,      /* the tile's expert known */
    kIssued,      /* the weight scales' and the ring's first copies issued */
    kOwned,       /* the expert's pairs found (projection) */
    kScales,      /* the weight scales landed, their range taken */
    kStaged,      /* the first slab of tokens staged */
    kLoop0,       /* warps 0-3: the K loop's results in */
    kStored = kLoop0 + 4,
    kExitGlobal,
    kSmid,
    kStampPoints
};
constexpr int kStampCtas = 8192;
__device__ unsigned long long g_skinny_stamps[kStampCtas][kStampPoints];
__device__ __forceinline__ void lab_stamp(int point, bool global = false) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 32 == 0 &&
        (threadIdx.x == 0 || (point >= kLoop0 && point < kStored))) {
        unsigned long long t;
        if (global) {
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        } else {
            t = clock64();
        }
        g_skinny_stamps[blockIdx.x][point] = t;
    }
}
#define MXMOE_SKINNY_STAMP(...) lab_stamp(__VA_ARGS__)
#else
#define MXMOE_SKINNY_STAMP(...) ((void)0)
#endif

#endif /* MXMOE_CUDA_SKINNY_STAMPS_CUH */
