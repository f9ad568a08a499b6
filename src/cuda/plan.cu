/*
 * plan.cu — CUDA plan: group the (token, slot) pairs by expert, deterministically.
 *
 * The seed orders rows inside an expert by atomics; here rows inside an expert follow the flat
 * pair index (the reference's order), whatever the thread timing. Three shapes of the same plan:
 * - Up to 32 pairs (decode): plan_warp_kernel, one warp, a lane a pair.
 * - Few pairs (small batches): plan_wide_kernel, a block per 128 pairs, each counting every
 *   pair per expert itself (in shared memory), so that one launch one round deep plans them.
 * - Many pairs, up to kTiledMaxExperts experts: tiles of kTilePairs pairs, each a block of
 *   kTileWarps warps with kWarpPairs consecutive pairs each.
 *     1. tile_count_kernel: per-tile expert counts (shared-memory histogram), ids checked
 *     2. tile_scan_kernel (one block): counts, offsets, and each tile's first row per expert
 *     3. tile_place_kernel: per-warp counts, scanned over the tile's warps, then each warp
 *        places its pairs in order (ranks from same_expert), dropped pairs get row -1,
 *        sorted = -1 past the kept rows
 *   O(pairs) work spread over the whole GPU. (A block per expert scanning every pair, below,
 *   took 84 us at qwen3's 65536 pairs, Nsight: E blocks, each latency-bound over all the ids.)
 * - More experts: a block per expert walks all pairs in ascending flat index and ranks its
 *   matches with a block-wide prefix count (count_kernel, offsets_kernel, place_kernel,
 *   finish_kernel).
 * Ids out of range (and map entries out of range) are dropped and flagged, never followed.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/plan.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

/* Local expert of a pair with expert id `id`, or -1 if dropped (including ids or map entries out
 * of range). */
__device__ inline int32_t expert_of_id(const plan_args& a, int32_t id, bool report) {
    if (id < 0 || id >= a.id_limit) {
        if (report && id != -1) {
            atomicOr(a.errors, MXMOE_DEVERR_EXPERT_ID);
        }
        return -1;
    }
    if (a.map == nullptr) {
        return id;
    }
    int32_t local = a.map[id];
    if (local < -1 || local >= a.num_experts) {
        if (report) {
            atomicOr(a.errors, MXMOE_DEVERR_EXPERT_MAP);
        }
        return -1;
    }
    return local;
}

/* Local expert of pair i (expert_of_id). */
__device__ inline int32_t local_expert(const plan_args& a, int64_t i, bool report) {
    return expert_of_id(a, a.ids[i], report);
}

/* Exclusive prefix sum of v over the block's threads (Warps warps) and the block's total, through
 * the shared `warp_sums`; one barrier inside, so callers sync before writing warp_sums again. */
template <int Warps> __device__ inline int block_exclusive_scan(int v, int* warp_sums, int* total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int incl = v;
    for (int d = 1; d < 32; d *= 2) {
        const int u = __shfl_up_sync(0xffffffffu, incl, d);
        incl += lane >= d ? u : 0;
    }
    if (lane == 31) {
        warp_sums[warp] = incl;
    }
    __syncthreads();
    int before = incl - v;
    *total = 0;
    for (int w = 0; w < Warps; w++) {
        before += w < warp ? warp_sums[w] : 0;
        *total += warp_sums[w];
    }
    return before;
}

/* The lanes whose expert equals this lane's e (-1: none; e < num_experts): one ballot per bit
 * of e + 1, each narrowing the set. (__match_any_sync, the one instruction for it, ran at about
 * one a 64 cycles an SM: 128 of them a pass, 8 K cycles of the one-block plan's 24 K at qwen3 n =
 * 512, clock64 timeline, H100.) The whole warp calls it. */
__device__ inline unsigned same_expert(int32_t e, int32_t num_experts) {
    const unsigned v = (unsigned)(e + 1);
    const int bits = 32 - __clz(num_experts); /* e + 1 <= num_experts */
    unsigned same = 0xffffffffu;
    for (int b = 0; b < bits; b++) {
        const bool set = (v >> b) & 1u;
        const unsigned ones = __ballot_sync(0xffffffffu, set);
        same &= set ? ones : ~ones;
    }
    return same;
}

/* Counts one warp's 32 pairs (lane's pair's expert e, -1 for none; `same`: its lanes, from
 * same_expert) into count[e]: their leader adds them. The whole warp calls it. */
__device__ inline void count_warp(int32_t e, unsigned same, int32_t* count) {
    const int lane = threadIdx.x % 32;
    if (e >= 0 && lane == __ffs(same) - 1) {
        count[e] += __popc(same);
    }
    __syncwarp();
}

/* Expert e's counts in consecutive runs of pairs (counts[w * E + e], run w) turned into each
 * run's first row, from `row` on: earlier runs first, so rows follow the pair index. */
__device__ inline void runs_first_rows(int32_t* counts, int32_t e, int32_t E, int runs,
                                       int32_t row) {
    for (int w = 0; w < runs; w++) {
        const int32_t c = counts[w * E + e];
        counts[w * E + e] = row;
        row += c;
    }
}

/* Places one warp's 32 pairs (lane's pair i, its expert e, `same` its lanes) in pair order at
 * cursor[e] onward (sorted[row] = i), ranked inside the warp, and advances the cursors past
 * them; a dropped pair (e < 0, i < pairs) gets row -1. The whole warp calls it. */
__device__ inline void place_warp(const plan_args& a, int64_t i, int32_t e, unsigned same,
                                  int32_t* cursor, int32_t* sorted) {
    const int lane = threadIdx.x % 32;
    if (e >= 0) {
        const int32_t row = cursor[e] + __popc(same & ((1u << lane) - 1u));
        sorted[row] = (int32_t)i;
        a.row_of[i] = row;
    } else if (i < a.pairs) {
        a.row_of[i] = -1;
    }
    __syncwarp();
    if (e >= 0 && lane == __ffs(same) - 1) {
        cursor[e] += __popc(same);
    }
    __syncwarp();
}

/* Bit j of the result: pair first + j (j < kPer) belongs to expert e. */
constexpr int kPer = 16; /* pairs per thread per pass: 4096 pairs a pass, few block barriers */

__device__ inline uint32_t match_mask(const plan_args& a, int64_t first, int32_t e, bool report) {
    uint32_t mask = 0;
#pragma unroll
    for (int j = 0; j < kPer; j++) {
        const int64_t i = first + j;
        if (i < a.pairs && local_expert(a, i, report) == e) {
            mask |= 1u << j;
        }
    }
    return mask;
}

__global__ void count_kernel(plan_args a) {
    __shared__ int warp_counts[kWarps];
    const int32_t e = blockIdx.x;
    int count = 0;
    for (int64_t base = 0; base < a.pairs; base += kThreads * kPer) {
        count += __popc(match_mask(a, base + threadIdx.x * kPer, e, e == 0));
    }
    for (int d = 16; d > 0; d /= 2) {
        count += __shfl_down_sync(0xffffffffu, count, d);
    }
    if (threadIdx.x % 32 == 0) {
        warp_counts[threadIdx.x / 32] = count;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int w = 0; w < kWarps; w++) {
            total += warp_counts[w];
        }
        a.counts[e] = total;
    }
}

__global__ void offsets_kernel(plan_args a) {
    int32_t running = 0;
    a.offsets[0] = 0;
    for (int32_t e = 0; e < a.num_experts; e++) {
        running += a.counts[e];
        a.offsets[e + 1] = running;
    }
}

/* Each thread takes kPer consecutive pairs per pass; a block-wide exclusive scan of the
 * threads' match counts gives every match its row, in ascending pair order. (One pair per
 * thread and two barriers per 256 pairs took 158 us at 65536 pairs, latency-bound.) */
__global__ void place_kernel(plan_args a) {
    __shared__ int warp_sums[kWarps];
    const int32_t e = blockIdx.x;
    int32_t cursor = a.offsets[e];
    for (int64_t base = 0; base < a.pairs; base += kThreads * kPer) {
        const int64_t first = base + threadIdx.x * kPer;
        uint32_t mask = match_mask(a, first, e, false);
        int total;
        const int before = block_exclusive_scan<kWarps>(__popc(mask), warp_sums, &total);
        for (int32_t row = cursor + before; mask != 0; mask &= mask - 1, row++) {
            const int64_t i = first + __ffs(mask) - 1;
            a.sorted[row] = (int32_t)i;
            a.row_of[i] = row;
        }
        cursor += total;
        __syncthreads(); /* warp_sums is rewritten by the next pass */
    }
}

__global__ void finish_kernel(plan_args a) {
    int32_t kept = a.offsets[a.num_experts];
    GRID_STRIDE_LOOP(i, a.pairs) {
        if (local_expert(a, i, false) < 0) {
            a.row_of[i] = -1;
        }
        if (i >= kept) {
            a.sorted[i] = -1;
        }
    }
}

constexpr int kTileWarps = 8, kTileThreads = 32 * kTileWarps;
/* 1024-pair tiles: 32-64 blocks at 32768-65536 pairs (4096-pair tiles, 8-16 blocks: 38 us) */
constexpr int kWarpPairs = 128, kTilePairs = kTileWarps * kWarpPairs;
constexpr int kRounds = kWarpPairs / 32;   /* a warp's pairs, 32 at a time */
constexpr int32_t kTiledMaxExperts = 1024; /* shared memory: kTileWarps x E cursors */

/* tile_counts[t][e] = pairs of tile t that go to local expert e. */
__global__ void __launch_bounds__(kTileThreads)
    tile_count_kernel(plan_args a, int32_t* tile_counts) {
    /* The ids' writer is complete once this returns; only then may the scan launch (the place
     * kernel reads ids before its own wait, on that guarantee). */
    pdl_wait();
    pdl_release();
    __shared__ int32_t hist[kTiledMaxExperts];
    for (int e = threadIdx.x; e < a.num_experts; e += kTileThreads) {
        hist[e] = 0;
    }
    __syncthreads();
    const int64_t first = (int64_t)blockIdx.x * kTilePairs;
    for (int j = threadIdx.x; j < kTilePairs && first + j < a.pairs; j += kTileThreads) {
        const int32_t e = local_expert(a, first + j, true);
        if (e >= 0) {
            atomicAdd(&hist[e], 1); /* a count: the order of the additions does not matter */
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < a.num_experts; e += kTileThreads) {
        tile_counts[blockIdx.x * (int64_t)a.num_experts + e] = hist[e];
    }
}

/* One block, a thread per expert: counts, offsets, and tile_rows[t][e], tile t's first row for
 * expert e (tiles in order, so rows follow the pair index). Separate arrays in and out keep
 * the loads independent, several in flight (in place, each load waited for the last store:
 * 30 us at 64 tiles). */
__global__ void __launch_bounds__(kTiledMaxExperts)
    tile_scan_kernel(plan_args a, const int32_t* __restrict__ tile_counts,
                     int32_t* __restrict__ tile_rows, int64_t tiles) {
    pdl_release(); /* the place kernel's counting needs only the ids */
    pdl_wait();    /* the tile counts */
    __shared__ int32_t warp_sums[kTiledMaxExperts / 32];
    const int e = threadIdx.x;
    const bool mine = e < a.num_experts;
    int32_t count = 0;
    if (mine) {
#pragma unroll 8
        for (int64_t t = 0; t < tiles; t++) {
            count += tile_counts[t * a.num_experts + e];
        }
    }
    int32_t kept;
    const int32_t begin = block_exclusive_scan<kTiledMaxExperts / 32>(count, warp_sums, &kept);
    if (mine) {
        a.counts[e] = count;
        a.offsets[e] = begin;
        int32_t row = begin;
#pragma unroll 8
        for (int64_t t = 0; t < tiles; t++) {
            tile_rows[t * a.num_experts + e] = row;
            row += tile_counts[t * a.num_experts + e];
        }
    }
    if (e == 0) {
        a.offsets[a.num_experts] = kept;
    }
}

/* Places tile blockIdx.x's pairs: warp w owns pairs [w * kWarpPairs, (w + 1) * kWarpPairs) of
 * the tile; its first row per expert is the tile's plus the earlier warps' counts. */
__global__ void __launch_bounds__(kTileThreads)
    tile_place_kernel(plan_args a, const int32_t* tile_rows) {
    /* A kernel launched by launch_pdl after the plan may start now: it waits for this one
     * before it reads the plan (a Hopper projection's token prepass quantizes its tokens
     * first). The three kernels release their successors at once, so that the token prepass
     * starts while the plan counts rather than when it places (count and scan were ~12 us
     * of qwen3 n = 8192's chain). */
    pdl_release();
    extern __shared__ int32_t cursor[]; /* [kTileWarps][E]: counts, then next rows */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int32_t E = a.num_experts;
    for (int j = threadIdx.x; j < kTileWarps * E; j += kTileThreads) {
        cursor[j] = 0;
    }
    __syncthreads();
    const int64_t first = (int64_t)blockIdx.x * kTilePairs + (int64_t)warp * kWarpPairs;
    int32_t mine[kRounds]; /* this lane's pairs' experts (-1: dropped or past the pairs) */
    unsigned same[kRounds];
#pragma unroll
    for (int r = 0; r < kRounds; r++) {
        const int64_t i = first + r * 32 + lane;
        mine[r] = i < a.pairs ? local_expert(a, i, false) : -1;
    }
#pragma unroll
    for (int r = 0; r < kRounds; r++) {
        same[r] = same_expert(mine[r], E);
        count_warp(mine[r], same[r], cursor + warp * E);
    }
    __syncthreads();
    pdl_wait(); /* the scan's tile_rows and offsets (the ids were complete before it launched) */
    for (int e = threadIdx.x; e < E; e += kTileThreads) {
        runs_first_rows(cursor, e, E, kTileWarps, tile_rows[blockIdx.x * (int64_t)E + e]);
    }
    __syncthreads();
    const int32_t kept = a.offsets[E];
#pragma unroll
    for (int r = 0; r < kRounds; r++) {
        const int64_t i = first + r * 32 + lane;
        place_warp(a, i, mine[r], same[r], cursor + warp * E, a.sorted);
        if (i >= kept && i < a.pairs) {
            a.sorted[i] = -1;
        }
    }
}

/* Up to 32 pairs (decode): one warp, a lane a pair, no shared memory and no barrier. Every
 * lane holds all 32 pairs' experts (shuffled once); expert e's first row is the number of kept
 * pairs with a smaller expert and its count those with e, a pair's row its expert's first row
 * plus the earlier pairs of its expert. (The one-block plan's 1024 threads and 44 KB of
 * cursors took 5.8 us for 8 pairs: Nsight, H100, qwen3 n = 1.) */
constexpr int64_t kWarpMaxPairs = 32;
__global__ void __launch_bounds__(32) plan_warp_kernel(plan_args a) {
    pdl_wait();
    pdl_release();
    const int lane = threadIdx.x;
    const int32_t mine = lane < a.pairs ? local_expert(a, lane, true) : -1;
    int32_t all[32];
    int32_t kept = 0, below = 0;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        all[j] = __shfl_sync(0xffffffffu, mine, j);
        kept += all[j] >= 0;
        below += all[j] >= 0 && all[j] < mine;
    }
    const unsigned same = same_expert(mine, a.num_experts);
    if (lane < a.pairs) {
        const int32_t row = mine >= 0 ? below + __popc(same & ((1u << lane) - 1u)) : -1;
        a.row_of[lane] = row;
        if (row >= 0) {
            a.sorted[row] = lane;
        }
        if (lane >= kept) {
            a.sorted[lane] = -1;
        }
    }
    for (int32_t e = lane; e < a.num_experts; e += 32) {
        int32_t first = 0, count = 0;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            first += all[j] >= 0 && all[j] < e;
            count += all[j] == e;
        }
        a.counts[e] = count;
        a.offsets[e] = first;
    }
    if (lane == 0) {
        a.offsets[a.num_experts] = kept;
    }
}

/* Up to kWideMaxPairs pairs (small batches): plan_wide_kernel, a block per 128 consecutive
 * pairs. Each block loads every id (4096 at most: 16 KB from L2) and counts them per expert
 * twice in shared memory, all of them and those before its own pairs; a scan of the first gives
 * the offsets, and a pair's row is its expert's offset, plus the earlier blocks' pairs of that
 * expert, plus the earlier pairs of its own block. Every block redoes the O(pairs) counting, so
 * the plan is one round of loads and a few short barriers deep, whatever the pairs. (One block
 * doing it all, its warps a segment each, took 14-15 K cycles at qwen3 n = 512: bench/NOTES.md
 * v22, v32.) */
constexpr int kWideThreads = 128, kWideWarps = kWideThreads / 32;
constexpr int64_t kWideMaxPairs = 4096;
constexpr int kWideRounds = (int)(kWideMaxPairs / kWideThreads); /* ids a thread loads */
constexpr int32_t kWideMaxExperts = 1024; /* shared memory: two counts an expert */

__global__ void __launch_bounds__(kWideThreads) plan_wide_kernel(plan_args a) {
    pdl_wait();
    pdl_release();
    /* all[e]: pairs of expert e in every block; before[e]: those in earlier blocks, then this
     * block's first row of e */
    __shared__ int32_t all[kWideMaxExperts];
    __shared__ int32_t before[kWideMaxExperts];
    __shared__ int32_t block_experts[kWideThreads];
    __shared__ int32_t warp_sums[kWideWarps];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int32_t E = a.num_experts;
    const int rounds = (int)((a.pairs + kWideThreads - 1) / kWideThreads); /* = the grid */
    /* pair r * kWideThreads + thread: block b's own pairs are round b of every thread */
    int32_t id[kWideRounds];
#pragma unroll
    for (int r = 0; r < kWideRounds; r++) {
        const int64_t i = (int64_t)r * kWideThreads + threadIdx.x;
        id[r] = r < rounds && i < a.pairs ? a.ids[i] : -1;
    }
    for (int e = threadIdx.x; e < E; e += kWideThreads) {
        all[e] = 0, before[e] = 0;
    }
    __syncthreads();
    int32_t mine = -1;
#pragma unroll
    for (int r = 0; r < kWideRounds; r++) {
        if (r < rounds) { /* uniform */
            const bool own = r == (int)blockIdx.x;
            const int32_t e = expert_of_id(a, id[r], own); /* each id reported by its block */
            if (e >= 0) { /* counts: the order of the additions does not matter */
                atomicAdd(&all[e], 1);
                if (r < (int)blockIdx.x) {
                    atomicAdd(&before[e], 1);
                }
            }
            mine = own ? e : mine;
        }
    }
    block_experts[threadIdx.x] = mine;
    __syncthreads();
    /* offsets: thread t scans experts [t * run, (t + 1) * run) */
    const int run = (E + kWideThreads - 1) / kWideThreads, e0 = threadIdx.x * run;
    int32_t sum = 0;
    for (int j = 0; j < run && e0 + j < E; j++) {
        sum += all[e0 + j];
    }
    int32_t kept;
    int32_t row = block_exclusive_scan<kWideWarps>(sum, warp_sums, &kept);
    for (int j = 0; j < run && e0 + j < E; j++) {
        const int32_t e = e0 + j, count = all[e];
        if (blockIdx.x == 0) {
            a.counts[e] = count;
            a.offsets[e] = row;
        }
        before[e] += row;
        row += count;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        a.offsets[E] = kept;
    }
    __syncthreads();
    /* this pair's row: the earlier warps' pairs of its expert, then the warp's own */
    const unsigned same = same_expert(mine, E);
    int32_t earlier = __popc(same & ((1u << lane) - 1u));
    for (int j = 0; j < 32 * warp; j++) {
        earlier += block_experts[j] == mine;
    }
    const int64_t i = (int64_t)blockIdx.x * kWideThreads + threadIdx.x;
    if (i < a.pairs) {
        const int32_t r = mine >= 0 ? before[mine] + earlier : -1;
        a.row_of[i] = r;
        if (r >= 0) {
            a.sorted[r] = (int32_t)i;
        }
        if (i >= kept) { /* rows past the kept ones; the kept rows are written above */
            a.sorted[i] = -1;
        }
    }
}

/* The tiled plan's tile_counts and tile_rows, `cells` = tiles x experts each. */
size_t tiled_scratch_bytes(int64_t cells) {
    return (size_t)(2 * cells) * sizeof(int32_t);
}

} // namespace

size_t mxmoe_plan_scratch_bytes(int64_t pairs, int64_t experts) {
    if (pairs <= kWarpMaxPairs || experts > kTiledMaxExperts) {
        return 0;
    }
    return tiled_scratch_bytes((pairs + kTilePairs - 1) / kTilePairs * experts);
}

mxmoe_status mxmoe_launch_plan(mxmoe_ctx* ctx, const plan_args* args) {
    cudaStream_t stream = cuda_stream(ctx);
    if (args->pairs <= kWarpMaxPairs) {
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, plan_warp_kernel, 1, 32, 0, *args));
        return MXMOE_OK;
    }
    if (args->pairs <= kWideMaxPairs && args->num_experts <= kWideMaxExperts) {
        const unsigned blocks = (unsigned)((args->pairs + kWideThreads - 1) / kWideThreads);
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, plan_wide_kernel, blocks, kWideThreads, 0, *args));
        return MXMOE_OK;
    }
    if (args->num_experts <= kTiledMaxExperts) {
        const int64_t tiles = (args->pairs + kTilePairs - 1) / kTilePairs;
        const int64_t cells = tiles * args->num_experts;
        void* scratch = args->scratch; /* tile_counts, then tile_rows */
        if (scratch == nullptr) {
            MXMOE_CUDA_CHECK(ctx, cudaMallocFromPoolAsync(&scratch, tiled_scratch_bytes(cells),
                                                          cuda_state(ctx)->pool, stream));
        }
        int32_t* tile_counts = static_cast<int32_t*>(scratch);
        int32_t* tile_rows = tile_counts + cells;
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, tile_count_kernel, (unsigned)tiles, kTileThreads, 0,
                                         *args, tile_counts));
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, tile_scan_kernel, 1, kTiledMaxExperts, 0, *args,
                                         (const int32_t*)tile_counts, tile_rows, tiles));
        MXMOE_CUDA_CHECK(ctx, launch_pdl(ctx, tile_place_kernel, (unsigned)tiles, kTileThreads,
                                         (size_t)kTileWarps * args->num_experts * sizeof(int32_t),
                                         *args, (const int32_t*)tile_rows));
        if (args->scratch == nullptr) {
            MXMOE_CUDA_CHECK(ctx, cudaFreeAsync(scratch, stream));
        }
        return MXMOE_OK;
    }
    count_kernel<<<(unsigned)args->num_experts, kThreads, 0, stream>>>(*args);
    MXMOE_CUDA_LAUNCHED(ctx);
    offsets_kernel<<<1, 1, 0, stream>>>(*args);
    MXMOE_CUDA_LAUNCHED(ctx);
    place_kernel<<<(unsigned)args->num_experts, kThreads, 0, stream>>>(*args);
    MXMOE_CUDA_LAUNCHED(ctx);
    finish_kernel<<<grid_for(ctx, args->pairs, kThreads), kThreads, 0, stream>>>(*args);
    MXMOE_CUDA_LAUNCHED(ctx);
    return MXMOE_OK;
}

mxmoe_status mxmoe_plan_cuda(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                             const mxmoe_tensor* expert_map, int32_t num_experts,
                             mxmoe_tensor* counts, mxmoe_tensor* offsets, mxmoe_tensor* sorted,
                             mxmoe_tensor* row_of) {
    MXMOE_CUDA_ENTER(ctx);
    plan_args a = {};
    a.ids = static_cast<const int32_t*>(topk_ids->data);
    a.pairs = mxmoe_tensor_numel(topk_ids);
    a.map = expert_map != nullptr ? static_cast<const int32_t*>(expert_map->data) : nullptr;
    a.id_limit = expert_map != nullptr ? expert_map->dims[0] : num_experts;
    a.num_experts = num_experts;
    a.counts = static_cast<int32_t*>(counts->data);
    a.offsets = static_cast<int32_t*>(offsets->data);
    a.sorted = static_cast<int32_t*>(sorted->data);
    a.row_of = static_cast<int32_t*>(row_of->data);
    a.errors = cuda_state(ctx)->errors;
    return mxmoe_launch_plan(ctx, &a);
}
