/*
 * dispatch.c — which SIMD tier a CPU context gets.
 *
 * The features are read once (cpu_features.c, pthread_once); the best tier is the highest
 * whose features are all present. MXMOE_CPU_ISA=scalar|avx2|avx512bw|avx512 (read at each
 * context creation, so tests can run every tier in one process) can only lower it: asking for
 * more than the CPU has gives the best it has. Kernel tables are filled BLIS style: the scalar
 * tier is src/ref for every operation, and a tier's table overrides only the operations it
 * speeds up.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_features.h"
#include "cpu/cpu_kernels.h"

#define AVX2_NEEDS (MXMOE_CPU_AVX2 | MXMOE_CPU_FMA | MXMOE_CPU_F16C | MXMOE_CPU_SSE41)
#define AVX512BW_NEEDS                                                                             \
    (AVX2_NEEDS | MXMOE_CPU_AVX512F | MXMOE_CPU_AVX512BW | MXMOE_CPU_AVX512VL | MXMOE_CPU_AVX512DQ)
#define AVX512_NEEDS (AVX512BW_NEEDS | MXMOE_CPU_AVX512VNNI)


mxmoe_cpu_tier mxmoe_cpu_best_tier(void) {
#if defined(MXMOE_CPU_X86)
    uint32_t f = mxmoe_cpu_features();
    if ((f & AVX512_NEEDS) == AVX512_NEEDS) {
        return MXMOE_CPU_TIER_AVX512;
    }
    if ((f & AVX512BW_NEEDS) == AVX512BW_NEEDS) {
        return MXMOE_CPU_TIER_AVX512BW;
    }
    if ((f & AVX2_NEEDS) == AVX2_NEEDS) {
        return MXMOE_CPU_TIER_AVX2;
    }
#endif
    return MXMOE_CPU_TIER_SCALAR;
}

const char* mxmoe_cpu_tier_name(mxmoe_cpu_tier tier) {
    switch (tier) {
    case MXMOE_CPU_TIER_AVX2:
        return "avx2";
    case MXMOE_CPU_TIER_AVX512BW:
        return "avx512bw";
    case MXMOE_CPU_TIER_AVX512:
        return "avx512";
    default:
        return "scalar";
    }
}

const mxmoe_cpu_kernels* mxmoe_cpu_tier_kernels(mxmoe_cpu_tier tier) {
#if defined(MXMOE_CPU_X86)
    switch (tier) {
    case MXMOE_CPU_TIER_AVX2:
        return &mxmoe_cpu_kernels_avx2;
    case MXMOE_CPU_TIER_AVX512BW:
        return &mxmoe_cpu_kernels_avx512bw;
    case MXMOE_CPU_TIER_AVX512:
        return &mxmoe_cpu_kernels_avx512;
    default:
        return NULL;
    }
#else
    (void)tier;
    return NULL;
#endif
}
