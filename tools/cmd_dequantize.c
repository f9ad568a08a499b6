/*
 * cmd_dequantize.c — `mxmoe dequantize IN OUT`: the inverse of `mxmoe quantize`.
 *
 * Each pair X_packed (U8 [..., K/2]) + X_scale (U8 [..., K/32]) becomes X (F32 [..., K]) through
 * mxmoe_dequantize, which is exact: every MXFP4 value is an FP32 number (scale 0xFF gives NaN).
 * Everything else is copied. A pair whose shapes disagree is an error, not a copy: it means the
 * file is not what its names say. On a GPU backend each row chunk is copied to the device,
 * dequantized there and copied back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "convert.h"

static const char* const usage =
    "usage: mxmoe dequantize IN.safetensors OUT.safetensors [--backend auto|cpu|cuda]\n"
    "\n"
    "Turns each MXFP4 pair X_packed (U8 [..., K/2]) + X_scale (U8 [..., K/32]), as written by\n"
    "'mxmoe quantize', back into an F32 tensor X [..., K]. Other tensors are copied unchanged.\n"
    "\n"
    "options:\n"
    "  --backend B   backend that dequantizes: auto (default: CUDA if usable, else CPU),\n"
    "                cpu or cuda\n";

static const char packed_suffix[] = "_packed";
static const char scale_suffix[] = "_scale";

/* One output and where it comes from. */
typedef struct dequantize_job {
    size_t packed_index; /* input tensor (the copy's source for a copy) */
    size_t scale_index;  /* input scale tensor, or MXMOE_ST_NOT_FOUND for a copy */
    size_t out_index;
} dequantize_job;

/* If `name` ends in suffix, its length without it, else 0. */
static size_t base_length(const char* name, const char* suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return (n > s && strcmp(name + n - s, suffix) == 0) ? n - s : 0;
}

/* Finds X_scale for X_packed and checks the pair; returns 1 (a pair), 0 (no scale tensor: copy)
 * or -1 (inconsistent pair, error printed). */
static int find_pair(const char* cmd, mxmoe_st_file* in, size_t packed_index, size_t* scale_index) {
    const mxmoe_st_tensor_info* p = mxmoe_st_info(in, packed_index);
    size_t base = base_length(p->name, packed_suffix);
    if (base == 0 || p->dtype != MXMOE_ST_U8) {
        return 0;
    }
    char* scale_name = malloc(base + sizeof scale_suffix);
    if (scale_name == NULL) {
        cli_error(cmd, "out of memory");
        return -1;
    }
    memcpy(scale_name, p->name, base);
    memcpy(scale_name + base, scale_suffix, sizeof scale_suffix);
    *scale_index = mxmoe_st_find(in, scale_name);
    const mxmoe_st_tensor_info* s = mxmoe_st_info(in, *scale_index);
    int result = 1;
    if (s == NULL) {
        cli_warn(cmd, "'%s' has no '%s': copied unchanged", p->name, scale_name);
        result = 0;
    } else {
        int ok = s->dtype == MXMOE_ST_U8 && p->ndim >= 1 && s->ndim == p->ndim;
        for (int32_t d = 0; ok && d + 1 < p->ndim; d++) {
            ok = p->shape[d] == s->shape[d];
        }
        /* K = 2 x packed bytes per row must be a multiple of 32 with one scale per block. */
        int64_t k = ok ? 2 * p->shape[p->ndim - 1] : 0;
        ok = ok && k > 0 && k % MXMOE_BLOCK == 0 && s->shape[s->ndim - 1] == k / MXMOE_BLOCK;
        if (!ok) {
            char pd[160], sd[160];
            convert_describe(pd, sizeof pd, p->dtype, p->ndim, p->shape);
            convert_describe(sd, sizeof sd, s->dtype, s->ndim, s->shape);
            cli_error(cmd,
                      "'%s' (%s) and '%s' (%s) are not an MXFP4 pair: expected U8 [..., K/2] and "
                      "U8 [..., K/32] with the same leading dims and K a multiple of 32",
                      p->name, pd, s->name, sd);
            result = -1;
        }
    }
    free(scale_name);
    return result;
}

/* Dequantizes one pair in row chunks into output job->out_index (F32). */
static int dequantize_tensor(const char* cmd, mxmoe_ctx* ctx, mxmoe_st_file* in,
                             mxmoe_st_writer* out, const dequantize_job* job) {
    const mxmoe_st_tensor_info* p = mxmoe_st_info(in, job->packed_index);
    int64_t k = 2 * p->shape[p->ndim - 1];
    int64_t rows = p->numel / (k / 2);
    int64_t chunk = convert_chunk_rows(rows, (uint64_t)k * sizeof(float));
    unsigned char* packed = malloc((size_t)(chunk * k / 2));
    unsigned char* scales = malloc((size_t)(chunk * k / MXMOE_BLOCK));
    float* y = malloc((size_t)(chunk * k) * sizeof(float));
    cli_buffer pb = {0}, sb = {0}, yb = {0};
    int rc = 0;
    if (packed == NULL || scales == NULL || y == NULL) {
        rc =
            cli_error(cmd, "out of memory for a %lld-row chunk of '%s'", (long long)chunk, p->name);
    }
    if (rc == 0 &&
        (cli_buffer_init(cmd, ctx, &pb, packed, (size_t)(chunk * k / 2), "the codes") != 0 ||
         cli_buffer_init(cmd, ctx, &sb, scales, (size_t)(chunk * k / MXMOE_BLOCK), "the scales") !=
             0 ||
         cli_buffer_init(cmd, ctx, &yb, y, (size_t)(chunk * k) * sizeof(float), "the output") !=
             0)) {
        rc = CLI_EXIT_FAILURE;
    }
    mxmoe_io_error err;
    for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        if (mxmoe_st_read(in, job->packed_index, (uint64_t)(r0 * k / 2), packed,
                          (size_t)(n * k / 2), &err) != MXMOE_OK ||
            mxmoe_st_read(in, job->scale_index, (uint64_t)(r0 * k / MXMOE_BLOCK), scales,
                          (size_t)(n * k / MXMOE_BLOCK), &err) != MXMOE_OK) {
            rc = cli_error(cmd, "%s", err.message);
            break;
        }
        int64_t y_dims[2] = {n, k}, p_dims[2] = {n, k / 2}, s_dims[2] = {n, k / MXMOE_BLOCK};
        mxmoe_mx_tensor q;
        q.packed = cli_tensor(ctx, pb.backend, MXMOE_U8, 2, p_dims);
        q.scales = cli_tensor(ctx, sb.backend, MXMOE_U8, 2, s_dims);
        q.scale_layout = MXMOE_SCALES_LINEAR;
        mxmoe_tensor yt = cli_tensor(ctx, yb.backend, MXMOE_F32, 2, y_dims);
        if (cli_buffer_upload(cmd, ctx, &pb, (size_t)(n * k / 2)) != 0 ||
            cli_buffer_upload(cmd, ctx, &sb, (size_t)(n * k / MXMOE_BLOCK)) != 0) {
            rc = CLI_EXIT_FAILURE;
            break;
        }
        mxmoe_status st = mxmoe_dequantize(ctx, &q, &yt);
        if (st == MXMOE_OK) {
            st = mxmoe_ctx_synchronize(ctx);
        }
        if (st != MXMOE_OK) {
            rc = cli_error(cmd, "dequantizing '%s': %s (%s)", p->name, mxmoe_ctx_last_error(ctx),
                           mxmoe_status_string(st));
            break;
        }
        if (cli_buffer_download(cmd, ctx, &yb, (size_t)(n * k) * sizeof(float)) != 0) {
            rc = CLI_EXIT_FAILURE;
            break;
        }
        /* safetensors data is little-endian, as is every host this tool targets. */
        if (mxmoe_st_writer_append(out, job->out_index, y, (size_t)(n * k) * sizeof(float), &err) !=
            MXMOE_OK) {
            rc = cli_error(cmd, "%s", err.message);
        }
    }
    cli_buffer_free(ctx, &pb);
    cli_buffer_free(ctx, &sb);
    cli_buffer_free(ctx, &yb);
    free(packed);
    free(scales);
    free(y);
    return rc;
}

/* Pairs up X_packed/X_scale and lists the outputs in input order (scales fold into their X). */
static int plan_outputs(const char* cmd, mxmoe_st_file* in, dequantize_job* jobs, size_t* num_jobs,
                        convert_outputs* outputs, size_t* num_pairs) {
    size_t count = mxmoe_st_count(in);
    unsigned char* consumed = calloc(count ? count : 1, 1);
    if (consumed == NULL) {
        return cli_error(cmd, "out of memory");
    }
    size_t* scale_of = malloc((count ? count : 1) * sizeof *scale_of);
    int rc = scale_of == NULL ? cli_error(cmd, "out of memory") : 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        scale_of[i] = MXMOE_ST_NOT_FOUND;
        int pair = find_pair(cmd, in, i, &scale_of[i]);
        if (pair < 0) {
            rc = CLI_EXIT_FAILURE;
        } else if (pair == 0) {
            scale_of[i] = MXMOE_ST_NOT_FOUND;
        } else {
            consumed[scale_of[i]] = 1;
        }
    }
    *num_jobs = *num_pairs = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (consumed[i]) {
            continue;
        }
        const mxmoe_st_tensor_info* t = mxmoe_st_info(in, i);
        dequantize_job* job = &jobs[(*num_jobs)++];
        job->packed_index = i;
        job->scale_index = scale_of[i];
        int64_t index;
        if (scale_of[i] != MXMOE_ST_NOT_FOUND) {
            int64_t shape[MXMOE_ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            shape[t->ndim - 1] *= 2;
            char* base = malloc(strlen(t->name) + 1);
            if (base == NULL) {
                rc = cli_error(cmd, "out of memory");
                break;
            }
            memcpy(base, t->name, strlen(t->name) + 1);
            base[base_length(t->name, packed_suffix)] = '\0';
            index = convert_add(outputs, base, "", MXMOE_ST_F32, t->ndim, shape);
            free(base);
            (*num_pairs)++;
        } else {
            index = convert_add(outputs, t->name, "", t->dtype, t->ndim, t->shape);
        }
        if (index < 0) {
            rc = cli_error(cmd, "out of memory");
            break;
        }
        job->out_index = (size_t)index;
    }
    free(consumed);
    free(scale_of);
    if (rc == 0 && convert_check_unique(cmd, outputs) != 0) {
        rc = CLI_EXIT_FAILURE;
    }
    return rc;
}

static int run_dequantize(const char* cmd, const char* in_path, const char* out_path,
                          mxmoe_ctx* ctx) {
    double t0 = cli_seconds();
    mxmoe_st_file* in = convert_open_input(cmd, in_path);
    if (in == NULL) {
        return CLI_EXIT_FAILURE;
    }
    int rc = 0;
    const char* version = mxmoe_st_metadata_get(in, "mxmoe.format_version");
    char want[16];
    snprintf(want, sizeof want, "%d", MXMOE_FORMAT_VERSION);
    if (version != NULL && strcmp(version, want) != 0) {
        rc = cli_error(cmd, "%s: written with MXFP4 format version %s, this build reads %s",
                       in_path, version, want);
    }
    size_t count = mxmoe_st_count(in);
    dequantize_job* jobs = calloc(count ? count : 1, sizeof *jobs);
    convert_outputs outputs = {0};
    convert_metadata meta = {0};
    mxmoe_st_writer* out = NULL;
    size_t num_jobs = 0, num_pairs = 0;
    if (rc == 0 && jobs == NULL) {
        rc = cli_error(cmd, "out of memory");
    }
    if (rc == 0) {
        rc = plan_outputs(cmd, in, jobs, &num_jobs, &outputs, &num_pairs);
    }
    /* The output is no longer MXFP4: drop the keys that say it is. */
    static const char* const drop[] = {"mxmoe.*", NULL};
    if (rc == 0 && convert_metadata_build(in, drop, NULL, 0, &meta) != 0) {
        rc = cli_error(cmd, "out of memory");
    }
    mxmoe_io_error err;
    if (rc == 0 && mxmoe_st_writer_open(&out, out_path, outputs.entries, outputs.count, meta.kv,
                                        meta.count, &err) != MXMOE_OK) {
        rc = cli_error(cmd, "%s", err.message);
    }
    if (rc == 0) {
        printf("dequantize %s -> %s: %zu tensors, backend %s\n", in_path, out_path, count,
               mxmoe_ctx_backend_detail(ctx));
    }
    for (size_t j = 0; j < num_jobs && rc == 0; j++) {
        const dequantize_job* job = &jobs[j];
        const mxmoe_st_tensor_info* t = mxmoe_st_info(in, job->packed_index);
        const mxmoe_st_entry* e = &outputs.entries[job->out_index];
        char from[160], to[160];
        convert_describe(from, sizeof from, t->dtype, t->ndim, t->shape);
        convert_describe(to, sizeof to, e->dtype, e->ndim, e->shape);
        double ts = cli_seconds();
        if (job->scale_index != MXMOE_ST_NOT_FOUND) {
            rc = dequantize_tensor(cmd, ctx, in, out, job);
            if (rc == 0) {
                printf("[%zu/%zu] %s %s + %s -> %s %s (%.2f s)\n", j + 1, num_jobs, t->name, from,
                       mxmoe_st_info(in, job->scale_index)->name, e->name, to, cli_seconds() - ts);
            }
        } else {
            rc = convert_copy_tensor(cmd, in, job->packed_index, out, job->out_index);
            if (rc == 0) {
                printf("[%zu/%zu] %s %s copied\n", j + 1, num_jobs, t->name, from);
            }
        }
        fflush(stdout);
    }
    rc = convert_close_output(cmd, out, rc);
    if (rc == 0) {
        printf("done: %zu dequantized, %zu copied in %.2f s\n", num_pairs, num_jobs - num_pairs,
               cli_seconds() - t0);
    }
    convert_metadata_free(&meta);
    convert_outputs_free(&outputs);
    free(jobs);
    mxmoe_st_close(in);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

int cmd_dequantize(int argc, char** argv) {
    const char* cmd = "dequantize";
    const char* paths[2] = {NULL, NULL};
    mxmoe_backend backend = MXMOE_BACKEND_AUTO;
    int parsed = convert_parse_args(cmd, usage, argc, argv, paths, NULL, &backend);
    if (parsed >= 0) {
        return parsed;
    }
    mxmoe_ctx* ctx = cli_ctx_open(cmd, backend);
    if (ctx == NULL) {
        return CLI_EXIT_FAILURE;
    }
    int rc = run_dequantize(cmd, paths[0], paths[1], ctx);
    mxmoe_ctx_free(ctx);
    return rc;
}
