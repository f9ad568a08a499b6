/*
 * model_quantize.c — mxmoe_model_quantize: an unquantized Hugging Face MoE model folder to a
 * compressed-tensors `mxfp4-pack-quantized` folder.
 *
 * Shard by shard, the output header is fixed from the input header alone (each expert Linear
 * X.weight [N, K] becomes X.weight_packed U8 [N, K/2] + X.weight_scale U8 [N, K/32], every
 * other tensor keeps its entry), then tensors stream through in row chunks: bounded memory
 * whatever the model's size. Tensors that are copied go from the mapped input straight to the
 * output. Quantization runs on the caller's context (on CUDA the chunks go through device
 * buffers); the result is byte-identical on every backend.
 *
 * The output's config.json is the input's with the compressed-tensors quantization_config of
 * formats.md §4.2 added: one config group whose targets are the expert Linears (a "re:" regex),
 * 4-bit float weights in groups of 32 with uint8 E8M0 scales, and dynamic 4-bit float input
 * activations (W4A4, the scheme vLLM's MXFP4 MoE kernels serve).
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdir, opendir, rename */
#endif

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_common.h"
#include "io/model_dir.h"
#include "mxmoe_model.h"

#define CHUNK_BYTES ((size_t)64 << 20)

static const char* const expert_projs[] = {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"};
#define NUM_PROJS 6

mxmoe_model_quantize_params mxmoe_model_quantize_params_default(void) {
    mxmoe_model_quantize_params p;
    memset(&p, 0, sizeof p);
    p.rule = MXMOE_RULE_EVEN;
    return p;
}

/* If `name` is "<...>.experts.<digits>.<proj>.weight", the proj's index, else -1. */
static int expert_linear(const char* name) {
    size_t n = strlen(name);
    static const char weight[] = ".weight";
    if (n < sizeof weight || strcmp(name + n - (sizeof weight - 1), weight) != 0) {
        return -1;
    }
    size_t end = n - (sizeof weight - 1); /* name[0..end) = "<...>.experts.<e>.<proj>" */
    for (int p = 0; p < NUM_PROJS; p++) {
        size_t m = strlen(expert_projs[p]);
        if (end < m + 1 || name[end - m - 1] != '.' ||
            strncmp(name + end - m, expert_projs[p], m) != 0) {
            continue;
        }
        size_t d = end - m - 1; /* name[d] == '.' before the proj */
        size_t digits = 0;
        while (digits < d && name[d - 1 - digits] >= '0' && name[d - 1 - digits] <= '9') {
            digits++;
        }
        static const char experts[] = ".experts.";
        size_t el = sizeof experts - 1;
        if (digits > 0 && d - digits >= el && strncmp(name + d - digits - el, experts, el) == 0) {
            return p;
        }
    }
    return -1;
}

typedef struct job {
    size_t in_index;
    int quantize;
    size_t out_a, out_b; /* output entries: the copy, or packed + scale */
} job;

typedef struct shard_plan {
    mxmoe_st_entry* entries;
    char** names;
    size_t count;
    job* jobs;
    size_t job_count;
} shard_plan;

static void plan_free(shard_plan* p) {
    for (size_t i = 0; i < p->count; i++) {
        free(p->names[i]);
    }
    free(p->entries);
    free(p->names);
    free(p->jobs);
    memset(p, 0, sizeof *p);
}

typedef struct quantizer {
    mxmoe_ctx* ctx;
    const mxmoe_model_quantize_params* params;
    mxmoe_model_quantize_stats* stats;
    mxmoe_io_error* err;
    model_dir* dir;
    const char* out_dir;
    uint64_t total, done;
    int proj_seen[NUM_PROJS];
    /* Backend staging for the CUDA backend (NULL on host backends). */
    void *dev_x, *dev_p, *dev_s;
    /* Host chunk buffers. */
    unsigned char *x, *packed, *scales;
} quantizer;

static void progress(quantizer* q, const char* shard, const char* tensor) {
    if (q->params->progress != NULL) {
        char what[512];
        snprintf(what, sizeof what, "%s: %s", shard, tensor);
        q->params->progress(q->done, q->total, what, q->params->progress_user_data);
    }
}

static int add_entry(shard_plan* p, const char* base, const char* suffix, mxmoe_st_dtype dtype,
                     int32_t ndim, const int64_t* shape) {
    size_t a = strlen(base), b = strlen(suffix);
    char* name = malloc(a + b + 1);
    if (name == NULL) {
        return -1;
    }
    memcpy(name, base, a);
    memcpy(name + a, suffix, b + 1);
    mxmoe_st_entry* e = &p->entries[p->count];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->dtype = dtype;
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    p->names[p->count] = name;
    p->count++;
    return 0;
}

/* The output tensors of one input shard. */
static mxmoe_status plan_shard(quantizer* q, mxmoe_st_file* in, const char* path, shard_plan* p) {
    size_t n = mxmoe_st_count(in);
    p->entries = calloc(2 * n + 1, sizeof *p->entries);
    p->names = calloc(2 * n + 1, sizeof *p->names);
    p->jobs = calloc(n + 1, sizeof *p->jobs);
    if (p->entries == NULL || p->names == NULL || p->jobs == NULL) {
        return io_fail(q->err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    io_quoted qn;
    for (size_t i = 0; i < n; i++) {
        const mxmoe_st_tensor_info* t = mxmoe_st_info(in, i);
        job* j = &p->jobs[p->job_count++];
        j->in_index = i;
        int proj = expert_linear(t->name);
        int is_float =
            t->dtype == MXMOE_ST_F32 || t->dtype == MXMOE_ST_BF16 || t->dtype == MXMOE_ST_F16;
        if (proj >= 0 &&
            (!is_float || t->ndim != 2 || t->shape[1] % MXMOE_BLOCK != 0 || t->shape[1] == 0)) {
            char shape[160];
            io_format_shape(shape, sizeof shape, t->shape, t->ndim);
            return io_fail(q->err, MXMOE_ERR_UNSUPPORTED, path,
                           "tensor '%s': %s %s cannot be quantized to MXFP4 (an expert Linear "
                           "must be F32/BF16/F16 [N, K] with K a multiple of 32)",
                           io_quote_head(qn, t->name), mxmoe_st_dtype_name(t->dtype), shape);
        }
        int fail = 0;
        if (proj >= 0) {
            size_t base_len = strlen(t->name) - strlen(".weight");
            char* base = malloc(base_len + 1);
            if (base == NULL) {
                return io_fail(q->err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
            }
            memcpy(base, t->name, base_len);
            base[base_len] = '\0';
            int64_t sp[2] = {t->shape[0], t->shape[1] / 2},
                    ss[2] = {t->shape[0], t->shape[1] / MXMOE_BLOCK};
            j->quantize = 1;
            j->out_a = p->count;
            fail = add_entry(p, base, ".weight_packed", MXMOE_ST_U8, 2, sp);
            j->out_b = p->count;
            fail = fail || add_entry(p, base, ".weight_scale", MXMOE_ST_U8, 2, ss);
            free(base);
            q->proj_seen[proj] = 1;
        } else {
            j->out_a = p->count;
            fail = add_entry(p, t->name, "", t->dtype, t->ndim, t->shape);
        }
        if (fail) {
            return io_fail(q->err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
        }
    }
    return MXMOE_OK;
}

/* Quantizes `rows` rows of K values (input dtype at x, host memory) on the context into
 * q->packed / q->scales (host). */
static mxmoe_status quantize_chunk(quantizer* q, mxmoe_dtype dtype, const void* x, int64_t rows,
                                   int64_t k, const char* path, const char* name) {
    int host = mxmoe_ctx_backend(q->ctx) != MXMOE_BACKEND_CUDA;
    size_t es = mxmoe_dtype_size(dtype);
    size_t xb = (size_t)(rows * k) * es, pb = (size_t)(rows * k / 2),
           sb = (size_t)(rows * k / MXMOE_BLOCK);
    int64_t xd[2] = {rows, k}, pd[2] = {rows, k / 2}, sd[2] = {rows, k / MXMOE_BLOCK};
    mxmoe_tensor xt = mxmoe_tensor_make(host ? (void*)x : q->dev_x, dtype, 2, xd);
    mxmoe_mx_tensor out;
    out.packed = mxmoe_tensor_make(host ? q->packed : q->dev_p, MXMOE_U8, 2, pd);
    out.scales = mxmoe_tensor_make(host ? q->scales : q->dev_s, MXMOE_U8, 2, sd);
    out.scale_layout = MXMOE_SCALES_LINEAR;
    mxmoe_status st = MXMOE_OK;
    if (!host) {
        xt.device = out.packed.device = out.scales.device = MXMOE_DEVICE_CUDA;
        st = mxmoe_memcpy(q->ctx, q->dev_x, x, xb, MXMOE_COPY_HOST_TO_BACKEND);
    }
    if (st == MXMOE_OK) {
        st = mxmoe_quantize(q->ctx, &xt, q->params->rule, &out);
    }
    if (st == MXMOE_OK && !host) {
        st = mxmoe_memcpy(q->ctx, q->packed, q->dev_p, pb, MXMOE_COPY_BACKEND_TO_HOST);
        if (st == MXMOE_OK) {
            st = mxmoe_memcpy(q->ctx, q->scales, q->dev_s, sb, MXMOE_COPY_BACKEND_TO_HOST);
        }
    }
    if (st == MXMOE_OK) {
        st = mxmoe_ctx_synchronize(q->ctx);
    }
    if (st != MXMOE_OK) {
        io_quoted qn;
        return io_fail(q->err, st, path, "tensor '%s': quantizing failed: %s",
                       io_quote_head(qn, name), mxmoe_ctx_last_error(q->ctx));
    }
    return MXMOE_OK;
}

static mxmoe_status run_job(quantizer* q, mxmoe_st_file* in, const char* path, const char* shard,
                            mxmoe_st_writer* w, const job* j) {
    const mxmoe_st_tensor_info* t = mxmoe_st_info(in, j->in_index);
    const unsigned char* direct = mxmoe_st_data(in, j->in_index);
    if (!j->quantize) {
        for (uint64_t off = 0; off < t->nbytes || off == 0; off += CHUNK_BYTES) {
            size_t n = (size_t)(t->nbytes - off < CHUNK_BYTES ? t->nbytes - off : CHUNK_BYTES);
            const void* src = direct != NULL ? direct + off : q->x;
            if (direct == NULL) {
                MXMOE_IO_FORWARD(mxmoe_st_read(in, j->in_index, off, q->x, n, q->err));
            }
            MXMOE_IO_FORWARD(mxmoe_st_writer_append(w, j->out_a, src, n, q->err));
            q->done += n;
            progress(q, shard, t->name);
            if (t->nbytes == 0) {
                break;
            }
        }
        q->stats->tensors_copied++;
        q->stats->bytes_in += t->nbytes;
        q->stats->bytes_out += t->nbytes;
        return MXMOE_OK;
    }
    int64_t k = t->shape[1], rows = t->shape[0];
    mxmoe_dtype dtype;
    mxmoe_st_dtype_to_mxmoe(t->dtype, &dtype);
    size_t es = mxmoe_st_dtype_size(t->dtype), row_bytes = (size_t)k * es;
    int64_t chunk = (int64_t)(CHUNK_BYTES / row_bytes);
    chunk = chunk < 1 ? 1 : chunk;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        size_t xb = (size_t)n * row_bytes;
        const void* x = direct != NULL ? direct + (size_t)r0 * row_bytes : NULL;
        if (x == NULL || ((uintptr_t)x % es) != 0) {
            MXMOE_IO_FORWARD(
                mxmoe_st_read(in, j->in_index, (uint64_t)r0 * row_bytes, q->x, xb, q->err));
            x = q->x;
        }
        MXMOE_IO_FORWARD(quantize_chunk(q, dtype, x, n, k, path, t->name));
        MXMOE_IO_FORWARD(
            mxmoe_st_writer_append(w, j->out_a, q->packed, (size_t)(n * k / 2), q->err));
        MXMOE_IO_FORWARD(
            mxmoe_st_writer_append(w, j->out_b, q->scales, (size_t)(n * k / MXMOE_BLOCK), q->err));
        q->done += xb;
        progress(q, shard, t->name);
    }
    q->stats->tensors_quantized++;
    q->stats->bytes_in += t->nbytes;
    q->stats->bytes_out += (uint64_t)(rows * k / 2 + rows * k / MXMOE_BLOCK);
    return MXMOE_OK;
}

/* Output metadata: the input's, less any mxmoe.* keys, plus the rule and format version. */
static mxmoe_status shard_metadata(quantizer* q, mxmoe_st_file* in, const char* path,
                                   mxmoe_st_kv** out, size_t* count, char* version_buf) {
    size_t n = 0;
    const mxmoe_st_kv* kv = mxmoe_st_metadata(in, &n);
    *out = calloc(n + 3, sizeof **out);
    if (*out == NULL) {
        return io_fail(q->err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(kv[i].key, "mxmoe.", 6) != 0) {
            (*out)[(*count)++] = kv[i];
        }
    }
    snprintf(version_buf, 16, "%d", MXMOE_FORMAT_VERSION);
    (*out)[(*count)++] = (mxmoe_st_kv){"mxmoe.format_version", version_buf};
    (*out)[(*count)++] = (mxmoe_st_kv){"mxmoe.scale_rule", mxmoe_scale_rule_name(q->params->rule)};
    return MXMOE_OK;
}

static mxmoe_status quantize_shard(quantizer* q, size_t s, FILE* index_map, int* first_entry) {
    mxmoe_st_file* in;
    MXMOE_IO_FORWARD(model_dir_shard(q->dir, s, &in, q->err));
    const char* shard = model_dir_shard_name(q->dir, s);
    char* in_path = model_join(model_dir_path(q->dir), shard);
    char* out_path = model_join(q->out_dir, shard);
    shard_plan plan;
    memset(&plan, 0, sizeof plan);
    mxmoe_st_kv* meta = NULL;
    size_t meta_count = 0;
    char version[16];
    mxmoe_st_writer* w = NULL;
    mxmoe_status st = MXMOE_OK;
    if (in_path == NULL || out_path == NULL) {
        st = io_fail(q->err, MXMOE_ERR_NO_MEMORY, q->out_dir, "out of memory");
    }
    if (st == MXMOE_OK) {
        st = plan_shard(q, in, in_path, &plan);
    }
    if (st == MXMOE_OK) {
        st = shard_metadata(q, in, in_path, &meta, &meta_count, version);
    }
    if (st == MXMOE_OK) {
        st = mxmoe_st_writer_open(&w, out_path, plan.entries, plan.count, meta, meta_count, q->err);
    }
    for (size_t i = 0; i < plan.job_count && st == MXMOE_OK; i++) {
        st = run_job(q, in, in_path, shard, w, &plan.jobs[i]);
    }
    if (w != NULL) {
        if (st == MXMOE_OK) {
            st = mxmoe_st_writer_close(w, q->err);
        } else {
            mxmoe_st_writer_abort(w);
        }
    }
    for (size_t i = 0; i < plan.count && st == MXMOE_OK; i++) {
        fputs(*first_entry ? "\n    " : ",\n    ", index_map);
        *first_entry = 0;
        json_write_string(index_map, plan.entries[i].name, strlen(plan.entries[i].name));
        fputs(": ", index_map);
        json_write_string(index_map, shard, strlen(shard));
    }
    if (st == MXMOE_OK) {
        q->stats->shards++;
    }
    plan_free(&plan);
    free(meta);
    free(in_path);
    free(out_path);
    return st;
}

/* Writes `text` to `path` through a temporary file renamed into place. */
static mxmoe_status finish_tmp(FILE* fp, const char* tmp, const char* path, mxmoe_io_error* err) {
    int bad = ferror(fp);
    if (fclose(fp) != 0 || bad) {
        remove(tmp);
        return io_fail(err, MXMOE_ERR_IO, path, "cannot write: %s", strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return io_fail(err, MXMOE_ERR_IO, path, "cannot rename the temporary file: %s",
                       strerror(errno));
    }
    return MXMOE_OK;
}

static FILE* open_tmp(const char* path, char** tmp, mxmoe_io_error* err) {
    size_t n = strlen(path);
    *tmp = malloc(n + 5);
    if (*tmp == NULL) {
        io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
        return NULL;
    }
    memcpy(*tmp, path, n);
    memcpy(*tmp + n, ".tmp", 5);
    FILE* fp = fopen(*tmp, "wb");
    if (fp == NULL) {
        io_fail(err, MXMOE_ERR_IO, path, "cannot create: %s", strerror(errno));
    }
    return fp;
}

/* The quantization_config of formats.md §4.2; `targets` is a regex over the found projections. */
static mxmoe_status write_config(quantizer* q, mxmoe_io_error* err) {
    char regex[160] = "re:.*experts\\\\.\\\\d+\\\\.(";
    int first = 1;
    for (int p = 0; p < NUM_PROJS; p++) {
        if (q->proj_seen[p]) {
            strcat(regex, first ? "" : "|");
            strcat(regex, expert_projs[p]);
            first = 0;
        }
    }
    strcat(regex, ")$");
    static const char* const args =
        "\"actorder\": null, \"block_structure\": null, \"group_size\": 32, \"num_bits\": 4, "
        "\"observer_kwargs\": {}, \"scale_dtype\": \"torch.uint8\", \"strategy\": \"group\", "
        "\"symmetric\": true, \"type\": \"float\", \"zp_dtype\": null";
    char text[2048];
    snprintf(text, sizeof text,
             "{\"config_groups\": {\"group_0\": {"
             "\"format\": \"mxfp4-pack-quantized\", "
             "\"input_activations\": {%s, \"dynamic\": true, \"observer\": null}, "
             "\"output_activations\": null, "
             "\"targets\": [\"%s\"], "
             "\"weights\": {%s, \"dynamic\": false, \"observer\": \"memoryless_minmax\"}}}, "
             "\"format\": \"mxfp4-pack-quantized\", \"global_compression_ratio\": null, "
             "\"ignore\": [\"lm_head\"], \"kv_cache_scheme\": null, "
             "\"quant_method\": \"compressed-tensors\", \"quantization_status\": \"compressed\", "
             "\"sparsity_config\": {}, \"transform_config\": {}}",
             args, regex, args);
    json_value* qc = NULL;
    char why[256];
    if (json_value_parse(text, strlen(text), &qc, why, sizeof why) != 0) {
        return io_fail(err, MXMOE_ERR_FORMAT, "quantization_config", "internal error: %s", why);
    }
    /* A copy of the input config, to be modified. */
    char* in_path = model_join(model_dir_path(q->dir), MODEL_CONFIG_NAME);
    char* out_path = model_join(q->out_dir, MODEL_CONFIG_NAME);
    char* raw = NULL;
    size_t len = 0;
    json_value* config = NULL;
    mxmoe_status st =
        in_path && out_path ? MXMOE_OK : io_fail(err, MXMOE_ERR_NO_MEMORY, q->out_dir, "oom");
    if (st == MXMOE_OK) {
        st = model_read_file(in_path, (size_t)256 << 20, &raw, &len, err);
    }
    if (st == MXMOE_OK && json_value_parse(raw, len, &config, why, sizeof why) != 0) {
        st = io_fail(err, MXMOE_ERR_FORMAT, in_path, "malformed JSON: %s", why);
    }
    if (st == MXMOE_OK) {
        json_object_set(config, "quantization_config", qc);
        qc = NULL;
        char* tmp = NULL;
        FILE* fp = open_tmp(out_path, &tmp, err);
        if (fp == NULL) {
            st = MXMOE_ERR_IO;
        } else {
            json_value_write(fp, config);
            st = finish_tmp(fp, tmp, out_path, err);
        }
        free(tmp);
    }
    json_value_free(qc);
    json_value_free(config);
    free(raw);
    free(in_path);
    free(out_path);
    return st;
}

/* Copies the folder's other regular files (tokenizer, generation config, ...). */
static mxmoe_status copy_other_files(quantizer* q) {
    const char* in_dir = model_dir_path(q->dir);
    DIR* dir = opendir(in_dir);
    if (dir == NULL) {
        return io_fail(q->err, MXMOE_ERR_IO, in_dir, "cannot list: %s", strerror(errno));
    }
    mxmoe_status st = MXMOE_OK;
    struct dirent* e;
    while (st == MXMOE_OK && (e = readdir(dir)) != NULL) {
        const char* name = e->d_name;
        size_t n = strlen(name);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strcmp(name, MODEL_CONFIG_NAME) == 0 || strcmp(name, MODEL_INDEX_NAME) == 0 ||
            (n > 12 && strcmp(name + n - 12, ".safetensors") == 0)) {
            continue;
        }
        char* src = model_join(in_dir, name);
        char* dst = model_join(q->out_dir, name);
        struct stat info;
        if (src == NULL || dst == NULL) {
            st = io_fail(q->err, MXMOE_ERR_NO_MEMORY, in_dir, "out of memory");
        } else if (stat(src, &info) == 0 && S_ISREG(info.st_mode)) {
            FILE* in = fopen(src, "rb");
            char* tmp = NULL;
            FILE* out = in != NULL ? open_tmp(dst, &tmp, q->err) : NULL;
            if (in == NULL) {
                st = io_fail(q->err, MXMOE_ERR_IO, src, "cannot open: %s", strerror(errno));
            } else if (out == NULL) {
                st = MXMOE_ERR_IO;
            } else {
                char buf[1 << 16];
                size_t got;
                while ((got = fread(buf, 1, sizeof buf, in)) > 0) {
                    fwrite(buf, 1, got, out);
                }
                if (ferror(in)) {
                    st = io_fail(q->err, MXMOE_ERR_IO, src, "cannot read: %s", strerror(errno));
                    fclose(out);
                    remove(tmp);
                } else {
                    st = finish_tmp(out, tmp, dst, q->err);
                }
            }
            if (in != NULL) {
                fclose(in);
            }
            free(tmp);
            if (st == MXMOE_OK) {
                q->stats->files_copied++;
                progress(q, name, "(copied)");
            }
        }
        free(src);
        free(dst);
    }
    closedir(dir);
    return st;
}

/* OUT_DIR must not exist (it is created) or be an empty folder. */
static mxmoe_status prepare_out_dir(const char* in_dir, const char* out_dir, mxmoe_io_error* err) {
    struct stat a, b;
    if (stat(out_dir, &b) != 0) {
        if (mkdir(out_dir, 0777) != 0) {
            return io_fail(err, MXMOE_ERR_IO, out_dir, "cannot create the folder: %s",
                           strerror(errno));
        }
        return MXMOE_OK;
    }
    if (!S_ISDIR(b.st_mode)) {
        return io_fail(err, MXMOE_ERR_IO, out_dir, "exists and is not a folder");
    }
    if (stat(in_dir, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, out_dir,
                       "is the input folder: write the quantized model elsewhere");
    }
    DIR* dir = opendir(out_dir);
    if (dir == NULL) {
        return io_fail(err, MXMOE_ERR_IO, out_dir, "cannot list: %s", strerror(errno));
    }
    struct dirent* e;
    int empty = 1;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
        }
    }
    closedir(dir);
    if (!empty) {
        return io_fail(err, MXMOE_ERR_IO, out_dir, "exists and is not empty");
    }
    return MXMOE_OK;
}

static mxmoe_status run(quantizer* q, const char* in_dir) {
    mxmoe_io_error* err = q->err;
    MXMOE_IO_FORWARD(model_dir_open(in_dir, &q->dir, err));
    const json_value* qc = json_get(model_dir_config(q->dir), "quantization_config");
    if (qc != NULL && qc->kind != JSON_NULL) {
        const char* method = "?";
        json_get_string(qc, "quant_method", &method);
        char* path = model_join(in_dir, MODEL_CONFIG_NAME);
        mxmoe_status st = io_fail(err, MXMOE_ERR_UNSUPPORTED, path ? path : in_dir,
                                  "the model is already quantized (quant_method \"%.40s\"): "
                                  "quantize reads unquantized BF16/F16/F32 models",
                                  method);
        free(path);
        return st;
    }
    /* Plan pass: totals for the progress, and whether there is anything to quantize. */
    int any = 0;
    for (size_t s = 0; s < model_dir_shard_count(q->dir); s++) {
        mxmoe_st_file* f;
        MXMOE_IO_FORWARD(model_dir_shard(q->dir, s, &f, err));
        for (size_t i = 0; i < mxmoe_st_count(f); i++) {
            const mxmoe_st_tensor_info* t = mxmoe_st_info(f, i);
            q->total += t->nbytes;
            any |= expert_linear(t->name) >= 0;
        }
    }
    if (!any) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, in_dir,
                       "no expert Linears ('...experts.<e>.{gate_proj,up_proj,down_proj,w1,w2,"
                       "w3}.weight') to quantize: not a per-expert MoE checkpoint");
    }
    MXMOE_IO_FORWARD(prepare_out_dir(in_dir, q->out_dir, err));
    q->x = malloc(CHUNK_BYTES);
    q->packed = malloc(CHUNK_BYTES / 2);
    q->scales = malloc(CHUNK_BYTES / MXMOE_BLOCK);
    if (q->x == NULL || q->packed == NULL || q->scales == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, q->out_dir, "out of memory");
    }
    if (mxmoe_ctx_backend(q->ctx) == MXMOE_BACKEND_CUDA) {
        if (mxmoe_malloc(q->ctx, CHUNK_BYTES, &q->dev_x) != MXMOE_OK ||
            mxmoe_malloc(q->ctx, CHUNK_BYTES / 2, &q->dev_p) != MXMOE_OK ||
            mxmoe_malloc(q->ctx, CHUNK_BYTES / MXMOE_BLOCK, &q->dev_s) != MXMOE_OK) {
            return io_fail(err, MXMOE_ERR_NO_MEMORY, q->out_dir,
                           "cannot allocate device buffers: %s", mxmoe_ctx_last_error(q->ctx));
        }
    }
    /* Shards, with the index's weight_map written alongside. */
    char* index_path = model_join(q->out_dir, MODEL_INDEX_NAME);
    char* tmp = NULL;
    FILE* index = index_path != NULL ? open_tmp(index_path, &tmp, err) : NULL;
    mxmoe_status st = index != NULL ? MXMOE_OK : MXMOE_ERR_IO;
    if (index_path == NULL) {
        st = io_fail(err, MXMOE_ERR_NO_MEMORY, q->out_dir, "out of memory");
    }
    uint64_t bytes_before = q->stats->bytes_out;
    if (st == MXMOE_OK) {
        fputs("{\n  \"weight_map\": {", index);
    }
    int first = 1;
    for (size_t s = 0; s < model_dir_shard_count(q->dir) && st == MXMOE_OK; s++) {
        st = quantize_shard(q, s, index, &first);
    }
    if (st == MXMOE_OK) {
        fputs("\n  },\n  \"metadata\": {", index);
        const json_value* meta = model_dir_index_metadata(q->dir);
        for (size_t i = 0; meta != NULL && meta->kind == JSON_OBJECT && i < meta->count; i++) {
            if (strcmp(meta->keys[i], "total_size") != 0) {
                fputs("\n    ", index);
                json_write_string(index, meta->keys[i], strlen(meta->keys[i]));
                fputs(": ", index);
                json_value_write_nested(index, &meta->items[i], 2);
                fputc(',', index);
            }
        }
        fprintf(index, "\n    \"total_size\": %llu\n  }\n}\n",
                (unsigned long long)(q->stats->bytes_out - bytes_before));
        st = finish_tmp(index, tmp, index_path, err);
        index = NULL;
    }
    if (index != NULL) {
        fclose(index);
        remove(tmp);
    }
    free(tmp);
    free(index_path);
    if (st == MXMOE_OK) {
        st = write_config(q, err);
    }
    if (st == MXMOE_OK) {
        st = copy_other_files(q);
    }
    return st;
}

mxmoe_status mxmoe_model_quantize(mxmoe_ctx* ctx, const char* in_dir, const char* out_dir,
                                  const mxmoe_model_quantize_params* params,
                                  mxmoe_model_quantize_stats* stats, mxmoe_io_error* err) {
    if (ctx == NULL || in_dir == NULL || out_dir == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, in_dir ? in_dir : "(null)",
                       "mxmoe_model_quantize: NULL context or folder");
    }
    mxmoe_model_quantize_params defaults = mxmoe_model_quantize_params_default();
    mxmoe_model_quantize_stats local;
    memset(&local, 0, sizeof local);
    quantizer q;
    memset(&q, 0, sizeof q);
    q.ctx = ctx;
    q.params = params != NULL ? params : &defaults;
    q.stats = &local;
    q.err = err;
    q.out_dir = out_dir;
    if ((unsigned)q.params->rule >= MXMOE_RULE_COUNT) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, in_dir, "bad scale rule %d",
                       (int)q.params->rule);
    }
    mxmoe_status st = run(&q, in_dir);
    if (st == MXMOE_OK && q.params->progress != NULL) {
        q.params->progress(q.total, q.total, "done", q.params->progress_user_data);
    }
    mxmoe_free(ctx, q.dev_x);
    mxmoe_free(ctx, q.dev_p);
    mxmoe_free(ctx, q.dev_s);
    free(q.x);
    free(q.packed);
    free(q.scales);
    model_dir_close(q.dir);
    if (stats != NULL) {
        *stats = local;
    }
    return st == MXMOE_OK ? io_ok(err) : st;
}
