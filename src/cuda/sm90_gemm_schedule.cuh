/*
 * sm90_gemm_schedule.cuh — which tiles and chunks each CTA of the Hopper GEMM
 * (grouped_gemm_sm90.cu) works through: tiles enumerated per expert from the device offsets, dealt
 * out persistently, each unit a tile or (K-split) half of one.
 */
#ifndef MXMOE_CUDA_SM90_GEMM_SCHEDULE_CUH
#define MXMOE_CUDA_SM90_GEMM_SCHEDULE_CUH

#include <stdint.h>

#include "cuda/grouped_gemm.cuh"
#include "cuda/sm90_gemm_layout.cuh"

namespace {

/* Device code below is compiled for the host pass and sm_90a only. */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* One tile: expert, its output columns [n0, n0 + 128) and token rows [row_begin, row_end). */
struct tile {
    int32_t expert, n0, row_begin, row_end; /* rows <= INT32_MAX / 2 (supported()), N < 2^31 */
};

/* The chunks a CTA works through, the same sequence for its producer and its consumers: its
 * units u = blockIdx.x, + gridDim.x, ... (unit u = tile u / ks, K part u % ks, ks = 1 or 2),
 * each over its chunks [c0, c1). With ks = 2 a tile's K range is split in halves, each summed
 * into FP32 partials that split_reduce_kernel adds (K-split: where K is long and one round of
 * whole tiles would leave half the persistent grid idle, k_parts). */
struct unit_walk {
    int unit, step, nc, c, c0, c1, tile, part; /* unit = (tile, part); no divisions per chunk */
    bool halves;                               /* ks = 2 */
    __device__ unit_walk(int first, int step_, int ks, int nc_)
        : unit(first), step(step_), nc(nc_), halves(ks == 2) {
        range();
    }
    __device__ void range() {
        tile = halves ? unit >> 1 : unit;
        part = halves ? unit & 1 : 0;
        c0 = part * ((nc + 1) >> 1);
        c1 = halves && part == 0 ? c0 + ((nc + 1) >> 1) : nc;
        c = c0;
    }
    __device__ int tile_index() const {
        return tile;
    }
    __device__ bool first() const {
        return c == c0;
    }
    __device__ bool last() const {
        return c == c1 - 1;
    }
    __device__ void advance() {
        if (++c == c1) {
            unit += step;
            range();
        }
    }
};

template <int BN>
__device__ tile decode_tile(const gemm_args& a, const smem_header& h, int n_tiles, int t) {
    int lo = 0, hi = (int)a.num_experts; /* prefix[lo] <= t < prefix[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (h.tile_prefix[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    tile r;
    int64_t b, end;
    expert_rows(a.offsets, lo, a.rows, &b, &end);
    const int local = t - h.tile_prefix[lo];
    const int token_tiles = (int)((end - b + BN - 1) / BN);
    r.expert = lo;
    r.n0 = (local / token_tiles) * tile_n<BN>();
    r.row_begin = (int32_t)(b + (int64_t)(local % token_tiles) * BN);
    r.row_end = (int32_t)min(end, (int64_t)r.row_begin + BN);
    return r;
}

#endif /* host or sm_90a */

} // namespace

#endif /* MXMOE_CUDA_SM90_GEMM_SCHEDULE_CUH */
