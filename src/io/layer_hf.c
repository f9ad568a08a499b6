/*
 * layer_hf.c — loading MoE layer L from a Hugging Face model folder: compressed-tensors
 * `mxfp4-pack-quantized`, gpt-oss MXFP4, and unquantized (BF16/F16/F32) checkpoints.
 *
 * config.json gives the format (quantization_config), the dimensions and the routing; the index
 * gives each tensor's shard. Every tensor is checked against the shape the config implies
 * before a byte of it is used, and every message names the shard and the tensor.
 *
 * Tensor names (formats.md §4, seed_pr.md §9):
 *   per-expert Linears   <prefix>.experts.<e>.{gate_proj,up_proj,down_proj | w1,w3,w2}
 *                        .weight_packed U8 [N, K/2] + .weight_scale U8 [N, K/32]  (or .weight)
 *   router               <prefix>.gate.weight [E, H] (+ .e_score_correction_bias [E])
 *   gpt-oss              model.layers.L.mlp.router.{weight,bias},
 *                        model.layers.L.mlp.experts.{gate_up,down}_proj_{blocks,scales,bias}
 *                        (unquantized gpt-oss: experts.gate_up_proj [E, H, 2I], down_proj [E, I,
 * H]) with <prefix> one of model.layers.L.mlp (Qwen-MoE, DeepSeek, OLMoE), model.layers.L.
 * block_sparse_moe (Mixtral), and the same under model.language_model. / language_model.model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_common.h"
#include "io/layer_internal.h"

typedef struct hf {
    layer_build* b;
    model_dir* dir;
    char* config_path;
    const json_value* cfg; /* config.json, or its text_config for multimodal models */
    char prefix[96];       /* the MoE block's tensor prefix, e.g. "model.layers.3.mlp" */
    const char* proj[3];   /* gate, up, down names */
} hf;

#define NAME_MAX_LEN 256

/* ---------------------------------------------------------------------------------------------
 * Config
 */

/* The first of `keys` present in the config as an integer: 1, 0 if none, or an error. */
static mxmoe_status cfg_int(hf* h, const char* const* keys, int64_t* out, int* found) {
    *found = 0;
    for (int i = 0; keys[i] != NULL; i++) {
        int rc = json_get_int(h->cfg, keys[i], out);
        if (rc < 0) {
            return io_fail(h->b->err, MXMOE_ERR_FORMAT, h->config_path, "\"%s\" must be an integer",
                           keys[i]);
        }
        if (rc == 1) {
            *found = 1;
            return MXMOE_OK;
        }
    }
    return MXMOE_OK;
}

static mxmoe_status cfg_required(hf* h, const char* const* keys, int64_t min, int64_t max,
                                 int64_t* out, const char* what) {
    int found;
    MXMOE_IO_FORWARD(cfg_int(h, keys, out, &found));
    if (!found) {
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, h->config_path, "no \"%s\" (%s)%s", keys[0],
                       what, keys[1] != NULL ? ", nor its other names" : "");
    }
    if (*out < min || *out > max) {
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, h->config_path,
                       "\"%s\" = %lld is outside [%lld, %lld]", keys[0], (long long)*out,
                       (long long)min, (long long)max);
    }
    return MXMOE_OK;
}

static mxmoe_status cfg_string(hf* h, const char* key, const char** out) {
    *out = NULL;
    if (json_get_string(h->cfg, key, out) < 0) {
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, h->config_path, "\"%s\" must be a string", key);
    }
    return MXMOE_OK;
}

/* The format from quantization_config. */
static mxmoe_status detect_format(hf* h, const json_value* config, mxmoe_model_format* format) {
    const json_value* qc = json_get(config, "quantization_config");
    if (qc == NULL || qc->kind == JSON_NULL) {
        *format = MXMOE_MODEL_UNQUANTIZED;
        return MXMOE_OK;
    }
    const char* method = NULL;
    if (qc->kind != JSON_OBJECT || json_get_string(qc, "quant_method", &method) != 1) {
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, h->config_path,
                       "quantization_config has no \"quant_method\" string");
    }
    if (strcmp(method, "mxfp4") == 0) {
        *format = MXMOE_MODEL_GPT_OSS;
        return MXMOE_OK;
    }
    if (strcmp(method, "compressed-tensors") != 0) {
        return io_fail(h->b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                       "quantization_config.quant_method \"%.40s\" is not supported (mxmoe reads "
                       "compressed-tensors mxfp4-pack-quantized, gpt-oss mxfp4, GGUF MXFP4 and "
                       "unquantized checkpoints)",
                       method);
    }
    /* The format may be given once for all groups, or per group. */
    const char* fmt = NULL;
    json_get_string(qc, "format", &fmt);
    const json_value* groups = json_get(qc, "config_groups");
    int mxfp4_group = 0;
    for (size_t i = 0; groups != NULL && groups->kind == JSON_OBJECT && i < groups->count; i++) {
        const json_value* g = &groups->items[i];
        const char* gf = NULL;
        json_get_string(g, "format", &gf);
        const json_value* w = json_get(g, "weights");
        int64_t bits = 0, group = 0;
        const char* type = NULL;
        json_get_int(w, "num_bits", &bits);
        json_get_int(w, "group_size", &group);
        json_get_string(w, "type", &type);
        int is_mx = (gf != NULL && strcmp(gf, "mxfp4-pack-quantized") == 0) ||
                    (gf == NULL && fmt != NULL && strcmp(fmt, "mxfp4-pack-quantized") == 0);
        if (is_mx && ((bits != 0 && bits != 4) || (group != 0 && group != 32) ||
                      (type != NULL && strcmp(type, "float") != 0))) {
            return io_fail(h->b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                           "quantization_config group \"%s\": %lld-bit %s weights in groups of "
                           "%lld are not MXFP4",
                           groups->keys[i], (long long)bits, type ? type : "?", (long long)group);
        }
        mxfp4_group |= is_mx;
    }
    if (!mxfp4_group && (fmt == NULL || strcmp(fmt, "mxfp4-pack-quantized") != 0)) {
        return io_fail(h->b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                       "compressed-tensors format \"%.40s\" is not supported (only "
                       "mxfp4-pack-quantized)",
                       fmt != NULL ? fmt : "(none)");
    }
    *format = MXMOE_MODEL_COMPRESSED_TENSORS;
    return MXMOE_OK;
}

/* Dimensions, routing and activation from the config. */
static mxmoe_status read_config(hf* h, const json_value* config) {
    layer_build* b = h->b;
    mxmoe_layer_info* info = &b->layer->info;
    MXMOE_IO_FORWARD(detect_format(h, config, &info->format));
    /* Multimodal wrappers keep the decoder's numbers in text_config. */
    const json_value* text = json_get(config, "text_config");
    h->cfg = (text != NULL && text->kind == JSON_OBJECT && json_get(config, "hidden_size") == NULL)
                 ? text
                 : config;
    const char* model_type = NULL;
    MXMOE_IO_FORWARD(cfg_string(h, "model_type", &model_type));
    snprintf(info->model_type, sizeof info->model_type, "%s", model_type ? model_type : "");
    int is_gpt_oss = strcmp(info->model_type, "gpt_oss") == 0;
    if (info->format == MXMOE_MODEL_GPT_OSS && !is_gpt_oss) {
        return io_fail(b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                       "quant_method \"mxfp4\" with model_type \"%s\": only gpt_oss is known",
                       info->model_type);
    }

    static const char* const k_hidden[] = {"hidden_size", NULL};
    static const char* const k_layers[] = {"num_hidden_layers", NULL};
    static const char* const k_experts[] = {"num_local_experts", "num_experts", "n_routed_experts",
                                            NULL};
    static const char* const k_topk[] = {"num_experts_per_tok", "experts_per_token", NULL};
    static const char* const k_inter[] = {"moe_intermediate_size", "intermediate_size", NULL};
    int64_t hidden, experts, topk, inter, layers = 0;
    int found;
    MXMOE_IO_FORWARD(cfg_required(h, k_hidden, 1, INT32_MAX, &hidden, "the hidden size"));
    MXMOE_IO_FORWARD(cfg_required(h, k_experts, 1, 1 << 20, &experts, "the expert count"));
    MXMOE_IO_FORWARD(cfg_required(h, k_topk, 1, experts, &topk, "experts per token"));
    MXMOE_IO_FORWARD(cfg_required(h, k_inter, 1, INT32_MAX, &inter, "the expert width"));
    MXMOE_IO_FORWARD(cfg_int(h, k_layers, &layers, &found));
    if (hidden % MXMOE_BLOCK != 0 || inter % MXMOE_BLOCK != 0) {
        return io_fail(b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                       "hidden_size %lld and the expert width %lld must be multiples of 32 for "
                       "MXFP4",
                       (long long)hidden, (long long)inter);
    }
    if (found && info->layer >= layers) {
        return io_fail(b->err, MXMOE_ERR_INVALID_ARGUMENT, h->config_path,
                       "layer %d is out of range: the model has %lld layers (num_hidden_layers)",
                       (int)info->layer, (long long)layers);
    }
    info->num_layers = (int32_t)layers;
    info->num_experts = (int32_t)experts;
    info->top_k = (int32_t)topk;
    info->hidden = hidden;
    info->intermediate = inter;
    b->E = experts;
    b->H = hidden;
    b->I = inter;

    layer_routing_keys rk = {info->model_type, NULL, NULL, -1, 0, 0, 0.0};
    MXMOE_IO_FORWARD(cfg_string(h, "scoring_func", &rk.scoring));
    MXMOE_IO_FORWARD(cfg_string(h, "topk_method", &rk.topk_method));
    int norm;
    if (json_get_bool(h->cfg, "norm_topk_prob", &norm) == 1) {
        rk.norm_topk_prob = norm;
    }
    json_get_int(h->cfg, "n_group", &rk.n_group);
    json_get_int(h->cfg, "topk_group", &rk.topk_group);
    json_get_double(h->cfg, "routed_scaling_factor", &rk.routed_scaling_factor);
    MXMOE_IO_FORWARD(layer_routing(&rk, info, h->config_path, b->err));

    mxmoe_act_params* act = &info->moe.act;
    if (is_gpt_oss) {
        double limit = 7.0;
        json_get_double(h->cfg, "swiglu_limit", &limit);
        act->activation = MXMOE_ACT_SWIGLU_OAI;
        act->layout = MXMOE_GATE_UP_INTERLEAVED;
        act->swiglu_alpha = 1.702f; /* fixed in gpt-oss's code, not in its config */
        act->swiglu_limit = (float)limit;
    } else {
        const char* hidden_act = NULL;
        MXMOE_IO_FORWARD(cfg_string(h, "hidden_act", &hidden_act));
        if (hidden_act == NULL || strcmp(hidden_act, "silu") == 0 ||
            strcmp(hidden_act, "swish") == 0) {
            act->activation = MXMOE_ACT_SILU_MUL;
        } else if (strcmp(hidden_act, "gelu_pytorch_tanh") == 0 ||
                   strcmp(hidden_act, "gelu_tanh") == 0) {
            act->activation = MXMOE_ACT_GELU_TANH_MUL;
        } else {
            return io_fail(b->err, MXMOE_ERR_UNSUPPORTED, h->config_path,
                           "hidden_act \"%.40s\" is not supported (silu, gelu_pytorch_tanh)",
                           hidden_act);
        }
        act->layout = MXMOE_GATE_UP_CONCAT;
    }
    int64_t shared = 0;
    static const char* const k_shared[] = {"n_shared_experts", "num_shared_experts", NULL};
    MXMOE_IO_FORWARD(cfg_int(h, k_shared, &shared, &found));
    if (!found) {
        int64_t width = 0;
        json_get_int(h->cfg, "shared_expert_intermediate_size", &width);
        shared = width > 0;
    }
    info->num_shared_experts = (int32_t)shared;
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Tensors
 */

static const char* where(const hf* h) {
    return model_dir_index_name(h->dir) != NULL ? model_dir_index_name(h->dir)
                                                : "the folder's safetensors files";
}

/* Looks up `name`; *file = NULL when absent. */
static mxmoe_status lookup(hf* h, const char* name, mxmoe_st_file** file, size_t* index) {
    return model_dir_find(h->dir, name, file, index, h->b->err);
}

static mxmoe_status require(hf* h, const char* name, mxmoe_st_file** file, size_t* index,
                            const char* why) {
    MXMOE_IO_FORWARD(lookup(h, name, file, index));
    if (*file == NULL) {
        io_quoted q;
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, model_dir_path(h->dir),
                       "tensor '%s' (%s) is not in %s", io_quote_head(q, name), why, where(h));
    }
    return MXMOE_OK;
}

/* Checks dtype (a mask of mxmoe_st_dtype bits) and shape; messages name shard and tensor. */
static mxmoe_status check_tensor(hf* h, mxmoe_st_file* f, size_t index, unsigned dtypes,
                                 int32_t ndim, const int64_t* dims, const char* expected) {
    const mxmoe_st_tensor_info* t = mxmoe_st_info(f, index);
    int ok = t->ndim == ndim && ((dtypes >> t->dtype) & 1u);
    for (int32_t d = 0; ok && d < ndim; d++) {
        ok = t->shape[d] == dims[d];
    }
    if (ok) {
        return MXMOE_OK;
    }
    char have[160], want[160];
    io_format_shape(have, sizeof have, t->shape, t->ndim);
    io_format_shape(want, sizeof want, dims, ndim);
    io_quoted q;
    return io_fail(h->b->err, MXMOE_ERR_FORMAT, model_dir_file_path(h->dir, f),
                   "tensor '%s': %s %s, expected %s %s (%s)", io_quote_head(q, t->name),
                   mxmoe_st_dtype_name(t->dtype), have, expected, want,
                   "from config.json's dimensions");
}

#define BIT(d)   (1u << (d))
#define FLOAT_ST (BIT(MXMOE_ST_F32) | BIT(MXMOE_ST_BF16) | BIT(MXMOE_ST_F16))
#define BYTE_ST  (BIT(MXMOE_ST_U8) | BIT(MXMOE_ST_F8_E8M0))

static mxmoe_status read_bytes(hf* h, mxmoe_st_file* f, size_t index, uint64_t offset, void* dst,
                               size_t bytes) {
    return mxmoe_st_read(f, index, offset, dst, bytes, h->b->err);
}

static mxmoe_dtype float_dtype(mxmoe_st_dtype d) {
    mxmoe_dtype m = MXMOE_F32;
    mxmoe_st_dtype_to_mxmoe(d, &m);
    return m;
}

/* A float tensor of `n` elements (shape checked by the caller) as FP32 into dst. */
static mxmoe_status read_f32(hf* h, mxmoe_st_file* f, size_t index, float* dst, size_t n) {
    const mxmoe_st_tensor_info* t = mxmoe_st_info(f, index);
    void* raw = malloc((size_t)t->nbytes ? (size_t)t->nbytes : 1);
    if (raw == NULL) {
        return io_fail(h->b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
    }
    mxmoe_status st = read_bytes(h, f, index, 0, raw, (size_t)t->nbytes);
    if (st == MXMOE_OK) {
        layer_to_f32(float_dtype(t->dtype), raw, n, dst);
    }
    free(raw);
    return st;
}

/* Expert Linear `base` ([N, K] weight): either weight_packed + weight_scale (copied), or an
 * unquantized weight (quantized at load), into packed (N x K/2) and scales (N x K/32). */
static mxmoe_status load_linear(hf* h, const char* base, int64_t n, int64_t k,
                                unsigned char* packed, unsigned char* scales) {
    char name[NAME_MAX_LEN];
    mxmoe_st_file* f;
    size_t i;
    snprintf(name, sizeof name, "%s.weight_packed", base);
    MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
    if (f != NULL) {
        int64_t dp[2] = {n, k / 2}, ds[2] = {n, k / MXMOE_BLOCK};
        MXMOE_IO_FORWARD(check_tensor(h, f, i, BIT(MXMOE_ST_U8), 2, dp, "U8"));
        MXMOE_IO_FORWARD(read_bytes(h, f, i, 0, packed, (size_t)(n * k / 2)));
        snprintf(name, sizeof name, "%s.weight_global_scale", base);
        MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
        if (f != NULL) {
            io_quoted q;
            return io_fail(h->b->err, MXMOE_ERR_UNSUPPORTED, model_dir_file_path(h->dir, f),
                           "tensor '%s': a global scale means NVFP4, not MXFP4",
                           io_quote_head(q, name));
        }
        snprintf(name, sizeof name, "%s.weight_scale", base);
        MXMOE_IO_FORWARD(require(h, name, &f, &i, "the E8M0 scales of weight_packed"));
        MXMOE_IO_FORWARD(check_tensor(h, f, i, BYTE_ST, 2, ds, "U8"));
        return read_bytes(h, f, i, 0, scales, (size_t)(n * k / MXMOE_BLOCK));
    }
    snprintf(name, sizeof name, "%s.weight", base);
    MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
    if (f == NULL) {
        io_quoted q;
        return io_fail(h->b->err, MXMOE_ERR_FORMAT, model_dir_path(h->dir),
                       "tensor '%s.weight_packed' (or an unquantized '.weight') is not in %s",
                       io_quote_head(q, base), where(h));
    }
    int64_t dw[2] = {n, k};
    MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 2, dw, "F32/BF16/F16"));
    const mxmoe_st_tensor_info* t = mxmoe_st_info(f, i);
    const void* x = mxmoe_st_data(f, i);
    void* copy = NULL;
    if (x == NULL) {
        copy = malloc((size_t)t->nbytes);
        if (copy == NULL) {
            return io_fail(h->b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
        }
        mxmoe_status st = read_bytes(h, f, i, 0, copy, (size_t)t->nbytes);
        if (st != MXMOE_OK) {
            free(copy);
            return st;
        }
        x = copy;
    } else if (((uintptr_t)x % mxmoe_st_dtype_size(t->dtype)) != 0) {
        copy = malloc((size_t)t->nbytes); /* an unaligned tensor in the file: align it */
        if (copy == NULL) {
            return io_fail(h->b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
        }
        memcpy(copy, x, (size_t)t->nbytes);
        x = copy;
    }
    mxmoe_status st = layer_build_quantize(h->b, float_dtype(t->dtype), x, n, k, packed, scales,
                                           model_dir_file_path(h->dir, f), name);
    free(copy);
    return st;
}

/* The router [E, H]: a float weight, or an MXFP4 pair decoded exactly. */
static mxmoe_status load_router(hf* h, const char* base) {
    layer_build* b = h->b;
    mxmoe_layer* L = b->layer;
    size_t n = (size_t)(b->E * b->H);
    L->router_w = malloc(n * sizeof *L->router_w);
    if (L->router_w == NULL) {
        return io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
    }
    char name[NAME_MAX_LEN];
    mxmoe_st_file* f;
    size_t i;
    int64_t dims[2] = {b->E, b->H};
    snprintf(name, sizeof name, "%s.weight", base);
    MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
    if (f != NULL) {
        MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 2, dims, "F32/BF16/F16"));
        MXMOE_IO_FORWARD(read_f32(h, f, i, L->router_w, n));
    } else {
        /* A quantized router (checkpoints that do not ignore it): decode MXFP4 exactly. */
        unsigned char* p = malloc(n / 2 + n / MXMOE_BLOCK);
        if (p == NULL) {
            return io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
        }
        mxmoe_status st = load_linear(h, base, b->E, b->H, p, p + n / 2);
        if (st != MXMOE_OK) {
            free(p);
            return st;
        }
        static const float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
        for (size_t j = 0; j < n; j++) {
            unsigned code = (p[j / 2] >> (4 * (j % 2))) & 0xFu;
            unsigned scale = p[n / 2 + j / MXMOE_BLOCK];
            float v = e2m1[code & 7u] * (code & 8u ? -1.0f : 1.0f);
            L->router_w[j] = scale == 0xFF ? NAN : ldexpf(v, (int)scale - 127);
        }
        free(p);
    }
    snprintf(name, sizeof name, "%s.bias", base);
    MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
    if (f != NULL) {
        int64_t de[1] = {b->E};
        MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 1, de, "F32/BF16/F16"));
        L->router_b = malloc((size_t)b->E * sizeof *L->router_b);
        if (L->router_b == NULL) {
            return io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
        }
        MXMOE_IO_FORWARD(read_f32(h, f, i, L->router_b, (size_t)b->E));
        L->info.has_router_bias = 1;
    }
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Per-expert checkpoints (compressed-tensors, unquantized)
 */

/* Finds the MoE block of layer L: the prefix and projection names whose expert 0 exists. */
static mxmoe_status find_moe_block(hf* h) {
    static const char* const prefixes[] = {
        "model.layers.%d.mlp", "model.layers.%d.block_sparse_moe",
        "model.language_model.layers.%d.mlp", "language_model.model.layers.%d.mlp"};
    static const char* const names[2][3] = {{"gate_proj", "up_proj", "down_proj"},
                                            {"w1", "w3", "w2"}};
    static const char* const suffixes[] = {"weight_packed", "weight"};
    int layer = h->b->layer->info.layer;
    char name[NAME_MAX_LEN];
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        for (int n = 0; n < 2; n++) {
            for (int s = 0; s < 2; s++) {
                char prefix[96];
                snprintf(prefix, sizeof prefix, prefixes[p], layer);
                snprintf(name, sizeof name, "%s.experts.0.%s.%s", prefix, names[n][0], suffixes[s]);
                mxmoe_st_file* f;
                size_t i;
                MXMOE_IO_FORWARD(lookup(h, name, &f, &i));
                if (f != NULL) {
                    snprintf(h->prefix, sizeof h->prefix, "%s", prefix);
                    memcpy(h->proj, names[n], sizeof h->proj);
                    return MXMOE_OK;
                }
            }
        }
    }
    return io_fail(h->b->err, MXMOE_ERR_FORMAT, model_dir_path(h->dir),
                   "layer %d has no routed experts in %s: no 'model.layers.%d.mlp.experts.0."
                   "gate_proj.weight_packed' (nor .weight, w1, block_sparse_moe or "
                   "language_model variants); is it a dense layer?",
                   layer, where(h), layer);
}

static mxmoe_status load_per_expert(hf* h) {
    layer_build* b = h->b;
    MXMOE_IO_FORWARD(find_moe_block(h));
    MXMOE_IO_FORWARD(layer_build_alloc(b, model_dir_path(h->dir)));
    int64_t E = b->E, H = b->H, I = b->I;
    size_t row13 = (size_t)(H / 2), srow13 = (size_t)(H / MXMOE_BLOCK);
    size_t row2 = (size_t)(I / 2), srow2 = (size_t)(I / MXMOE_BLOCK);
    char base[NAME_MAX_LEN];
    for (int64_t e = 0; e < E; e++) {
        size_t r13 = (size_t)(e * 2 * I), r2 = (size_t)(e * H);
        /* w13 = gate rows [0, I) then up rows [I, 2I) (vLLM's w1 / w3 shards). */
        snprintf(base, sizeof base, "%s.experts.%lld.%s", h->prefix, (long long)e, h->proj[0]);
        MXMOE_IO_FORWARD(load_linear(h, base, I, H, b->w13p + r13 * row13, b->w13s + r13 * srow13));
        snprintf(base, sizeof base, "%s.experts.%lld.%s", h->prefix, (long long)e, h->proj[1]);
        MXMOE_IO_FORWARD(load_linear(h, base, I, H, b->w13p + (r13 + (size_t)I) * row13,
                                     b->w13s + (r13 + (size_t)I) * srow13));
        snprintf(base, sizeof base, "%s.experts.%lld.%s", h->prefix, (long long)e, h->proj[2]);
        MXMOE_IO_FORWARD(load_linear(h, base, H, I, b->w2p + r2 * row2, b->w2s + r2 * srow2));
    }
    /* One expert past the last must not exist: a config that undercounts is an error. */
    snprintf(base, sizeof base, "%s.experts.%lld.%s.weight_packed", h->prefix, (long long)E,
             h->proj[0]);
    mxmoe_st_file* f;
    size_t i;
    MXMOE_IO_FORWARD(lookup(h, base, &f, &i));
    if (f != NULL) {
        io_quoted q;
        return io_fail(b->err, MXMOE_ERR_FORMAT, model_dir_file_path(h->dir, f),
                       "tensor '%s' exists but config.json says %lld experts",
                       io_quote_head(q, base), (long long)E);
    }
    snprintf(base, sizeof base, "%s.gate", h->prefix);
    MXMOE_IO_FORWARD(load_router(h, base));
    if (b->layer->info.route.method == MXMOE_ROUTE_SIGMOID_GROUPED) {
        snprintf(base, sizeof base, "%s.gate.e_score_correction_bias", h->prefix);
        MXMOE_IO_FORWARD(lookup(h, base, &f, &i));
        if (f != NULL) {
            int64_t de[1] = {E};
            MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 1, de, "F32/BF16/F16"));
            b->correction = malloc((size_t)E * sizeof *b->correction);
            if (b->correction == NULL) {
                return io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir),
                               "out of memory");
            }
            MXMOE_IO_FORWARD(read_f32(h, f, i, b->correction, (size_t)E));
        }
    }
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * gpt-oss
 */

/* One gpt-oss MXFP4 tensor (blocks or scales), located and checked. */
typedef struct located {
    mxmoe_st_file* file;
    size_t index;
} located;

/* `<base>_blocks` [E, R, K/32, 16] + `<base>_scales` [E, R, K/32], checked. */
static mxmoe_status locate_blocks(hf* h, const char* base, int64_t rows, int64_t k, located* blocks,
                                  located* scales) {
    layer_build* b = h->b;
    char name[NAME_MAX_LEN];
    int64_t db[4] = {b->E, rows, k / MXMOE_BLOCK, 16}, ds[3] = {b->E, rows, k / MXMOE_BLOCK};
    snprintf(name, sizeof name, "%s_blocks", base);
    MXMOE_IO_FORWARD(require(h, name, &blocks->file, &blocks->index, "the gpt-oss MXFP4 blocks"));
    MXMOE_IO_FORWARD(check_tensor(h, blocks->file, blocks->index, BIT(MXMOE_ST_U8), 4, db, "U8"));
    snprintf(name, sizeof name, "%s_scales", base);
    MXMOE_IO_FORWARD(require(h, name, &scales->file, &scales->index, "the gpt-oss E8M0 scales"));
    return check_tensor(h, scales->file, scales->index, BYTE_ST, 3, ds, "U8");
}

/* The bytes of a located tensor: in place (zero-copy) or read into dst. */
static mxmoe_status take(hf* h, const located* t, unsigned char** dst) {
    if (h->b->zero_copy) {
        *dst = (unsigned char*)mxmoe_st_data(t->file, t->index);
        return MXMOE_OK;
    }
    const mxmoe_st_tensor_info* info = mxmoe_st_info(t->file, t->index);
    return read_bytes(h, t->file, t->index, 0, *dst, (size_t)info->nbytes);
}

static mxmoe_status load_bias(hf* h, const char* name, int64_t cols, float** out) {
    layer_build* b = h->b;
    mxmoe_st_file* f;
    size_t i;
    MXMOE_IO_FORWARD(require(h, name, &f, &i, "a gpt-oss expert bias"));
    int64_t d[2] = {b->E, cols};
    MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 2, d, "F32/BF16/F16"));
    *out = malloc((size_t)(b->E * cols) * sizeof **out);
    if (*out == NULL) {
        return io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
    }
    return read_f32(h, f, i, *out, (size_t)(b->E * cols));
}

/* Unquantized gpt-oss keeps experts as [E, K, N] (x @ W): transposed, then quantized. */
static mxmoe_status load_transposed(hf* h, const char* name, int64_t n, int64_t k,
                                    unsigned char* packed, unsigned char* scales) {
    layer_build* b = h->b;
    mxmoe_st_file* f;
    size_t i;
    MXMOE_IO_FORWARD(require(h, name, &f, &i, "unquantized gpt-oss experts"));
    int64_t d[3] = {b->E, k, n};
    MXMOE_IO_FORWARD(check_tensor(h, f, i, FLOAT_ST, 3, d, "F32/BF16/F16"));
    const mxmoe_st_tensor_info* t = mxmoe_st_info(f, i);
    size_t es = mxmoe_st_dtype_size(t->dtype), slab = (size_t)(k * n);
    unsigned char* raw = malloc(slab * es);
    float* in = malloc(slab * sizeof *in);
    float* tr = malloc(slab * sizeof *tr);
    mxmoe_status st = MXMOE_OK;
    if (raw == NULL || in == NULL || tr == NULL) {
        st = io_fail(b->err, MXMOE_ERR_NO_MEMORY, model_dir_path(h->dir), "out of memory");
    }
    for (int64_t e = 0; e < b->E && st == MXMOE_OK; e++) {
        st = read_bytes(h, f, i, (uint64_t)e * slab * es, raw, slab * es);
        if (st != MXMOE_OK) {
            break;
        }
        layer_to_f32(float_dtype(t->dtype), raw, slab, in);
        for (int64_t r = 0; r < k; r++) {
            for (int64_t c = 0; c < n; c++) {
                tr[c * k + r] = in[r * n + c];
            }
        }
        st = layer_build_quantize(b, MXMOE_F32, tr, n, k, packed + (size_t)(e * n * (k / 2)),
                                  scales + (size_t)(e * n * (k / MXMOE_BLOCK)),
                                  model_dir_file_path(h->dir, f), name);
    }
    free(raw);
    free(in);
    free(tr);
    return st;
}

static mxmoe_status load_gpt_oss(hf* h) {
    layer_build* b = h->b;
    int layer = b->layer->info.layer;
    int64_t H = b->H, I = b->I;
    char base[NAME_MAX_LEN];
    snprintf(h->prefix, sizeof h->prefix, "model.layers.%d.mlp", layer);
    if (b->layer->info.format == MXMOE_MODEL_UNQUANTIZED) {
        MXMOE_IO_FORWARD(layer_build_alloc(b, model_dir_path(h->dir)));
        snprintf(base, sizeof base, "%s.experts.gate_up_proj", h->prefix);
        MXMOE_IO_FORWARD(load_transposed(h, base, 2 * I, H, b->w13p, b->w13s));
        snprintf(base, sizeof base, "%s.experts.down_proj", h->prefix);
        MXMOE_IO_FORWARD(load_transposed(h, base, H, I, b->w2p, b->w2s));
    } else {
        located t[4];
        snprintf(base, sizeof base, "%s.experts.gate_up_proj", h->prefix);
        MXMOE_IO_FORWARD(locate_blocks(h, base, 2 * I, H, &t[0], &t[1]));
        snprintf(base, sizeof base, "%s.experts.down_proj", h->prefix);
        MXMOE_IO_FORWARD(locate_blocks(h, base, H, I, &t[2], &t[3]));
        /* The stored layout is already the canonical one (interleaved gate/up rows, which the
         * activation reads as such): on the CPU backend, with the shards mapped, the weights are
         * used in place. */
        b->zero_copy = b->layer->device == MXMOE_DEVICE_HOST;
        for (int k = 0; k < 4; k++) {
            b->zero_copy = b->zero_copy && mxmoe_st_data(t[k].file, t[k].index) != NULL;
        }
        if (!b->zero_copy) {
            MXMOE_IO_FORWARD(layer_build_alloc(b, model_dir_path(h->dir)));
        }
        MXMOE_IO_FORWARD(take(h, &t[0], &b->w13p));
        MXMOE_IO_FORWARD(take(h, &t[1], &b->w13s));
        MXMOE_IO_FORWARD(take(h, &t[2], &b->w2p));
        MXMOE_IO_FORWARD(take(h, &t[3], &b->w2s));
    }
    snprintf(base, sizeof base, "%s.experts.gate_up_proj_bias", h->prefix);
    MXMOE_IO_FORWARD(load_bias(h, base, 2 * I, &b->b13));
    snprintf(base, sizeof base, "%s.experts.down_proj_bias", h->prefix);
    MXMOE_IO_FORWARD(load_bias(h, base, H, &b->b2));
    snprintf(base, sizeof base, "%s.router", h->prefix);
    return load_router(h, base);
}

/* ---------------------------------------------------------------------------------------------
 * Entry
 */

mxmoe_status layer_load_hf(layer_build* b, const char* dir_path) {
    hf h;
    memset(&h, 0, sizeof h);
    h.b = b;
    h.config_path = model_join(dir_path, MODEL_CONFIG_NAME);
    if (h.config_path == NULL) {
        return io_fail(b->err, MXMOE_ERR_NO_MEMORY, dir_path, "out of memory");
    }
    mxmoe_status st = model_dir_open(dir_path, &h.dir, b->err);
    if (st == MXMOE_OK) {
        st = read_config(&h, model_dir_config(h.dir));
    }
    if (st == MXMOE_OK) {
        st = strcmp(b->layer->info.model_type, "gpt_oss") == 0 ? load_gpt_oss(&h)
                                                               : load_per_expert(&h);
    }
    if (st == MXMOE_OK && b->zero_copy) {
        b->layer->keep = h.dir; /* the weights point into its mappings */
        h.dir = NULL;
    }
    model_dir_close(h.dir);
    free(h.config_path);
    return st;
}
