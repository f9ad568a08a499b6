/*
 * cmd_quantize.c — `mxmoe quantize IN OUT`: a BF16/F16/F32 safetensors checkpoint to MXFP4.
 *
 * Every floating tensor X of shape [..., K] with K % 32 == 0 becomes X_packed (U8 [..., K/2],
 * element 2i in the low nibble of byte i) and X_scale (U8 [..., K/32], E8M0), computed by
 * mxmoe_quantize with the chosen scale rule; everything else is copied byte for byte. The
 * metadata records the MXFP4 format version and the rule, so `mxmoe dequantize` (or a loader)
 * can tell how the file was made. On a GPU backend each row chunk is copied to the device,
 * quantized there and copied back (the result is byte-identical on every backend).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "convert.h"
#include "model_cli.h"

static const char* const usage =
    "usage: mxmoe quantize IN.safetensors OUT.safetensors [--rule even|floor|ceil|rceil]\n"
    "                      [--backend auto|cpu|cuda]\n"
    "\n"
    "Quantizes every floating tensor X (F32, BF16, F16) of shape [..., K] with K a multiple\n"
    "of 32 to MXFP4 along its last dimension: X becomes X_packed (U8 [..., K/2]) and X_scale\n"
    "(U8 [..., K/32]). Other tensors are copied unchanged (each is reported on stderr).\n"
    "__metadata__ is kept, plus mxmoe.format_version and mxmoe.scale_rule.\n"
    "\n"
    "mxmoe quantize MODEL_DIR OUT_DIR: given a Hugging Face model folder (config.json +\n"
    "*.safetensors), quantizes its MoE expert Linears (...experts.<e>.{gate_proj,up_proj,\n"
    "down_proj,w1,w2,w3}.weight) into OUT_DIR as a compressed-tensors mxfp4-pack-quantized\n"
    "model: weight_packed + weight_scale per expert, other tensors and files copied,\n"
    "shards + index written, config.json given its quantization_config (progress bar).\n"
    "\n"
    "options:\n"
    "  --rule R      scale rule (default even): even = compressed-tensors / vLLM, floor = OCP\n"
    "                MX v1.0, ceil = torchao CEIL, rceil = cuBLAS / gpt-oss triton_kernels\n"
    "  --backend B   backend that quantizes: auto (default: CUDA if usable, else CPU), cpu\n"
    "                or cuda\n";

/* One input tensor and what becomes of it. */
typedef struct quantize_job {
    size_t in_index;
    int quantize;      /* 0: copy */
    size_t out_packed; /* or the copy's output */
    size_t out_scale;
} quantize_job;

/* Quantizable: a float dtype the library reads, rank >= 1, last dim a positive multiple of 32. */
static int quantizable(const mxmoe_st_tensor_info* t, const char** why) {
    if (t->dtype != MXMOE_ST_F32 && t->dtype != MXMOE_ST_BF16 && t->dtype != MXMOE_ST_F16) {
        *why = "not a floating tensor (F32, BF16, F16)";
        return 0;
    }
    if (t->ndim < 1) {
        *why = "a scalar";
        return 0;
    }
    int64_t k = t->shape[t->ndim - 1];
    if (k == 0 || k % MXMOE_BLOCK != 0) {
        *why = "its last dimension is not a positive multiple of 32";
        return 0;
    }
    return 1;
}

/* Quantizes tensor job->in_index in row chunks and appends both outputs. */
static int quantize_tensor(const char* cmd, mxmoe_ctx* ctx, mxmoe_st_file* in, mxmoe_st_writer* out,
                           const quantize_job* job, mxmoe_scale_rule rule) {
    const mxmoe_st_tensor_info* t = mxmoe_st_info(in, job->in_index);
    int64_t k = t->shape[t->ndim - 1];
    int64_t rows = t->numel / k;
    size_t elsize = mxmoe_st_dtype_size(t->dtype);
    mxmoe_dtype dtype;
    mxmoe_st_dtype_to_mxmoe(t->dtype, &dtype);
    int64_t chunk = convert_chunk_rows(rows, (uint64_t)k * elsize);
    unsigned char* x = malloc((size_t)(chunk * k) * elsize);
    unsigned char* packed = malloc((size_t)(chunk * k / 2));
    unsigned char* scales = malloc((size_t)(chunk * k / MXMOE_BLOCK));
    cli_buffer xb = {0}, pb = {0}, sb = {0};
    int rc = 0;
    if (x == NULL || packed == NULL || scales == NULL) {
        rc =
            cli_error(cmd, "out of memory for a %lld-row chunk of '%s'", (long long)chunk, t->name);
    }
    if (rc == 0 &&
        (cli_buffer_init(cmd, ctx, &xb, x, (size_t)(chunk * k) * elsize, "the input chunk") != 0 ||
         cli_buffer_init(cmd, ctx, &pb, packed, (size_t)(chunk * k / 2), "the codes") != 0 ||
         cli_buffer_init(cmd, ctx, &sb, scales, (size_t)(chunk * k / MXMOE_BLOCK), "the scales") !=
             0)) {
        rc = CLI_EXIT_FAILURE;
    }
    mxmoe_io_error err;
    for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        size_t x_bytes = (size_t)(n * k) * elsize;
        if (mxmoe_st_read(in, job->in_index, (uint64_t)(r0 * k) * elsize, x, x_bytes, &err) !=
            MXMOE_OK) {
            rc = cli_error(cmd, "%s", err.message);
            break;
        }
        int64_t x_dims[2] = {n, k}, p_dims[2] = {n, k / 2}, s_dims[2] = {n, k / MXMOE_BLOCK};
        mxmoe_tensor xt = cli_tensor(ctx, xb.backend, dtype, 2, x_dims);
        mxmoe_mx_tensor q;
        q.packed = cli_tensor(ctx, pb.backend, MXMOE_U8, 2, p_dims);
        q.scales = cli_tensor(ctx, sb.backend, MXMOE_U8, 2, s_dims);
        q.scale_layout = MXMOE_SCALES_LINEAR;
        if (cli_buffer_upload(cmd, ctx, &xb, x_bytes) != 0) {
            rc = CLI_EXIT_FAILURE;
            break;
        }
        mxmoe_status st = mxmoe_quantize(ctx, &xt, rule, &q);
        if (st == MXMOE_OK) {
            st = mxmoe_ctx_synchronize(ctx);
        }
        if (st != MXMOE_OK) {
            rc = cli_error(cmd, "quantizing '%s': %s (%s)", t->name, mxmoe_ctx_last_error(ctx),
                           mxmoe_status_string(st));
            break;
        }
        if (cli_buffer_download(cmd, ctx, &pb, (size_t)(n * k / 2)) != 0 ||
            cli_buffer_download(cmd, ctx, &sb, (size_t)(n * k / MXMOE_BLOCK)) != 0) {
            rc = CLI_EXIT_FAILURE;
            break;
        }
        if (mxmoe_st_writer_append(out, job->out_packed, packed, (size_t)(n * k / 2), &err) !=
                MXMOE_OK ||
            mxmoe_st_writer_append(out, job->out_scale, scales, (size_t)(n * k / MXMOE_BLOCK),
                                   &err) != MXMOE_OK) {
            rc = cli_error(cmd, "%s", err.message);
        }
    }
    cli_buffer_free(ctx, &xb);
    cli_buffer_free(ctx, &pb);
    cli_buffer_free(ctx, &sb);
    free(x);
    free(packed);
    free(scales);
    return rc;
}

/* Builds the output list: X -> X_packed, X_scale or X -> X. */
static int plan_outputs(const char* cmd, mxmoe_st_file* in, quantize_job* jobs,
                        convert_outputs* outputs, size_t* num_quantized) {
    *num_quantized = 0;
    for (size_t i = 0; i < mxmoe_st_count(in); i++) {
        const mxmoe_st_tensor_info* t = mxmoe_st_info(in, i);
        const char* why = NULL;
        jobs[i].in_index = i;
        jobs[i].quantize = quantizable(t, &why);
        int64_t a, b = 0;
        if (jobs[i].quantize) {
            int64_t shape[MXMOE_ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            int64_t k = t->shape[t->ndim - 1];
            shape[t->ndim - 1] = k / 2;
            a = convert_add(outputs, t->name, "_packed", MXMOE_ST_U8, t->ndim, shape);
            shape[t->ndim - 1] = k / MXMOE_BLOCK;
            b = convert_add(outputs, t->name, "_scale", MXMOE_ST_U8, t->ndim, shape);
            (*num_quantized)++;
        } else {
            a = convert_add(outputs, t->name, "", t->dtype, t->ndim, t->shape);
        }
        if (a < 0 || b < 0) {
            return cli_error(cmd, "out of memory");
        }
        jobs[i].out_packed = (size_t)a;
        jobs[i].out_scale = (size_t)b;
    }
    return convert_check_unique(cmd, outputs) == 0 ? 0 : CLI_EXIT_FAILURE;
}

static int run_quantize(const char* cmd, const char* in_path, const char* out_path,
                        mxmoe_scale_rule rule, mxmoe_ctx* ctx) {
    double t0 = cli_seconds();
    mxmoe_st_file* in = convert_open_input(cmd, in_path);
    if (in == NULL) {
        return CLI_EXIT_FAILURE;
    }
    size_t count = mxmoe_st_count(in);
    quantize_job* jobs = calloc(count ? count : 1, sizeof *jobs);
    convert_outputs outputs = {0};
    convert_metadata meta = {0};
    mxmoe_st_writer* out = NULL;
    size_t num_quantized = 0;
    int rc = jobs == NULL ? cli_error(cmd, "out of memory") : 0;
    if (rc == 0) {
        rc = plan_outputs(cmd, in, jobs, &outputs, &num_quantized);
    }
    char format_version[16];
    snprintf(format_version, sizeof format_version, "%d", MXMOE_FORMAT_VERSION);
    const mxmoe_st_kv added[3] = {{"mxmoe.format_version", format_version},
                                  {"mxmoe.scale_rule", cli_rule_name(rule)},
                                  {"mxmoe.version", mxmoe_version_string()}};
    if (rc == 0 && convert_metadata_build(in, NULL, added, 3, &meta) != 0) {
        rc = cli_error(cmd, "out of memory");
    }
    mxmoe_io_error err;
    if (rc == 0 && mxmoe_st_writer_open(&out, out_path, outputs.entries, outputs.count, meta.kv,
                                        meta.count, &err) != MXMOE_OK) {
        rc = cli_error(cmd, "%s", err.message);
    }
    if (rc == 0) {
        printf("quantize %s -> %s: %zu tensors, rule %s, backend %s\n", in_path, out_path, count,
               cli_rule_name(rule), mxmoe_ctx_backend_detail(ctx));
    }
    uint64_t bytes_in = 0, bytes_out = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        const mxmoe_st_tensor_info* t = mxmoe_st_info(in, i);
        char from[160], to[160];
        convert_describe(from, sizeof from, t->dtype, t->ndim, t->shape);
        double ts = cli_seconds();
        const mxmoe_st_entry* e = &outputs.entries[jobs[i].out_packed];
        if (jobs[i].quantize) {
            rc = quantize_tensor(cmd, ctx, in, out, &jobs[i], rule);
            convert_describe(to, sizeof to, e->dtype, e->ndim, e->shape);
            const mxmoe_st_entry* s = &outputs.entries[jobs[i].out_scale];
            char scale_text[160];
            convert_describe(scale_text, sizeof scale_text, s->dtype, s->ndim, s->shape);
            if (rc == 0) {
                printf("[%zu/%zu] %s %s -> %s %s + %s %s (%.2f s)\n", i + 1, count, t->name, from,
                       e->name, to, s->name, scale_text, cli_seconds() - ts);
            }
            bytes_out += t->numel / 2 + t->numel / MXMOE_BLOCK;
        } else {
            const char* why = NULL;
            quantizable(t, &why);
            cli_warn(cmd, "'%s' (%s) copied unchanged: %s", t->name, from, why);
            rc = convert_copy_tensor(cmd, in, i, out, jobs[i].out_packed);
            if (rc == 0) {
                printf("[%zu/%zu] %s %s copied\n", i + 1, count, t->name, from);
            }
            bytes_out += t->nbytes;
        }
        bytes_in += t->nbytes;
        fflush(stdout);
    }
    rc = convert_close_output(cmd, out, rc);
    if (rc == 0) {
        printf("done: %zu quantized, %zu copied; tensor data %.1f MB -> %.1f MB in %.2f s\n",
               num_quantized, count - num_quantized, (double)bytes_in / 1e6,
               (double)bytes_out / 1e6, cli_seconds() - t0);
    }
    convert_metadata_free(&meta);
    convert_outputs_free(&outputs);
    free(jobs);
    mxmoe_st_close(in);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

int cmd_quantize(int argc, char** argv) {
    const char* cmd = "quantize";
    const char* paths[2] = {NULL, NULL};
    mxmoe_scale_rule rule = MXMOE_RULE_EVEN;
    mxmoe_backend backend = MXMOE_BACKEND_AUTO;
    int parsed = convert_parse_args(cmd, usage, argc, argv, paths, &rule, &backend);
    if (parsed >= 0) {
        return parsed;
    }
    if (cli_is_folder(paths[0])) {
        return cli_quantize_model(cmd, paths[0], paths[1], rule, backend);
    }
    mxmoe_ctx* ctx = cli_ctx_open(cmd, backend);
    if (ctx == NULL) {
        return CLI_EXIT_FAILURE;
    }
    int rc = run_quantize(cmd, paths[0], paths[1], rule, ctx);
    mxmoe_ctx_free(ctx);
    return rc;
}
