/*
 * layer_load.c — mxmoe_layer_load: pick the loader for a path, then place the canonical layer
 * where the context's backend computes; plus what the loaders share (buffers, quantization at
 * load, dtype conversion, routing rules) and the layer's lifetime.
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* stat */
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/io_common.h"
#include "io/layer_internal.h"

const char* mxmoe_model_format_name(mxmoe_model_format format) {
    switch (format) {
    case MXMOE_MODEL_COMPRESSED_TENSORS:
        return "compressed-tensors";
    case MXMOE_MODEL_GPT_OSS:
        return "gpt-oss";
    case MXMOE_MODEL_GGUF:
        return "gguf";
    case MXMOE_MODEL_UNQUANTIZED:
        return "unquantized";
    default:
        return "invalid";
    }
}

mxmoe_layer_params mxmoe_layer_params_default(void) {
    mxmoe_layer_params p;
    memset(&p, 0, sizeof p);
    p.layer = 0;
    p.weight_rule = MXMOE_RULE_EVEN;
    p.act_rule = MXMOE_RULE_EVEN;
    p.act_dtype = MXMOE_BF16;
    p.gemm_dtype = MXMOE_BF16;
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Shared by the loaders
 */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
    uint32_t bits;
    if (exponent == 0) {
        float v = (float)mantissa * 5.9604644775390625e-8f; /* m * 2^-24: exact */
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void layer_to_f32(mxmoe_dtype dtype, const void* src, size_t n, float* dst) {
    const unsigned char* p = src;
    for (size_t i = 0; i < n; i++) {
        if (dtype == MXMOE_F32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (dtype == MXMOE_BF16) {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[i], &bits, 4);
            } else {
                dst[i] = half_to_float(h);
            }
        }
    }
}

mxmoe_status layer_build_alloc(layer_build* b, const char* source) {
    int64_t E = b->E, H = b->H, I = b->I;
    /* Sizes were checked against overflow by the caller's dimension checks (each < 2^31 and the
     * products below are checked here). */
    uint64_t w13 = 0, w2 = 0;
    if (io_mul_bytes(E * 2 * I, (size_t)(H / 2), &w13) != 0 ||
        io_mul_bytes(E * H, (size_t)(I / 2), &w2) != 0) {
        return io_fail(b->err, MXMOE_ERR_OVERFLOW, source, "expert weights too large");
    }
    b->w13p = malloc((size_t)w13);
    b->w13s = malloc((size_t)(w13 / 16));
    b->w2p = malloc((size_t)w2);
    b->w2s = malloc((size_t)(w2 / 16));
    if (b->w13p == NULL || b->w13s == NULL || b->w2p == NULL || b->w2s == NULL) {
        return io_fail(b->err, MXMOE_ERR_NO_MEMORY, source,
                       "out of memory for %.1f MB of expert weights",
                       (double)(w13 + w2) * 17.0 / 16.0 / 1e6);
    }
    return MXMOE_OK;
}

mxmoe_status layer_build_cpu(layer_build* b, mxmoe_ctx** cpu, const char* source) {
    if (b->cpu == NULL) {
        mxmoe_ctx_params p = mxmoe_ctx_params_default();
        p.backend = MXMOE_BACKEND_CPU;
        mxmoe_status st = mxmoe_ctx_init(&b->cpu, &p);
        if (st != MXMOE_OK) {
            return io_fail(b->err, st, source, "cannot create a CPU context for conversion: %s",
                           mxmoe_status_string(st));
        }
    }
    *cpu = b->cpu;
    return MXMOE_OK;
}

mxmoe_status layer_build_quantize(layer_build* b, mxmoe_dtype dtype, const void* x, int64_t rows,
                                  int64_t k, unsigned char* packed, unsigned char* scales,
                                  const char* source, const char* what) {
    mxmoe_ctx* cpu = NULL;
    MXMOE_IO_FORWARD(layer_build_cpu(b, &cpu, source));
    int64_t xd[2] = {rows, k}, pd[2] = {rows, k / 2}, sd[2] = {rows, k / MXMOE_BLOCK};
    mxmoe_tensor xt = mxmoe_tensor_make((void*)x, dtype, 2, xd);
    mxmoe_mx_tensor q;
    q.packed = mxmoe_tensor_make(packed, MXMOE_U8, 2, pd);
    q.scales = mxmoe_tensor_make(scales, MXMOE_U8, 2, sd);
    q.scale_layout = MXMOE_SCALES_LINEAR;
    mxmoe_status st = mxmoe_quantize(cpu, &xt, b->params->weight_rule, &q);
    if (st != MXMOE_OK) {
        io_quoted qw;
        return io_fail(b->err, st, source, "tensor '%s': quantizing at load failed: %s",
                       io_quote_head(qw, what), mxmoe_ctx_last_error(cpu));
    }
    b->layer->info.quantized_at_load = 1;
    return MXMOE_OK;
}

mxmoe_status layer_routing(const layer_routing_keys* k, mxmoe_layer_info* info, const char* source,
                           mxmoe_io_error* err) {
    mxmoe_route_params* r = &info->route;
    *r = mxmoe_route_params_default();
    r->top_k = info->top_k;
    const char* type = k->model_type != NULL ? k->model_type : "";
    if (strcmp(type, "gpt_oss") == 0 || strcmp(type, "gpt-oss") == 0) {
        r->method = MXMOE_ROUTE_TOPK_SOFTMAX; /* top-k of the logits, softmax over those k */
        return MXMOE_OK;
    }
    const char* scoring = k->scoring != NULL ? k->scoring : "softmax";
    if (strcmp(scoring, "sigmoid") == 0) {
        if (k->topk_method != NULL && strcmp(k->topk_method, "noaux_tc") != 0) {
            return io_fail(err, MXMOE_ERR_UNSUPPORTED, source,
                           "sigmoid routing with topk_method \"%s\" is not supported (noaux_tc is)",
                           k->topk_method);
        }
        r->method = MXMOE_ROUTE_SIGMOID_GROUPED;
        r->num_groups = k->n_group > 0 ? (int32_t)k->n_group : 1;
        r->topk_groups = k->topk_group > 0 ? (int32_t)k->topk_group : r->num_groups;
        r->scaling_factor = k->routed_scaling_factor > 0 ? (float)k->routed_scaling_factor : 1.0f;
        r->renormalize = k->norm_topk_prob > 0;
        if (info->num_experts % r->num_groups != 0 || r->topk_groups > r->num_groups) {
            return io_fail(err, MXMOE_ERR_FORMAT, source,
                           "n_group = %d and topk_group = %d do not fit %d experts",
                           (int)r->num_groups, (int)r->topk_groups, (int)info->num_experts);
        }
        return MXMOE_OK;
    }
    if (strcmp(scoring, "softmax") != 0) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, source,
                       "router scoring function \"%s\" is not supported (softmax, sigmoid)",
                       scoring);
    }
    if (k->topk_method != NULL && strcmp(k->topk_method, "greedy") != 0) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, source,
                       "softmax routing with topk_method \"%s\" is not supported (greedy is)",
                       k->topk_method);
    }
    if (k->routed_scaling_factor > 0 && k->routed_scaling_factor != 1.0) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, source,
                       "softmax routing scaled by routed_scaling_factor = %g is not supported",
                       k->routed_scaling_factor);
    }
    r->method = MXMOE_ROUTE_SOFTMAX_TOPK;
    /* Mixtral always renormalizes the k weights; Qwen-MoE and others say so in norm_topk_prob. */
    r->renormalize = strcmp(type, "mixtral") == 0 ? 1 : k->norm_topk_prob > 0;
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Placing the canonical layer in backend memory
 */

/* Makes `bytes` at host pointer `p` reachable by the backend: on the CPU the host buffer itself
 * (adopted: freed with the layer unless borrowed), on CUDA a device copy. */
static mxmoe_status place(layer_build* b, void* p, size_t bytes, int borrowed, void** where,
                          const char* source) {
    mxmoe_layer* L = b->layer;
    if (L->device == MXMOE_DEVICE_HOST) {
        if (!borrowed) {
            L->host_blocks[L->host_count++] = p;
        }
        *where = p;
        return MXMOE_OK;
    }
    void* d = NULL;
    mxmoe_status st = mxmoe_malloc(L->ctx, bytes ? bytes : 1, &d);
    if (st == MXMOE_OK) {
        L->backend_blocks[L->backend_count++] = d;
        st = mxmoe_memcpy(L->ctx, d, p, bytes, MXMOE_COPY_HOST_TO_BACKEND);
    }
    if (!borrowed) {
        free(p);
    }
    if (st != MXMOE_OK) {
        return io_fail(b->err, st, source, "cannot place %.1f MB of weights on the %s backend: %s",
                       (double)bytes / 1e6, mxmoe_backend_name(mxmoe_ctx_backend(L->ctx)),
                       mxmoe_ctx_last_error(L->ctx));
    }
    *where = d;
    return MXMOE_OK;
}

static mxmoe_tensor device_tensor(const mxmoe_layer* L, void* data, mxmoe_dtype dtype, int32_t ndim,
                                  const int64_t* dims) {
    mxmoe_tensor t = mxmoe_tensor_make(data, dtype, ndim, dims);
    t.device = L->device;
    return t;
}

static mxmoe_status finish(layer_build* b, const char* source) {
    mxmoe_layer* L = b->layer;
    int64_t E = b->E, H = b->H, I = b->I;
    size_t w13 = (size_t)(E * 2 * I * (H / 2)), w2 = (size_t)(E * H * (I / 2));
    int borrowed = b->zero_copy;
    void *p13, *s13, *p2, *s2;
    unsigned char* bufs[4] = {b->w13p, b->w13s, b->w2p, b->w2s};
    b->w13p = b->w13s = b->w2p = b->w2s = NULL; /* owned by the layer (or freed) from here */
    mxmoe_status st = place(b, bufs[0], w13, borrowed, &p13, source);
    bufs[0] = NULL;
    if (st == MXMOE_OK) {
        st = place(b, bufs[1], w13 / 16, borrowed, &s13, source);
        bufs[1] = NULL;
    }
    if (st == MXMOE_OK) {
        st = place(b, bufs[2], w2, borrowed, &p2, source);
        bufs[2] = NULL;
    }
    if (st == MXMOE_OK) {
        st = place(b, bufs[3], w2 / 16, borrowed, &s2, source);
        bufs[3] = NULL;
    }
    if (!borrowed) {
        for (int i = 0; i < 4; i++) {
            free(bufs[i]);
        }
    }
    MXMOE_IO_FORWARD(st);
    int64_t d13p[3] = {E, 2 * I, H / 2}, d13s[3] = {E, 2 * I, H / MXMOE_BLOCK};
    int64_t d2p[3] = {E, H, I / 2}, d2s[3] = {E, H, I / MXMOE_BLOCK};
    L->weights.w13.packed = device_tensor(L, p13, MXMOE_U8, 3, d13p);
    L->weights.w13.scales = device_tensor(L, s13, MXMOE_U8, 3, d13s);
    L->weights.w13.scale_layout = MXMOE_SCALES_LINEAR;
    L->weights.w2.packed = device_tensor(L, p2, MXMOE_U8, 3, d2p);
    L->weights.w2.scales = device_tensor(L, s2, MXMOE_U8, 3, d2s);
    L->weights.w2.scale_layout = MXMOE_SCALES_LINEAR;
    L->info.weight_bytes = (w13 + w2) * 17 / 16;
    L->info.zero_copy = borrowed;
    if (b->b13 != NULL && b->b2 != NULL) {
        void *q13, *q2;
        float *h13 = b->b13, *h2 = b->b2;
        b->b13 = b->b2 = NULL;
        st = place(b, h13, (size_t)(E * 2 * I) * 4, 0, &q13, source);
        if (st == MXMOE_OK) {
            st = place(b, h2, (size_t)(E * H) * 4, 0, &q2, source);
        } else {
            free(h2);
        }
        MXMOE_IO_FORWARD(st);
        int64_t db13[2] = {E, 2 * I}, db2[2] = {E, H};
        L->b13 = device_tensor(L, q13, MXMOE_F32, 2, db13);
        L->b2 = device_tensor(L, q2, MXMOE_F32, 2, db2);
        L->weights.b13 = &L->b13;
        L->weights.b2 = &L->b2;
        L->info.has_expert_biases = 1;
        L->info.weight_bytes += (size_t)(E * (2 * I + H)) * 4;
    }
    if (b->correction != NULL) {
        void* c;
        float* h = b->correction;
        b->correction = NULL;
        MXMOE_IO_FORWARD(place(b, h, (size_t)E * 4, 0, &c, source));
        int64_t dc[1] = {E};
        L->correction = device_tensor(L, c, MXMOE_F32, 1, dc);
        L->has_correction = 1;
    }
    /* The moe params the forward uses. */
    L->info.moe.num_experts = L->info.num_experts;
    L->info.moe.act.rule = b->params->act_rule;
    L->info.moe.act.act_dtype = b->params->act_dtype;
    L->info.moe.gemm_dtype = b->params->gemm_dtype;
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 */

void mxmoe_layer_free(mxmoe_layer* L) {
    if (L == NULL) {
        return;
    }
    if (L->prepared) { /* before the memory goes: a later tensor there would look prepared */
        mxmoe_weights_unprepare(L->ctx, &L->weights.w13);
        mxmoe_weights_unprepare(L->ctx, &L->weights.w2);
    }
    for (int i = 0; i < L->backend_count; i++) {
        mxmoe_free(L->ctx, L->backend_blocks[i]);
    }
    for (int i = 0; i < L->host_count; i++) {
        free(L->host_blocks[i]);
    }
    free(L->router_w);
    free(L->router_b);
    model_dir_close(L->keep);
    free(L);
}

static void build_release(layer_build* b) {
    if (!b->zero_copy) {
        free(b->w13p);
        free(b->w13s);
        free(b->w2p);
        free(b->w2s);
    }
    free(b->b13);
    free(b->b2);
    free(b->correction);
    mxmoe_ctx_free(b->cpu);
}

static int has_suffix(const char* s, const char* suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Which loader a path needs: a folder (Hugging Face), a .safetensors file (its folder), or a
 * file starting with "GGUF". */
static mxmoe_status dispatch(layer_build* b, const char* path) {
    struct stat info;
    if (stat(path, &info) != 0) {
        return io_fail(b->err, MXMOE_ERR_IO, path, "cannot open: %s", strerror(errno));
    }
    if (S_ISDIR(info.st_mode)) {
        return layer_load_hf(b, path);
    }
    unsigned char magic[4] = {0};
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) {
        return io_fail(b->err, MXMOE_ERR_IO, path, "cannot open: %s", strerror(errno));
    }
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        return layer_load_gguf(b, path);
    }
    if (has_suffix(path, ".safetensors")) {
        /* A shard of a model folder: load the folder it sits in. */
        size_t n = strlen(path);
        char* dir = malloc(n + 2);
        if (dir == NULL) {
            return io_fail(b->err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
        }
        memcpy(dir, path, n + 1);
        char* slash = strrchr(dir, '/');
        if (slash == NULL) {
            memcpy(dir, ".", 2);
        } else if (slash == dir) {
            dir[1] = '\0';
        } else {
            *slash = '\0';
        }
        mxmoe_status st = layer_load_hf(b, dir);
        free(dir);
        return st;
    }
    return io_fail(b->err, MXMOE_ERR_FORMAT, path,
                   "neither a model folder, a .safetensors file in one, nor a GGUF file");
}

mxmoe_status mxmoe_layer_load(mxmoe_ctx* ctx, const char* path, const mxmoe_layer_params* params,
                              mxmoe_layer** out, mxmoe_io_error* err) {
    const char* display = path != NULL ? path : "(null)";
    if (out != NULL) {
        *out = NULL;
    }
    if (ctx == NULL || path == NULL || out == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, display,
                       "mxmoe_layer_load: NULL context, path or output");
    }
    mxmoe_layer_params defaults = mxmoe_layer_params_default();
    const mxmoe_layer_params* p = params != NULL ? params : &defaults;
    if (p->layer < 0 || (unsigned)p->weight_rule >= MXMOE_RULE_COUNT ||
        (unsigned)p->act_rule >= MXMOE_RULE_COUNT ||
        (p->act_dtype != MXMOE_F32 && p->act_dtype != MXMOE_BF16 && p->act_dtype != MXMOE_F16) ||
        (p->gemm_dtype != MXMOE_F32 && p->gemm_dtype != MXMOE_BF16)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, display,
                       "mxmoe_layer_load: bad params (layer %d, rules, act_dtype, gemm_dtype)",
                       (int)p->layer);
    }
    mxmoe_layer* L = calloc(1, sizeof *L);
    if (L == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, display, "out of memory");
    }
    L->ctx = ctx;
    L->device =
        mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CUDA ? MXMOE_DEVICE_CUDA : MXMOE_DEVICE_HOST;
    L->info.layer = p->layer;
    L->info.moe = mxmoe_moe_params_default();
    layer_build b;
    memset(&b, 0, sizeof b);
    b.layer = L;
    b.params = p;
    b.err = err;
    mxmoe_status st = dispatch(&b, path);
    if (st == MXMOE_OK) {
        st = finish(&b, display);
    }
    build_release(&b);
    if (st == MXMOE_OK) { /* static from here on: what the kernels derive from them, once */
        st = mxmoe_weights_prepare(ctx, &L->weights.w13);
        if (st == MXMOE_OK) {
            st = mxmoe_weights_prepare(ctx, &L->weights.w2);
            if (st != MXMOE_OK) {
                mxmoe_weights_unprepare(ctx, &L->weights.w13);
            }
        }
        L->prepared = st == MXMOE_OK;
        if (st != MXMOE_OK) {
            st = io_fail(err, st, display, "preparing the weights: %s", mxmoe_ctx_last_error(ctx));
        }
    }
    if (st != MXMOE_OK) {
        mxmoe_layer_free(L);
        return st;
    }
    *out = L;
    return io_ok(err);
}

const mxmoe_layer_info* mxmoe_layer_get_info(const mxmoe_layer* L) {
    return L != NULL ? &L->info : NULL;
}

mxmoe_status mxmoe_layer_weights(const mxmoe_layer* L, mxmoe_moe_weights* out) {
    if (L == NULL || out == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    *out = L->weights;
    return MXMOE_OK;
}
