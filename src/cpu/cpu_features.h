/*
 * cpu_features.h — the SIMD features of the CPU we run on, read once from cpuid and xgetbv.
 *
 * A feature counts only if the CPU has it *and* the OS saves its register state (xgetbv):
 * a kernel that enables AVX-512 in cpuid but not in XCR0 would fault on the first zmm
 * instruction. Generic code: no intrinsics here, and nothing ISA-specific runs from it.
 */
#ifndef MXMOE_CPU_CPU_FEATURES_H
#define MXMOE_CPU_CPU_FEATURES_H

#include <stddef.h>
#include <stdint.h>

enum {
    MXMOE_CPU_SSE41 = 1u << 0,
    MXMOE_CPU_AVX2 = 1u << 1, /* with the OS saving ymm state */
    MXMOE_CPU_FMA = 1u << 2,
    MXMOE_CPU_F16C = 1u << 3,
    MXMOE_CPU_AVX512F = 1u << 4, /* with the OS saving zmm and opmask state */
    MXMOE_CPU_AVX512BW = 1u << 5,
    MXMOE_CPU_AVX512VL = 1u << 6,
    MXMOE_CPU_AVX512DQ = 1u << 7,
    MXMOE_CPU_AVX512VNNI = 1u << 8,
    MXMOE_CPU_AVX512VBMI = 1u << 9,
    MXMOE_CPU_AVX512BF16 = 1u << 10,
    MXMOE_CPU_AVXVNNI = 1u << 11,
    MXMOE_CPU_NEON = 1u << 12,
    MXMOE_CPU_NEON_DOTPROD = 1u << 13,
};

/* Bitmask of MXMOE_CPU_* flags; computed on the first call (thread-safe), cached after. */
uint32_t mxmoe_cpu_features(void);

/* "avx2 fma f16c avx512f ..." for the flags in `features` (static storage per call site is not
 * needed: writes into buf, returns buf). */
const char* mxmoe_cpu_features_string(uint32_t features, char* buf, size_t size);

#endif /* MXMOE_CPU_CPU_FEATURES_H */
