/*
 * cmd_run.c — `mxmoe run MODEL --layer L`: one MoE layer of a real checkpoint, on any backend.
 *
 * Loads the layer with mxmoe_layer_load (compressed-tensors, gpt-oss, unquantized folders or
 * GGUF), takes tokens from a safetensors file or draws random ones, runs mxmoe_layer_forward
 * (router, top-k, W4A4 experts, weighted sum) and reports what happened: the layer, the time,
 * how the tokens spread over the experts, the output's magnitude. With --output the result,
 * the chosen experts and their weights are written to a safetensors file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cli.h"
#include "mxmoe_io.h"
#include "mxmoe_model.h"

static const char* const usage =
    "usage: mxmoe run MODEL [--layer L] [--input X.safetensors [--input-tensor NAME]]\n"
    "                 [--output Y.safetensors] [--tokens N] [--dtype bf16|f16|f32] [--seed S]\n"
    "                 [--repeat R] [--act-rule even|floor|ceil|rceil] [--gemm-dtype f32|bf16]\n"
    "                 [--backend auto|cpu|cuda]\n"
    "\n"
    "Loads MoE layer L of MODEL and runs it: router logits, top-k routing as the model does it,\n"
    "the experts in MXFP4 W4A4 (activations quantized on the fly), the weighted sum. Shared\n"
    "experts, norms and the residual are not part of the layer.\n"
    "\n"
    "MODEL is a Hugging Face folder (config.json + *.safetensors [+ index]) holding a\n"
    "compressed-tensors mxfp4-pack-quantized, a gpt-oss MXFP4 or an unquantized BF16/F16/F32\n"
    "MoE model (quantized at load), or a .gguf file with MXFP4 experts.\n"
    "\n"
    "options:\n"
    "  --layer L          decoder layer index, as in the tensor names (default 0)\n"
    "  --input X          tokens from a safetensors file: an F32/BF16/F16 tensor [..., H]\n"
    "  --input-tensor N   which tensor of X (default: 'x', or the file's only tensor)\n"
    "  --output Y         write 'out' [T, H] (the input's dtype), 'topk_ids' I32 [T, k] and\n"
    "                     'topk_weights' F32 [T, k] to Y\n"
    "  --tokens N         without --input: N random tokens, standard normal (default 16)\n"
    "  --dtype D          dtype of random tokens (default bf16)\n"
    "  --seed S           seed of random tokens (default 1)\n"
    "  --repeat R         run the forward R times and report the median time (default 1)\n"
    "  --act-rule R       scale rule of the activation quantization (default even)\n"
    "  --gemm-dtype D     the layer's GEMM results kept in bf16 (default, as vLLM) or f32\n"
    "  --backend B        auto (default: CUDA if usable, else CPU), cpu or cuda\n";

typedef struct run_options {
    const char* model;
    const char* input;
    const char* input_tensor;
    const char* output;
    int64_t layer, tokens, seed, repeat;
    mxmoe_dtype dtype;
    mxmoe_scale_rule act_rule;
    mxmoe_dtype gemm_dtype;
    mxmoe_backend backend;
} run_options;

/* ---------------------------------------------------------------------------------------------
 * Tokens
 */

static uint64_t next_random(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Standard normal (Box-Muller). */
static float normal(uint64_t* state) {
    double u1 = ((double)(next_random(state) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(next_random(state) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* FP32 -> FP16, round to nearest even (finite inputs of normal magnitude, as drawn here). */
static uint16_t half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t e = (int32_t)((x >> 23) & 0xFFu) - 127 + 15;
    uint32_t m = x & 0x7FFFFFu;
    if (e >= 31) {
        return (uint16_t)(sign | 0x7C00u);
    }
    if (e <= 0) { /* subnormal half: shift the significand with its implicit bit */
        if (e < -10) {
            return (uint16_t)sign;
        }
        m |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = m >> shift, rest = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        half += rest > mid || (rest == mid && (half & 1u));
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (m >> 13), rest = m & 0x1FFFu;
    half += rest > 0x1000u || (rest == 0x1000u && (half & 1u));
    return (uint16_t)(sign | half);
}

static float float_from_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    float v;
    if (e == 0) {
        v = ldexpf((float)m, -24);
    } else if (e == 31) {
        v = m ? NAN : INFINITY;
    } else {
        v = ldexpf((float)(m | 0x400u), (int)e - 25);
    }
    return sign ? -v : v;
}

static float value_at(mxmoe_dtype dtype, const void* data, size_t i) {
    if (dtype == MXMOE_F32) {
        return ((const float*)data)[i];
    }
    uint16_t h = ((const uint16_t*)data)[i];
    return dtype == MXMOE_BF16 ? cli_float_from_bf16(h) : float_from_half(h);
}

static void* random_tokens(const run_options* o, int64_t tokens, int64_t hidden) {
    size_t n = (size_t)(tokens * hidden);
    void* x = malloc(n * mxmoe_dtype_size(o->dtype) + 1);
    if (x == NULL) {
        return NULL;
    }
    uint64_t state = (uint64_t)o->seed;
    for (size_t i = 0; i < n; i++) {
        float v = normal(&state);
        if (o->dtype == MXMOE_F32) {
            ((float*)x)[i] = v;
        } else if (o->dtype == MXMOE_BF16) {
            ((uint16_t*)x)[i] = cli_bf16_from_float(v);
        } else {
            ((uint16_t*)x)[i] = half_from_float(v);
        }
    }
    return x;
}

/* Reads the input tensor [..., H] as [T, H]; prints an error naming file and tensor on failure. */
static void* read_tokens(const char* cmd, const run_options* o, int64_t hidden, int64_t* tokens,
                         mxmoe_dtype* dtype) {
    mxmoe_io_error err;
    mxmoe_st_file* f = NULL;
    if (mxmoe_st_open(o->input, &f, &err) != MXMOE_OK) {
        cli_error(cmd, "%s", err.message);
        return NULL;
    }
    size_t index = MXMOE_ST_NOT_FOUND;
    if (o->input_tensor != NULL) {
        index = mxmoe_st_find(f, o->input_tensor);
        if (index == MXMOE_ST_NOT_FOUND) {
            cli_error(cmd, "%s: no tensor '%s'", o->input, o->input_tensor);
        }
    } else if ((index = mxmoe_st_find(f, "x")) == MXMOE_ST_NOT_FOUND) {
        if (mxmoe_st_count(f) == 1) {
            index = 0;
        } else {
            cli_error(cmd, "%s: %zu tensors and none called 'x': choose one with --input-tensor",
                      o->input, mxmoe_st_count(f));
        }
    }
    void* x = NULL;
    if (index != MXMOE_ST_NOT_FOUND) {
        const mxmoe_st_tensor_info* t = mxmoe_st_info(f, index);
        int is_float = mxmoe_st_dtype_to_mxmoe(t->dtype, dtype) &&
                       (*dtype == MXMOE_F32 || *dtype == MXMOE_BF16 || *dtype == MXMOE_F16);
        if (!is_float || t->ndim < 1 || t->shape[t->ndim - 1] != hidden) {
            cli_error(cmd,
                      "%s: tensor '%s' is %s with last dimension %lld: expected F32/BF16/F16 "
                      "[..., %lld] (the layer's hidden size)",
                      o->input, t->name, mxmoe_st_dtype_name(t->dtype),
                      t->ndim > 0 ? (long long)t->shape[t->ndim - 1] : 0LL, (long long)hidden);
        } else if ((x = malloc((size_t)t->nbytes + 1)) == NULL) {
            cli_error(cmd, "out of memory for '%s'", t->name);
        } else if (mxmoe_st_read(f, index, 0, x, (size_t)t->nbytes, &err) != MXMOE_OK) {
            cli_error(cmd, "%s", err.message);
            free(x);
            x = NULL;
        } else {
            *tokens = t->numel / hidden;
        }
    }
    mxmoe_st_close(f);
    return x;
}

/* ---------------------------------------------------------------------------------------------
 * Backend memory: host arrays are used as they are on the CPU, copied on CUDA.
 */

static int on_device(mxmoe_ctx* ctx) {
    return mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CUDA;
}

static void* backend_alloc(const char* cmd, mxmoe_ctx* ctx, void* host, size_t bytes, int upload) {
    if (!on_device(ctx)) {
        return host;
    }
    void* p = NULL;
    if (mxmoe_malloc(ctx, bytes ? bytes : 1, &p) != MXMOE_OK ||
        (upload && bytes > 0 &&
         mxmoe_memcpy(ctx, p, host, bytes, MXMOE_COPY_HOST_TO_BACKEND) != MXMOE_OK)) {
        cli_error(cmd, "device memory: %s", mxmoe_ctx_last_error(ctx));
        mxmoe_free(ctx, p);
        return NULL;
    }
    return p;
}

static void backend_release(mxmoe_ctx* ctx, void* p) {
    if (on_device(ctx)) {
        mxmoe_free(ctx, p);
    }
}

static int download(const char* cmd, mxmoe_ctx* ctx, void* host, const void* dev, size_t bytes) {
    if (!on_device(ctx) || bytes == 0) {
        return 0;
    }
    if (mxmoe_memcpy(ctx, host, dev, bytes, MXMOE_COPY_BACKEND_TO_HOST) != MXMOE_OK) {
        return cli_error(cmd, "copy from the device: %s", mxmoe_ctx_last_error(ctx));
    }
    return 0;
}

static mxmoe_tensor backend_tensor(mxmoe_ctx* ctx, void* data, mxmoe_dtype dtype, int64_t rows,
                                   int64_t cols) {
    int64_t dims[2] = {rows, cols};
    mxmoe_tensor t = mxmoe_tensor_make(data, dtype, 2, dims);
    t.device = on_device(ctx) ? MXMOE_DEVICE_CUDA : MXMOE_DEVICE_HOST;
    return t;
}

/* ---------------------------------------------------------------------------------------------
 * Report
 */

static const char* route_name(const mxmoe_route_params* r) {
    switch (r->method) {
    case MXMOE_ROUTE_SOFTMAX_TOPK:
        return r->renormalize ? "softmax then top-k, renormalized" : "softmax then top-k";
    case MXMOE_ROUTE_TOPK_SOFTMAX:
        return "top-k of the logits, then softmax over the k";
    case MXMOE_ROUTE_SIGMOID_GROUPED:
        return "sigmoid + correction bias, grouped top-k";
    default:
        return "?";
    }
}

static const char* act_name(const mxmoe_act_params* a) {
    switch (a->activation) {
    case MXMOE_ACT_SILU_MUL:
        return "silu(gate) * up";
    case MXMOE_ACT_GELU_TANH_MUL:
        return "gelu_tanh(gate) * up";
    case MXMOE_ACT_SWIGLU_OAI:
        return "gpt-oss clamped SwiGLU";
    default:
        return "?";
    }
}

static void print_layer(const mxmoe_layer_info* in, const char* backend, double load_s) {
    printf("layer %d of %d: %s (%s checkpoint), %d experts, top-%d, hidden %lld, expert width "
           "%lld\n",
           (int)in->layer, (int)in->num_layers, in->model_type, mxmoe_model_format_name(in->format),
           (int)in->num_experts, (int)in->top_k, (long long)in->hidden,
           (long long)in->intermediate);
    printf("routing: %s", route_name(&in->route));
    if (in->route.method == MXMOE_ROUTE_SIGMOID_GROUPED) {
        printf(" (%d groups, keep %d, scale %g)", (int)in->route.num_groups,
               (int)in->route.topk_groups, (double)in->route.scaling_factor);
    }
    printf("%s; activation %s (%s)%s%s\n", in->has_router_bias ? ", router bias" : "",
           act_name(&in->moe.act),
           in->moe.act.layout == MXMOE_GATE_UP_INTERLEAVED ? "interleaved gate/up" : "gate‖up",
           in->has_expert_biases ? ", expert biases" : "",
           in->moe.gemm_dtype == MXMOE_BF16 ? ", GEMM results in BF16" : ", GEMM results in FP32");
    printf("weights: %.1f MB MXFP4 on %s%s%s; loaded in %.1f ms", (double)in->weight_bytes / 1e6,
           backend, in->zero_copy ? ", used in place in the mapped file" : "",
           in->quantized_at_load ? ", quantized at load" : "", load_s * 1e3);
    if (in->num_shared_experts > 0) {
        printf(" (the model's %d shared expert%s are not part of the layer)",
               (int)in->num_shared_experts, in->num_shared_experts > 1 ? "s" : "");
    }
    printf("\n");
}

static int compare_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static void print_results(const mxmoe_layer_info* in, int64_t tokens, const int32_t* ids,
                          mxmoe_dtype dtype, const void* out) {
    int64_t E = in->num_experts, k = in->top_k, H = in->hidden;
    int64_t* rows = calloc((size_t)E, sizeof *rows);
    if (rows != NULL) {
        for (int64_t i = 0; i < tokens * k; i++) {
            if (ids[i] >= 0 && ids[i] < E) {
                rows[ids[i]]++;
            }
        }
        int64_t used = 0, lo = INT64_MAX, hi = 0, busiest = 0;
        for (int64_t e = 0; e < E; e++) {
            used += rows[e] > 0;
            lo = rows[e] < lo ? rows[e] : lo;
            if (rows[e] > hi) {
                hi = rows[e];
                busiest = e;
            }
        }
        printf("experts: %lld of %lld used; rows per expert %lld..%lld (busiest: expert %lld)\n",
               (long long)used, (long long)E, (long long)lo, (long long)hi, (long long)busiest);
        free(rows);
    }
    double sum2 = 0.0, amax = 0.0;
    int64_t bad = 0;
    for (size_t i = 0; i < (size_t)(tokens * H); i++) {
        double v = value_at(dtype, out, i);
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        sum2 += v * v;
        amax = fabs(v) > amax ? fabs(v) : amax;
    }
    printf("out: [%lld, %lld] %s, rms %.4g, max |out| %.4g, %lld non-finite\n", (long long)tokens,
           (long long)H, mxmoe_dtype_name(dtype),
           tokens * H > 0 ? sqrt(sum2 / (double)(tokens * H)) : 0.0, amax, (long long)bad);
}

static int write_output(const char* cmd, const run_options* o, const mxmoe_layer_info* in,
                        int64_t tokens, mxmoe_dtype dtype, const void* out, const int32_t* ids,
                        const float* weights, const char* backend) {
    mxmoe_st_entry e[3];
    memset(e, 0, sizeof e);
    e[0].name = "out";
    e[0].dtype = dtype == MXMOE_F32    ? MXMOE_ST_F32
                 : dtype == MXMOE_BF16 ? MXMOE_ST_BF16
                                       : MXMOE_ST_F16;
    e[0].ndim = 2;
    e[0].shape[0] = tokens;
    e[0].shape[1] = in->hidden;
    e[0].data = out;
    e[1].name = "topk_ids";
    e[1].dtype = MXMOE_ST_I32;
    e[1].ndim = 2;
    e[1].shape[0] = tokens;
    e[1].shape[1] = in->top_k;
    e[1].data = ids;
    e[2] = e[1];
    e[2].name = "topk_weights";
    e[2].dtype = MXMOE_ST_F32;
    e[2].data = weights;
    char layer[32];
    snprintf(layer, sizeof layer, "%d", (int)in->layer);
    mxmoe_st_kv meta[3] = {
        {"mxmoe.model", o->model}, {"mxmoe.layer", layer}, {"mxmoe.backend", backend}};
    mxmoe_io_error err;
    if (mxmoe_st_write(o->output, e, 3, meta, 3, &err) != MXMOE_OK) {
        return cli_error(cmd, "%s", err.message);
    }
    printf("wrote %s: out [%lld, %lld] %s, topk_ids [%lld, %d] I32, topk_weights [%lld, %d] F32\n",
           o->output, (long long)tokens, (long long)in->hidden, mxmoe_st_dtype_name(e[0].dtype),
           (long long)tokens, (int)in->top_k, (long long)tokens, (int)in->top_k);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The command
 */

static int run(const char* cmd, const run_options* o) {
    mxmoe_ctx* ctx = cli_ctx_open(cmd, o->backend);
    if (ctx == NULL) {
        return CLI_EXIT_FAILURE;
    }
    const char* backend = mxmoe_ctx_backend_detail(ctx);
    mxmoe_layer_params params = mxmoe_layer_params_default();
    params.layer = (int32_t)o->layer;
    params.act_rule = o->act_rule;
    params.gemm_dtype = o->gemm_dtype;
    mxmoe_layer* layer = NULL;
    mxmoe_io_error err;
    double t0 = cli_seconds();
    mxmoe_status st = mxmoe_layer_load(ctx, o->model, &params, &layer, &err);
    if (st != MXMOE_OK) {
        cli_error(cmd, "%s (%s)", err.message, mxmoe_status_string(st));
        mxmoe_ctx_free(ctx);
        return CLI_EXIT_FAILURE;
    }
    const mxmoe_layer_info* in = mxmoe_layer_get_info(layer);
    print_layer(in, backend, cli_seconds() - t0);

    int64_t tokens = o->tokens, H = in->hidden, k = in->top_k;
    mxmoe_dtype dtype = o->dtype;
    void* x =
        o->input != NULL ? read_tokens(cmd, o, H, &tokens, &dtype) : random_tokens(o, tokens, H);
    size_t es = mxmoe_dtype_size(dtype), xb = (size_t)(tokens * H) * es;
    size_t kb = (size_t)(tokens * k) * 4;
    void* out = malloc(xb + 1);
    int32_t* ids = malloc(kb + 4);
    float* weights = malloc(kb + 4);
    size_t ws_bytes = 0;
    int rc = (x == NULL || out == NULL || ids == NULL || weights == NULL) ? CLI_EXIT_FAILURE : 0;
    if (rc == 0 && x != NULL && o->input == NULL) {
        printf("input: %lld random token%s, %s, seed %lld\n", (long long)tokens,
               tokens == 1 ? "" : "s", mxmoe_dtype_name(dtype), (long long)o->seed);
    } else if (rc == 0) {
        printf("input: %lld tokens, %s, from %s\n", (long long)tokens, mxmoe_dtype_name(dtype),
               o->input);
    }
    if (rc == 0 && (st = mxmoe_layer_workspace_size(ctx, layer, tokens, &ws_bytes)) != MXMOE_OK) {
        rc = cli_error(cmd, "workspace: %s", mxmoe_ctx_last_error(ctx));
    }
    void *dx = NULL, *dout = NULL, *dids = NULL, *dw = NULL, *ws = NULL;
    if (rc == 0) {
        dx = backend_alloc(cmd, ctx, x, xb, 1);
        dout = backend_alloc(cmd, ctx, out, xb, 0);
        dids = backend_alloc(cmd, ctx, ids, kb, 0);
        dw = backend_alloc(cmd, ctx, weights, kb, 0);
        if (mxmoe_malloc(ctx, ws_bytes ? ws_bytes : 1, &ws) != MXMOE_OK) {
            ws = NULL;
        }
        if (dx == NULL || dout == NULL || dids == NULL || dw == NULL || ws == NULL) {
            rc = cli_error(cmd, "cannot allocate %.1f MB of %s memory", (double)ws_bytes / 1e6,
                           mxmoe_backend_name(mxmoe_ctx_backend(ctx)));
        }
    }
    mxmoe_tensor xt = backend_tensor(ctx, dx, dtype, tokens, H);
    mxmoe_tensor ot = backend_tensor(ctx, dout, dtype, tokens, H);
    mxmoe_tensor it = backend_tensor(ctx, dids, MXMOE_I32, tokens, k);
    mxmoe_tensor wt = backend_tensor(ctx, dw, MXMOE_F32, tokens, k);
    if (rc == 0 && (st = mxmoe_layer_route(ctx, layer, &xt, &it, &wt)) != MXMOE_OK) {
        rc = cli_error(cmd, "routing: %s (%s)", mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
    }
    double* times = calloc((size_t)o->repeat, sizeof *times);
    for (int64_t r = 0; rc == 0 && r < o->repeat && times != NULL; r++) {
        double ts = cli_seconds();
        st = mxmoe_layer_forward(ctx, layer, &xt, &ot, ws, ws_bytes);
        if (st == MXMOE_OK) {
            st = mxmoe_ctx_synchronize(ctx);
        }
        times[r] = cli_seconds() - ts;
        if (st != MXMOE_OK) {
            rc = cli_error(cmd, "forward: %s (%s)", mxmoe_ctx_last_error(ctx),
                           mxmoe_status_string(st));
        }
    }
    if (rc == 0 &&
        (download(cmd, ctx, out, dout, xb) != 0 || download(cmd, ctx, ids, dids, kb) != 0 ||
         download(cmd, ctx, weights, dw, kb) != 0)) {
        rc = CLI_EXIT_FAILURE;
    }
    if (rc == 0 && times != NULL) {
        qsort(times, (size_t)o->repeat, sizeof *times, compare_double);
        double t = times[o->repeat / 2];
        printf("forward: %lld tokens in %.3f ms%s (%.0f tokens/s, router on the host)\n",
               (long long)tokens, t * 1e3, o->repeat > 1 ? " (median)" : "",
               t > 0 ? (double)tokens / t : 0.0);
        print_results(in, tokens, ids, dtype, out);
        if (o->output != NULL) {
            rc = write_output(cmd, o, in, tokens, dtype, out, ids, weights, backend);
        }
    }
    free(times);
    if (ws != NULL) {
        mxmoe_free(ctx, ws);
    }
    void* dev[4] = {dx, dout, dids, dw};
    for (int i = 0; i < 4; i++) {
        if (dev[i] != NULL) {
            backend_release(ctx, dev[i]);
        }
    }
    free(x);
    free(out);
    free(ids);
    free(weights);
    mxmoe_layer_free(layer);
    mxmoe_ctx_free(ctx);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static int parse_dtype(const char* cmd, const char* text, mxmoe_dtype* out) {
    if (strcmp(text, "bf16") == 0) {
        *out = MXMOE_BF16;
    } else if (strcmp(text, "f16") == 0) {
        *out = MXMOE_F16;
    } else if (strcmp(text, "f32") == 0) {
        *out = MXMOE_F32;
    } else {
        cli_usage_error(cmd, "unknown dtype '%s' (expected bf16, f16 or f32)", text);
        return -1;
    }
    return 0;
}

int cmd_run(int argc, char** argv) {
    const char* cmd = "run";
    run_options o;
    memset(&o, 0, sizeof o);
    o.tokens = 16;
    o.seed = 1;
    o.repeat = 1;
    o.dtype = MXMOE_BF16;
    o.act_rule = MXMOE_RULE_EVEN;
    o.gemm_dtype = mxmoe_layer_params_default().gemm_dtype;
    o.backend = MXMOE_BACKEND_AUTO;
    int tokens_given = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* v = NULL;
        if (cli_is_help(a)) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
        int takes_value = strcmp(a, "--layer") == 0 || strcmp(a, "--input") == 0 ||
                          strcmp(a, "--input-tensor") == 0 || strcmp(a, "--output") == 0 ||
                          strcmp(a, "--tokens") == 0 || strcmp(a, "--dtype") == 0 ||
                          strcmp(a, "--seed") == 0 || strcmp(a, "--repeat") == 0 ||
                          strcmp(a, "--act-rule") == 0 || strcmp(a, "--backend") == 0 ||
                          strcmp(a, "--gemm-dtype") == 0;
        if (takes_value && (v = cli_option_value(cmd, argc, argv, &i)) == NULL) {
            return CLI_EXIT_USAGE;
        }
        int bad = 0;
        if (strcmp(a, "--layer") == 0) {
            bad = cli_parse_int(cmd, a, v, 0, INT32_MAX, &o.layer);
        } else if (strcmp(a, "--input") == 0) {
            o.input = v;
        } else if (strcmp(a, "--input-tensor") == 0) {
            o.input_tensor = v;
        } else if (strcmp(a, "--output") == 0) {
            o.output = v;
        } else if (strcmp(a, "--tokens") == 0) {
            bad = cli_parse_int(cmd, a, v, 0, 1 << 24, &o.tokens);
            tokens_given = 1;
        } else if (strcmp(a, "--dtype") == 0) {
            bad = parse_dtype(cmd, v, &o.dtype);
        } else if (strcmp(a, "--seed") == 0) {
            bad = cli_parse_int(cmd, a, v, 0, INT64_MAX, &o.seed);
        } else if (strcmp(a, "--repeat") == 0) {
            bad = cli_parse_int(cmd, a, v, 1, 100000, &o.repeat);
        } else if (strcmp(a, "--act-rule") == 0) {
            bad = cli_parse_rule(cmd, v, &o.act_rule);
        } else if (strcmp(a, "--gemm-dtype") == 0) {
            bad = cli_parse_gemm_dtype(cmd, v, &o.gemm_dtype);
        } else if (strcmp(a, "--backend") == 0) {
            bad = cli_parse_backend(cmd, v, &o.backend);
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (o.model == NULL) {
            o.model = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
        if (bad) {
            return CLI_EXIT_USAGE;
        }
    }
    if (o.model == NULL) {
        return cli_usage_error(cmd, "expected MODEL (a model folder or a .gguf file)");
    }
    if (o.input != NULL && tokens_given) {
        return cli_usage_error(cmd, "--tokens and --input exclude each other");
    }
    return run(cmd, &o);
}
