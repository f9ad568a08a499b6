/*
 * tma_rate.cu — lab: how fast does a ring of TMA boxes stream a weight-like tensor from DRAM into
 * shared memory, by box shape, with nothing else in the kernel? The sm_90a GEMM copies each
 * chunk's weights as a box of 64-byte rows (tile_n rows x 64 packed bytes, the rows 1-3.5 KB
 * apart), and at n <= 512 streams them at 2.2-3.5 TB/s against a 4.2 TB/s copy (bench/NOTES.md
 * v37); this measures whether the box's row length alone caps the stream (v38: it does not: 64-byte
 * rows stream at ~4.28 TB/s on an H200; the stage's other boxes take that to ~3.7-3.9).
 *
 * The tensor: `rows` rows of `pitch` bytes (deepseek-v3's K / 2 = 3584 by default), over 1.8 GB,
 * far more than L2. A tile is `box_rows` rows over the whole pitch; tiles go round-robin over the
 * CTAs (2 an SM, as the narrow tiles run), each walking its tile along the row in boxes of
 * `box_bytes` x `box_rows` through a ring of stages (64 KB of weight boxes a CTA) fed by one
 * thread; one consumer warp waits for each stage and releases it at once. Reported: GB/s read,
 * median of 9.
 *
 * With the GEMM's other boxes (the last rows): each stage also copies what a narrow tile's stage
 * holds beside its weights, as up to three more TMA copies from small L2-resident tensors: the
 * rows' scale words (one row of box_rows words), 16 activation rows of 128 bytes, and two rows of
 * 20 factors; only the weights' bytes count in GB/s.
 *
 * Build and run on the device (argument: the pitch in bytes):
 *
 *   nvcc -O3 -std=c++17 -arch=sm_90a -Isrc dev/cuda/tma_rate.cu -o /tmp/tma_rate -lcuda
 *   /tmp/tma_rate 3584 && /tmp/tma_rate 1024
 */
#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda/sm90_ptx.cuh"

constexpr int kRingBytes = 64 * 1024, kMaxStages = 32, kExtraBytes = 4096;

struct ring_args {
    int tiles, boxes_per_tile, box_bytes, box_rows, stages, extras;
};

/* The small tensors of the GEMM's other boxes: scale words, activation rows, factors. */
struct extra_maps {
    CUtensorMap words, act, factors;
};

__global__ void __launch_bounds__(64, 2)
    stream_kernel(ring_args a, const __grid_constant__ CUtensorMap map,
                  const __grid_constant__ extra_maps x) {
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    __shared__ uint64_t full[kMaxStages], empty[kMaxStages];
    uint8_t* ring = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    const int box = a.box_bytes * a.box_rows, stage_bytes = box + (a.extras ? kExtraBytes : 0);
    if (threadIdx.x < a.stages) {
        mbar_init(&full[threadIdx.x], 1);
        mbar_init(&empty[threadIdx.x], 1);
    }
    __syncthreads();
    int chunks = 0;
    for (int t = blockIdx.x; t < a.tiles; t += gridDim.x) {
        chunks += a.boxes_per_tile;
    }
    if (threadIdx.x == 0) { /* the producer */
        int s = 0, phase = 0, g = 0;
        for (int t = blockIdx.x; t < a.tiles; t += gridDim.x) {
            for (int b = 0; b < a.boxes_per_tile; b++, g++) {
                if (g >= a.stages) {
                    mbar_wait(&empty[s], phase ^ 1);
                }
                uint8_t* st = ring + s * stage_bytes;
                mbar_arrive_expect_tx(&full[s], box + (a.extras & 1 ? 4 * a.box_rows : 0) +
                                                    (a.extras & 2 ? 2048 : 0) +
                                                    (a.extras & 4 ? 160 : 0));
                tma_load_2d(st, &map, b * a.box_bytes, t * a.box_rows, &full[s]);
                /* words [chunk][row], act rows [row][128], factors [chunk][20] */
                if (a.extras & 1) {
                    tma_load_2d(st + box, &x.words, (t % 64) * a.box_rows, b % 64, &full[s]);
                }
                if (a.extras & 2) {
                    tma_load_2d(st + box + 1024, &x.act, b % 64 * 128, (t % 64) * 16, &full[s]);
                }
                if (a.extras & 4) {
                    tma_load_2d(st + box + 3072, &x.factors, 0, b % 64 * 2, &full[s]);
                }
                if (++s == a.stages) {
                    s = 0, phase ^= 1;
                }
            }
        }
    } else if (threadIdx.x == 32) { /* the consumer */
        int s = 0, phase = 0;
        for (int g = 0; g < chunks; g++) {
            mbar_wait(&full[s], phase);
            mbar_arrive(&empty[s]);
            if (++s == a.stages) {
                s = 0, phase ^= 1;
            }
        }
    }
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char** argv) {
    const int pitch = argc > 1 ? atoi(argv[1]) : 3584;
    const int rows = (int)((1800LL << 20) / pitch) / 256 * 256;
    uint8_t* data = nullptr;
    CHECK(cudaMalloc(&data, (size_t)rows * pitch));
    CHECK(cudaMemset(data, 0x5A, (size_t)rows * pitch));
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found;
    CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                           &found));
    auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaFuncSetAttribute(stream_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               kRingBytes + 8 * kExtraBytes + 1024));
    /* the other boxes' tensors: words [64 chunks][64 * 256 rows] u32, act [1024 rows][8192] u8,
     * factors [128][32] u32 (all L2-resident) */
    uint8_t* small = nullptr;
    CHECK(cudaMalloc(&small, 16u << 20));
    CHECK(cudaMemset(small, 0x3C, 16u << 20));
    extra_maps x;
    /* a 2-D map of `outer` rows of `inner` entries, `row_bytes` apart, in boxes (every map here) */
    auto encode2d = [&](CUtensorMap* m, void* base, CUtensorMapDataType type, uint64_t inner,
                        uint64_t outer, uint64_t row_bytes, uint32_t box_inner,
                        uint32_t box_outer) {
        const cuuint64_t d[2] = {inner, outer}, st[1] = {row_bytes};
        const cuuint32_t b[2] = {box_inner, box_outer}, e[2] = {1, 1};
        return encode(m, type, 2, base, d, st, b, e, CU_TENSOR_MAP_INTERLEAVE_NONE,
                      CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
    };
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    printf("pitch %d B, %d rows (%.2f GB), %d CTAs, %d KB ring a CTA\n", pitch, rows,
           (double)rows * pitch / 1e9, 2 * sms, kRingBytes / 1024);
    const int shapes[][3] = {{64, 128, 0}, {128, 64, 0}, {256, 32, 0}, {64, 256, 0}, {128, 128, 0},
                             {256, 64, 0}, {64, 64, 0},  {128, 32, 0}, {32, 256, 0}, {64, 128, 7},
                             {64, 192, 7}, {128, 64, 7}, {64, 128, 1}, {64, 128, 2}, {64, 128, 4},
                             {64, 128, 3}, {128, 128, 7}};
    for (const auto& shape : shapes) {
        const int box_bytes = shape[0], box_rows = shape[1], extras = shape[2];
        if (extras && !(encode2d(&x.words, small, CU_TENSOR_MAP_DATA_TYPE_UINT32, 64 * 256, 64,
                                 64 * 256 * 4, box_rows, 1) &&
                        encode2d(&x.act, small + (4 << 20), CU_TENSOR_MAP_DATA_TYPE_UINT8, 8192,
                                 1024, 8192, 128, 16) &&
                        encode2d(&x.factors, small + (12 << 20), CU_TENSOR_MAP_DATA_TYPE_UINT32, 32,
                                 128, 128, 20, 2))) {
            printf("extra maps refused\n");
            return 1;
        }
        CUtensorMap map;
        if (!encode2d(&map, data, CU_TENSOR_MAP_DATA_TYPE_UINT8, pitch, rows, pitch, box_bytes,
                      box_rows)) {
            printf("box %d x %d: refused\n", box_bytes, box_rows);
            continue;
        }
        ring_args a;
        a.box_bytes = box_bytes;
        a.box_rows = box_rows;
        a.tiles = rows / box_rows;
        a.boxes_per_tile = pitch / box_bytes;
        a.extras = extras;
        a.stages = std::min(kMaxStages, kRingBytes / (box_bytes * box_rows));
        const int smem = a.stages * (box_bytes * box_rows + (extras ? kExtraBytes : 0)) + 1024;
        std::vector<float> ms;
        for (int rep = 0; rep < 10; rep++) {
            CHECK(cudaEventRecord(e0));
            stream_kernel<<<2 * sms, 64, smem>>>(a, map, x);
            CHECK(cudaEventRecord(e1));
            CHECK(cudaEventSynchronize(e1));
            float t = 0;
            CHECK(cudaEventElapsedTime(&t, e0, e1));
            if (rep > 0) {
                ms.push_back(t);
            }
        }
        CHECK(cudaGetLastError());
        std::sort(ms.begin(), ms.end());
        const double bytes = (double)a.tiles * box_rows * (double)(a.boxes_per_tile * box_bytes);
        printf("box %3d B x %3d rows (%5d B, %2d stages)%s%s%s: %7.1f GB/s\n", box_bytes, box_rows,
               box_bytes * box_rows, a.stages, extras & 1 ? " + words" : "",
               extras & 2 ? " + act rows" : "", extras & 4 ? " + factors" : "",
               bytes / (ms[ms.size() / 2] * 1e-3) / 1e9);
    }
    return 0;
}
