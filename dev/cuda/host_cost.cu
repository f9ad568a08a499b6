/*
 * host_cost.cu — lab: the host's time to issue one call, for the library's grouped projection
 * at decode sizes and for the bare CUDA runtime calls it is made of, so that an eager call's
 * host cost can be split into what CUDA charges and what mxmoe adds. Each line: the mean over
 * many back-to-back calls with no waiting (the queue stays far from full).
 *   nvcc -O2 -Iinclude dev/cuda/host_cost.cu -Lbuild-gpu -lmxmoe -o /tmp/host_cost
 *   LD_LIBRARY_PATH=build-gpu /tmp/host_cost
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mxmoe.h"

__global__ void empty_kernel(int) {}

static double now_us() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

#define TIME(label, iters, ...)                                                                   \
    do {                                                                                           \
        for (int i_ = 0; i_ < 50; i_++) {                                                          \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
        cudaDeviceSynchronize();                                                                   \
        const double t0_ = now_us();                                                               \
        for (int i_ = 0; i_ < (iters); i_++) {                                                     \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
        const double t1_ = now_us();                                                               \
        cudaDeviceSynchronize();                                                                   \
        printf("%-58s %8.2f us\n", label, (t1_ - t0_) / (iters));                                  \
    } while (0)

static void* dev_random(size_t bytes, unsigned seed, int lo, int hi) {
    uint8_t* h = (uint8_t*)malloc(bytes);
    for (size_t i = 0; i < bytes; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = hi > lo ? (uint8_t)(lo + (seed >> 24) % (unsigned)(hi - lo)) : (uint8_t)(seed >> 24);
    }
    void* d = nullptr;
    cudaMalloc(&d, bytes);
    cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    free(h);
    return d;
}

/* One grouped projection point: E experts, top-k, N x K, T tokens. */
static void projection(mxmoe_ctx* ctx, const char* name, int64_t E, int64_t k, int64_t N,
                       int64_t K, int64_t T, int iters) {
    int32_t* ids_h = (int32_t*)malloc(T * k * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++)
            ids_h[t * k + j] = (int32_t)((t * 7 + j * (E / k)) % E);
    int32_t* ids_d = nullptr;
    cudaMalloc(&ids_d, T * k * 4);
    cudaMemcpy(ids_d, ids_h, T * k * 4, cudaMemcpyHostToDevice);
    void* x_d = dev_random((size_t)(T * K * 2), 1, 0x38, 0x3f); /* BF16 high bytes ~1 */
    void* wp = dev_random((size_t)(E * N * K / 2), 2, 0, 0);
    void* ws = dev_random((size_t)(E * N * K / 32), 3, 118, 124);
    void* o_d = nullptr;
    cudaMalloc(&o_d, (size_t)(T * k * N * 2));
    const int64_t xd[2] = {T, K}, id[2] = {T, k}, pd[3] = {E, N, K / 2}, sd[3] = {E, N, K / 32},
                  od[2] = {T * k, N};
    mxmoe_tensor x = mxmoe_tensor_make(x_d, MXMOE_BF16, 2, xd);
    mxmoe_tensor ids = mxmoe_tensor_make(ids_d, MXMOE_I32, 2, id);
    mxmoe_tensor out = mxmoe_tensor_make(o_d, MXMOE_BF16, 2, od);
    x.device = ids.device = out.device = MXMOE_DEVICE_CUDA;
    mxmoe_mx_tensor w;
    w.packed = mxmoe_tensor_make(wp, MXMOE_U8, 3, pd);
    w.scales = mxmoe_tensor_make(ws, MXMOE_U8, 3, sd);
    w.packed.device = w.scales.device = MXMOE_DEVICE_CUDA;
    w.scale_layout = MXMOE_SCALES_LINEAR;
    mxmoe_status st = mxmoe_grouped_projection(ctx, &x, &ids, NULL, &w, NULL, MXMOE_RULE_EVEN, &out);
    if (st != MXMOE_OK) {
        printf("%s: %s\n", name, mxmoe_ctx_last_error(ctx));
        return;
    }
    char label[128];
    snprintf(label, sizeof label, "mxmoe_grouped_projection %s n=%lld", name, (long long)T);
    TIME(label, iters,
         mxmoe_grouped_projection(ctx, &x, &ids, NULL, &w, NULL, MXMOE_RULE_EVEN, &out));
    snprintf(label, sizeof label, "  + timer_start before it");
    TIME(label, iters, (mxmoe_timer_start(ctx), mxmoe_grouped_projection(ctx, &x, &ids, NULL, &w,
                                                                         NULL, MXMOE_RULE_EVEN, &out)));
    cudaFree(ids_d), cudaFree(x_d), cudaFree(wp), cudaFree(ws), cudaFree(o_d);
    free(ids_h);
}

int main() {
    const char* volatile sink = nullptr;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaEvent_t ev;
    cudaEventCreate(&ev);
    cudaMemPool_t pool;
    cudaDeviceGetDefaultMemPool(&pool, 0);
    TIME("empty kernel <<<1, 32>>>", 2000, empty_kernel<<<1, 32, 0, s>>>(0));
    TIME("empty kernel <<<180, 128, 40 KB smem>>>", 2000, empty_kernel<<<180, 128, 0, s>>>(0));
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(180), cfg.blockDim = dim3(128), cfg.stream = s, cfg.attrs = &attr,
    cfg.numAttrs = 1;
    TIME("empty kernel, cudaLaunchKernelEx + PDL", 2000, cudaLaunchKernelEx(&cfg, empty_kernel, 0));
    TIME("cudaEventRecord", 2000, cudaEventRecord(ev, s));
    TIME("cudaSetDevice(0)", 2000, cudaSetDevice(0));
    TIME("cudaGetLastError", 2000, cudaGetLastError());
    void* p = nullptr;
    TIME("cudaMallocFromPoolAsync + cudaFreeAsync (64 KB)", 2000,
         (cudaMallocFromPoolAsync(&p, 65536, pool, s), cudaFreeAsync(p, s)));
    TIME("getenv", 2000, sink = getenv("MXMOE_CUDA_GEMM"));

    mxmoe_ctx_params prm = mxmoe_ctx_params_default();
    prm.backend = MXMOE_BACKEND_CUDA;
    prm.cuda_stream = s;
    mxmoe_ctx* ctx = nullptr;
    if (mxmoe_ctx_init(&ctx, &prm) != MXMOE_OK) {
        printf("ctx: failed\n");
        return 1;
    }
    projection(ctx, "qwen3-30b-a3b", 128, 8, 768, 2048, 1, 1000);
    projection(ctx, "qwen3-30b-a3b", 128, 8, 768, 2048, 8, 500);
    projection(ctx, "gpt-oss-20b", 32, 4, 2880, 2880, 8, 300);
    projection(ctx, "deepseek-v3", 256, 8, 2048, 7168, 8, 200);
    projection(ctx, "qwen3-30b-a3b", 128, 8, 768, 2048, 512, 200);
    mxmoe_ctx_free(ctx);
    return 0;
}
