/*
 * skinny_schedule.cuh — which expert, rows and pairs a CTA of the few-tokens GEMM
 * (grouped_gemm_skinny.cu) takes: the active expert from the plan's offsets, or for a projection
 * from the pairs' ids (the lowest pair of an expert owns it), and the CTA-wide counts and ranges
 * these need.
 */
#ifndef MXMOE_CUDA_SKINNY_SCHEDULE_CUH
#define MXMOE_CUDA_SKINNY_SCHEDULE_CUH

#include <stdint.h>

#include "cuda/cuda_common.cuh"
#include "cuda/grouped_gemm.cuh"
#include "cuda/skinny_layout.cuh"

namespace {

/* This thread's rank among the CTA's threads whose `flag` is set, in thread order, counted from
 * *total, which grows by the number set (the same in every thread); ends with a barrier, so
 * warp_count may be reused by the next call. Every thread of the CTA calls it. */
__device__ inline int64_t cta_rank(bool flag, int64_t* total, int* warp_count) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0) {
        warp_count[warp] = __popc(ballot);
    }
    __syncthreads();
    int64_t before = *total;
    for (int w = 0; w < kWarps; w++) {
        before += w < warp ? warp_count[w] : 0;
        *total += warp_count[w];
    }
    __syncthreads();
    return before + __popc(ballot & ((1u << lane) - 1u));
}

/* The expert of the `target`-th active expert (-1 if fewer are active), from offsets already in
 * shared memory; every thread returns the same value. */
__device__ int64_t find_active_expert(const int32_t* off, int64_t num_experts, int64_t rows,
                                      int64_t target) {
    __shared__ int warp_count[kWarps];
    __shared__ int64_t found;
    if (threadIdx.x == 0) {
        found = -1;
    }
    int64_t seen = 0;
    for (int64_t base = 0; base < num_experts && seen <= target; base += kThreads) {
        const int64_t e = base + threadIdx.x;
        int64_t b = 0, n = 0;
        if (e < num_experts) {
            expert_rows(off, e, rows, &b, &n);
        }
        if (cta_rank(n > b, &seen, warp_count) == target && n > b) {
            found = e; /* one writer */
        }
    }
    __syncthreads(); /* `found` is settled */
    return found;
}

/* The CTA-wide smallest and largest of every thread's (lo, hi); ends with a barrier. */
__device__ inline int2 cta_range(int lo, int hi) {
    __shared__ int warp_lo[kWarps], warp_hi[kWarps];
    lo = __reduce_min_sync(0xffffffffu, lo);
    hi = __reduce_max_sync(0xffffffffu, hi);
    if (threadIdx.x % 32 == 0) {
        warp_lo[threadIdx.x / 32] = lo, warp_hi[threadIdx.x / 32] = hi;
    }
    __syncthreads();
    for (int w = 0; w < kWarps; w++) {
        lo = min(lo, warp_lo[w]);
        hi = max(hi, warp_hi[w]);
    }
    return make_int2(lo, hi);
}

/* Whether pair id `id` (any value) is routed to local expert `expert`. */
__device__ __forceinline__ bool pair_is(const projection_tokens& tk, int32_t id, int64_t expert) {
    return id >= 0 && id < tk.id_limit && (tk.map != nullptr ? tk.map[id] : id) == expert;
}

/* Whether a pair before `slot` has `expert` (every thread returns the same; ends with a barrier):
 * the CTAs of such a slot leave before they stream anything. Each thread's first id is read with
 * the slot's own, so an owner waits for one load, not two. */
__device__ bool earlier_pair_has(const projection_tokens& tk, int64_t expert, int64_t slot,
                                 int32_t first_id) {
    bool earlier = false;
    if (expert >= 0) {
        earlier = (int64_t)threadIdx.x < slot && pair_is(tk, first_id, expert);
        for (int64_t i = threadIdx.x + kThreads; i < slot; i += kThreads) {
            earlier |= pair_is(tk, tk.ids[i], expert);
        }
    }
    return __syncthreads_or(earlier);
}

/* The pairs of `expert`, in ascending order, in list[0 .. *count). */
__device__ void expert_pairs(const projection_tokens& tk, int64_t expert, int64_t pairs,
                             int32_t* list, int* count) {
    __shared__ int warp_count[kWarps];
    int64_t seen = 0;
    for (int64_t base = 0; base < pairs; base += kThreads) {
        const int64_t i = base + threadIdx.x;
        const bool mine = i < pairs && pair_is(tk, tk.ids[i], expert);
        const int64_t rank = cta_rank(mine, &seen, warp_count);
        if (mine) {
            list[rank] = (int32_t)i;
        }
    }
    *count = (int)seen;
}

} // namespace

#endif /* MXMOE_CUDA_SKINNY_SCHEDULE_CUH */
