/*
 * cuda_common.cuh — what every CUDA source of the backend shares: the C headers (numerics are
 * the reference's own, compiled for the device through MXMOE_HD), the backend state, error
 * checking, and launch helpers.
 *
 * Errors: host-side CUDA failures return MXMOE_ERR_BACKEND with the call and its message.
 * Data errors found by kernels (expert ids out of range, bad offsets, too small swizzled scale
 * buffers) are never followed: the offending item is skipped, a bit is set in a device error
 * word, and mxmoe_ctx_synchronize reports it (a kernel cannot return a status without a host
 * synchronisation, which moe_forward must not do).
 */
#ifndef MXMOE_CUDA_COMMON_CUH
#define MXMOE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "core/backend.h"
#include "core/scale_layout.h"
#include "core/tensor.h"
#include "ref/mx_numerics.h"
}

/* Bits of the device error word. */
enum mxmoe_device_error : unsigned {
    MXMOE_DEVERR_EXPERT_ID = 1u,   /* a top-k id outside [-1, E_global) was dropped */
    MXMOE_DEVERR_EXPERT_MAP = 2u,  /* an expert_map entry outside [-1, E) was dropped */
    MXMOE_DEVERR_OFFSETS = 4u,     /* offsets not 0-based, decreasing or past the rows */
    MXMOE_DEVERR_SCALE_SPACE = 8u, /* a swizzled scale buffer too small for the groups */
    MXMOE_DEVERR_LOGITS = 16u,     /* a router logit was NaN or infinite */
    MXMOE_DEVERR_ROW_INDEX = 32u,  /* a permutation entry outside [0, pairs) was skipped */
};

struct mxmoe_cuda_state {
    int device;
    int sm_count;
    unsigned* errors; /* device word, see mxmoe_device_error */
    cudaEvent_t timer_start, timer_stop;
    cudaMemPool_t pool;      /* scratch of calls without a workspace (the Hopper GEMM's operands) */
    bool sm90_ready;         /* the Hopper GEMM can run here (mxmoe_grouped_gemm_sm90_init) */
    int sm90_resident[11];   /* its CTAs resident per SM at each tile width (bn_index) */
    bool skinny_ready;       /* the few-tokens GEMM's shared memory is granted (..._skinny_init) */
    bool pdl;                /* programmatic dependent launch (sm_90+; MXMOE_CUDA_PDL=0: off) */
    void* encode_tensor_map; /* the driver's cuTensorMapEncodeTiled (Hopper GEMM's TMA copies) */
    cudaStream_t capture_stream; /* where mxmoe_graph_begin records (created at its first use) */
    void* stream_before_capture; /* the caller's stream, back in place at mxmoe_graph_end */
};

static inline mxmoe_cuda_state* cuda_state(mxmoe_ctx* ctx) {
    return static_cast<mxmoe_cuda_state*>(ctx->backend_state);
}

static inline cudaStream_t cuda_stream(mxmoe_ctx* ctx) {
    return static_cast<cudaStream_t>(ctx->params.cuda_stream);
}

#define MXMOE_CUDA_CHECK(ctx, call)                                                                \
    do {                                                                                           \
        cudaError_t cuda_err_ = (call);                                                            \
        if (cuda_err_ != cudaSuccess) {                                                            \
            return mxmoe_fail((ctx), MXMOE_ERR_BACKEND, "%s failed: %s (%s:%d)", #call,            \
                              cudaGetErrorString(cuda_err_), __FILE__, __LINE__);                  \
        }                                                                                          \
    } while (0)

/* After every launch: a bad configuration or an earlier asynchronous fault shows up here. */
#define MXMOE_CUDA_LAUNCHED(ctx) MXMOE_CUDA_CHECK(ctx, cudaGetLastError())

/* Every entry point starts here: later calls may run on another thread's current device. */
#define MXMOE_CUDA_ENTER(ctx) MXMOE_CUDA_CHECK(ctx, cudaSetDevice(cuda_state(ctx)->device))

/* Grid for a grid-stride loop over n items: enough blocks to fill the GPU, never past 2^31. */
static inline unsigned grid_for(const mxmoe_ctx* ctx, int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    int64_t cap = (int64_t) static_cast<mxmoe_cuda_state*>(ctx->backend_state)->sm_count * 32;
    if (blocks > cap) {
        blocks = cap;
    }
    return blocks < 1 ? 1u : (unsigned)blocks;
}

/* Four BF16 values, two to a word (the lower element in the low half), as FP32: exact. */
static __device__ __forceinline__ float4 bf16x4_to_float4(uint2 u) {
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xFFFF0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xFFFF0000u));
}

/* Programmatic dependent launch (sm_90+): a kernel issued by launch_pdl may start while the
 * previous kernel of the stream is still running, which hides the launch latency of the short
 * kernels of a small batch. Such a kernel calls pdl_wait() first (it returns once the previous
 * kernel has finished and its writes are visible), then pdl_release() to let the next kernel
 * start early in turn. Both are no-ops for an ordinary launch and before sm_90. */
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

template <typename... Params, typename... Args>
static inline cudaError_t launch_pdl(mxmoe_ctx* ctx, void (*kernel)(Params...), dim3 grid,
                                     dim3 block, size_t smem, Args... args) {
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = cuda_stream(ctx);
    config.attrs = &attr;
    config.numAttrs = cuda_state(ctx)->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, args...);
}

#define GRID_STRIDE_LOOP(i, n)                                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* The same with one warp per item: i is uniform across the warp. */
#define WARP_GRID_STRIDE_LOOP(i, n)                                                                \
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < (n);               \
         i += ((int64_t)gridDim.x * blockDim.x) >> 5)

/* n / d and n % d of a flat index (n >= 0, d > 0): 32-bit division where both fit (a 64-bit
 * one is a ~70-instruction software routine, per element of the quantizers' loops). */
static __device__ inline void split_index(int64_t n, int64_t d, int64_t* q, int64_t* r) {
    if ((uint64_t)n <= 0xFFFFFFFFu && (uint64_t)d <= 0xFFFFFFFFu) {
        const uint32_t q32 = (uint32_t)n / (uint32_t)d;
        *q = q32;
        *r = (uint32_t)n - q32 * (uint32_t)d;
    } else {
        *q = n / d;
        *r = n % d;
    }
}

/* Rows of expert e by possibly-invalid offsets, clamped to [0, rows]; flags bad offsets. */
static __device__ inline void expert_rows(const int32_t* offsets, int64_t e, int64_t rows,
                                          int64_t* begin, int64_t* end) {
    int64_t b = offsets[e], n = offsets[e + 1];
    b = b < 0 ? 0 : (b > rows ? rows : b);
    n = n < b ? b : (n > rows ? rows : n);
    *begin = b;
    *end = n;
}

/* Byte offset of scale (r, j) of a grouped activation tensor with K = k: linear, swizzled as
 * one matrix (offsets NULL), or swizzled by expert groups (each starting a fresh 128-row atom). */
static __device__ inline int64_t grouped_scale_offset(int swizzled, const int32_t* offsets,
                                                      int64_t num_experts, int64_t rows, int64_t r,
                                                      int64_t j, int64_t k) {
    if (!swizzled) {
        return r * (k / 32) + j;
    }
    if (offsets == nullptr) {
        return mxmoe_swizzled_offset(r, j, k);
    }
    int64_t sf_row = 0;
    for (int64_t e = 0; e < num_experts; e++) {
        int64_t b, n;
        expert_rows(offsets, e, rows, &b, &n);
        if (r >= b && r < n) {
            return sf_row * mxmoe_swizzled_cols(k) + mxmoe_swizzled_offset(r - b, j, k);
        }
        sf_row += (n - b + 127) / 128 * 128;
    }
    return -1;
}

/* Bytes of grouped swizzled scales the offsets need (sum of 128-row atoms x columns). */
static __device__ inline int64_t grouped_scale_bytes(const int32_t* offsets, int64_t num_experts,
                                                     int64_t rows, int64_t k) {
    int64_t sf_rows = 0;
    for (int64_t e = 0; e < num_experts; e++) {
        int64_t b, n;
        expert_rows(offsets, e, rows, &b, &n);
        sf_rows += (n - b + 127) / 128 * 128;
    }
    return sf_rows * mxmoe_swizzled_cols(k);
}

/* Flags offsets that are not 0-based, nondecreasing and within `rows`: run by one whole block,
 * inside the kernel that first reads them or (check_offsets_kernel) on its own. */
static __device__ inline void check_offsets_block(const int32_t* offsets, int64_t num_experts,
                                                  int64_t rows, unsigned* errors) {
    bool bad = threadIdx.x == 0 && (offsets[0] != 0 || offsets[num_experts] > rows);
    for (int64_t e = threadIdx.x; e < num_experts; e += blockDim.x) {
        bad = bad || offsets[e + 1] < offsets[e];
    }
    if (bad) {
        atomicOr(errors, MXMOE_DEVERR_OFFSETS);
    }
}

__global__ void check_offsets_kernel(const int32_t* offsets, int64_t num_experts, int64_t rows,
                                     unsigned* errors);

#endif /* MXMOE_CUDA_COMMON_CUH */
