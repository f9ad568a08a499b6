/*
 * test_e2m1_round.c — the arithmetic E2M1 encoder the GPU quantizers use (core/e2m1_round.h)
 * against the reference's compare chain (ref/mx_numerics.h): every FP32 magnitude below 64 (all
 * of [0, 8) that a scaled element can reach, and the saturating range past it), a stride through
 * the rest up to the NaN patterns, the special values, signed elements at every scale byte, the
 * scale byte by one add against the reference's under every rule, and whole blocks under every
 * scale rule.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "core/e2m1_round.h"

static uint32_t rng_state = 0x2545F491u;
static uint32_t rng(void) { /* xorshift32 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Magnitude bit patterns first, first + stride, ... up to last on which the arithmetic encoder
 * and the compare chain disagree; *first_bad the first of them. */
static uint64_t magnitude_mismatches(uint32_t first, uint32_t last, uint32_t stride,
                                     uint32_t* first_bad) {
    uint64_t mismatches = 0;
    for (uint32_t bits = first; bits <= last && bits >= first; bits += stride) {
        const float a = mxmoe_f32_from_bits(bits);
        if (mxmoe_e2m1_magnitude_code_rne(a) != mxmoe_e2m1_magnitude_code(a) && mismatches++ == 0) {
            *first_bad = bits;
        }
    }
    return mismatches;
}

int main(void) {
    /* every magnitude bit pattern in [0, 64): 1.1e9 values */
    uint32_t first_bad = 0;
    uint64_t mismatches = magnitude_mismatches(0, 0x427fffffu, 1, &first_bad);
    CHECK_MSG(mismatches == 0, "%llu magnitudes differ, first 0x%08x",
              (unsigned long long)mismatches, first_bad);
    /* past 64 (saturating), to +Inf and the NaN patterns, in a stride of 97 patterns */
    mismatches = magnitude_mismatches(0x42800000u, 0x7fffffffu, 97, &first_bad);
    CHECK_MSG(mismatches == 0, "%llu large magnitudes differ, first 0x%08x",
              (unsigned long long)mismatches, first_bad);
    const float specials[] = {64.0f, 1e30f, 3.4e38f, INFINITY};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        CHECK_MSG(mxmoe_e2m1_magnitude_code_rne(specials[i]) ==
                      mxmoe_e2m1_magnitude_code(specials[i]),
                  "magnitude %g", (double)specials[i]);
    }

    /* signed elements (random bit patterns, finite) at every scale byte */
    mismatches = 0;
    for (int b = 0; b < 255; b++) {
        for (int i = 0; i < 20000; i++) {
            float x = mxmoe_f32_from_bits(rng());
            if (!isfinite(x)) {
                continue;
            }
            /* keep |x| * 2^-s below 8, as a block's scale does */
            const float limit = ldexpf(7.99f, b - 127);
            if (fabsf(x) >= limit) {
                x = fmodf(x, limit);
            }
            mismatches += mxmoe_e2m1_code_rne(x, (uint8_t)b) != mxmoe_e2m1_code(x, (uint8_t)b);
        }
    }
    CHECK_MSG(mismatches == 0, "%llu signed codes differ", (unsigned long long)mismatches);

    /* the scale byte by one add, every rule: every amax bit pattern whose fraction is at or
     * next to a rule's point (0, 1, 0x3fffff-0x400001, 0x5fffff-0x600001, 0x7fffff) in every
     * exponent field, subnormals and Inf/NaN included, then 2^24 random patterns */
    const uint32_t fractions[] = {0,         1,         0x3fffffu, 0x400000u, 0x400001u,
                                  0x5fffffu, 0x600000u, 0x600001u, 0x7fffffu};
    for (int rule = 0; rule < MXMOE_RULE_COUNT; rule++) {
        const uint32_t add = mxmoe_scale_rule_add((mxmoe_scale_rule)rule);
        mismatches = 0;
        for (uint32_t field = 0; field < 256; field++) {
            for (size_t f = 0; f < sizeof fractions / sizeof fractions[0]; f++) {
                const uint32_t bits = field << 23 | fractions[f];
                mismatches += mxmoe_scale_byte_add(bits, add) !=
                              mxmoe_scale_byte(bits, (mxmoe_scale_rule)rule);
            }
        }
        for (int i = 0; i < (1 << 24); i++) {
            const uint32_t bits = rng() & 0x7fffffffu;
            mismatches +=
                mxmoe_scale_byte_add(bits, add) != mxmoe_scale_byte(bits, (mxmoe_scale_rule)rule);
        }
        CHECK_MSG(mismatches == 0, "rule %d: %llu scale bytes differ", rule,
                  (unsigned long long)mismatches);
    }

    /* whole blocks, every rule: values of one binade spread, zeros, -0, NaN/Inf blocks */
    for (int rule = 0; rule < MXMOE_RULE_COUNT; rule++) {
        for (int t = 0; t < 20000; t++) {
            float x[MXMOE_BLOCK];
            const int e = (int)(rng() % 300) - 150;
            for (int i = 0; i < MXMOE_BLOCK; i++) {
                const uint32_t r = rng();
                x[i] = r % 17 == 0 ? (r & 1 ? -0.0f : 0.0f)
                                   : ldexpf((float)(int32_t)r / 2147483648.0f, e + (int)(r % 7));
            }
            if (t % 1000 == 1) {
                x[rng() % MXMOE_BLOCK] = t % 2000 == 1 ? NAN : -INFINITY;
            }
            uint8_t want[MXMOE_BLOCK / 2], got[MXMOE_BLOCK / 2];
            const uint8_t sw = mxmoe_quantize_block(x, (mxmoe_scale_rule)rule, want);
            const uint8_t sg = mxmoe_quantize_block_rne(x, (mxmoe_scale_rule)rule, got);
            CHECK_MSG(sw == sg && memcmp(want, got, sizeof want) == 0, "block %d rule %d", t, rule);
        }
    }
    return check_report();
}
