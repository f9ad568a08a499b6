/*
 * sm90_tile_rule.cuh — how many tokens a tile of the Hopper GEMM holds (its width, one of
 * tile_widths), chosen on the host from the mean rows of an active expert: the experts' counts
 * stay on the device (no host synchronisation inside a forward).
 *
 * A tile converts and streams each of its weight chunks once for all its tokens. A wider tile
 * pads more (token rows past its expert's last run through the MMAs for nothing); a narrower one
 * makes more tiles, and each pays the weight conversion and its fixed costs again. Under uniform
 * routing an expert's rows scatter around the mean (Poisson: nearly half the experts are above
 * it), so the narrow widths sit well above the mean, where a second tile is rare:
 *
 *   mean rows  tokens a tile                      why, and what it measured (bench/NOTES.md)
 *   1-4        8                                  9 rows are 2.5 deviations up at 4 a mean
 *                                                 (v43: deepseek-v3 n = 64 -6 %, n = 128 -5.5 %)
 *   5          8, where K is 32 chunks or more    v44: deepseek-v3 n = 144 / 160 -4 %; +5 % at
 *                                                 gpt-oss-120b's 22.5 chunks (v43)
 *   5-8        16                                 twice the mean (v16: the mean itself or 1.5x
 *   9-16       32                                 it measured slower)
 *   17-32      48                                 mean + 2.8 deviations or more; a quarter fewer
 *                                                 MMAs than 64 (v42: qwen3 n = 512 -4.5 %)
 *   33-55      128 by three warpgroups            a tile's second half of 64 tokens is skipped
 *                                                 where it holds no rows, rare up to ~55
 *   56-72      80 by two                          that second half ran for nearly half the
 *                                                 experts (v43: gpt-oss-20b n = 512 -15 %)
 *   73-84      96 by two, where K is 20 chunks    v44: 76 and 80 a mean -10..-12.5 %
 *   85-88      96 by two, where K is 32 chunks    v44: deepseek-v3 n = 2720 / 2816 -9.5 / -4.6 %;
 *                                                 +1.7 % at gpt-oss-20b's 22.5 chunks (v43)
 *   85-767     the least padded of 128 (three warpgroups), 160 and 192 (two), then 144 for 160
 *              and 176 for 192 where they cost 2 % less (v34, v39, v42); so too 73-88 where K
 *              is shorter than the rows above ask, and 33-55 (where 128 pads least)
 *   768-       192, or 176 where it costs 2 % less (v39, v42)
 *
 * The edges were measured: 80 tokens at 52 a mean and 96 at 64 were slower; at 80 a mean 80
 * tokens take a second tile for half the experts (+9..+16 %); 6 a mean at 8 tokens was slower
 * everywhere (+5..+18 %). Where K is long the narrow widths reach further: the experts past a
 * width pay a second tile's fixed costs (weight decode, epilogue), which a long K amortises.
 * And a two-warpgroup tile has 128 weight rows against three warpgroups' 192, so its fixed
 * costs come 1.5x as often (96 tokens at qwen3's 16 chunks +4 %, v43).
 */
#ifndef MXMOE_CUDA_SM90_TILE_RULE_CUH
#define MXMOE_CUDA_SM90_TILE_RULE_CUH

#include <math.h>
#include <stdint.h>

#include "cuda/sm90_e4m3.cuh"
#include "cuda/sm90_gemm_layout.cuh"

namespace {

/* Token rows times weight rows that tiles of BN tokens and tile_n<BN>() weight rows cover, per
 * active expert, when its rows scatter around `mean` as uniform routing makes them (Poisson,
 * taken as normal: E[ceil(R / BN)] = sum over j of P(R > j BN); the terms 8 deviations below
 * the mean are 1, those above 0). */
template <int BN> double padded_work(int64_t mean, int64_t n) {
    const double sd = sqrt((double)mean);
    const double row_tiles = (double)((n + tile_n<BN>() - 1) / tile_n<BN>());
    const int64_t j0 = (int64_t)fmax(0.0, ((double)mean - 8 * sd) / BN);
    double tiles = (double)j0;
    for (int64_t j = j0; j * BN < mean + 8 * sd + 1; j++) {
        tiles += 0.5 * erfc(((double)(j * BN) - (double)mean) / (sd * sqrt(2.0)));
    }
    return tiles * BN * row_tiles * tile_n<BN>();
}

/* Whether tiles of Narrow tokens cost 2 % less than tiles of Wide, each tile counted as its
 * padded tokens plus 28 (the weight conversion and the fixed costs every tile pays whatever its
 * width; 28 fits v42's A/B). At 1024 rows a mean 176 tokens make 6.2 tiles against 192's 6.0:
 * 8 % fewer tokens through the MMAs (gpt-oss-20b n = 8192 -4.5 %); at 256 a mean 144 make 2.02
 * against 160's 2.0, 9 % fewer tokens (deepseek-v3 n = 8192 -5 %, gpt-oss-120b -6.6 %). */
template <int Narrow, int Wide> bool narrower_pays(int64_t mean, int64_t n) {
    constexpr int kTileTokens = 28;
    return padded_work<Narrow>(mean, n) * (Narrow + kTileTokens) / Narrow <
           0.98 * padded_work<Wide>(mean, n) * (Wide + kTileTokens) / Wide;
}

/* Between three warpgroups' 128 tokens and two warpgroups' 160 and 192, from 85 a mean (and at
 * 33-55, and at 73-84 over a short K, where 128 wins): the least padded work. Below 384 a mean
 * the two-warpgroup widths count at 1.01x (taken only where they pad 1 % less), except 160
 * from 192 a mean over K of 16 chunks or more, at 0.97x. 160 has two places: 115-135 a mean,
 * where 192 pads a fifth more and three warpgroups take two tiles for half the experts; and
 * ~250-320, where it pads as three warpgroups do and runs faster where K is long (v39, 256 a
 * mean: 56 chunks -5 %, 16 chunks -1..-4 %, 6 chunks +11 %); its two tiles end at 320 rows. 192
 * from 384 a mean with an edge of 3 %, and always from 768: at 1024 a mean it pads 6 % more
 * than three warpgroups and still runs faster (v39, H200, gpt-oss-20b n = 8192: the layer
 * -2.3 %). */
inline int least_padded_width(int64_t mean, int64_t n, int64_t k) {
    if (mean >= 768) {
        return 192;
    }
    const double two_wg = mean < 384 ? 1.01 : 0.97; /* the two-warpgroup widths' factor */
    int bn = 128;
    double least = padded_work<128>(mean, n);
    const bool long_k = k >= 16 * kChunk;
    const double work_160 = mean < 192             ? two_wg * padded_work<160>(mean, n)
                            : mean < 384 && long_k ? 0.97 * padded_work<160>(mean, n)
                                                   : least;
    if (work_160 < least) {
        bn = 160;
        least = work_160;
    }
    if (two_wg * padded_work<192>(mean, n) < least) {
        bn = 192;
    }
    return bn;
}

/* Tokens a tile for `rows` (>= 1) rows over `experts` experts, N = n weight rows and K = k. */
inline int token_tile_width(int64_t rows, int64_t experts, int64_t n, int64_t k) {
    const int64_t active = experts < rows ? experts : rows;
    const int64_t mean = (rows + active - 1) / active;
    const bool long_k = k >= 32 * kChunk, mid_k = k >= 20 * kChunk;
    int bn = mean <= 4 || (mean == 5 && long_k)                ? 8
             : mean <= 8                                       ? 16
             : mean <= 16                                      ? 32
             : mean <= 32                                      ? 48
             : mean < 56                                       ? least_padded_width(mean, n, k)
             : mean <= 72                                      ? 80
             : (mean <= 84 && mid_k) || (mean <= 88 && long_k) ? 96
                                                               : least_padded_width(mean, n, k);
    if (bn == 192 && narrower_pays<176, 192>(mean, n)) {
        bn = 176;
    } else if (bn == 160 && narrower_pays<144, 160>(mean, n)) {
        bn = 144;
    }
    return bn;
}

} // namespace

#endif /* MXMOE_CUDA_SM90_TILE_RULE_CUH */
