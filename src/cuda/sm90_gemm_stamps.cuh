/*
 * sm90_gemm_stamps.cuh — lab bit 1024 of the Hopper GEMM (grouped_gemm_sm90.cu): clock64 stamps of
 * its consumers' chunks and epilogues, read back by the host (lab_stamps.cuh) for
 * dev/cuda/timeline.sh.
 */
#ifndef MXMOE_CUDA_SM90_GEMM_STAMPS_CUH
#define MXMOE_CUDA_SM90_GEMM_STAMPS_CUH

#include "cuda/sm90_e4m3.cuh"

/* Results right, timing perturbed (sm90_e4m3.cuh lists the other lab bits). Thread 0 of each
 * consumer warpgroup of CTAs 0 .. kStampCtas - 1 stamps clock64() at points of each of its
 * first kStampChunks chunks: before the stage wait,
 * after it, after the conversion (the MMAs about to issue), after the MMAs completed, after the
 * promotion (points 0-4); three-warpgroup tiles: after half 0's MMAs, after its promotion, after
 * half 1's MMAs (= the previous point where the tile skips it), after the chunk (points 0-2,
 * 3-6). After each eager launch the host writes them to $MXMOE_SM90_STAMPS (raw uint64
 * [cta][3 warpgroups][chunk][7 points], unwritten entries 0). */
#if (MXMOE_SM90_LAB & 1024)
constexpr int kStampCtas = 8, kStampChunks = 512, kStampPoints = 7;
__device__ unsigned long long g_sm90_stamps[kStampCtas][3][kStampChunks][kStampPoints];

/* Chunk g's points, from thread 0 of each consumer warpgroup of the first kStampCtas CTAs. */
__device__ __forceinline__ void lab_stamps_put(int g, const unsigned long long (&t)[kStampPoints]) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 128 == 0 && g < kStampChunks) {
        for (int i = 0; i < kStampPoints; i++) {
            g_sm90_stamps[blockIdx.x][threadIdx.x / 128 - 1][g][i] = t[i];
        }
    }
}

/* ... and around each unit's epilogue (its first kEpiUnits units): retire's start (the last
 * chunk promoted), the tokens' units applied and the stage released, the slab acquired (its
 * previous pass read out), the slab written, the slab handed over or stored (points 0-4;
 * three-warpgroup tiles and 16-bit results only; $MXMOE_SM90_EPI_STAMPS, raw uint64
 * [cta][3 warpgroups][unit][5]). */
constexpr int kEpiUnits = 64, kEpiPoints = 5;
__device__ unsigned long long g_sm90_epi_stamps[kStampCtas][3][kEpiUnits][kEpiPoints];
#define MXMOE_SM90_EPI_STAMP(i) (epi[i] = clock64())

__device__ __forceinline__ void lab_epi_put(int u, const unsigned long long (&t)[kEpiPoints]) {
    if (blockIdx.x < kStampCtas && threadIdx.x % 128 == 0 && u < kEpiUnits) {
        for (int i = 0; i < kEpiPoints; i++) {
            g_sm90_epi_stamps[blockIdx.x][threadIdx.x / 128 - 1][u][i] = t[i];
        }
    }
}
#else
#define MXMOE_SM90_EPI_STAMP(i) ((void)0)
#endif

#endif /* MXMOE_CUDA_SM90_GEMM_STAMPS_CUH */
