/*
 * cli.c — shared helpers of the mxmoe tool: messages, option parsing, contexts, timing, BF16.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void vmessage(const char* cmd, const char* kind, const char* fmt, va_list ap) {
    fflush(stdout); /* keep progress lines and the error in order on a shared terminal */
    fprintf(stderr, "mxmoe %s: %s", cmd, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char* cmd, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "error: ", fmt, ap);
    va_end(ap);
    return CLI_EXIT_FAILURE;
}

int cli_usage_error(const char* cmd, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "", fmt, ap);
    va_end(ap);
    fprintf(stderr, "try 'mxmoe %s --help'\n", cmd);
    return CLI_EXIT_USAGE;
}

void cli_warn(const char* cmd, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "warning: ", fmt, ap);
    va_end(ap);
}

int cli_is_help(const char* arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_parse_backend(const char* cmd, const char* text, mxmoe_backend* out) {
    if (strcmp(text, "auto") == 0) {
        *out = MXMOE_BACKEND_AUTO;
    } else if (strcmp(text, "cpu") == 0) {
        *out = MXMOE_BACKEND_CPU;
    } else if (strcmp(text, "cuda") == 0) {
        *out = MXMOE_BACKEND_CUDA;
    } else {
        cli_usage_error(cmd, "unknown backend '%s' (expected auto, cpu or cuda)", text);
        return -1;
    }
    return 0;
}

static const char* const rule_names[MXMOE_RULE_COUNT] = {
    [MXMOE_RULE_EVEN] = "even",
    [MXMOE_RULE_FLOOR] = "floor",
    [MXMOE_RULE_CEIL] = "ceil",
    [MXMOE_RULE_RCEIL] = "rceil",
};

const char* cli_rule_name(mxmoe_scale_rule rule) {
    return (unsigned)rule < MXMOE_RULE_COUNT ? rule_names[rule] : "?";
}

int cli_parse_rule(const char* cmd, const char* text, mxmoe_scale_rule* out) {
    for (int r = 0; r < MXMOE_RULE_COUNT; r++) {
        if (strcmp(text, rule_names[r]) == 0) {
            *out = (mxmoe_scale_rule)r;
            return 0;
        }
    }
    cli_usage_error(cmd, "unknown scale rule '%s' (expected even, floor, ceil or rceil)", text);
    return -1;
}

int cli_parse_gemm_dtype(const char* cmd, const char* text, mxmoe_dtype* out) {
    if (strcmp(text, "f32") == 0) {
        *out = MXMOE_F32;
    } else if (strcmp(text, "bf16") == 0) {
        *out = MXMOE_BF16;
    } else {
        cli_usage_error(cmd, "unknown GEMM result dtype '%s' (expected f32 or bf16)", text);
        return -1;
    }
    return 0;
}

int cli_parse_int(const char* cmd, const char* option, const char* text, int64_t min, int64_t max,
                  int64_t* out) {
    char* end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        cli_usage_error(cmd, "%s expects an integer in [%lld, %lld], got '%s'", option,
                        (long long)min, (long long)max, text);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

const char* cli_option_value(const char* cmd, int argc, char** argv, int* i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

mxmoe_ctx* cli_ctx_open(const char* cmd, mxmoe_backend backend) {
    mxmoe_ctx_params params = mxmoe_ctx_params_default();
    params.backend = backend;
    mxmoe_ctx* ctx = NULL;
    mxmoe_status st = mxmoe_ctx_init(&ctx, &params);
    if (st != MXMOE_OK) {
        const char* why = "";
        if (backend == MXMOE_BACKEND_CUDA && !mxmoe_backend_available(MXMOE_BACKEND_CUDA)) {
            why = mxmoe_backend_compiled(MXMOE_BACKEND_CUDA)
                      ? " (the CUDA backend is compiled in, but no usable CUDA device is visible)"
                      : " (this build has no CUDA backend)";
        }
        cli_error(cmd, "cannot create a %s context: %s%s", mxmoe_backend_name(backend),
                  mxmoe_status_string(st), why);
        return NULL;
    }
    return ctx;
}

double cli_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint16_t cli_bf16_from_float(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
        return (uint16_t)((bits >> 16) | 0x0040u); /* quiet NaN, sign kept */
    }
    /* Round to nearest even: add half an ulp of BF16, plus one if the kept part is odd. */
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float cli_float_from_bf16(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
