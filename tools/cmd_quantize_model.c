/*
 * cmd_quantize_model.c — `mxmoe quantize MODEL_DIR OUT_DIR`: a Hugging Face model folder with
 * BF16/F16/F32 MoE experts to a compressed-tensors `mxfp4-pack-quantized` folder
 * (mxmoe_model_quantize does the work; this file is the progress display and the summary).
 *
 * On a terminal the progress is one bar redrawn in place; otherwise (a log, a pipe) one line per
 * shard, so logs stay readable.
 */
#define _POSIX_C_SOURCE 200809L /* isatty, fileno, stat */

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "model_cli.h"
#include "mxmoe_model.h"

int cli_is_folder(const char* path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

typedef struct progress_state {
    int tty;
    char shard[256]; /* the shard being written, for the line-per-shard display */
    double start;
    int drawn;
} progress_state;

static void on_progress(uint64_t done, uint64_t total, const char* what, void* user) {
    progress_state* s = user;
    const char* colon = strstr(what, ": ");
    size_t shard_len = colon != NULL ? (size_t)(colon - what) : strlen(what);
    if (!s->tty) {
        if (strncmp(s->shard, what, shard_len) != 0 || s->shard[shard_len] != '\0') {
            snprintf(s->shard, sizeof s->shard, "%.*s", (int)shard_len, what);
            if (strcmp(what, "done") != 0) {
                printf("  %s\n", s->shard);
                fflush(stdout);
            }
        }
        return;
    }
    enum { WIDTH = 30 };
    double frac = total > 0 ? (double)done / (double)total : 1.0;
    int filled = (int)(frac * WIDTH + 0.5);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[WIDTH] = '\0';
    /* \r + the line + clear to the end of the line (ESC [ K). */
    printf("\r[%s] %3d%% %7.2f / %.2f GB  %.60s\033[K", bar, (int)(frac * 100 + 0.5),
           (double)done / 1e9, (double)total / 1e9, what);
    fflush(stdout);
    s->drawn = 1;
}

int cli_quantize_model(const char* cmd, const char* in_dir, const char* out_dir,
                       mxmoe_scale_rule rule, mxmoe_backend backend) {
    mxmoe_ctx* ctx = cli_ctx_open(cmd, backend);
    if (ctx == NULL) {
        return CLI_EXIT_FAILURE;
    }
    progress_state state;
    memset(&state, 0, sizeof state);
    state.tty = isatty(fileno(stdout));
    state.start = cli_seconds();
    printf("quantize %s -> %s: MoE expert weights to compressed-tensors mxfp4-pack-quantized, "
           "rule %s, backend %s\n",
           in_dir, out_dir, cli_rule_name(rule), mxmoe_ctx_backend_detail(ctx));
    fflush(stdout);
    mxmoe_model_quantize_params params = mxmoe_model_quantize_params_default();
    params.rule = rule;
    params.progress = on_progress;
    params.progress_user_data = &state;
    mxmoe_model_quantize_stats stats;
    mxmoe_io_error err;
    mxmoe_status st = mxmoe_model_quantize(ctx, in_dir, out_dir, &params, &stats, &err);
    if (state.drawn) {
        putchar('\n');
    }
    mxmoe_ctx_free(ctx);
    if (st != MXMOE_OK) {
        return cli_error(cmd, "%s (%s)", err.message, mxmoe_status_string(st));
    }
    printf("done: %lld expert Linears quantized, %lld tensors copied, %lld shards + index, "
           "config.json with quantization_config, %lld other files copied; tensor data "
           "%.1f MB -> %.1f MB in %.2f s\n",
           (long long)stats.tensors_quantized, (long long)stats.tensors_copied,
           (long long)stats.shards, (long long)stats.files_copied, (double)stats.bytes_in / 1e6,
           (double)stats.bytes_out / 1e6, cli_seconds() - state.start);
    return CLI_EXIT_OK;
}
