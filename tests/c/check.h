/*
 * check.h — the few macros the C tests share: count passed and failed checks, print every
 * failure with its file and line, and end with "N passed, N failed" (the last line of output)
 * and a non-zero exit status when anything failed.
 *
 * Header-only and static: every test program is one translation unit.
 */
#ifndef MXMOE_TESTS_CHECK_H
#define MXMOE_TESTS_CHECK_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mxmoe.h"

static int check_passed_;
static int check_failed_;
/* A short description of what is being tested, printed with each failure. */
static char check_context_[256];

static inline void check_set_context(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(check_context_, sizeof check_context_, fmt, args);
    va_end(args);
}

/* Records one check; prints a failure as "file:line: [context] message". Returns `ok`. */
static inline int check_record(int ok, const char* file, int line, const char* fmt, ...) {
    if (ok) {
        check_passed_++;
        return 1;
    }
    check_failed_++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    if (check_context_[0] != '\0') {
        fprintf(stderr, "[%s] ", check_context_);
    }
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    return 0;
}

/* CHECK(cond): passes when cond holds. CHECK_MSG(cond, fmt, ...): with a formatted message. */
#define CHECK(cond)          check_record((cond) ? 1 : 0, __FILE__, __LINE__, "%s", #cond)
#define CHECK_MSG(cond, ...) check_record((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

#define CHECK_EQ_INT(got, want)                                                                    \
    do {                                                                                           \
        long long check_got_ = (long long)(got);                                                   \
        long long check_want_ = (long long)(want);                                                 \
        check_record(check_got_ == check_want_, __FILE__, __LINE__, "%s = %lld, want %lld", #got,  \
                     check_got_, check_want_);                                                     \
    } while (0)

/* Compares two statuses and names both in the failure message. */
#define CHECK_STATUS(got, want)                                                                    \
    do {                                                                                           \
        mxmoe_status check_got_ = (got);                                                           \
        mxmoe_status check_want_ = (want);                                                         \
        check_record(check_got_ == check_want_, __FILE__, __LINE__,                                \
                     "%s returned %d (%s), want %d (%s)", #got, (int)check_got_,                   \
                     mxmoe_status_string(check_got_), (int)check_want_,                            \
                     mxmoe_status_string(check_want_));                                            \
    } while (0)

/* Bitwise float comparison (tells -0 from +0, any NaN equals any NaN). */
static inline int check_same_float(float a, float b) {
    if (a != a && b != b) {
        return 1;
    }
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return ua == ub;
}

#define CHECK_FLOAT_BITS(got, want)                                                                \
    do {                                                                                           \
        float check_gotf_ = (got);                                                                 \
        float check_wantf_ = (want);                                                               \
        check_record(check_same_float(check_gotf_, check_wantf_), __FILE__, __LINE__,              \
                     "%s = %.9g (%a), want %.9g (%a)", #got, (double)check_gotf_,                  \
                     (double)check_gotf_, (double)check_wantf_, (double)check_wantf_);             \
    } while (0)

/* The tests' random numbers: xorshift64 from a per-program seed (check_rng_seed), the high
 * bits of each state as a 32-bit draw. */
static uint64_t check_rng_ = 0x9E3779B97F4A7C15ull;

static inline void check_rng_seed(uint64_t seed) {
    check_rng_ = seed;
}

static inline uint32_t check_rng_u32(void) {
    check_rng_ ^= check_rng_ << 13;
    check_rng_ ^= check_rng_ >> 7;
    check_rng_ ^= check_rng_ << 17;
    return (uint32_t)(check_rng_ >> 16);
}

/* A context on the CPU backend with default parameters, or NULL (said on stdout). */
static inline mxmoe_ctx* check_cpu_ctx(void) {
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    mxmoe_ctx* ctx = NULL;
    if (mxmoe_ctx_init(&ctx, &p) != MXMOE_OK) {
        printf("cannot create a CPU context\n");
        return NULL;
    }
    return ctx;
}

/* Prints the summary line and returns the process exit status. */
static inline int check_report(void) {
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    fflush(stdout);
    return check_failed_ == 0 && check_passed_ > 0 ? 0 : 1;
}

#endif /* MXMOE_TESTS_CHECK_H */
