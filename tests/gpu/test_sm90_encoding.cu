/*
 * test_sm90_encoding.cu — the Hopper path's weight encoding (cuda/sm90_e4m3.cuh) checked on the
 * host, no GPU needed: for each chunk word the weight-scale pass would write, every E2M1 value
 * of every block that its 128-K chunk's own largest scale keeps exact comes out exact (E4M3 byte
 * times the word's factor equals the MXFP4 value); a row's words take their 256-K spans'
 * references (kChunkReference clear) exactly when, in every span, that keeps every block both
 * chunks' own references keep, decided by decoding the bytes rather than by the 14-binade rule;
 * and every word of a row says which. This is the contract issue 4 and include/mxmoe.h state
 * (losses only below a chunk's largest block); the GPU suite (tests/gpu/test_cuda.c) checks the
 * kernels that use the words.
 */
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/sm90_e4m3.cuh"

static int g_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond) && g_failures++ < 10) {                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static uint64_t g_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) { /* xorshift64*: the draws need no more */
    g_state ^= g_state >> 12;
    g_state ^= g_state << 25;
    g_state ^= g_state >> 27;
    return (uint32_t)((g_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* A positive E4M3 byte's value (bias 7; exponent field 0: subnormal, steps of 2^-9). */
static double e4m3_value(uint8_t b) {
    const int e = (b >> 3) & 15, m = b & 7;
    return e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
}

/* Whether a block of scale byte s is exact against reference ref (>= s, not 255): every E2M1
 * magnitude's E4M3 byte, times 2^(ref - 133), is the value |e2m1| 2^(s - 127). */
static bool exact_against(int s, int ref) {
    const int i = s - ref + 19;
    if (i < 0) {
        return false; /* the word's table 0: every value rounds to 0 */
    }
    for (int m = 1; m < 8; m++) {
        const double want = ldexp(kTwiceE2m1[m], s - 128);
        if (e4m3_value(e4m3_shifted(m, i)) * ldexp(1.0, ref - 133) != want) {
            return false;
        }
    }
    return true;
}

static int word_reference(uint32_t word) { /* the word's factor bits: R - 6, or NaN for 255 */
    return (word & 0x7FC00000u) == 0x7FC00000u ? 255 : (int)((word >> 23) & 0xFF) + 6;
}

/* One chunk's 4 scale bytes: near `top`, `spread` binades down, sometimes 0 (past K, or an all-zero
 * block) or tiny (below the factor's floor of 7). */
static uint32_t draw_chunk(int top, int spread) {
    uint32_t sc = 0;
    for (int q = 0; q < 4; q++) {
        const uint32_t r = next_u32() % 64;
        int s = top - (int)(next_u32() % (uint32_t)(spread + 1));
        if (r == 0) {
            s = 0;
        } else if (r == 1) {
            s = (int)(next_u32() % 24);
        }
        sc |= (uint32_t)(s < 0 ? 0 : s) << (8 * q);
    }
    return sc;
}

/* Whether the reference of span_max keeps exact every block of chunk sc that its own keeps,
 * decided by decoding (independent of the 14-binade rule the encoder uses). */
static bool decoded_keeps(uint32_t sc, int span_max) {
    const int own_ref = std::max(max_byte(sc), 7), span_ref = std::max(span_max, 7);
    for (int q = 0; q < 4; q++) {
        const int s = (int)((sc >> (8 * q)) & 0xFF);
        if (exact_against(s, own_ref) && !exact_against(s, span_ref)) {
            return false;
        }
    }
    return true;
}

/* One weight row of nc chunks (scale bytes sc[c]) through the weight-scale pass's choices. */
static int check_row(const uint32_t* sc, int nc) {
    bool on_spans = true, decoded = true;
    for (int c = 0; c < nc; c += 2) {
        const bool partner = c + 1 < nc;
        const uint32_t so = partner ? sc[c + 1] : 0u;
        on_spans = on_spans && span_shares_reference(sc[c], so, partner);
        const int span_max = std::max(max_byte(sc[c]), max_byte(so));
        decoded =
            decoded && decoded_keeps(sc[c], span_max) && (!partner || decoded_keeps(so, span_max));
    }
    CHECK(on_spans == decoded, "row of %d chunks, first %08x: the spans' references %s", nc, sc[0],
          decoded ? "keep every block, yet the row is flagged"
                  : "round a block, yet the row is not flagged");
    for (int c = 0; c < nc; c++) {
        const uint32_t so = (c ^ 1) < nc ? sc[c ^ 1] : 0u;
        const uint32_t word = weight_chunk_word(sc[c], so, on_spans);
        const int own_max = max_byte(sc[c]), ref = word_reference(word);
        CHECK(((word & kChunkReference) == 0) == on_spans, "chunk %d %08x: word %08x", c, sc[c],
              word);
        /* on the spans both chunks of one share the reference; else each has its own */
        const int want = std::max(on_spans ? std::max(own_max, max_byte(so)) : own_max, 7);
        CHECK(ref == want, "chunk %d %08x (other %08x): reference %d, want %d", c, sc[c], so, ref,
              want);
        /* the contract: every block the chunk's own largest keeps exact comes out exact */
        for (int q = 0; q < 4; q++) {
            const int s = (int)((sc[c] >> (8 * q)) & 0xFF), i = (int)((word >> (5 * q)) & 31);
            if (own_max == 255 || ref == 255 || !exact_against(s, std::max(own_max, 7))) {
                continue; /* NaN scales give NaN; blocks the chunk's own reference rounds may */
            }
            for (int m = 1; m < 8; m++) {
                const double got = e4m3_value(e4m3_shifted(m, i)) * ldexp(1.0, ref - 133);
                CHECK(got == ldexp(kTwiceE2m1[m], s - 128),
                      "chunk %08x (other %08x) block %d (scale %d) magnitude %d: %.17g", sc[c], so,
                      q, s, m, got);
            }
        }
    }
    return !on_spans;
}

int main(void) {
    int flagged = 0, rows = 0;
    uint32_t sc[7];
    /* every pair of chunk maxima a span can have, 0..254 and NaN, with spreads from none to
     * past the 15 exact binades, in rows of 1 to 7 chunks */
    for (int top0 = 0; top0 < 256; top0 += (top0 < 24 || top0 > 240 ? 1 : 3)) {
        for (int top1 = 0; top1 < 256; top1 += (top1 < 24 || top1 > 240 ? 1 : 3)) {
            for (int spread = 0; spread <= 40; spread += 4) {
                const int nc = 1 + (int)(next_u32() % 7);
                for (int c = 0; c < nc; c++) {
                    sc[c] = draw_chunk(c % 2 ? top1 : top0, spread);
                }
                flagged += check_row(sc, nc);
                rows++;
            }
        }
    }
    /* ordinary checkpoints: a row's scales within a few binades of each other */
    for (int t = 0; t < 100000; t++) {
        const int top = 100 + (int)(next_u32() % 30), nc = 1 + (int)(next_u32() % 7);
        for (int c = 0; c < nc; c++) {
            sc[c] = draw_chunk(top - (int)(next_u32() % 4), 6);
        }
        flagged += check_row(sc, nc);
        rows++;
    }
    /* the draws must reach both choices (a test that could not fail otherwise) */
    CHECK(flagged > rows / 100 && flagged < rows - rows / 100, "%d of %d rows flagged", flagged,
          rows);
    printf("test_sm90_encoding: %d rows, %d on their chunks' references: %s\n", rows, flagged,
           g_failures ? "FAIL" : "ok");
    return g_failures ? 1 : 0;
}
