/*
 * test_model_load.c — mxmoe_layer_load / _forward and mxmoe_model_quantize (mxmoe_model.h),
 * with files built here by the library's own safetensors writer and a byte-level GGUF writer.
 *
 * For each format (compressed-tensors folder with and without an index, gpt-oss, GGUF, an
 * unquantized folder) the loaded canonical weights must be byte for byte the ones written, in
 * the canonical layout (w13 = gate‖up, or interleaved for gpt-oss), and mxmoe_layer_forward must
 * equal, bit for bit, mxmoe_route + mxmoe_moe_forward run by hand on those weights. Then the
 * malformed and unsupported checkpoints, one case each: the status and a message naming the file
 * and the tensor or key. The Python suite (test_model_load.py) checks the same layers against
 * the independent oracle with files from the ecosystem's writers; this one runs under ASan.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, nftw-free cleanup, setenv */

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mxmoe_io.h"
#include "mxmoe_model.h"

enum { E = 4, K = 2, H = 64, I = 32, T = 7 };

static uint64_t rng_state = 0x1234567ull;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(void) {
    return (float)((double)(next_random() >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

/* ---------------------------------------------------------------------------------------------
 * The model: canonical bytes (gate‖up), F32 router and biases
 */

typedef struct model {
    unsigned char gate_p[E][I][H / 2], gate_s[E][I][H / 32];
    unsigned char up_p[E][I][H / 2], up_s[E][I][H / 32];
    unsigned char down_p[E][H][I / 2], down_s[E][H][I / 32];
    float router[E][H], router_bias[E];
    float b_gate[E][I], b_up[E][I], b_down[E][H];
} model;

static model* random_model(void) {
    model* m = calloc(1, sizeof *m);
    unsigned char* bytes[3] = {&m->gate_p[0][0][0], &m->up_p[0][0][0], &m->down_p[0][0][0]};
    unsigned char* scales[3] = {&m->gate_s[0][0][0], &m->up_s[0][0][0], &m->down_s[0][0][0]};
    size_t nb[3] = {sizeof m->gate_p, sizeof m->up_p, sizeof m->down_p};
    for (int w = 0; w < 3; w++) {
        for (size_t i = 0; i < nb[w]; i++) {
            bytes[w][i] = (unsigned char)next_random();
        }
        for (size_t i = 0; i < nb[w] / 16; i++) {
            scales[w][i] = (unsigned char)(118 + next_random() % 10);
        }
    }
    for (int e = 0; e < E; e++) {
        m->router_bias[e] = uniform();
        for (int h = 0; h < H; h++) {
            m->router[e][h] = uniform();
            m->b_down[e][h] = uniform();
        }
        for (int i = 0; i < I; i++) {
            m->b_gate[e][i] = uniform();
            m->b_up[e][i] = uniform();
        }
    }
    return m;
}

/* w13 packed/scales in the canonical layout: gate‖up, or interleaved rows. */
static void w13_of(const model* m, int interleaved, unsigned char* packed, unsigned char* scales) {
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < I; i++) {
            int rg = interleaved ? 2 * i : i, ru = interleaved ? 2 * i + 1 : I + i;
            size_t base = (size_t)e * 2 * I;
            memcpy(packed + (base + rg) * (H / 2), m->gate_p[e][i], H / 2);
            memcpy(packed + (base + ru) * (H / 2), m->up_p[e][i], H / 2);
            memcpy(scales + (base + rg) * (H / 32), m->gate_s[e][i], H / 32);
            memcpy(scales + (base + ru) * (H / 32), m->up_s[e][i], H / 32);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Files
 */

static char root[64];

static void make_dir(const char* path) {
    mkdir(path, 0777);
}

static void write_text(const char* dir, const char* name, const char* text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE* fp = fopen(path, "wb");
    if (fp != NULL) {
        fputs(text, fp);
        fclose(fp);
    }
}

static void remove_tree(const char* dir) {
    DIR* d = opendir(dir);
    if (d == NULL) {
        remove(dir);
        return;
    }
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat info;
        if (stat(path, &info) == 0 && S_ISDIR(info.st_mode)) {
            remove_tree(path);
        } else {
            remove(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

/* A list of tensors to write. */
typedef struct tensor_list {
    mxmoe_st_entry e[64];
    char names[64][96];
    size_t n;
} tensor_list;

static void add(tensor_list* l, const char* name, mxmoe_st_dtype dtype, int32_t ndim,
                const int64_t* shape, const void* data) {
    mxmoe_st_entry* e = &l->e[l->n];
    memset(e, 0, sizeof *e);
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    e->name = l->names[l->n];
    e->dtype = dtype;
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->data = data;
    l->n++;
}

static void write_shard(const char* dir, const char* file, const tensor_list* l, size_t from,
                        size_t to) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mxmoe_io_error err;
    CHECK_MSG(mxmoe_st_write(path, l->e + from, to - from, NULL, 0, &err) == MXMOE_OK, "%s",
              err.message);
}

static const char* ct_config =
    "{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_hidden_layers\": 2,\n"
    " \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,\n"
    " \"norm_topk_prob\": true, \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-06,\n"
    " \"quantization_config\": {\"quant_method\": \"compressed-tensors\",\n"
    "   \"format\": \"mxfp4-pack-quantized\", \"config_groups\": {\"group_0\": {\n"
    "   \"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, \"type\": \"float\",\n"
    "   \"group_size\": 32, \"strategy\": \"group\"}}}}}\n";

/* A compressed-tensors folder for layer 1: experts (and router, F32) over 2 shards + index,
 * or one model.safetensors. `skip` leaves one tensor out, `bad_shape` writes one wrongly. */
static void write_ct(const char* dir, const model* m, int sharded, const char* skip,
                     const char* bad_shape) {
    make_dir(dir);
    tensor_list* l = calloc(1, sizeof *l);
    static const char* const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    char name[96];
    for (int e = 0; e < E; e++) {
        const void* p[3] = {m->gate_p[e], m->up_p[e], m->down_p[e]};
        const void* s[3] = {m->gate_s[e], m->up_s[e], m->down_s[e]};
        for (int w = 0; w < 3; w++) {
            int64_t rows = w < 2 ? I : H, k = w < 2 ? H : I;
            int64_t dp[2] = {rows, k / 2}, ds[2] = {rows, k / 32};
            snprintf(name, sizeof name, "model.layers.1.mlp.experts.%d.%s.weight_packed", e,
                     proj[w]);
            if (bad_shape != NULL && strcmp(name, bad_shape) == 0) {
                dp[1] /= 2;
            }
            if (skip == NULL || strcmp(name, skip) != 0) {
                add(l, name, MXMOE_ST_U8, 2, dp, p[w]);
            }
            snprintf(name, sizeof name, "model.layers.1.mlp.experts.%d.%s.weight_scale", e,
                     proj[w]);
            if (skip == NULL || strcmp(name, skip) != 0) {
                add(l, name, MXMOE_ST_U8, 2, ds, s[w]);
            }
        }
    }
    int64_t dr[2] = {E, H};
    add(l, "model.layers.1.mlp.gate.weight", MXMOE_ST_F32, 2, dr, m->router);
    write_text(dir, "config.json", ct_config);
    if (!sharded) {
        write_shard(dir, "model.safetensors", l, 0, l->n);
    } else {
        size_t half = l->n / 2;
        write_shard(dir, "model-00001-of-00002.safetensors", l, 0, half);
        write_shard(dir, "model-00002-of-00002.safetensors", l, half, l->n);
        char path[256];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        FILE* fp = fopen(path, "wb");
        fputs("{\"metadata\": {\"total_size\": 1}, \"weight_map\": {", fp);
        for (size_t i = 0; i < l->n; i++) {
            fprintf(fp, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                    l->e[i].name, i < half ? 1 : 2);
        }
        fputs("}}", fp);
        fclose(fp);
    }
    free(l);
}

static void write_gpt_oss(const char* dir, const model* m) {
    make_dir(dir);
    unsigned char* p13 = malloc((size_t)E * 2 * I * H / 2);
    unsigned char* s13 = malloc((size_t)E * 2 * I * H / 32);
    w13_of(m, 1, p13, s13);
    float* b13 = malloc((size_t)E * 2 * I * sizeof *b13);
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < I; i++) {
            b13[e * 2 * I + 2 * i] = m->b_gate[e][i];
            b13[e * 2 * I + 2 * i + 1] = m->b_up[e][i];
        }
    }
    tensor_list* l = calloc(1, sizeof *l);
    int64_t d13b[4] = {E, 2 * I, H / 32, 16}, d13s[3] = {E, 2 * I, H / 32}, db13[2] = {E, 2 * I};
    int64_t d2b[4] = {E, H, I / 32, 16}, d2s[3] = {E, H, I / 32}, db2[2] = {E, H};
    int64_t dr[2] = {E, H}, de[1] = {E};
    add(l, "model.layers.0.mlp.experts.gate_up_proj_blocks", MXMOE_ST_U8, 4, d13b, p13);
    add(l, "model.layers.0.mlp.experts.gate_up_proj_scales", MXMOE_ST_U8, 3, d13s, s13);
    add(l, "model.layers.0.mlp.experts.gate_up_proj_bias", MXMOE_ST_F32, 2, db13, b13);
    add(l, "model.layers.0.mlp.experts.down_proj_blocks", MXMOE_ST_U8, 4, d2b, m->down_p);
    add(l, "model.layers.0.mlp.experts.down_proj_scales", MXMOE_ST_U8, 3, d2s, m->down_s);
    add(l, "model.layers.0.mlp.experts.down_proj_bias", MXMOE_ST_F32, 2, db2, m->b_down);
    add(l, "model.layers.0.mlp.router.weight", MXMOE_ST_F32, 2, dr, m->router);
    add(l, "model.layers.0.mlp.router.bias", MXMOE_ST_F32, 1, de, m->router_bias);
    write_text(dir, "config.json",
               "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 32,\n"
               " \"num_hidden_layers\": 1, \"num_local_experts\": 4, \"num_experts_per_tok\": 2,\n"
               " \"swiglu_limit\": 7.0, \"quantization_config\": {\"quant_method\": \"mxfp4\"}}");
    write_shard(dir, "model.safetensors", l, 0, l->n);
    free(l);
    free(p13);
    free(s13);
    free(b13);
}

/* GGUF by hand: v3, gpt-oss keys, experts in block_mxfp4 (from mxmoe_gguf_from_mx), F32 router
 * and biases, 32-byte alignment. */
typedef struct gbuf {
    unsigned char* p;
    size_t n;
} gbuf;

static void gput(gbuf* b, const void* d, size_t n) {
    b->p = realloc(b->p, b->n + n);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void gu32(gbuf* b, uint32_t v) {
    gput(b, &v, 4); /* the test host is little-endian, like the format */
}

static void gu64(gbuf* b, uint64_t v) {
    gput(b, &v, 8);
}

static void gstr(gbuf* b, const char* s) {
    gu64(b, strlen(s));
    gput(b, s, strlen(s));
}

static void write_gguf(const char* path, const model* m, mxmoe_ctx* cpu, int q8_experts) {
    /* block_mxfp4 of gate [E, I, H], up, down [E, H, I]. */
    size_t g13 = (size_t)E * I * (H / 32) * 17, g2 = (size_t)E * H * (I / 32) * 17;
    unsigned char *gg = malloc(g13), *gu = malloc(g13), *gd = malloc(g2);
    const void* srcp[3] = {m->gate_p, m->up_p, m->down_p};
    const void* srcs[3] = {m->gate_s, m->up_s, m->down_s};
    unsigned char* dst[3] = {gg, gu, gd};
    for (int w = 0; w < 3; w++) {
        int64_t rows = w < 2 ? E * I : E * H, k = w < 2 ? H : I;
        int64_t dp[2] = {rows, k / 2}, ds[2] = {rows, k / 32}, dg[2] = {rows, k / 32 * 17};
        mxmoe_mx_tensor in;
        in.packed = mxmoe_tensor_make((void*)srcp[w], MXMOE_U8, 2, dp);
        in.scales = mxmoe_tensor_make((void*)srcs[w], MXMOE_U8, 2, ds);
        in.scale_layout = MXMOE_SCALES_LINEAR;
        mxmoe_tensor out = mxmoe_tensor_make(dst[w], MXMOE_U8, 2, dg);
        CHECK_STATUS(mxmoe_gguf_from_mx(cpu, &in, &out), MXMOE_OK);
    }
    struct {
        const char* name;
        uint32_t ndim;
        uint64_t ne[3];
        uint32_t type;
        const void* data;
        size_t bytes;
    } t[7] = {
        {"blk.0.ffn_gate_exps.weight", 3, {H, I, E}, 39, gg, g13},
        {"blk.0.ffn_up_exps.weight", 3, {H, I, E}, 39, gu, g13},
        {"blk.0.ffn_down_exps.weight", 3, {I, H, E}, 39, gd, g2},
        {"blk.0.ffn_gate_inp.weight", 2, {H, E, 1}, 0, m->router, sizeof m->router},
        {"blk.0.ffn_gate_inp.bias", 1, {E, 1, 1}, 0, m->router_bias, sizeof m->router_bias},
        {"blk.0.ffn_gate_exps.bias", 2, {I, E, 1}, 0, m->b_gate, sizeof m->b_gate},
        {"blk.0.ffn_up_exps.bias", 2, {I, E, 1}, 0, m->b_up, sizeof m->b_up},
    };
    if (q8_experts) {
        t[1].type = 8; /* q8_0: 34 bytes per 32; sizes differ, so the layout is redone below */
        t[1].bytes = (size_t)E * I * (H / 32) * 34;
    }
    gbuf b = {0};
    gput(&b, "GGUF", 4);
    gu32(&b, 3);
    gu64(&b, 8);
    gu64(&b, 6);
    const char* keys[5] = {"gpt-oss.expert_count", "gpt-oss.expert_used_count",
                           "gpt-oss.embedding_length", "gpt-oss.expert_feed_forward_length",
                           "gpt-oss.block_count"};
    uint32_t vals[5] = {E, K, H, I, 1};
    gstr(&b, "general.architecture");
    gu32(&b, 8);
    gstr(&b, "gpt-oss");
    for (int i = 0; i < 5; i++) {
        gstr(&b, keys[i]);
        gu32(&b, 4);
        gu32(&b, vals[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < 8; i++) {
        const char* name = i < 7 ? t[i].name : "blk.0.ffn_down_exps.bias";
        uint32_t ndim = i < 7 ? t[i].ndim : 2;
        uint64_t ne7[2] = {H, E};
        gstr(&b, name);
        gu32(&b, ndim);
        for (uint32_t d = 0; d < ndim; d++) {
            gu64(&b, i < 7 ? t[i].ne[d] : ne7[d]);
        }
        gu32(&b, i < 7 ? t[i].type : 0);
        gu64(&b, off);
        size_t bytes = i < 7 ? t[i].bytes : sizeof m->b_down;
        off += (bytes + 31) / 32 * 32;
    }
    unsigned char zero[32] = {0};
    gput(&b, zero, (32 - b.n % 32) % 32);
    for (int i = 0; i < 8; i++) {
        const void* data = i < 7 ? t[i].data : m->b_down;
        size_t bytes = i < 7 ? t[i].bytes : sizeof m->b_down;
        if (i == 1 && q8_experts) {
            unsigned char* junk = calloc(1, bytes);
            gput(&b, junk, bytes);
            free(junk);
        } else {
            gput(&b, data, bytes);
        }
        gput(&b, zero, (32 - bytes % 32) % 32);
    }
    FILE* fp = fopen(path, "wb");
    fwrite(b.p, 1, b.n, fp);
    fclose(fp);
    free(b.p);
    free(gg);
    free(gu);
    free(gd);
}

/* ---------------------------------------------------------------------------------------------
 * Checks
 */

/* The loaded weights are the written ones, in the canonical layout. */
static void check_weights(const mxmoe_layer* L, const model* m, int interleaved) {
    mxmoe_moe_weights w;
    CHECK_STATUS(mxmoe_layer_weights(L, &w), MXMOE_OK);
    unsigned char* p13 = malloc((size_t)E * 2 * I * H / 2);
    unsigned char* s13 = malloc((size_t)E * 2 * I * H / 32);
    w13_of(m, interleaved, p13, s13);
    CHECK(w.w13.packed.dims[0] == E && w.w13.packed.dims[1] == 2 * I &&
          w.w13.packed.dims[2] == H / 2);
    CHECK(memcmp(w.w13.packed.data, p13, (size_t)E * 2 * I * H / 2) == 0);
    CHECK(memcmp(w.w13.scales.data, s13, (size_t)E * 2 * I * H / 32) == 0);
    CHECK(memcmp(w.w2.packed.data, m->down_p, sizeof m->down_p) == 0);
    CHECK(memcmp(w.w2.scales.data, m->down_s, sizeof m->down_s) == 0);
    free(p13);
    free(s13);
}

/* mxmoe_layer_forward == router by hand + mxmoe_route + mxmoe_moe_forward, bit for bit. */
static void check_forward(mxmoe_ctx* ctx, const mxmoe_layer* L, const model* m, int router_bias) {
    const mxmoe_layer_info* info = mxmoe_layer_get_info(L);
    float x[T][H], out[T][H], ref[T][H], logits[T][E], wts[T][K];
    int32_t ids[T][K];
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++) {
            x[t][h] = 2.0f * uniform();
        }
        for (int e = 0; e < E; e++) {
            double acc = 0.0;
            for (int h = 0; h < H; h++) {
                acc += (double)x[t][h] * (double)m->router[e][h];
            }
            logits[t][e] = (float)(acc + (router_bias ? (double)m->router_bias[e] : 0.0));
        }
    }
    int64_t dx[2] = {T, H}, dl[2] = {T, E}, dk[2] = {T, K};
    mxmoe_tensor xt = mxmoe_tensor_make(x, MXMOE_F32, 2, dx);
    mxmoe_tensor ot = mxmoe_tensor_make(out, MXMOE_F32, 2, dx);
    mxmoe_tensor rt = mxmoe_tensor_make(ref, MXMOE_F32, 2, dx);
    mxmoe_tensor lt = mxmoe_tensor_make(logits, MXMOE_F32, 2, dl);
    mxmoe_tensor it = mxmoe_tensor_make(ids, MXMOE_I32, 2, dk);
    mxmoe_tensor wt = mxmoe_tensor_make(wts, MXMOE_F32, 2, dk);
    size_t ws_bytes = 0, moe_bytes = 0;
    CHECK_STATUS(mxmoe_layer_workspace_size(ctx, L, T, &ws_bytes), MXMOE_OK);
    void* ws = malloc(ws_bytes);
    memset(out, 0x7F, sizeof out);
    CHECK_STATUS(mxmoe_layer_forward(ctx, L, &xt, &ot, ws, ws_bytes), MXMOE_OK);
    mxmoe_route_params rp = info->route;
    CHECK_STATUS(mxmoe_route(ctx, &lt, &rp, &it, &wt), MXMOE_OK);
    /* And mxmoe_layer_route agrees. */
    int32_t ids2[T][K];
    float w2[T][K];
    mxmoe_tensor it2 = mxmoe_tensor_make(ids2, MXMOE_I32, 2, dk);
    mxmoe_tensor wt2 = mxmoe_tensor_make(w2, MXMOE_F32, 2, dk);
    CHECK_STATUS(mxmoe_layer_route(ctx, L, &xt, &it2, &wt2), MXMOE_OK);
    CHECK(memcmp(ids, ids2, sizeof ids) == 0 && memcmp(wts, w2, sizeof wts) == 0);
    mxmoe_moe_weights w;
    mxmoe_layer_weights(L, &w);
    CHECK_STATUS(mxmoe_moe_workspace_size(ctx, &info->moe, T, K, H, I, &moe_bytes), MXMOE_OK);
    void* ws2 = malloc(moe_bytes);
    CHECK_STATUS(mxmoe_moe_forward(ctx, &xt, &it, &wt, &w, &info->moe, ws2, moe_bytes, &rt),
                 MXMOE_OK);
    CHECK(memcmp(out, ref, sizeof out) == 0);
    int finite = 1;
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++) {
            finite = finite && isfinite(out[t][h]);
        }
    }
    CHECK(finite);
    /* Errors: the wrong hidden size, a short workspace. */
    int64_t bad[2] = {T, H - 32};
    mxmoe_tensor xbad = mxmoe_tensor_make(x, MXMOE_F32, 2, bad);
    CHECK_STATUS(mxmoe_layer_forward(ctx, L, &xbad, &ot, ws, ws_bytes), MXMOE_ERR_SHAPE);
    CHECK(strstr(mxmoe_ctx_last_error(ctx), "hidden size is 64") != NULL);
    CHECK_STATUS(mxmoe_layer_forward(ctx, L, &xt, &ot, ws, ws_bytes - 1), MXMOE_ERR_WORKSPACE);
    CHECK_STATUS(mxmoe_layer_forward(ctx, NULL, &xt, &ot, ws, ws_bytes),
                 MXMOE_ERR_INVALID_ARGUMENT);
    free(ws);
    free(ws2);
}

static mxmoe_layer* load(mxmoe_ctx* ctx, const char* path, int layer, mxmoe_status want,
                         const char* needle1, const char* needle2) {
    mxmoe_layer_params p = mxmoe_layer_params_default();
    p.layer = layer;
    mxmoe_layer* L = (mxmoe_layer*)1;
    mxmoe_io_error err;
    mxmoe_status st = mxmoe_layer_load(ctx, path, &p, &L, &err);
    check_record(st == want, __FILE__, __LINE__, "load %s layer %d: %s (want %s): %s", path, layer,
                 mxmoe_status_string(st), mxmoe_status_string(want), err.message);
    if (want != MXMOE_OK) {
        CHECK(L == NULL);
        check_record(needle1 == NULL || strstr(err.message, needle1) != NULL, __FILE__, __LINE__,
                     "message \"%s\" lacks \"%s\"", err.message, needle1);
        check_record(needle2 == NULL || strstr(err.message, needle2) != NULL, __FILE__, __LINE__,
                     "message \"%s\" lacks \"%s\"", err.message, needle2);
        return NULL;
    }
    return L;
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 */

static void test_compressed_tensors(mxmoe_ctx* ctx, const model* m) {
    for (int sharded = 0; sharded < 2; sharded++) {
        check_set_context("compressed-tensors, %s", sharded ? "2 shards + index" : "1 file");
        char dir[128];
        snprintf(dir, sizeof dir, "%s/ct%d", root, sharded);
        write_ct(dir, m, sharded, NULL, NULL);
        mxmoe_layer* L = load(ctx, dir, 1, MXMOE_OK, NULL, NULL);
        if (L == NULL) {
            continue;
        }
        const mxmoe_layer_info* in = mxmoe_layer_get_info(L);
        CHECK(in->format == MXMOE_MODEL_COMPRESSED_TENSORS && in->num_experts == E &&
              in->top_k == K && in->hidden == H && in->intermediate == I && in->num_layers == 2);
        CHECK(in->route.method == MXMOE_ROUTE_SOFTMAX_TOPK && in->route.renormalize == 1);
        CHECK(in->moe.act.activation == MXMOE_ACT_SILU_MUL &&
              in->moe.act.layout == MXMOE_GATE_UP_CONCAT);
        CHECK(strcmp(in->model_type, "qwen3_moe") == 0 && !in->zero_copy);
        check_weights(L, m, 0);
        check_forward(ctx, L, m, 0);
        mxmoe_layer_free(L);
    }
    check_set_context("compressed-tensors errors");
    char dir[128], path[160];
    snprintf(dir, sizeof dir, "%s/ct1", root);
    load(ctx, dir, 0, MXMOE_ERR_FORMAT, "layer 0 has no routed experts", NULL);
    load(ctx, dir, 2, MXMOE_ERR_INVALID_ARGUMENT, "layer 2 is out of range", "config.json");
    snprintf(dir, sizeof dir, "%s/ct_missing", root);
    write_ct(dir, m, 1, "model.layers.1.mlp.experts.3.down_proj.weight_scale", NULL);
    load(ctx, dir, 1, MXMOE_ERR_FORMAT, "'model.layers.1.mlp.experts.3.down_proj.weight_scale'",
         "model.safetensors.index.json");
    snprintf(dir, sizeof dir, "%s/ct_shape", root);
    write_ct(dir, m, 0, NULL, "model.layers.1.mlp.experts.2.up_proj.weight_packed");
    load(ctx, dir, 1, MXMOE_ERR_FORMAT,
         "model.safetensors: tensor 'model.layers.1.mlp.experts.2.up_proj.weight_packed': U8 "
         "[32, 16], expected U8 [32, 32]",
         NULL);
    /* Config problems, each in a copy of the good folder's config. */
    struct {
        const char* config;
        mxmoe_status want;
        const char* needle;
    } configs[] = {
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64,", MXMOE_ERR_FORMAT,
         "malformed JSON"},
        {"[1, 2]", MXMOE_ERR_FORMAT, "expected a JSON object"},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts_per_tok\": 2,"
         " \"moe_intermediate_size\": 32}",
         MXMOE_ERR_FORMAT, "no \"num_local_experts\""},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64.5, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32}",
         MXMOE_ERR_FORMAT, "\"hidden_size\" must be an integer"},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 5, \"moe_intermediate_size\": 32}",
         MXMOE_ERR_FORMAT, "\"num_experts_per_tok\" = 5 is outside [1, 4]"},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 48, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32}",
         MXMOE_ERR_UNSUPPORTED, "multiples of 32"},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"hidden_act\": \"gelu\"}",
         MXMOE_ERR_UNSUPPORTED, "hidden_act \"gelu\""},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,"
         " \"quantization_config\": {\"quant_method\": \"awq\"}}",
         MXMOE_ERR_UNSUPPORTED, "quant_method \"awq\""},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,"
         " \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
         " \"format\": \"float-quantized\"}}",
         MXMOE_ERR_UNSUPPORTED, "\"float-quantized\""},
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,"
         " \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
         " \"format\": \"mxfp4-pack-quantized\", \"config_groups\": {\"g\": {\"weights\":"
         " {\"num_bits\": 4, \"type\": \"float\", \"group_size\": 16}}}}}",
         MXMOE_ERR_UNSUPPORTED, "groups of 16 are not MXFP4"},
        {"{\"model_type\": \"deepseek_v3\", \"hidden_size\": 64, \"n_routed_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"scoring_func\":"
         " \"sigmoid\", \"n_group\": 3}",
         MXMOE_ERR_FORMAT, "n_group = 3"},
        {"{\"model_type\": \"x\", \"hidden_size\": 64, \"num_experts\": 4,"
         " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"scoring_func\": \"tanh\"}",
         MXMOE_ERR_UNSUPPORTED, "scoring function \"tanh\""},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        snprintf(dir, sizeof dir, "%s/cfg%zu", root, i);
        write_ct(dir, m, 0, NULL, NULL);
        write_text(dir, "config.json", configs[i].config);
        load(ctx, dir, 1, configs[i].want, configs[i].needle, "config.json");
    }
    snprintf(dir, sizeof dir, "%s/noconfig", root);
    make_dir(dir);
    load(ctx, dir, 0, MXMOE_ERR_IO, "config.json: cannot open", NULL);
    snprintf(path, sizeof path, "%s/ct0/config.json", root);
    load(ctx, path, 0, MXMOE_ERR_FORMAT, "neither a model folder", NULL);
    load(ctx, "/nonexistent/model", 0, MXMOE_ERR_IO, "/nonexistent/model: cannot open", NULL);
    mxmoe_layer* L = NULL;
    CHECK_STATUS(mxmoe_layer_load(NULL, dir, NULL, &L, NULL), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mxmoe_layer_load(ctx, NULL, NULL, &L, NULL), MXMOE_ERR_INVALID_ARGUMENT);
    mxmoe_layer_free(NULL);
    check_set_context("");
}

static void test_gpt_oss(mxmoe_ctx* ctx, const model* m) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/oss", root);
    write_gpt_oss(dir, m);
    for (int mapped = 1; mapped >= 0; mapped--) {
        check_set_context("gpt-oss, %s", mapped ? "mapped" : "pread");
        if (!mapped) {
            setenv("MXMOE_NO_MMAP", "1", 1);
        }
        mxmoe_layer* L = load(ctx, dir, 0, MXMOE_OK, NULL, NULL);
        unsetenv("MXMOE_NO_MMAP");
        if (L == NULL) {
            continue;
        }
        const mxmoe_layer_info* in = mxmoe_layer_get_info(L);
        CHECK(in->format == MXMOE_MODEL_GPT_OSS && in->zero_copy == mapped);
        CHECK(in->route.method == MXMOE_ROUTE_TOPK_SOFTMAX && in->has_router_bias &&
              in->has_expert_biases);
        CHECK(in->moe.act.activation == MXMOE_ACT_SWIGLU_OAI &&
              in->moe.act.layout == MXMOE_GATE_UP_INTERLEAVED && in->moe.act.swiglu_limit == 7.0f);
        check_weights(L, m, 1);
        check_forward(ctx, L, m, 1);
        mxmoe_layer_free(L);
    }
    check_set_context("");
}

static void test_gguf(mxmoe_ctx* ctx, const model* m) {
    check_set_context("gguf");
    char path[128];
    snprintf(path, sizeof path, "%s/m.gguf", root);
    write_gguf(path, m, ctx, 0);
    mxmoe_layer* L = load(ctx, path, 0, MXMOE_OK, NULL, NULL);
    if (L != NULL) {
        const mxmoe_layer_info* in = mxmoe_layer_get_info(L);
        CHECK(in->format == MXMOE_MODEL_GGUF && strcmp(in->model_type, "gpt-oss") == 0);
        CHECK(in->moe.act.activation == MXMOE_ACT_SWIGLU_OAI &&
              in->moe.act.layout == MXMOE_GATE_UP_CONCAT && in->has_expert_biases);
        check_weights(L, m, 0);
        check_forward(ctx, L, m, 1);
        mxmoe_layer_free(L);
    }
    load(ctx, path, 1, MXMOE_ERR_INVALID_ARGUMENT, "m.gguf", "layer 1 is out of range");
    snprintf(path, sizeof path, "%s/q8.gguf", root);
    write_gguf(path, m, ctx, 1);
    load(ctx, path, 0, MXMOE_ERR_UNSUPPORTED, "tensor 'blk.0.ffn_up_exps.weight' is q8_0",
         "q8.gguf");
    /* Truncated: the last tensor runs past the end. */
    FILE* fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fclose(fp);
    CHECK(truncate(path, n - 8) == 0);
    load(ctx, path, 0, MXMOE_ERR_FORMAT, "blk.0.ffn_down_exps.bias", "run past the end");
    check_set_context("");
}

/* An unquantized folder: quantized at load, and mxmoe_model_quantize of it loads to the same. */
static void test_unquantized_and_quantize(mxmoe_ctx* ctx) {
    check_set_context("unquantized + mxmoe_model_quantize");
    char dir[128], out[128];
    snprintf(dir, sizeof dir, "%s/bf16", root);
    snprintf(out, sizeof out, "%s/bf16_q", root);
    make_dir(dir);
    tensor_list* l = calloc(1, sizeof *l);
    static float w[E][3][H * I], router[E * H], other[H];
    static const char* const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int e = 0; e < E; e++) {
        for (int p = 0; p < 3; p++) {
            for (int i = 0; i < H * I; i++) {
                w[e][p][i] = 0.1f * uniform();
            }
            int64_t d[2] = {p < 2 ? I : H, p < 2 ? H : I};
            char name[96];
            snprintf(name, sizeof name, "model.layers.0.mlp.experts.%d.%s.weight", e, proj[p]);
            add(l, name, MXMOE_ST_F32, 2, d, w[e][p]);
        }
    }
    for (int i = 0; i < E * H; i++) {
        router[i] = uniform();
    }
    int64_t dr[2] = {E, H}, dn[1] = {H};
    add(l, "model.layers.0.mlp.gate.weight", MXMOE_ST_F32, 2, dr, router);
    add(l, "model.norm.weight", MXMOE_ST_F32, 1, dn, other);
    write_shard(dir, "model.safetensors", l, 0, l->n);
    write_text(dir, "config.json",
               "{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_hidden_layers\": 1,\n"
               " \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,\n"
               " \"norm_topk_prob\": true, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0}");
    write_text(dir, "tokenizer_config.json", "{}");
    free(l);
    mxmoe_layer* A = load(ctx, dir, 0, MXMOE_OK, NULL, NULL);
    mxmoe_model_quantize_stats stats;
    mxmoe_io_error err;
    CHECK_STATUS(mxmoe_model_quantize(ctx, dir, out, NULL, &stats, &err), MXMOE_OK);
    CHECK(stats.tensors_quantized == 3 * E && stats.tensors_copied == 2 && stats.shards == 1 &&
          stats.files_copied == 1);
    mxmoe_layer* B = load(ctx, out, 0, MXMOE_OK, NULL, NULL);
    if (A != NULL && B != NULL) {
        CHECK(mxmoe_layer_get_info(A)->quantized_at_load == 1 &&
              mxmoe_layer_get_info(A)->format == MXMOE_MODEL_UNQUANTIZED);
        CHECK(mxmoe_layer_get_info(B)->format == MXMOE_MODEL_COMPRESSED_TENSORS);
        mxmoe_moe_weights wa, wb;
        mxmoe_layer_weights(A, &wa);
        mxmoe_layer_weights(B, &wb);
        CHECK(memcmp(wa.w13.packed.data, wb.w13.packed.data, (size_t)E * 2 * I * H / 2) == 0);
        CHECK(memcmp(wa.w13.scales.data, wb.w13.scales.data, (size_t)E * 2 * I * H / 32) == 0);
        CHECK(memcmp(wa.w2.packed.data, wb.w2.packed.data, (size_t)E * H * I / 2) == 0);
    }
    mxmoe_layer_free(A);
    mxmoe_layer_free(B);
    /* Refusals: a non-empty output folder, an already quantized input, no experts. */
    CHECK_STATUS(mxmoe_model_quantize(ctx, dir, out, NULL, NULL, &err), MXMOE_ERR_IO);
    CHECK(strstr(err.message, "not empty") != NULL);
    snprintf(out, sizeof out, "%s/again", root);
    char ct[128];
    snprintf(ct, sizeof ct, "%s/ct0", root);
    CHECK_STATUS(mxmoe_model_quantize(ctx, ct, out, NULL, NULL, &err), MXMOE_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "already quantized") != NULL);
    CHECK_STATUS(mxmoe_model_quantize(ctx, dir, dir, NULL, NULL, &err), MXMOE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "is the input folder") != NULL);
    CHECK_STATUS(mxmoe_model_quantize(NULL, dir, out, NULL, NULL, &err),
                 MXMOE_ERR_INVALID_ARGUMENT);
    check_set_context("");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/mxmoe_test_model_XXXXXX");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mxmoe_ctx_params p = mxmoe_ctx_params_default();
    p.backend = MXMOE_BACKEND_CPU;
    mxmoe_ctx* ctx = NULL;
    if (mxmoe_ctx_init(&ctx, &p) != MXMOE_OK) {
        return 1;
    }
    model* m = random_model();
    test_compressed_tensors(ctx, m);
    test_gpt_oss(ctx, m);
    test_gguf(ctx, m);
    test_unquantized_and_quantize(ctx);
    free(m);
    mxmoe_ctx_free(ctx);
    remove_tree(root);
    return check_report();
}
