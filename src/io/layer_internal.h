/*
 * layer_internal.h — the prepared MoE layer behind `mxmoe_layer` (mxmoe_model.h) and what its
 * loaders share.
 *
 * Internal to src/io. Loading happens in two steps: a format-specific loader (layer_hf.c for
 * Hugging Face folders, layer_gguf.c for GGUF) fills a `layer_build` with the canonical layout in
 * host memory (w13 [E, 2I, H] codes + linear scales, w2 [E, H, I], F32 biases, the FP32 router),
 * then layer_build_finish moves it where the context's backend computes (layer_load.c). The run
 * side (layer_run.c) computes the router on the host and calls mxmoe_route / mxmoe_moe_forward.
 */
#ifndef MXMOE_IO_LAYER_INTERNAL_H
#define MXMOE_IO_LAYER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "io/model_dir.h"
#include "mxmoe_model.h"

#define LAYER_MAX_BLOCKS 8

struct mxmoe_layer {
    mxmoe_ctx* ctx; /* the context the weights were loaded for (and are freed with) */
    mxmoe_device device;
    mxmoe_layer_info info;
    mxmoe_moe_weights weights;
    mxmoe_tensor b13, b2;    /* F32 [E, 2I], [E, H] in backend memory (when present) */
    mxmoe_tensor correction; /* F32 [E] in backend memory (when the routing uses one) */
    int has_correction;
    float* router_w;                        /* host F32 [E, H] */
    float* router_b;                        /* host F32 [E] or NULL */
    void* backend_blocks[LAYER_MAX_BLOCKS]; /* mxmoe_malloc'd */
    int backend_count;
    void* host_blocks[LAYER_MAX_BLOCKS]; /* malloc'd host memory serving as CPU weights */
    int host_count;
    model_dir* keep; /* a folder kept open because the weights point into its mapping */
    int prepared;    /* w13 and w2 prepared on ctx (mxmoe_weights_prepare), undone at free */
};

/* The canonical layer in host memory, as the loaders produce it. */
typedef struct layer_build {
    mxmoe_layer* layer;
    const mxmoe_layer_params* params;
    mxmoe_io_error* err;
    int64_t E, H, I;
    /* Host buffers (malloc'd by layer_build_alloc), or pointers into a mapped file when
     * zero_copy is set (then never freed here). */
    unsigned char *w13p, *w13s, *w2p, *w2s;
    int zero_copy;
    float *b13, *b2;   /* F32 [E, 2I], [E, H] or NULL */
    float* correction; /* F32 [E] or NULL */
    mxmoe_ctx* cpu;    /* a CPU context for quantize / GGUF conversion at load (created lazily) */
} layer_build;

/* Allocates the four weight buffers for E, H, I (set before). */
mxmoe_status layer_build_alloc(layer_build* b, const char* source);
/* The CPU context used for conversions at load. */
mxmoe_status layer_build_cpu(layer_build* b, mxmoe_ctx** cpu, const char* source);
/* Quantizes `rows` rows of K values (F32/BF16/F16 at x) with the weight rule into
 * packed (rows x K/2) and scales (rows x K/32); `what` names the tensor in messages. */
mxmoe_status layer_build_quantize(layer_build* b, mxmoe_dtype dtype, const void* x, int64_t rows,
                                  int64_t k, unsigned char* packed, unsigned char* scales,
                                  const char* source, const char* what);

/* Converts n values of dtype (F32, BF16, F16) at src to FP32 (exactly). */
void layer_to_f32(mxmoe_dtype dtype, const void* src, size_t n, float* dst);

/* Format loaders: fill b (dims, info, weights, router) from the source at path. */
mxmoe_status layer_load_hf(layer_build* b, const char* dir_path);
mxmoe_status layer_load_gguf(layer_build* b, const char* path);

/* Routing from a model's keys: shared by config.json and GGUF. `scoring` is "softmax",
 * "sigmoid" or NULL; the others are the config values (negative/0 = absent). */
typedef struct layer_routing_keys {
    const char* model_type;
    const char* scoring; /* scoring_func / expert_gating_func */
    const char* topk_method;
    int norm_topk_prob;           /* -1 absent */
    int64_t n_group, topk_group;  /* 0 absent */
    double routed_scaling_factor; /* 0 absent */
} layer_routing_keys;
mxmoe_status layer_routing(const layer_routing_keys* k, mxmoe_layer_info* info, const char* source,
                           mxmoe_io_error* err);

#endif /* MXMOE_IO_LAYER_INTERNAL_H */
