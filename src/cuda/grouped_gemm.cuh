/*
 * grouped_gemm.cuh — the grouped GEMM launcher, shared by mxmoe_grouped_gemm and moe_forward.
 */
#ifndef MXMOE_CUDA_GROUPED_GEMM_CUH
#define MXMOE_CUDA_GROUPED_GEMM_CUH

#include "cuda/cuda_common.cuh"

struct gemm_args {
    const uint8_t* a_packed; /* [rows, k/2] */
    const uint8_t* a_scales; /* linear [rows, k/32] or grouped swizzled */
    int a_swizzled;
    int64_t a_scales_numel;  /* reads past it are skipped and flagged */
    const uint8_t* w_packed; /* [E, n, k/2] */
    const uint8_t* w_scales; /* linear [E, n, k/32] or swizzled per expert */
    int w_swizzled;
    /* w_packed's codes are in the Hopper sign packing (mxmoe_weights_prepare_repack,
     * core/sign_packing.h): every kernel reads them as such (here, in w_swizzled's padding) */
    int w_repacked;
    int64_t w_scales_numel;
    const int32_t* offsets; /* [E+1] */
    int64_t num_experts;
    int64_t rows, n, k;
    const void* bias; /* optional [E, n] */
    mxmoe_dtype bias_dtype;
    void* out; /* [rows, n], or [any, n] with out_rows */
    mxmoe_dtype out_dtype;
    const int32_t* out_rows; /* optional [rows]: GEMM row r is written to out row out_rows[r] */
    /* Hopper path only, optional [rows]: GEMM row r reads activation row a_rows[r] / a_rows_div
     * (the plan's sorted pairs over top-k: each token quantized once; a negative entry, a
     * dropped pair's row that no expert covers, reads row 0) */
    const int32_t* a_rows;
    int64_t a_rows_div;
    /* Hopper path only, optional (x != NULL; see mxmoe_sm90_tokens_fit): the activations are
     * tokens, which the GEMM's prepass quantizes itself (instead of a_packed / a_scales / a_rows)
     * and writes to the GEMM rows of their pairs: pair t * top_k + j of token t to row
     * row_of[t * top_k + j] (-1: dropped). */
    struct {
        const void* x; /* [count, k] */
        mxmoe_dtype dtype;
        int64_t count;
        int64_t top_k;
        mxmoe_scale_rule rule;
        const int32_t* row_of; /* [count * top_k], the plan's */
    } tokens;
    unsigned* errors;
    int check_offsets; /* the caller's offsets: validate them (MXMOE_DEVERR_OFFSETS) */
    /* Hopper path: device scratch for the converted activations and the weight-scale words
     * (NULL or too small: allocated stream-ordered per call; see
     * mxmoe_grouped_gemm_sm90_scratch), and their views. */
    uint8_t* scratch;
    size_t scratch_bytes;
    uint8_t* a_e4m3;
    float* a_factors;
    uint32_t* w_words;
    /* the weight-scale words made once by mxmoe_weights_prepare (NULL: made per call) */
    const uint32_t* w_words_prepared;
    /* Hopper path, few tiles: FP32 partials [2][rows][n] of a K-split and the word that says
     * whether the GEMM split (it decides on the device, from the tile count); NULL: no split */
    float* partials;
    unsigned* split_flag;
    int force_split; /* MXMOE_CUDA_KSPLIT=1: split wherever possible (tests) */
    /* Hopper path: the activation prepass lets the GEMM launch as soon as it starts (set where
     * its grid leaves SMs free for the GEMM's CTAs) */
    int release_early;
};

/* The out row of GEMM row r. */
static __device__ __forceinline__ int64_t gemm_out_row(const gemm_args& a, int64_t r) {
    return a.out_rows != nullptr ? a.out_rows[r] : r;
}

/* The weight fields of args from w (MXFP4 [E, N, K]), with its prepared words if any. */
void mxmoe_gemm_args_set_weights(mxmoe_ctx* ctx, gemm_args* args, const mxmoe_mx_tensor* w);

/* args for a, w, offsets, bias and out as mxmoe_grouped_gemm takes them (offsets checked on the
 * device, no out_rows). */
gemm_args mxmoe_gemm_args_from(mxmoe_ctx* ctx, const mxmoe_mx_tensor* a, const mxmoe_mx_tensor* w,
                               const mxmoe_tensor* offsets, const mxmoe_tensor* bias,
                               mxmoe_tensor* out);

enum gemm_kernel { GEMM_GENERIC, GEMM_SKINNY, GEMM_SM90 };

/* The kernel mxmoe_launch_grouped_gemm runs for args (args->rows rows over args->num_experts). */
gemm_kernel mxmoe_grouped_gemm_pick(mxmoe_ctx* ctx, const gemm_args* args);

/* Issues the grouped GEMM on the fastest kernel that supports the arguments. */
mxmoe_status mxmoe_launch_grouped_gemm(mxmoe_ctx* ctx, const gemm_args* args);

/* The Hopper kernel (grouped_gemm_sm90.cu): whether it runs here and takes these arguments
 * (linear activation scales, 16-byte aligned buffers, at most 1024 experts), and its launch. */
bool mxmoe_grouped_gemm_sm90_init(mxmoe_ctx* ctx); /* once per context: device and binary */
bool mxmoe_grouped_gemm_sm90_supported(mxmoe_ctx* ctx, const gemm_args* args);
/* Whether the Hopper kernel takes args' weights (the weights' side of the above: prepare and
 * prepare_repack ask it). */
bool mxmoe_grouped_gemm_sm90_takes_weights(mxmoe_ctx* ctx, const gemm_args* args);
mxmoe_status mxmoe_launch_grouped_gemm_sm90(mxmoe_ctx* ctx, const gemm_args* args);
size_t mxmoe_grouped_gemm_sm90_scratch(int64_t rows, int64_t k, int64_t experts, int64_t n);
/* Whether the Hopper prepass takes its activations as tokens (gemm_args.tokens) at this K. */
bool mxmoe_sm90_tokens_fit(int64_t k);
/* The weight-scale words of all E experts of args' weights into new device memory (*words;
 * NULL where the Hopper path would not take these weights), for mxmoe_weights_prepare. */
mxmoe_status mxmoe_grouped_gemm_sm90_prepare(mxmoe_ctx* ctx, const gemm_args* args,
                                             uint32_t** words);

/* The few-tokens-per-expert kernel (grouped_gemm_skinny.cu), exact, sm_80+: linear activation
 * scales, 16-byte aligned packed operands, at most 1024 experts, K <= 24576. */
bool mxmoe_grouped_gemm_skinny_init(mxmoe_ctx* ctx);
bool mxmoe_grouped_gemm_skinny_supported(mxmoe_ctx* ctx, const gemm_args* args);
mxmoe_status mxmoe_launch_grouped_gemm_skinny(mxmoe_ctx* ctx, const gemm_args* args);

/* The same kernel fed by tokens instead of a plan and quantized rows (mxmoe_grouped_projection
 * with few pairs): each block finds the pairs of its expert in the ids, quantizes their tokens'
 * rows into shared memory as mxmoe_quantize would, and writes each result to its pair's row.
 * args: weights, bias, out (rows = pairs), num_experts; no activations, offsets or out_rows. */
struct projection_tokens {
    const void* x; /* [T, k_dim] */
    mxmoe_dtype x_dtype;
    const int32_t* ids; /* [pairs] */
    const int32_t* map; /* optional [id_limit] */
    int64_t id_limit;   /* E_global (map size) or E */
    int64_t top_k;
    mxmoe_scale_rule rule;
};
constexpr int64_t kProjectionMaxPairs = 256;
/* Bytes of `experts` experts' MXFP4 weights [n, k] (4-bit codes and a scale byte per 32), and
 * the active weights under which the few-tokens kernel's one-launch forms pay (the few-rows rule,
 * grouped_gemm.cu, and mxmoe_projection_one_launch: measured in each). */
static inline double mxmoe_weight_bytes(int64_t experts, int64_t n, int64_t k) {
    return (double)experts * (double)n * (double)k * 17.0 / 32.0;
}
constexpr double kFewTokensWeightBytes = 100e6;
mxmoe_status mxmoe_launch_projection_skinny(mxmoe_ctx* ctx, const gemm_args* args,
                                            const projection_tokens* tokens);
/* Whether a projection of `pairs` pairs at K = k takes that one launch (args: its weights,
 * rows = pairs; the rule and its measurements in grouped_projection.cu). */
bool mxmoe_projection_one_launch(mxmoe_ctx* ctx, const gemm_args* args, int64_t pairs, int64_t k);
/* The activation of GEMM-1's rows h [pairs, n13] (pair order) rounded to act_dtype into out
 * [pairs, inter], and row_of[p] = p or -1 (dropped): the layer's decode form between its two
 * one-launch projections (act_quantize.cu, moe.cu). */
mxmoe_status mxmoe_launch_activation_rows(mxmoe_ctx* ctx, const mxmoe_tensor* h, int64_t inter,
                                          const mxmoe_act_params* params,
                                          const projection_tokens* pairs, int64_t num_experts,
                                          void* out, int32_t* row_of);

/* The local expert of pair i (-1: dropped; an id or map entry out of range is dropped, and
 * flagged as the plan does where errors is not NULL). */
__device__ inline int64_t pair_expert(const projection_tokens& tk, int64_t num_experts, int64_t i,
                                      unsigned* errors) {
    const int32_t id = tk.ids[i];
    if (id < 0 || id >= tk.id_limit) {
        if (id != -1 && errors != nullptr) {
            atomicOr(errors, MXMOE_DEVERR_EXPERT_ID);
        }
        return -1;
    }
    const int32_t e = tk.map != nullptr ? tk.map[id] : id;
    if (e < -1 || e >= num_experts) {
        if (errors != nullptr) {
            atomicOr(errors, MXMOE_DEVERR_EXPERT_MAP);
        }
        return -1;
    }
    return e;
}

#endif /* MXMOE_CUDA_GROUPED_GEMM_CUH */
