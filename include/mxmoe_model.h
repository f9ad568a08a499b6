/*
 * mxmoe_model.h — MoE layers of real checkpoints: load one layer of a model into a prepared,
 * runnable `mxmoe_layer`, and quantize a whole Hugging Face model folder to MXFP4.
 *
 * Checkpoints read (SPEC §5; formats in the project's reference notes, formats.md §4):
 *   - compressed-tensors `mxfp4-pack-quantized` (llm-compressor W4A4/W4A16 models, as vLLM
 *     serves them): a Hugging Face folder (config.json, one or more *.safetensors shards, and
 *     model.safetensors.index.json when sharded) with per-expert Linears
 *     `<prefix>.experts.<e>.{gate_proj,up_proj,down_proj}` (or `{w1,w3,w2}`), each a
 *     `weight_packed` U8 [N, K/2] and a `weight_scale` U8 [N, K/32] (E8M0, bias 127).
 *   - gpt-oss (`quant_method: "mxfp4"`): `mlp.experts.{gate_up,down}_proj_{blocks,scales,bias}`
 *     with gate/up rows interleaved, its clamped SwiGLU (alpha 1.702, limit from config.json),
 *     top-k-then-softmax routing with a router bias.
 *   - GGUF (llama.cpp) with MXFP4 experts: `blk.<L>.ffn_{gate,up,down}_exps.weight` and
 *     `blk.<L>.ffn_gate_inp.weight` (+ the gpt-oss biases); ggml's 17-byte `block_mxfp4` is
 *     converted to the canonical packing at load.
 *   - an unquantized Hugging Face folder (BF16/F16/F32 per-expert Linears, or gpt-oss's fused
 *     BF16 experts): the experts are quantized at load (`mxmoe quantize` does it once, on disk).
 * Routing and dimensions come from config.json (model_type, num_experts / num_local_experts /
 * n_routed_experts, num_experts_per_tok, hidden_size, moe_intermediate_size / intermediate_size,
 * norm_topk_prob, scoring_func, n_group, topk_group, routed_scaling_factor, hidden_act,
 * swiglu_limit) or from the GGUF keys `<arch>.expert_count`, `<arch>.expert_used_count`, ... .
 * Anything else is refused with MXMOE_ERR_UNSUPPORTED (a valid checkpoint mxmoe cannot run:
 * another quantization, a routing rule it lacks) or MXMOE_ERR_FORMAT (a malformed file), with a
 * message that names the file and the tensor or key.
 *
 * What a layer computes: the routed experts of MoE layer L, out = sum_j w[t,j] * expert_j(x[t])
 * (mxmoe_moe_forward), after the router: logits = x W_r^T (+ router bias), routed as the model
 * does (mxmoe_route). Shared experts, the residual and the norms around the layer are not part
 * of it (mxmoe_layer_info says whether the checkpoint has shared experts).
 *
 * Errors at load are reported through mxmoe_io_error (file-level messages, mxmoe_io.h); errors
 * of the calls that compute go to the context (mxmoe_ctx_last_error), as everywhere in mxmoe.h.
 */
#ifndef MXMOE_MODEL_H
#define MXMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe.h"
#include "mxmoe_io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mxmoe_model_format {
    MXMOE_MODEL_COMPRESSED_TENSORS = 0, /* compressed-tensors mxfp4-pack-quantized folder */
    MXMOE_MODEL_GPT_OSS = 1,            /* gpt-oss MXFP4 folder (quant_method "mxfp4") */
    MXMOE_MODEL_GGUF = 2,               /* a .gguf file */
    MXMOE_MODEL_UNQUANTIZED = 3,        /* BF16/F16/F32 experts, quantized at load */
    MXMOE_MODEL_FORMAT_COUNT
} mxmoe_model_format;

/* "compressed-tensors", "gpt-oss", "gguf", "unquantized"; "invalid" otherwise. */
MXMOE_API const char* mxmoe_model_format_name(mxmoe_model_format format);

/* ---------------------------------------------------------------------------------------------
 * A prepared MoE layer
 */
typedef struct mxmoe_layer mxmoe_layer;

typedef struct mxmoe_layer_params {
    int32_t layer; /* decoder layer index L, as in the tensor names (0-based) */
    /* Scale rule for expert weights stored unquantized and quantized at load (default EVEN, the
     * rule of compressed-tensors and vLLM). MXFP4 weights are used as stored. */
    mxmoe_scale_rule weight_rule;
    /* Activation quantization inside the layer (mxmoe_act_params.rule and .act_dtype):
     * default EVEN and BF16. */
    mxmoe_scale_rule act_rule;
    mxmoe_dtype act_dtype;
    /* The GEMM results' dtype inside the layer (mxmoe_moe_params.gemm_dtype): BF16 (default),
     * as vLLM keeps them, or F32. */
    mxmoe_dtype gemm_dtype;
} mxmoe_layer_params;

MXMOE_API mxmoe_layer_params mxmoe_layer_params_default(void);

/* What was loaded. Filled at load, constant afterwards. */
typedef struct mxmoe_layer_info {
    mxmoe_model_format format;
    char model_type[64];  /* config.json model_type, or GGUF general.architecture */
    int32_t layer;        /* L */
    int32_t num_layers;   /* decoder layers of the model (num_hidden_layers / block_count) */
    int32_t num_experts;  /* E */
    int32_t top_k;        /* k */
    int64_t hidden;       /* H */
    int64_t intermediate; /* I, per expert */
    /* How the layer routes and computes (route.correction_bias is NULL here: the layer keeps the
     * bias itself and applies it in mxmoe_layer_route / _forward). */
    mxmoe_route_params route;
    mxmoe_moe_params moe;
    int32_t has_router_bias;    /* logits = x W_r^T + b_r (gpt-oss) */
    int32_t has_expert_biases;  /* b13 / b2 (gpt-oss) */
    int32_t num_shared_experts; /* shared experts in the checkpoint (not computed by the layer) */
    int32_t quantized_at_load;  /* the experts were stored unquantized */
    int32_t zero_copy;          /* the expert weights are used in place in the mapped file */
    size_t weight_bytes;        /* bytes of expert weights (codes, scales, biases) */
} mxmoe_layer_info;

/* Loads MoE layer params->layer of the checkpoint at `path` (a model folder, a .safetensors
 * file inside one, or a .gguf file) for the context's backend: the expert weights are put in
 * the canonical layout (w13 [E, 2I, H] gate‖up, or interleaved for gpt-oss; w2 [E, H, I]) and
 * copied to the backend's memory (mxmoe_malloc; on the CPU backend gpt-oss weights are used in
 * place in the mapped file, zero-copy), and prepared on ctx (mxmoe_weights_prepare; undone by
 * mxmoe_layer_free). The router weight (and bias) is kept in FP32 on the host. params may be
 * NULL (defaults, layer 0). The layer uses `ctx` again when it is freed: free the layer before
 * the context. `*out` is NULL on failure.
 * Errors: IO (cannot read), FORMAT (malformed file, or tensors that contradict the config),
 * UNSUPPORTED (a checkpoint mxmoe cannot run), INVALID_ARGUMENT (layer out of range, NULL
 * arguments), NO_MEMORY, BACKEND. */
MXMOE_API mxmoe_status mxmoe_layer_load(mxmoe_ctx* ctx, const char* path,
                                        const mxmoe_layer_params* params, mxmoe_layer** out,
                                        mxmoe_io_error* err);

/* Frees the layer and its backend memory (with the context it was loaded with). NULL: no-op. */
MXMOE_API void mxmoe_layer_free(mxmoe_layer* layer);

/* The layer's description (owned by the layer), or NULL for a NULL layer. */
MXMOE_API const mxmoe_layer_info* mxmoe_layer_get_info(const mxmoe_layer* layer);

/* The canonical expert weights, in the backend's memory, for callers that run
 * mxmoe_moe_forward (or benchmarks) themselves with the layer's info->moe params. Pointers stay
 * valid until mxmoe_layer_free. */
MXMOE_API mxmoe_status mxmoe_layer_weights(const mxmoe_layer* layer, mxmoe_moe_weights* out);

/* Bytes of workspace mxmoe_layer_forward needs for `tokens` tokens. */
MXMOE_API mxmoe_status mxmoe_layer_workspace_size(mxmoe_ctx* ctx, const mxmoe_layer* layer,
                                                  int64_t tokens, size_t* bytes);

/* The router: logits[t, e] = sum_h x[t,h] * W_r[e,h] (+ b_r[e]), each an FP64 sum in ascending h
 * of the FP32 values (x converted exactly from its dtype, W_r from the checkpoint's), rounded once
 * to FP32; then mxmoe_route with the layer's routing (info->route and its correction bias).
 *   x: F32/BF16/F16 [T, H]; topk_ids: I32 [T, k]; topk_weights: F32 [T, k]; all in the backend's
 *   memory. The router runs on the host: on the CUDA backend x is copied to the host (the call
 *   synchronizes and allocates host memory, unlike mxmoe_moe_forward). */
MXMOE_API mxmoe_status mxmoe_layer_route(mxmoe_ctx* ctx, const mxmoe_layer* layer,
                                         const mxmoe_tensor* x, mxmoe_tensor* topk_ids,
                                         mxmoe_tensor* topk_weights);

/* The whole layer: mxmoe_layer_route, then mxmoe_moe_forward with the layer's weights and
 * params. x: F32/BF16/F16 [T, H]; out: F32/BF16/F16 [T, H]; workspace: `workspace_bytes` bytes
 * of the backend's memory (mxmoe_layer_workspace_size). `ctx` must have the backend the layer
 * was loaded for. Same host-side router caveat as mxmoe_layer_route. */
MXMOE_API mxmoe_status mxmoe_layer_forward(mxmoe_ctx* ctx, const mxmoe_layer* layer,
                                           const mxmoe_tensor* x, mxmoe_tensor* out,
                                           void* workspace, size_t workspace_bytes);

/* ---------------------------------------------------------------------------------------------
 * Quantizing a model folder
 */

/* Progress of mxmoe_model_quantize: bytes of input tensor data handled so far out of the total,
 * and what is being worked on ("model-00001-of-00002.safetensors: model.layers.0.mlp..."). */
typedef void (*mxmoe_progress_fn)(uint64_t done, uint64_t total, const char* what, void* user_data);

typedef struct mxmoe_model_quantize_params {
    mxmoe_scale_rule rule;      /* default EVEN (compressed-tensors' rule) */
    mxmoe_progress_fn progress; /* optional */
    void* progress_user_data;
} mxmoe_model_quantize_params;

MXMOE_API mxmoe_model_quantize_params mxmoe_model_quantize_params_default(void);

/* What mxmoe_model_quantize did. */
typedef struct mxmoe_model_quantize_stats {
    int64_t tensors_quantized; /* expert Linears turned into weight_packed + weight_scale */
    int64_t tensors_copied;    /* every other tensor, byte for byte */
    int64_t shards;            /* safetensors files written */
    int64_t files_copied;      /* other files of the folder (tokenizer, generation config...) */
    uint64_t bytes_in;         /* tensor data read */
    uint64_t bytes_out;        /* tensor data written */
} mxmoe_model_quantize_stats;

/* Turns the unquantized (BF16/F16/F32) MoE expert weights of the Hugging Face model folder
 * `in_dir` into a compressed-tensors `mxfp4-pack-quantized` folder `out_dir` (created; it must
 * not exist or be empty): every per-expert Linear `...experts.<e>.<proj>.weight` (proj one of
 * gate_proj, up_proj, down_proj, w1, w2, w3) of shape [N, K], K % 32 == 0, becomes
 * `.weight_packed` U8 [N, K/2] + `.weight_scale` U8 [N, K/32], quantized with params->rule on
 * `ctx`; all other tensors are copied unchanged, shard by shard (same file names), and
 * model.safetensors.index.json is written for them. config.json gets the quantization_config of
 * compressed-tensors (quant_method "compressed-tensors", format "mxfp4-pack-quantized",
 * quantization_status "compressed", one config group targeting the expert Linears with 4-bit
 * float weights, group 32, and dynamic 4-bit float input activations: W4A4); the folder's
 * other regular files are copied. A folder that is already quantized, or holds no expert
 * Linears, is refused (UNSUPPORTED). Outputs are written as temporary files and renamed when
 * complete. params and stats may be NULL. */
MXMOE_API mxmoe_status mxmoe_model_quantize(mxmoe_ctx* ctx, const char* in_dir, const char* out_dir,
                                            const mxmoe_model_quantize_params* params,
                                            mxmoe_model_quantize_stats* stats, mxmoe_io_error* err);

#ifdef __cplusplus
}
#endif

#endif /* MXMOE_MODEL_H */
