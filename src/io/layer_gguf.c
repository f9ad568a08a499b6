/*
 * layer_gguf.c — loading MoE layer L from a GGUF file (llama.cpp) with MXFP4 experts.
 *
 * Tensors (gguf-py constants.py; ggml dims innermost first, so ne = [K, N, E] is [E, N, K]):
 *   blk.L.ffn_gate_inp.weight   ne [H, E]     router (F32/F16/BF16); .bias [E] for gpt-oss
 *   blk.L.ffn_gate_exps.weight  ne [H, I, E]  MXFP4 (or F32/F16/BF16: quantized at load)
 *   blk.L.ffn_up_exps.weight    ne [H, I, E]
 *   blk.L.ffn_down_exps.weight  ne [I, H, E]
 *   blk.L.ffn_{gate,up,down}_exps.bias        gpt-oss expert biases
 *   blk.L.exp_probs_b.bias      ne [E]        sigmoid routing's correction bias
 * ggml's block_mxfp4 (scale byte, then element j in the low / j+16 in the high nibble of qs[j])
 * is converted to the canonical packing by mxmoe_mx_from_gguf; gate and up become w13 = gate‖up.
 *
 * Routing per architecture, as llama.cpp builds it: gpt-oss top-k then softmax with the clamped
 * SwiGLU (alpha 1.702, limit 7, fixed in llama.cpp); qwen3moe and llama (Mixtral) softmax with
 * renormalized weights; qwen2moe and olmoe softmax without; any other architecture that states
 * `<arch>.expert_gating_func` (1 softmax, 2 sigmoid) with `expert_weights_norm`,
 * `expert_weights_scale`, `expert_group_count`, `expert_group_used_count`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/io_common.h"
#include "io/layer_internal.h"

typedef struct gg {
    layer_build* b;
    gguf_file* f;
    const char* path;
    const char* arch;
} gg;

static mxmoe_status key_uint(gg* g, const char* suffix, int required, uint64_t* out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", g->arch, suffix);
    int rc = gguf_get_uint(g->f, key, out);
    if (rc < 0) {
        return io_fail(g->b->err, MXMOE_ERR_FORMAT, g->path,
                       "key '%s' must be a non-negative integer", key);
    }
    if (rc == 0 && required) {
        return io_fail(g->b->err, MXMOE_ERR_FORMAT, g->path, "no key '%s'", key);
    }
    if (rc == 0) {
        *out = 0;
    }
    return MXMOE_OK;
}

static mxmoe_status find(gg* g, const char* name, int required, const gguf_tensor** t) {
    *t = gguf_find_tensor(g->f, name);
    if (*t == NULL && required) {
        return io_fail(g->b->err, MXMOE_ERR_FORMAT, g->path, "tensor '%s' is not in the file",
                       name);
    }
    return MXMOE_OK;
}

static int is_float_type(uint32_t type) {
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

static mxmoe_dtype float_dtype(uint32_t type) {
    return type == GGML_TYPE_F32 ? MXMOE_F32 : type == GGML_TYPE_F16 ? MXMOE_F16 : MXMOE_BF16;
}

/* Checks ggml dims (innermost first) against `ne` and the type against the allowed ones. */
static mxmoe_status check(gg* g, const gguf_tensor* t, int32_t ndim, const int64_t* ne,
                          int mxfp4_ok) {
    int ok = t->ndim == ndim;
    for (int32_t d = 0; ok && d < ndim; d++) {
        ok = t->ne[d] == ne[d];
    }
    if (!ok) {
        char have[128], want[128];
        io_format_shape(have, sizeof have, t->ne, t->ndim);
        io_format_shape(want, sizeof want, ne, ndim);
        return io_fail(g->b->err, MXMOE_ERR_FORMAT, g->path,
                       "tensor '%s': ggml dims ne = %s, expected %s (from the %s.* keys)", t->name,
                       have, want, g->arch);
    }
    if (!is_float_type(t->type) && !(mxfp4_ok && t->type == GGML_TYPE_MXFP4)) {
        const char* name = gguf_type_name(t->type);
        return io_fail(g->b->err, MXMOE_ERR_UNSUPPORTED, g->path,
                       "tensor '%s' is %s: mxmoe loads %s tensors here", t->name,
                       name != NULL ? name : "an unknown type",
                       mxfp4_ok ? "MXFP4 (or F32/F16/BF16, quantized at load) expert"
                                : "F32/F16/BF16");
    }
    return MXMOE_OK;
}

/* Experts [E, N, K] of tensor t into rows [e*stride + row0, +N) of the w13- or w2-shaped
 * buffers (packed rows of K/2 bytes, scale rows of K/32). */
static mxmoe_status load_experts(gg* g, const gguf_tensor* t, int64_t n, int64_t k, int64_t stride,
                                 int64_t row0, unsigned char* packed, unsigned char* scales) {
    layer_build* b = g->b;
    const unsigned char* src = gguf_tensor_data(g->f, t);
    size_t src_row = (size_t)(t->nbytes / (uint64_t)(b->E * n));
    for (int64_t e = 0; e < b->E; e++) {
        size_t row = (size_t)(e * stride + row0);
        unsigned char* p = packed + row * (size_t)(k / 2);
        unsigned char* s = scales + row * (size_t)(k / MXMOE_BLOCK);
        const unsigned char* x = src + (size_t)(e * n) * src_row;
        if (t->type == GGML_TYPE_MXFP4) {
            mxmoe_ctx* cpu;
            MXMOE_IO_FORWARD(layer_build_cpu(b, &cpu, g->path));
            int64_t gd[2] = {n, (k / MXMOE_BLOCK) * 17}, pd[2] = {n, k / 2},
                    sd[2] = {n, k / MXMOE_BLOCK};
            mxmoe_tensor gt = mxmoe_tensor_make((void*)x, MXMOE_U8, 2, gd);
            mxmoe_mx_tensor out;
            out.packed = mxmoe_tensor_make(p, MXMOE_U8, 2, pd);
            out.scales = mxmoe_tensor_make(s, MXMOE_U8, 2, sd);
            out.scale_layout = MXMOE_SCALES_LINEAR;
            mxmoe_status st = mxmoe_mx_from_gguf(cpu, &gt, &out);
            if (st != MXMOE_OK) {
                return io_fail(b->err, st, g->path, "tensor '%s': converting block_mxfp4: %s",
                               t->name, mxmoe_ctx_last_error(cpu));
            }
        } else {
            void* aligned = NULL;
            size_t bytes = (size_t)n * src_row;
            size_t es = t->type == GGML_TYPE_F32 ? 4 : 2;
            if ((uintptr_t)x % es != 0) {
                if ((aligned = malloc(bytes)) == NULL) {
                    return io_fail(b->err, MXMOE_ERR_NO_MEMORY, g->path, "out of memory");
                }
                memcpy(aligned, x, bytes);
                x = aligned;
            }
            mxmoe_status st =
                layer_build_quantize(b, float_dtype(t->type), x, n, k, p, s, g->path, t->name);
            free(aligned);
            MXMOE_IO_FORWARD(st);
        }
    }
    return MXMOE_OK;
}

/* A float tensor of n values as FP32 (malloc'd into *out). */
static mxmoe_status load_f32(gg* g, const gguf_tensor* t, size_t n, float** out) {
    *out = malloc(n * sizeof **out);
    if (*out == NULL) {
        return io_fail(g->b->err, MXMOE_ERR_NO_MEMORY, g->path, "out of memory");
    }
    size_t es = t->type == GGML_TYPE_F32 ? 4 : 2;
    void* tmp = malloc(n > 0 ? n * es : 1);
    if (tmp == NULL) {
        free(*out);
        *out = NULL;
        return io_fail(g->b->err, MXMOE_ERR_NO_MEMORY, g->path, "out of memory");
    }
    memcpy(tmp, gguf_tensor_data(g->f, t), n * es); /* the mapping need not be aligned */
    layer_to_f32(float_dtype(t->type), tmp, n, *out);
    free(tmp);
    return MXMOE_OK;
}

/* The routing of `arch` (see the file comment). */
static mxmoe_status routing(gg* g) {
    mxmoe_layer_info* info = &g->b->layer->info;
    layer_routing_keys rk = {g->arch, NULL, NULL, -1, 0, 0, 0.0};
    if (strcmp(g->arch, "qwen3moe") == 0 || strcmp(g->arch, "llama") == 0 ||
        strcmp(g->arch, "mixtral") == 0) {
        rk.norm_topk_prob = 1;
    } else if (strcmp(g->arch, "qwen2moe") == 0 || strcmp(g->arch, "olmoe") == 0) {
        rk.norm_topk_prob = 0;
    } else if (strcmp(g->arch, "gpt-oss") != 0) {
        uint64_t gating = 0, groups = 0, used_groups = 0;
        MXMOE_IO_FORWARD(key_uint(g, "expert_gating_func", 0, &gating));
        if (gating != 1 && gating != 2) {
            return io_fail(g->b->err, MXMOE_ERR_UNSUPPORTED, g->path,
                           "architecture '%s' is not supported (gpt-oss, qwen3moe, qwen2moe, "
                           "olmoe, llama, or one that states %s.expert_gating_func)",
                           g->arch, g->arch);
        }
        rk.scoring = gating == 2 ? "sigmoid" : "softmax";
        int norm = 0;
        char key[128];
        snprintf(key, sizeof key, "%s.expert_weights_norm", g->arch);
        rk.norm_topk_prob = gguf_get_bool(g->f, key, &norm) == 1 ? norm : 0;
        snprintf(key, sizeof key, "%s.expert_weights_scale", g->arch);
        gguf_get_float(g->f, key, &rk.routed_scaling_factor);
        MXMOE_IO_FORWARD(key_uint(g, "expert_group_count", 0, &groups));
        MXMOE_IO_FORWARD(key_uint(g, "expert_group_used_count", 0, &used_groups));
        rk.n_group = (int64_t)groups;
        rk.topk_group = (int64_t)used_groups;
    }
    return layer_routing(&rk, info, g->path, g->b->err);
}

static mxmoe_status load(gg* g) {
    layer_build* b = g->b;
    mxmoe_layer_info* info = &b->layer->info;
    MXMOE_IO_FORWARD(gguf_open(g->path, &g->f, b->err));
    if (gguf_get_string(g->f, "general.architecture", &g->arch) != 1) {
        return io_fail(b->err, MXMOE_ERR_FORMAT, g->path, "no 'general.architecture' string");
    }
    info->format = MXMOE_MODEL_GGUF;
    snprintf(info->model_type, sizeof info->model_type, "%s", g->arch);
    uint64_t experts, used, hidden, blocks = 0, shared = 0;
    MXMOE_IO_FORWARD(key_uint(g, "expert_count", 1, &experts));
    MXMOE_IO_FORWARD(key_uint(g, "expert_used_count", 1, &used));
    MXMOE_IO_FORWARD(key_uint(g, "embedding_length", 1, &hidden));
    MXMOE_IO_FORWARD(key_uint(g, "block_count", 0, &blocks));
    MXMOE_IO_FORWARD(key_uint(g, "expert_shared_count", 0, &shared));
    if (experts < 1 || experts > (1u << 20) || used < 1 || used > experts || hidden < 1 ||
        hidden > INT32_MAX) {
        return io_fail(b->err, MXMOE_ERR_FORMAT, g->path,
                       "%s.expert_count = %llu, expert_used_count = %llu, embedding_length = "
                       "%llu are inconsistent",
                       g->arch, (unsigned long long)experts, (unsigned long long)used,
                       (unsigned long long)hidden);
    }
    if (blocks > 0 && (uint64_t)info->layer >= blocks) {
        return io_fail(b->err, MXMOE_ERR_INVALID_ARGUMENT, g->path,
                       "layer %d is out of range: the model has %llu blocks (%s.block_count)",
                       (int)info->layer, (unsigned long long)blocks, g->arch);
    }
    int L = info->layer;
    char name[GGUF_MAX_NAME + 32];
    const gguf_tensor *gate, *up, *down, *router, *t;
    snprintf(name, sizeof name, "blk.%d.ffn_gate_up_exps.weight", L);
    MXMOE_IO_FORWARD(find(g, name, 0, &t));
    if (t != NULL) {
        return io_fail(b->err, MXMOE_ERR_UNSUPPORTED, g->path,
                       "tensor '%s': fused gate/up experts are not supported (separate "
                       "ffn_gate_exps / ffn_up_exps are)",
                       name);
    }
    snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", L);
    MXMOE_IO_FORWARD(find(g, name, 0, &gate));
    if (gate == NULL) {
        return io_fail(b->err, MXMOE_ERR_FORMAT, g->path,
                       "layer %d has no routed experts: tensor '%s' is not in the file (a dense "
                       "layer?)",
                       L, name);
    }
    /* The expert width I from the tensor, checked against the key when there is one. */
    uint64_t inter = (uint64_t)gate->ne[1], key_inter = 0;
    MXMOE_IO_FORWARD(key_uint(g, "expert_feed_forward_length", 0, &key_inter));
    if (key_inter != 0 && key_inter != inter) {
        return io_fail(b->err, MXMOE_ERR_FORMAT, g->path,
                       "tensor '%s' has %lld rows per expert but %s.expert_feed_forward_length "
                       "is %llu",
                       name, (long long)gate->ne[1], g->arch, (unsigned long long)key_inter);
    }
    if (hidden % MXMOE_BLOCK != 0 || inter % MXMOE_BLOCK != 0 || inter == 0) {
        return io_fail(b->err, MXMOE_ERR_UNSUPPORTED, g->path,
                       "hidden %llu and expert width %llu must be multiples of 32 for MXFP4",
                       (unsigned long long)hidden, (unsigned long long)inter);
    }
    info->num_layers = (int32_t)blocks;
    info->num_experts = (int32_t)experts;
    info->top_k = (int32_t)used;
    info->hidden = (int64_t)hidden;
    info->intermediate = (int64_t)inter;
    info->num_shared_experts = (int32_t)shared;
    b->E = (int64_t)experts;
    b->H = (int64_t)hidden;
    b->I = (int64_t)inter;
    int64_t E = b->E, H = b->H, I = b->I;
    MXMOE_IO_FORWARD(routing(g));
    int is_gpt_oss = strcmp(g->arch, "gpt-oss") == 0;
    mxmoe_act_params* act = &info->moe.act;
    act->activation = is_gpt_oss ? MXMOE_ACT_SWIGLU_OAI : MXMOE_ACT_SILU_MUL;
    act->layout = MXMOE_GATE_UP_CONCAT;
    act->swiglu_alpha = 1.702f;
    act->swiglu_limit = 7.0f;

    int64_t ne13[3] = {H, I, E}, ne2[3] = {I, H, E};
    snprintf(name, sizeof name, "blk.%d.ffn_up_exps.weight", L);
    MXMOE_IO_FORWARD(find(g, name, 1, &up));
    snprintf(name, sizeof name, "blk.%d.ffn_down_exps.weight", L);
    MXMOE_IO_FORWARD(find(g, name, 1, &down));
    MXMOE_IO_FORWARD(check(g, gate, 3, ne13, 1));
    MXMOE_IO_FORWARD(check(g, up, 3, ne13, 1));
    MXMOE_IO_FORWARD(check(g, down, 3, ne2, 1));
    MXMOE_IO_FORWARD(layer_build_alloc(b, g->path));
    MXMOE_IO_FORWARD(load_experts(g, gate, I, H, 2 * I, 0, b->w13p, b->w13s));
    MXMOE_IO_FORWARD(load_experts(g, up, I, H, 2 * I, I, b->w13p, b->w13s));
    MXMOE_IO_FORWARD(load_experts(g, down, H, I, H, 0, b->w2p, b->w2s));

    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", L);
    MXMOE_IO_FORWARD(find(g, name, 1, &router));
    int64_t ner[2] = {H, E}, nee[1] = {E};
    MXMOE_IO_FORWARD(check(g, router, 2, ner, 0));
    MXMOE_IO_FORWARD(load_f32(g, router, (size_t)(E * H), &b->layer->router_w));
    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.bias", L);
    MXMOE_IO_FORWARD(find(g, name, 0, &t));
    if (t != NULL) {
        MXMOE_IO_FORWARD(check(g, t, 1, nee, 0));
        MXMOE_IO_FORWARD(load_f32(g, t, (size_t)E, &b->layer->router_b));
        info->has_router_bias = 1;
    }
    if (info->route.method == MXMOE_ROUTE_SIGMOID_GROUPED) {
        snprintf(name, sizeof name, "blk.%d.exp_probs_b.bias", L);
        MXMOE_IO_FORWARD(find(g, name, 0, &t));
        if (t != NULL) {
            MXMOE_IO_FORWARD(check(g, t, 1, nee, 0));
            MXMOE_IO_FORWARD(load_f32(g, t, (size_t)E, &b->correction));
        }
    }
    /* Expert biases (gpt-oss): all three or none. */
    const gguf_tensor* bias[3];
    static const char* const bias_names[3] = {"gate", "up", "down"};
    int biases = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.bias", L, bias_names[i]);
        MXMOE_IO_FORWARD(find(g, name, 0, &bias[i]));
        biases += bias[i] != NULL;
    }
    if (biases != 0 && biases != 3) {
        return io_fail(b->err, MXMOE_ERR_FORMAT, g->path,
                       "layer %d has %d of the 3 expert bias tensors ffn_{gate,up,down}_exps.bias",
                       L, biases);
    }
    if (biases == 3) {
        int64_t ne_i[2] = {I, E}, ne_h[2] = {H, E};
        MXMOE_IO_FORWARD(check(g, bias[0], 2, ne_i, 0));
        MXMOE_IO_FORWARD(check(g, bias[1], 2, ne_i, 0));
        MXMOE_IO_FORWARD(check(g, bias[2], 2, ne_h, 0));
        float *gb = NULL, *ub = NULL;
        MXMOE_IO_FORWARD(load_f32(g, bias[0], (size_t)(E * I), &gb));
        mxmoe_status st = load_f32(g, bias[1], (size_t)(E * I), &ub);
        b->b13 = st == MXMOE_OK ? malloc((size_t)(E * 2 * I) * sizeof *b->b13) : NULL;
        if (st == MXMOE_OK && b->b13 == NULL) {
            st = io_fail(b->err, MXMOE_ERR_NO_MEMORY, g->path, "out of memory");
        }
        for (int64_t e = 0; st == MXMOE_OK && e < E; e++) { /* gate‖up, as the weights */
            memcpy(b->b13 + e * 2 * I, gb + e * I, (size_t)I * sizeof(float));
            memcpy(b->b13 + e * 2 * I + I, ub + e * I, (size_t)I * sizeof(float));
        }
        free(gb);
        free(ub);
        MXMOE_IO_FORWARD(st);
        MXMOE_IO_FORWARD(load_f32(g, bias[2], (size_t)(E * H), &b->b2));
    }
    return MXMOE_OK;
}

mxmoe_status layer_load_gguf(layer_build* b, const char* path) {
    gg g;
    memset(&g, 0, sizeof g);
    g.b = b;
    g.path = path;
    mxmoe_status st = load(&g);
    gguf_close(g.f);
    return st;
}
