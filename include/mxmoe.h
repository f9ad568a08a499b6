/*
 * mxmoe.h — the whole public API of libmxmoe: MXFP4 W4A4 Mixture-of-Experts inference.
 *
 * MXFP4 (OCP Microscaling): FP4 E2M1 elements with one E8M0 power-of-two scale per 32
 * consecutive elements along the reduction dimension K. Both the expert weights and the
 * activations are MXFP4 ("W4A4").
 *
 * Conventions, once for the whole header:
 *   - Dimensions are listed outermost first (PyTorch order). Tensors are dense and row-major:
 *     the last dimension is contiguous. A shape written `[T, H]` means dims = {T, H}.
 *   - Every fallible call returns `mxmoe_status`. On any error the call writes nothing to its
 *     outputs, and `mxmoe_ctx_last_error(ctx)` holds a readable message. The library never
 *     prints (unless a log callback is set), never exits, never aborts on bad input.
 *     On the CUDA backend calls are asynchronous: what only the data can tell (expert ids out of
 *     range, invalid offsets) is found on the device, the offending items are skipped, never
 *     followed, and mxmoe_ctx_synchronize reports it.
 *   - A context is used by one thread at a time. Distinct contexts are independent.
 *   - Pointers in tensors live where the context's backend computes: host memory for the CPU
 *     backend, device memory for the CUDA backend (`device` field says which).
 *   - MXFP4 numerics (SPEC §2): E2M1 code bit 3 = sign, bits 2..0 index
 *     {0, 0.5, 1, 1.5, 2, 3, 4, 6}; E8M0 byte b means 2^(b-127), 0xFF = NaN. A row of K
 *     elements is packed into K/2 bytes, element 2i in the low nibble of byte i; its scales are
 *     K/32 bytes. K must be a multiple of 32.
 */
#ifndef MXMOE_H
#define MXMOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MXMOE_API
#else
#define MXMOE_API __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 */
#define MXMOE_VERSION_MAJOR 0
#define MXMOE_VERSION_MINOR 3
#define MXMOE_VERSION_PATCH 0
#define MXMOE_VERSION_NUMBER                                                                       \
    (MXMOE_VERSION_MAJOR * 10000 + MXMOE_VERSION_MINOR * 100 + MXMOE_VERSION_PATCH)
/* Version of the packed MXFP4 layout (nibble order, scale layouts). Bumped when it changes. */
#define MXMOE_FORMAT_VERSION 1

/* Elements per MX block along K, and bytes a block's elements pack into. */
#define MXMOE_BLOCK    32
#define MXMOE_MAX_DIMS 4

MXMOE_API unsigned mxmoe_version_number(void);
MXMOE_API const char* mxmoe_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes (values are only ever appended)
 */
typedef enum mxmoe_status {
    MXMOE_OK = 0,
    MXMOE_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad enum value, bad parameter */
    MXMOE_ERR_DTYPE = 2,            /* a tensor has a dtype this call does not accept */
    MXMOE_ERR_SHAPE = 3,            /* rank or dimensions inconsistent, K not a multiple of 32 */
    MXMOE_ERR_OVERFLOW = 4,         /* a size computation overflows */
    MXMOE_ERR_OUT_OF_RANGE = 5,     /* an expert id or offset is out of range */
    MXMOE_ERR_WORKSPACE = 6,        /* workspace missing or too small */
    MXMOE_ERR_UNSUPPORTED = 7,      /* valid request this backend or build cannot serve */
    MXMOE_ERR_NO_MEMORY = 8,        /* an allocation failed */
    MXMOE_ERR_BACKEND = 9,          /* the backend's runtime failed (e.g. a CUDA error) */
    MXMOE_ERR_IO = 10,              /* a file could not be read or written */
    MXMOE_ERR_FORMAT = 11,          /* a file's content is malformed */
    MXMOE_STATUS_COUNT
} mxmoe_status;

/* A static, human-readable name for a status code ("invalid argument", ...). Never NULL. */
MXMOE_API const char* mxmoe_status_string(mxmoe_status status);

/* ---------------------------------------------------------------------------------------------
 * Types
 */
typedef enum mxmoe_dtype {
    MXMOE_F32 = 0,
    MXMOE_BF16 = 1,
    MXMOE_F16 = 2,
    MXMOE_U8 = 3,
    MXMOE_I32 = 4,
    MXMOE_DTYPE_COUNT
} mxmoe_dtype;

typedef enum mxmoe_device {
    MXMOE_DEVICE_HOST = 0,
    MXMOE_DEVICE_CUDA = 1,
    MXMOE_DEVICE_COUNT
} mxmoe_device;

/* A caller-owned, dense, row-major tensor. The library never frees `data`. */
typedef struct mxmoe_tensor {
    void* data;
    mxmoe_dtype dtype;
    mxmoe_device device;
    int32_t ndim;                 /* 1..MXMOE_MAX_DIMS */
    int64_t dims[MXMOE_MAX_DIMS]; /* outermost first */
} mxmoe_tensor;

/* Builds a host tensor descriptor; dims beyond ndim are set to 1. */
MXMOE_API mxmoe_tensor mxmoe_tensor_make(void* data, mxmoe_dtype dtype, int32_t ndim,
                                         const int64_t* dims);
/* Element count (product of dims), or -1 if the descriptor is invalid or the product overflows. */
MXMOE_API int64_t mxmoe_tensor_numel(const mxmoe_tensor* t);
/* Bytes of one element of `dtype`, 0 for an invalid dtype. */
MXMOE_API size_t mxmoe_dtype_size(mxmoe_dtype dtype);
MXMOE_API const char* mxmoe_dtype_name(mxmoe_dtype dtype);

/* Where an MXFP4 tensor's scale bytes are. */
typedef enum mxmoe_scale_layout {
    /* Row-major [rows, K/32]: scale (r, j) at byte r*K/32 + j. */
    MXMOE_SCALES_LINEAR = 0,
    /* The NVIDIA block-scaled MMA layout (SPEC §3): 512-byte atoms of 128 rows x 4 scale
     * columns, offset(r, j) = ((r/128)*ceil(Kb/4) + j/4)*512 + (r%32)*16 + ((r/32)%4)*4 + j%4,
     * Kb = K/32; rows padded to a multiple of 128, columns to a multiple of 4, padding = 0x00.
     * For grouped (per-expert) data every expert starts a fresh 128-row atom: expert e's atoms
     * begin at row sum_{e'<e} round_up(m_e', 128). */
    MXMOE_SCALES_SWIZZLED = 1,
    MXMOE_SCALE_LAYOUT_COUNT
} mxmoe_scale_layout;

/* An MXFP4 tensor of logical shape [..., K]: `packed` is U8 [..., K/2] and `scales` is U8
 * [..., K/32] for the linear layout, or U8 [bytes] (1-D) for the swizzled layout. */
typedef struct mxmoe_mx_tensor {
    mxmoe_tensor packed;
    mxmoe_tensor scales;
    mxmoe_scale_layout scale_layout;
} mxmoe_mx_tensor;

/* How a block's E8M0 scale exponent is chosen from amax = max |x| (SPEC §2). All are exact
 * bit arithmetic; the exponent is clamped to [-127, 127]. */
typedef enum mxmoe_scale_rule {
    MXMOE_RULE_EVEN = 0,  /* e(round_up_at_1.75(amax)) - 2: compressed-tensors, vLLM, Quark */
    MXMOE_RULE_FLOOR = 1, /* e(amax) - 2: OCP MX v1.0, microxcaling, torchao default */
    MXMOE_RULE_CEIL = 2,  /* ceil(log2 amax) - 2: torchao CEIL */
    MXMOE_RULE_RCEIL = 3, /* ceil(log2(amax / 6)): cuBLAS, triton_kernels (gpt-oss) */
    MXMOE_RULE_COUNT
} mxmoe_scale_rule;

MXMOE_API const char* mxmoe_scale_rule_name(mxmoe_scale_rule rule);

/* ---------------------------------------------------------------------------------------------
 * Context and backends
 */
typedef enum mxmoe_backend {
    MXMOE_BACKEND_AUTO = 0, /* CUDA if a usable GPU is present, else CPU */
    MXMOE_BACKEND_CPU = 1,
    MXMOE_BACKEND_CUDA = 2,
    MXMOE_BACKEND_COUNT
} mxmoe_backend;

typedef enum mxmoe_log_level {
    MXMOE_LOG_ERROR = 0,
    MXMOE_LOG_WARN = 1,
    MXMOE_LOG_INFO = 2,
    MXMOE_LOG_DEBUG = 3
} mxmoe_log_level;

typedef void (*mxmoe_log_fn)(mxmoe_log_level level, const char* message, void* user_data);

typedef struct mxmoe_ctx_params {
    /* AUTO honours the environment variable MXMOE_BACKEND=auto|cpu|cuda (any other value makes
     * mxmoe_ctx_init fail with INVALID_ARGUMENT); an explicit value here wins. */
    mxmoe_backend backend;
    int32_t num_threads; /* CPU threads; 0 = all cores */
    int32_t cuda_device; /* CUDA device ordinal */
    void* cuda_stream;   /* cudaStream_t every call is issued on; NULL = the default stream */
    mxmoe_log_fn log;    /* optional: receives every error message and, by level, more */
    void* log_user_data;
    mxmoe_log_level log_level;
} mxmoe_ctx_params;

typedef struct mxmoe_ctx mxmoe_ctx;

MXMOE_API mxmoe_ctx_params mxmoe_ctx_params_default(void);
/* Creates a context. Fails with UNSUPPORTED if the requested backend is not built or has no
 * usable device. On any failure `*out` is set to NULL. */
MXMOE_API mxmoe_status mxmoe_ctx_init(mxmoe_ctx** out, const mxmoe_ctx_params* params);
MXMOE_API void mxmoe_ctx_free(mxmoe_ctx* ctx); /* NULL is a no-op */
MXMOE_API mxmoe_backend mxmoe_ctx_backend(const mxmoe_ctx* ctx);
/* One line describing the backend in use (e.g. "cpu (scalar reference)"). */
MXMOE_API const char* mxmoe_ctx_backend_detail(const mxmoe_ctx* ctx);
/* The message of the most recent call on this context: "" if it succeeded (every call resets
 * it). Valid until the next call. */
MXMOE_API const char* mxmoe_ctx_last_error(const mxmoe_ctx* ctx);
/* Changes the CUDA stream later calls are issued on (ignored by the CPU backend). */
MXMOE_API mxmoe_status mxmoe_ctx_set_stream(mxmoe_ctx* ctx, void* cuda_stream);
/* Waits for all work issued on the context's stream (no-op on the CPU). On the CUDA backend it
 * also reports, as OUT_OF_RANGE, bad data the device skipped since the last synchronize. */
MXMOE_API mxmoe_status mxmoe_ctx_synchronize(mxmoe_ctx* ctx);

/* Memory where the context's backend computes (host memory for the CPU backend, device memory
 * for CUDA), for callers and tools that hold no CUDA headers. */
MXMOE_API mxmoe_status mxmoe_malloc(mxmoe_ctx* ctx, size_t bytes, void** ptr);
MXMOE_API void mxmoe_free(mxmoe_ctx* ctx, void* ptr); /* NULL is a no-op */

typedef enum mxmoe_copy_kind {
    MXMOE_COPY_HOST_TO_BACKEND = 0,
    MXMOE_COPY_BACKEND_TO_HOST = 1,
    MXMOE_COPY_BACKEND_TO_BACKEND = 2,
    MXMOE_COPY_KIND_COUNT
} mxmoe_copy_kind;

/* Copies `bytes` bytes; ordered after earlier work on the context's stream, and complete when
 * it returns. */
MXMOE_API mxmoe_status mxmoe_memcpy(mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                                    mxmoe_copy_kind kind);

/* A stream-ordered stopwatch for benchmarks: start marks the stream, stop marks it again,
 * waits, and returns the microseconds between the marks (CUDA events on the GPU, a monotonic
 * clock on the CPU). */
MXMOE_API mxmoe_status mxmoe_timer_start(mxmoe_ctx* ctx);
MXMOE_API mxmoe_status mxmoe_timer_stop(mxmoe_ctx* ctx, double* microseconds);

/* Recording calls for replay (CUDA graphs; UNSUPPORTED on the CPU backend). Between
 * mxmoe_graph_begin and mxmoe_graph_end the context's operations are recorded, not run: each
 * call validates its arguments as always, and the work it would issue becomes part of the
 * graph. mxmoe_graph_replay issues the whole recording on the context's stream as one launch,
 * without the host cost of each call's launches — how serving engines run small batches.
 * A replay reads and writes the very buffers the recorded calls named, with the data they hold
 * when it runs: those buffers (and prepared weights' derived data) must outlive the graph.
 * While recording, calls that wait or copy (memcpy, synchronize, timer, malloc/free,
 * weights_prepare/unprepare, set_stream, replay) fail with INVALID_ARGUMENT. If any call fails
 * while recording, mxmoe_graph_end still ends the recording, builds no graph and reports the
 * first failure, so a graph never silently lacks a call. mxmoe_moe_forward, mxmoe_plan, the
 * quantizers and mxmoe_grouped_gemm can all be recorded. */
typedef struct mxmoe_graph mxmoe_graph;
MXMOE_API mxmoe_status mxmoe_graph_begin(mxmoe_ctx* ctx);
/* Ends the recording; on success *out is a graph to replay (else NULL). */
MXMOE_API mxmoe_status mxmoe_graph_end(mxmoe_ctx* ctx, mxmoe_graph** out);
MXMOE_API mxmoe_status mxmoe_graph_replay(mxmoe_ctx* ctx, const mxmoe_graph* graph);
/* Frees a graph (NULL is a no-op); free graphs before their context. */
MXMOE_API void mxmoe_graph_free(mxmoe_ctx* ctx, mxmoe_graph* graph);

MXMOE_API const char* mxmoe_backend_name(mxmoe_backend backend);
/* 1 if the backend was compiled in (CUDA: and a device is visible), else 0. */
MXMOE_API int mxmoe_backend_available(mxmoe_backend backend);
/* 1 if the backend was compiled into this build, whether or not a device is present. */
MXMOE_API int mxmoe_backend_compiled(mxmoe_backend backend);

/* ---------------------------------------------------------------------------------------------
 * 1. Quantization of rows
 */

/* x: F32/BF16/F16 [..., K] -> out: MXFP4 [..., K] with linear scales (SPEC §2: per block of 32,
 * scale from `rule`, elements x*2^-s rounded to nearest E2M1, ties to even, saturating at ±6;
 * an all-zero block gets scale 0x00; a block with NaN/Inf gets scale 0xFF and codes 0).
 * Errors: SHAPE if K % 32 != 0 or the leading dims of out differ from x's. */
MXMOE_API mxmoe_status mxmoe_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x, mxmoe_scale_rule rule,
                                      mxmoe_mx_tensor* out);

/* The inverse: in: MXFP4 [..., K] (linear scales) -> out: F32/BF16/F16 [..., K], value =
 * e2m1(code) * 2^(scale-127) rounded once to out's dtype (RNE); scale 0xFF gives NaN. */
MXMOE_API mxmoe_status mxmoe_dequantize(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in,
                                        mxmoe_tensor* out);

/* GGUF `block_mxfp4` (17 bytes per 32 elements: scale, then qs[16] with element j in the low
 * nibble and j+16 in the high nibble of qs[j]) <-> canonical MXFP4. gguf: U8 [..., K/32*17]. */
MXMOE_API mxmoe_status mxmoe_gguf_from_mx(mxmoe_ctx* ctx, const mxmoe_mx_tensor* in,
                                          mxmoe_tensor* gguf);
MXMOE_API mxmoe_status mxmoe_mx_from_gguf(mxmoe_ctx* ctx, const mxmoe_tensor* gguf,
                                          mxmoe_mx_tensor* out);

/* ---------------------------------------------------------------------------------------------
 * 2. Scale layouts
 */

/* Bytes of a swizzled scale buffer for one matrix of `rows` rows and K columns of elements:
 * round_up(rows, 128) * 4 * ceil(K/128). Returns 0 on overflow or bad arguments. */
MXMOE_API size_t mxmoe_swizzled_scale_bytes(int64_t rows, int64_t k);
/* Upper bound of the swizzled scale bytes of `rows` rows split over `num_experts` groups, each
 * starting a fresh 128-row atom: (rows + 127*num_experts) rounded up to 128, times 4*ceil(K/128).
 */
MXMOE_API size_t mxmoe_grouped_swizzled_scale_bytes(int64_t rows, int64_t num_experts, int64_t k);

/* linear: U8 [R, K/32] <-> swizzled: U8 [mxmoe_swizzled_scale_bytes(R, K)], padding written 0.
 * `k` is the element count K (a multiple of 32). */
MXMOE_API mxmoe_status mxmoe_swizzle_scales(mxmoe_ctx* ctx, const mxmoe_tensor* linear, int64_t k,
                                            mxmoe_tensor* swizzled);
MXMOE_API mxmoe_status mxmoe_unswizzle_scales(mxmoe_ctx* ctx, const mxmoe_tensor* swizzled,
                                              int64_t k, mxmoe_tensor* linear);

/* ---------------------------------------------------------------------------------------------
 * 3. Routing and planning
 */
typedef enum mxmoe_routing {
    /* softmax over all E logits (FP64, weights rounded once to FP32), then top-k; weights
     * optionally renormalised to sum 1
     * (Mixtral always, Qwen3-MoE with norm_topk_prob). */
    MXMOE_ROUTE_SOFTMAX_TOPK = 0,
    /* top-k of the raw logits, then softmax over the k selected (gpt-oss). */
    MXMOE_ROUTE_TOPK_SOFTMAX = 1,
    /* DeepSeek-V3: s = sigmoid(logit); choose with s + correction_bias: groups of E/num_groups
     * experts scored by the sum of their top-2 biased scores (the one score of a one-expert
     * group), keep topk_groups groups, top-k experts inside them (top_k must not exceed the
     * experts of the kept groups); weights = unbiased s of the chosen, optionally divided by
     * (their sum + 1e-20), times scaling_factor. */
    MXMOE_ROUTE_SIGMOID_GROUPED = 2,
    MXMOE_ROUTING_COUNT
} mxmoe_routing;

typedef struct mxmoe_route_params {
    mxmoe_routing method;
    int32_t top_k;
    int32_t renormalize;  /* SOFTMAX_TOPK and SIGMOID_GROUPED: divide by the sum */
    int32_t num_groups;   /* SIGMOID_GROUPED: E % num_groups == 0 (1 = no grouping) */
    int32_t topk_groups;  /* SIGMOID_GROUPED: groups kept, 1..num_groups */
    float scaling_factor; /* SIGMOID_GROUPED: routed_scaling_factor (1 = none) */
    const mxmoe_tensor* correction_bias; /* SIGMOID_GROUPED: optional F32 [E] */
} mxmoe_route_params;

MXMOE_API mxmoe_route_params mxmoe_route_params_default(void);

/* logits: F32/BF16/F16 [T, E] -> topk_ids: I32 [T, k], topk_weights: F32 [T, k].
 * Experts are listed in selection order: descending selection score, ties to the lower expert
 * id. NaN logits are an error (OUT_OF_RANGE names the token). */
MXMOE_API mxmoe_status mxmoe_route(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                                   const mxmoe_route_params* params, mxmoe_tensor* topk_ids,
                                   mxmoe_tensor* topk_weights);

/* The grouping of T*k (token, slot) pairs by expert, flat index i = t*k + j.
 *   topk_ids:   I32 [T, k]; -1 = no expert (the pair is dropped).
 *   expert_map: optional I32 [E_global] mapping global ids to local ids (-1 = not on this
 *               device, the pair is dropped); NULL = ids are local already.
 *   counts:     I32 [E]    rows per local expert.
 *   offsets:    I32 [E+1]  exclusive prefix sum of counts; offsets[E] = rows kept.
 *   sorted:     I32 [T*k]  row r (< offsets[E]) holds flat index i; rows beyond hold -1.
 *               Within an expert, rows are in ascending i (deterministic).
 *   row_of:     I32 [T*k]  flat index i -> its row, or -1 if dropped.
 * Errors: OUT_OF_RANGE if an id is not in [-1, E_global) (or a map entry not in [-1, E)). */
MXMOE_API mxmoe_status mxmoe_plan(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                                  const mxmoe_tensor* expert_map, int32_t num_experts,
                                  mxmoe_tensor* counts, mxmoe_tensor* offsets, mxmoe_tensor* sorted,
                                  mxmoe_tensor* row_of);

/* ---------------------------------------------------------------------------------------------
 * 4. Grouped (per-expert) operations
 */

/* Quantizes rows grouped by expert: x: F32/BF16/F16 [R, K]; offsets: I32 [E+1] (rows of expert e
 * are offsets[e]..offsets[e+1]-1; offsets[0] = 0, nondecreasing, offsets[E] <= R; output rows
 * at or beyond offsets[E] are left untouched).
 * out: MXFP4 [R, K]. Linear scales: as mxmoe_quantize. Swizzled scales: each expert's rows
 * start a fresh 128-row atom (see MXMOE_SCALES_SWIZZLED); scales must hold at least
 * sum_e round_up(m_e, 128) * 4*ceil(K/128) bytes (mxmoe_grouped_swizzled_scale_bytes bounds it),
 * and every byte of that span is written (padding 0x00). */
MXMOE_API mxmoe_status mxmoe_experts_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                              const mxmoe_tensor* offsets, mxmoe_scale_rule rule,
                                              mxmoe_mx_tensor* out);

/* Gathers and quantizes the input rows of a plan — the first step of a grouped projection that
 * takes tokens and top-k ids, like ggml's MUL_MAT_ID: for every row r < offsets[E],
 *   out[r] = quantize(x[sorted[r] / top_k])
 *   x: F32/BF16/F16 [T, K]; sorted: I32 [P] and offsets: I32 [E+1] from mxmoe_plan (P = T*top_k);
 *   out: MXFP4 [P, K], linear scales or grouped swizzled scales (as mxmoe_experts_quantize).
 * Rows at or beyond offsets[E] are left untouched. Errors: OUT_OF_RANGE for a sorted entry
 * outside [0, P) or bad offsets (found on the device by the CUDA backend, see synchronize). */
MXMOE_API mxmoe_status mxmoe_permute_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                              const mxmoe_tensor* sorted,
                                              const mxmoe_tensor* offsets, int32_t top_k,
                                              mxmoe_scale_rule rule, mxmoe_mx_tensor* out);

typedef enum mxmoe_activation {
    MXMOE_ACT_SILU_MUL = 0,      /* silu(gate) * up */
    MXMOE_ACT_GELU_TANH_MUL = 1, /* gelu_tanh(gate) * up */
    MXMOE_ACT_SWIGLU_OAI = 2,    /* gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit),
                                    g * sigmoid(alpha * g) * (u + 1) */
    MXMOE_ACT_SILU = 3,          /* no-mul variants: input [R, I] */
    MXMOE_ACT_GELU_TANH = 4,
    MXMOE_ACT_RELU2 = 5, /* relu(x)^2 */
    MXMOE_ACTIVATION_COUNT
} mxmoe_activation;

typedef enum mxmoe_gate_up_layout {
    MXMOE_GATE_UP_CONCAT = 0,      /* [gate_0..gate_{I-1}, up_0..up_{I-1}] (compressed-tensors) */
    MXMOE_GATE_UP_INTERLEAVED = 1, /* [gate_0, up_0, gate_1, up_1, ...] (gpt-oss) */
    MXMOE_GATE_UP_LAYOUT_COUNT
} mxmoe_gate_up_layout;

typedef struct mxmoe_act_params {
    mxmoe_activation activation;
    mxmoe_gate_up_layout layout;
    float swiglu_alpha; /* default 1.702 */
    float swiglu_limit; /* default 7.0 */
    /* The activation's value is rounded to this dtype before it is quantized (SPEC §2: BF16
     * by default, as vLLM does); F32 skips the extra rounding. */
    mxmoe_dtype act_dtype;
    mxmoe_scale_rule rule;
} mxmoe_act_params;

MXMOE_API mxmoe_act_params mxmoe_act_params_default(void);

/* Fused activation + quantization. h: F32/BF16/F16 [R, 2I] for the *_MUL and SWIGLU variants,
 * [R, I] for the no-mul ones; out: MXFP4 [R, I], I % 32 == 0. The activation is evaluated in
 * FP64, rounded to FP32 (the FP32 activation of SPEC §2, correctly rounded), then rounded to
 * act_dtype, then quantized; every backend reproduces it bit for bit up to its libm's last FP64
 * ulp. offsets (I32 [E+1]) is optional: NULL = all R rows, with swizzled scales laid out as one
 * matrix of R rows; given, only rows below offsets[E] are written and swizzled scales are placed
 * per expert as in mxmoe_experts_quantize. */
MXMOE_API mxmoe_status mxmoe_act_and_quantize(mxmoe_ctx* ctx, const mxmoe_tensor* h,
                                              const mxmoe_tensor* offsets,
                                              const mxmoe_act_params* params, mxmoe_mx_tensor* out);

/* W4A4 grouped GEMM: for each expert e and row r in offsets[e]..offsets[e+1]-1,
 *   out[r, n] = sum_blocks 2^(sa + sb - 254) * sum_{k in block} a[r, k] * w[e, n, k]  (+ bias[e,
 * n]) Each block's value is its exact integer dot product times the power of two, rounded once to
 * FP32 (exact unless it under- or overflows FP32; a 0xFF scale makes it NaN); the blocks are
 * accumulated in FP32 in ascending K, the bias added in FP32, then one rounding to out's dtype.
 *   a:    MXFP4 [R, K], linear scales or grouped-swizzled scales (see experts_quantize).
 *   w:    MXFP4 [E, N, K], linear scales [E, N, K/32] or swizzled per expert
 *         (U8 [E * mxmoe_swizzled_scale_bytes(N, K)]).
 *   offsets: I32 [E+1], nondecreasing, offsets[0] = 0, offsets[E] <= R.
 *   bias: optional F32/BF16/F16 [E, N] (NULL = none).
 *   out:  F32/BF16/F16 [R, N]; rows at or beyond offsets[E] are left untouched.
 * That is the contract of the CPU and CUDA int8 kernels, which reproduce it to the bit (the
 * CUDA backend picks its few-tokens kernel when experts average <= 12 rows, else its generic
 * one). On a compute capability 9.0 GPU (sm_90a build) experts with more rows run on the
 * Hopper path instead, and with prepared weights (mxmoe_weights_prepare) so do experts
 * averaging 2 rows or more, or one row on over ~256 MB of active weights (FP8 tensor cores;
 * MXMOE_CUDA_GEMM=generic|skinny|sm90 forces a kernel where it takes the arguments): each
 * operand's blocks are re-encoded in E4M3 relative to the largest block scale of their row's
 * 128-K chunk, exact for blocks within 14 binades of it (a weight row's two chunks of each
 * 256-K span share the larger reference where, in every span of the row, that keeps exact
 * every block the chunks' own references do); blocks further below are rounded to nearest in
 * E4M3 (at worst to zero, so never worse than dropping them). Its bound, per output, tested on
 * the GPU:
 *   |out - exact| <= 2^-10 * sum|a*w| + (K/128) * 2^-24 * sum|a*w| + sum_rounded c * |a*w|
 *                    + bias-add and output rounding,
 * sum|a*w| over all k; c = 1 for a product with one rounded block, 3 with two. The 2^-10 term
 * is the FP8 MMA's accumulation between promotions into FP32 (every 128 K, or every 256 K in
 * the tiles of up to 64 tokens and for the first half of the 160- and 192-token tiles where
 * every token and every weight row of the warpgroup is on its span's reference; about 13
 * mantissa bits kept; measured worst 7.1 * 2^-13, at K = 512 with every token's two 256-K spans
 * in one chain, on an H200 over the GPU suite's and a stress run's fresh random cases). The
 * scratch for the re-encoded
 * activations comes from a pool the context owns (stream-ordered; mxmoe_moe_forward uses its
 * workspace instead). */
MXMOE_API mxmoe_status mxmoe_grouped_gemm(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a,
                                          const mxmoe_mx_tensor* w, const mxmoe_tensor* offsets,
                                          const mxmoe_tensor* bias, mxmoe_tensor* out);

/* One grouped projection from tokens and their experts, in one call — the work of ggml's
 * MUL_MAT_ID, quantization and grouping included: for every pair i = t*k + j,
 *   out[i] = grouped_gemm row of quantize(x[t], rule) on expert e = map(topk_ids[t, j])
 * (+ bias[e]); pairs with no expert (an id of -1, or mapped to -1) leave out[i] untouched.
 *   x:        F32/BF16/F16 [T, K].
 *   topk_ids: I32 [T, k]; expert_map: optional I32 [E_global], as in mxmoe_plan.
 *   w:        MXFP4 [E, N, K] as in grouped_gemm; bias: optional F32/BF16/F16 [E, N].
 *   out:      F32/BF16/F16 [T*k, N], row i = pair i (token-major, as MUL_MAT_ID's output).
 * Every row equals mxmoe_plan + mxmoe_permute_quantize + mxmoe_grouped_gemm's row for the pair
 * on the same backend and device, bit for bit (the Hopper path's bound where it runs). With few
 * pairs the CUDA backend does it all in one kernel (each block finds its expert's tokens,
 * quantizes them and streams the weights); otherwise scratch comes from the context's pool, as
 * for grouped_gemm. Errors: OUT_OF_RANGE for an id outside [-1, E_global) or a map entry
 * outside [-1, E) (the CUDA backend finds them on the device: see mxmoe_ctx_synchronize). */
MXMOE_API mxmoe_status mxmoe_grouped_projection(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                                const mxmoe_tensor* topk_ids,
                                                const mxmoe_tensor* expert_map,
                                                const mxmoe_mx_tensor* w, const mxmoe_tensor* bias,
                                                mxmoe_scale_rule rule, mxmoe_tensor* out);

/* Static weights, prepared once (at model load) for every later call. The Hopper path needs,
 * per weight row and 128-K chunk, the chunk's largest block scale and each block's distance to
 * it; unprepared, it derives them on every call (~16 us for gpt-oss-20b's down projection,
 * ~150 us for DeepSeek-V3's). After mxmoe_weights_prepare(ctx, w), every mxmoe_grouped_gemm and
 * mxmoe_moe_forward on ctx whose weight tensor has w's packed and scale pointers, shape and
 * scale layout uses what was derived; results are identical either way. The weights must not
 * change while prepared: prepare again after changing them (that recomputes), or unprepare.
 * mxmoe_weights_unprepare (or mxmoe_ctx_free) frees what was derived; unpreparing a tensor that
 * is not prepared is an error (INVALID_ARGUMENT). w: MXFP4 [E, N, K] as in grouped_gemm. Both
 * allocate or free backend memory and wait for the device: keep them out of a forward. On the
 * CPU, and on GPUs without the Hopper path, there is nothing to derive: the tensor is only
 * recorded. */
MXMOE_API mxmoe_status mxmoe_weights_prepare(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);
MXMOE_API mxmoe_status mxmoe_weights_unprepare(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);

/* mxmoe_weights_prepare, and moreover leave to rewrite w's packed codes in place, once, into the
 * layout the Hopper path converts fastest (the same bytes with each 32-bit word's sign bits
 * moved: src/core/sign_packing.h). It does so on CUDA devices that run w on the Hopper path,
 * and nowhere else (mxmoe_weights_repacked says whether it did); results are bit for bit those of
 * the canonical codes either way. Measured on an H200 (bench/NOTES.md v45): the Hopper GEMM
 * 4-8 % faster at 2-512 tokens, 2 % at 8192; the few-tokens kernel (decode: rows at most a
 * quarter of the experts) 6-14 % slower. A trade for batched serving and prefill, hence opt-in.
 * While repacked, w's bytes are for this context's grouped_gemm, grouped_projection and
 * moe_forward only: another context, another operation or the caller reading them sees
 * scrambled signs. mxmoe_weights_unprepare restores the canonical codes (and waits for the
 * device); mxmoe_ctx_free does not touch the caller's weights, which then stay repacked.
 * Preparing repacked weights again (either way) is an error (INVALID_ARGUMENT): unprepare first. */
MXMOE_API mxmoe_status mxmoe_weights_prepare_repack(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);
/* 1 if w is prepared on ctx with its codes repacked in place, else 0. */
MXMOE_API int mxmoe_weights_repacked(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);

/* ---------------------------------------------------------------------------------------------
 * 5. The whole MoE layer
 */

/* Expert weights (canonical, compressed-tensors style). */
typedef struct mxmoe_moe_weights {
    mxmoe_mx_tensor w13;     /* MXFP4 [E, 2I, H]: gate‖up rows (or interleaved, see params);
                                [E, I, H] for the activations without the multiply */
    mxmoe_mx_tensor w2;      /* MXFP4 [E, H, I] */
    const mxmoe_tensor* b13; /* optional F32/BF16/F16 [E, 2I] (or [E, I], as w13) */
    const mxmoe_tensor* b2;  /* optional F32/BF16/F16 [E, H] */
} mxmoe_moe_weights;

typedef struct mxmoe_moe_params {
    int32_t num_experts;  /* local experts E (the weights' first dim) */
    mxmoe_act_params act; /* activation, gate/up layout, intermediate dtype, scale rule */
    /* 0: out[t] = sum_j w[t,j] * expert_j(x[t]).
     * 1: out[t] = sum_j expert_j(w[t,j] * x[t]) — the weight scales the input copy of each
     *    (token, slot) pair, rounded to act.act_dtype; the caller's x is never modified. */
    int32_t router_weight_on_input;
    const mxmoe_tensor* expert_map; /* optional I32 [E_global] (see mxmoe_plan) */
    /* The dtype GEMM-1's and GEMM-2's results are kept in, each rounded once (to nearest even)
     * after its bias: MXMOE_BF16 (the default), as vLLM's layer keeps them (the activation then
     * reads BF16 values, and the weighted sum BF16 terms), or MXMOE_F32. BF16 halves the layer's
     * intermediate memory traffic (on an H100 the layer at 4096-8192 tokens is 7-26 % faster,
     * bench/NOTES.md v31, v32); it adds at most 2^-9 relative error to each h and to each slot's
     * term (the activation's result is requantized to MXFP4 right after anyway). F32 keeps them
     * exact to FP32 accumulation. */
    mxmoe_dtype gemm_dtype;
} mxmoe_moe_params;

MXMOE_API mxmoe_moe_params mxmoe_moe_params_default(void);

/* Bytes of workspace mxmoe_moe_forward needs for T tokens, top-k k, hidden H, intermediate I. */
MXMOE_API mxmoe_status mxmoe_moe_workspace_size(mxmoe_ctx* ctx, const mxmoe_moe_params* params,
                                                int64_t tokens, int32_t top_k, int64_t hidden,
                                                int64_t intermediate, size_t* bytes);

/* The MoE layer: plan, permute, quantize x, GEMM-1 (+b13) in FP32 (kept in gemm_dtype), fused
 * activation rounded to act_dtype and requantized, GEMM-2 (+b2) in FP32 (kept in gemm_dtype),
 * un-permute and weighted sum over the k slots in ascending j in FP32, one rounding to out's
 * dtype. Dropped pairs (id -1, or not on this device) contribute nothing.
 *   x: F32/BF16/F16 [T, H]; topk_ids: I32 [T, k]; topk_weights: F32 [T, k];
 *   out: F32/BF16/F16 [T, H]; workspace: `workspace_bytes` bytes (see mxmoe_moe_workspace_size),
 *   on the backend's device. No allocation and no host synchronisation on the CUDA backend. */
MXMOE_API mxmoe_status mxmoe_moe_forward(mxmoe_ctx* ctx, const mxmoe_tensor* x,
                                         const mxmoe_tensor* topk_ids,
                                         const mxmoe_tensor* topk_weights,
                                         const mxmoe_moe_weights* weights,
                                         const mxmoe_moe_params* params, void* workspace,
                                         size_t workspace_bytes, mxmoe_tensor* out);

#ifdef __cplusplus
}
#endif

#endif /* MXMOE_H */
