/*
 * cpu_features.c — what `mxmoe info` says about the CPU: model, core count and the SIMD flags
 * the CPU backend's tiers depend on.
 *
 * Read from /proc/cpuinfo rather than cpuid: the kernel lists a flag only when it also saves
 * that register state (AVX-512 is usable only if the OS enables it), so this is what programs
 * can really use. Elsewhere the probe reports "unknown".
 */
#define _POSIX_C_SOURCE 200809L /* sysconf */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Flags shown, in this order, when present (Linux /proc/cpuinfo spellings). */
static const char* const interesting_flags[] = {
    "sse4_2",      "avx",      "avx2",     "fma",         "f16c",        "bmi2",
    "avx512f",     "avx512bw", "avx512vl", "avx512_vnni", "avx512_vbmi", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8",    "amx_bf16",    "asimd",
    "asimddp",     "sve",      "sve2",     "i8mm",        "bf16",
};

/* The first line of /proc/cpuinfo starting with `key`, its value copied into out. */
static int cpuinfo_value(const char* key, char* out, size_t size) {
    FILE* fp = fopen("/proc/cpuinfo", "r");
    if (fp == NULL) {
        return 0;
    }
    char line[8192]; /* flags lines run to about 1.5 KB */
    int found = 0;
    size_t key_len = strlen(key);
    while (!found && fgets(line, sizeof line, fp) != NULL) {
        if (strncmp(line, key, key_len) != 0) {
            continue;
        }
        const char* colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        const char* v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        snprintf(out, size, "%s", v);
        out[strcspn(out, "\n")] = '\0';
        found = 1;
    }
    fclose(fp);
    return found;
}

void cli_cpu_model(char* out, size_t size) {
    if (!cpuinfo_value("model name", out, size) && !cpuinfo_value("Model", out, size)) {
        snprintf(out, size, "unknown");
    }
}

/* 1 if the space-separated list `flags` holds the word `flag`. */
static int has_word(const char* flags, const char* flag) {
    size_t n = strlen(flag);
    for (const char* p = flags; (p = strstr(p, flag)) != NULL; p += n) {
        int starts = p == flags || p[-1] == ' ';
        int ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends) {
            return 1;
        }
    }
    return 0;
}

void cli_cpu_flags(char* out, size_t size) {
    char flags[8192];
    if (!cpuinfo_value("flags", flags, sizeof flags) &&
        !cpuinfo_value("Features", flags, sizeof flags)) {
        snprintf(out, size, "unknown (no /proc/cpuinfo)");
        return;
    }
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof interesting_flags / sizeof interesting_flags[0]; i++) {
        if (has_word(flags, interesting_flags[i]) && used < size) {
            int n =
                snprintf(out + used, size - used, "%s%s", used ? " " : "", interesting_flags[i]);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (used == 0) {
        snprintf(out, size, "none of the SIMD extensions the backend uses");
    }
}

int cli_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
