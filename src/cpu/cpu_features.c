/*
 * cpu_features.c — cpuid + xgetbv, once (pthread_once), as a bitmask of MXMOE_CPU_* flags.
 *
 * x86: leaf 1 gives SSE4.1/FMA/F16C/AVX/OSXSAVE; leaf 7 gives AVX2 and the AVX-512 family;
 * XCR0 (xgetbv 0) must have the SSE+AVX bits (0x6) for ymm, and also the opmask/zmm bits (0xE0)
 * for AVX-512. Arm: NEON is architectural on AArch64; dot product from the compiler's target.
 */
#include "cpu/cpu_features.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static uint32_t detect(void) {
    uint32_t a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return 0;
    }
    int sse41 = (c >> 19) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (sse41) {
        f |= MXMOE_CPU_SSE41;
    }
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_ok = avx && (xcr0 & 0x6) == 0x6;
    int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0;
    if (!ymm_ok || __get_cpuid_max(0, NULL) < 7) {
        return f;
    }
    uint32_t b7, c7, d7, a71, b71, c71, d71;
    __cpuid_count(7, 0, a, b7, c7, d7);
    __cpuid_count(7, 1, a71, b71, c71, d71);
    (void)b71, (void)c71, (void)d71;
    if ((b7 >> 5) & 1) {
        f |= MXMOE_CPU_AVX2;
    }
    if (fma) {
        f |= MXMOE_CPU_FMA;
    }
    if (f16c) {
        f |= MXMOE_CPU_F16C;
    }
    if ((a71 >> 4) & 1) {
        f |= MXMOE_CPU_AVXVNNI;
    }
    if (zmm_ok && ((b7 >> 16) & 1)) {
        f |= MXMOE_CPU_AVX512F;
        f |= ((b7 >> 30) & 1) ? MXMOE_CPU_AVX512BW : 0;
        f |= ((b7 >> 31) & 1) ? MXMOE_CPU_AVX512VL : 0;
        f |= ((b7 >> 17) & 1) ? MXMOE_CPU_AVX512DQ : 0;
        f |= ((c7 >> 11) & 1) ? MXMOE_CPU_AVX512VNNI : 0;
        f |= ((c7 >> 1) & 1) ? MXMOE_CPU_AVX512VBMI : 0;
        f |= ((a71 >> 5) & 1) ? MXMOE_CPU_AVX512BF16 : 0;
    }
    return f;
}
#elif defined(__aarch64__)
static uint32_t detect(void) {
    uint32_t f = MXMOE_CPU_NEON;
#if defined(__ARM_FEATURE_DOTPROD)
    f |= MXMOE_CPU_NEON_DOTPROD;
#endif
    return f;
}
#else
static uint32_t detect(void) {
    return 0;
}
#endif

static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static uint32_t features_value;

static void features_init(void) {
    features_value = detect();
}

uint32_t mxmoe_cpu_features(void) {
    pthread_once(&features_once, features_init);
    return features_value;
}

const char* mxmoe_cpu_features_string(uint32_t features, char* buf, size_t size) {
    static const struct {
        uint32_t bit;
        const char* name;
    } names[] = {
        {MXMOE_CPU_SSE41, "sse4.1"},
        {MXMOE_CPU_AVX2, "avx2"},
        {MXMOE_CPU_FMA, "fma"},
        {MXMOE_CPU_F16C, "f16c"},
        {MXMOE_CPU_AVXVNNI, "avx-vnni"},
        {MXMOE_CPU_AVX512F, "avx512f"},
        {MXMOE_CPU_AVX512BW, "avx512bw"},
        {MXMOE_CPU_AVX512VL, "avx512vl"},
        {MXMOE_CPU_AVX512DQ, "avx512dq"},
        {MXMOE_CPU_AVX512VNNI, "avx512vnni"},
        {MXMOE_CPU_AVX512VBMI, "avx512vbmi"},
        {MXMOE_CPU_AVX512BF16, "avx512bf16"},
        {MXMOE_CPU_NEON, "neon"},
        {MXMOE_CPU_NEON_DOTPROD, "dotprod"},
    };
    size_t used = 0;
    if (size == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((features & names[i].bit) && used < size) {
            int n = snprintf(buf + used, size - used, "%s%s", used ? " " : "", names[i].name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    return buf;
}
