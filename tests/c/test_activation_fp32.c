/*
 * test_activation_fp32.c — the FP32 activation that backends use where it provably gives the
 * reference's BF16 bits (core/activation_fp32.h), against the reference's FP64 evaluation
 * (ref/activation.h) on fresh random inputs: its error bound itself (|y - x| <= k 2^-24 |x|
 * wherever it claims one), the bits wherever it decides, and that it decides nearly everywhere
 * on ordinary inputs (else the fast path would be a slow one). Inputs: uniform, log-uniform
 * over 80 binades, arguments around the ranges' edges, SwiGLU's clamps and up + 1 near zero,
 * BF16 gates above SwiGLU's limit, and special values (zeros, subnormals, NaN, Inf, the FP32
 * maximum). MXMOE_TEST_SEED reproduces a run; MXMOE_TEST_SAMPLES (per activation and input kind,
 * default 300000) makes a longer one.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "core/activation_fp32.h"
#include "ref/activation.h"

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double uniform(void) { /* [0, 1) */
    return (double)(rng() >> 11) * 0x1p-53;
}
static float between(double lo, double hi) {
    return (float)(lo + (hi - lo) * uniform());
}
static float log_uniform(int binades) { /* random sign, magnitude 2^-binades .. 2^binades */
    const float m = (float)ldexp(1.0 + uniform(), (int)(rng() % (uint64_t)(2 * binades)) - binades);
    return (rng() & 1) ? -m : m;
}
static float special(void) {
    static const float values[] = {0.0f,      -0.0f,   NAN,    INFINITY, -INFINITY, 1e-40f,
                                   -3e-39f,   3.4e38f, 79.99f, 80.0f,    -80.0f,    -79.99f,
                                   0x1p-100f, 7.0f,    -7.0f,  -1.0f};
    return values[rng() % (sizeof values / sizeof values[0])];
}

enum { UNIFORM, LOG_UNIFORM, EDGES, CLAMPS, CLAMPED_BF16, SPECIALS, KINDS };
static const char* kind_name[KINDS] = {"uniform", "log-uniform",  "edges",
                                       "clamps",  "clamped-bf16", "specials"};

static float bf16(float x) {
    return mxmoe_round_to_dtype(x, MXMOE_BF16);
}

static void draw(int kind, float* gate, float* up) {
    switch (kind) {
    case UNIFORM:
        *gate = between(-8, 8), *up = between(-8, 8);
        break;
    case LOG_UNIFORM:
        *gate = log_uniform(40), *up = log_uniform(40);
        break;
    case EDGES: /* the argument ranges' ends, large results */
        *gate = between(-90, 90), *up = log_uniform(100);
        break;
    case CLAMPS: /* SwiGLU's limits, and up + 1 near zero */
        *gate = between(-60, 10);
        *up =
            (rng() & 1) ? between(-9, 9) : -1.0f + (float)ldexp(between(-1, 1), -(int)(rng() % 30));
        break;
    case CLAMPED_BF16: /* a BF16 layer's gates above SwiGLU's limit: 7 (u + 1) has few bits */
        *gate = bf16(between(7, 40)), *up = bf16(between(-8, 8));
        break;
    default:
        *gate = (rng() & 1) ? special() : between(-8, 8);
        *up = (rng() & 1) ? special() : between(-8, 8);
        break;
    }
}

int main(void) {
    const char* seed_env = getenv("MXMOE_TEST_SEED");
    const uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    rng_state = seed | 1;
    const char* samples_env = getenv("MXMOE_TEST_SAMPLES");
    const long samples = samples_env ? atol(samples_env) : 300000;
    printf("test_activation_fp32: seed %llu, %ld samples per activation and kind\n",
           (unsigned long long)seed, samples);
    const mxmoe_activation acts[] = {MXMOE_ACT_SILU, MXMOE_ACT_SILU_MUL, MXMOE_ACT_SWIGLU_OAI};
    mxmoe_act_params p = mxmoe_act_params_default();
    const mxmoe_act_fp32_consts c = mxmoe_act_fp32_setup(&p);
    for (int a = 0; a < 3; a++) {
        const mxmoe_activation act = acts[a];
        for (int kind = 0; kind < KINDS; kind++) {
            check_set_context("activation %d, %s inputs, seed %llu", (int)act, kind_name[kind],
                              (unsigned long long)seed);
            long decided = 0, bad_bound = 0, bad_bits = 0;
            double worst = 0.0; /* largest |y - x| / (k 2^-24 |x|) seen */
            for (long i = 0; i < samples; i++) {
                float gate, up;
                draw(kind, &gate, &up);
                const double x = mxmoe_activation_of(act, gate, up, &p);
                const float want = mxmoe_round_to_dtype((float)x, MXMOE_BF16);
                float y, k;
                if (mxmoe_activation_fp32(act, gate, up, &p, &c, &y, &k)) {
                    const double err = fabs((double)y - x), bound = k * 0x1p-24 * fabs(x);
                    if (!(err <= bound) && bad_bound++ == 0) {
                        CHECK_MSG(0, "gate %a up %a: y %a, x %a, error %.3g over bound %.3g", gate,
                                  up, y, x, err, bound);
                    }
                    if (bound > 0.0 && err / bound > worst) {
                        worst = err / bound;
                    }
                }
                float got;
                if (mxmoe_activation_bf16_fp32(act, gate, up, &p, &c, &got)) {
                    decided++;
                    if (mxmoe_f32_bits(got) != mxmoe_f32_bits(want) && bad_bits++ == 0) {
                        CHECK_MSG(0, "gate %a up %a: got %a, the reference %a", gate, up, got,
                                  want);
                    }
                }
            }
            CHECK_EQ_INT(bad_bound, 0);
            CHECK_EQ_INT(bad_bits, 0);
            /* the fast path must be the common one: on ordinary inputs, and on SwiGLU's
             * clamped gates with BF16 inputs (mxmoe_act_fp32_consts) */
            if (kind == UNIFORM || (kind == CLAMPED_BF16 && act == MXMOE_ACT_SWIGLU_OAI)) {
                CHECK_MSG(decided >= samples - samples / 100, "decided %ld of %ld", decided,
                          samples);
            }
            printf("  activation %d, %-11s: decided in FP32 %6.2f %%, worst error %.3f of the "
                   "bound\n",
                   (int)act, kind_name[kind], 100.0 * decided / samples, worst);
        }
    }
    return check_report();
}
