/*
 * cli_buffer.c — backend memory for the tool: tensors on the context's device, host arrays
 * mirrored in backend memory (mxmoe_malloc / mxmoe_memcpy), and the card's name for reports.
 *
 * The tool keeps its data in host memory (files, synthetic values, checks) and hands the library
 * pointers where the backend computes. On the CPU backend those are the host arrays themselves,
 * which keeps CPU runs free of copies; on CUDA every array the library touches has a device twin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

mxmoe_device cli_ctx_device(const mxmoe_ctx* ctx) {
    return mxmoe_ctx_backend(ctx) == MXMOE_BACKEND_CUDA ? MXMOE_DEVICE_CUDA : MXMOE_DEVICE_HOST;
}

mxmoe_tensor cli_tensor(const mxmoe_ctx* ctx, void* data, mxmoe_dtype dtype, int32_t ndim,
                        const int64_t* dims) {
    mxmoe_tensor t = mxmoe_tensor_make(data, dtype, ndim, dims);
    t.device = cli_ctx_device(ctx);
    return t;
}

int cli_buffer_init(const char* cmd, mxmoe_ctx* ctx, cli_buffer* b, void* host, size_t bytes,
                    const char* what) {
    memset(b, 0, sizeof *b);
    b->host = host;
    b->bytes = bytes;
    /* MXMOE_CLI_STAGE=1 keeps the twins apart on the CPU too: it runs the tool's GPU data
     * movement (allocation, upload, download) on machines without a GPU, for tests. */
    const char* stage = getenv("MXMOE_CLI_STAGE");
    int aliased =
        cli_ctx_device(ctx) == MXMOE_DEVICE_HOST && !(stage != NULL && strcmp(stage, "1") == 0);
    if (host != NULL && aliased) {
        b->backend = host;
        return 0;
    }
    mxmoe_status st = mxmoe_malloc(ctx, bytes ? bytes : 1, &b->backend);
    if (st != MXMOE_OK) {
        cli_error(cmd, "cannot allocate %.1f MB of %s memory for %s: %s (%s)", (double)bytes / 1e6,
                  mxmoe_backend_name(mxmoe_ctx_backend(ctx)), what, mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        memset(b, 0, sizeof *b);
        return -1;
    }
    b->owned = 1;
    return 0;
}

static int copy(const char* cmd, mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                mxmoe_copy_kind kind) {
    if (dst == src || bytes == 0) {
        return 0;
    }
    mxmoe_status st = mxmoe_memcpy(ctx, dst, src, bytes, kind);
    if (st != MXMOE_OK) {
        cli_error(cmd, "copying %zu bytes %s the %s backend: %s (%s)", bytes,
                  kind == MXMOE_COPY_HOST_TO_BACKEND ? "to" : "from",
                  mxmoe_backend_name(mxmoe_ctx_backend(ctx)), mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        return -1;
    }
    return 0;
}

int cli_buffer_upload(const char* cmd, mxmoe_ctx* ctx, const cli_buffer* b, size_t bytes) {
    if (b->host == NULL) {
        return 0;
    }
    return copy(cmd, ctx, b->backend, b->host, bytes, MXMOE_COPY_HOST_TO_BACKEND);
}

int cli_buffer_download(const char* cmd, mxmoe_ctx* ctx, const cli_buffer* b, size_t bytes) {
    if (b->host == NULL) {
        return 0;
    }
    return copy(cmd, ctx, b->host, b->backend, bytes, MXMOE_COPY_BACKEND_TO_HOST);
}

void cli_buffer_free(mxmoe_ctx* ctx, cli_buffer* b) {
    if (b->owned) {
        mxmoe_free(ctx, b->backend);
    }
    memset(b, 0, sizeof *b);
}

void cli_card_name(const mxmoe_ctx* ctx, char* out, size_t size) {
    if (mxmoe_ctx_backend(ctx) != MXMOE_BACKEND_CUDA) {
        cli_cpu_model(out, size);
        return;
    }
    /* The CUDA detail reads "cuda: <device name> (sm_XY, N SMs), ...". */
    const char* detail = mxmoe_ctx_backend_detail(ctx);
    const char* name = strncmp(detail, "cuda: ", 6) == 0 ? detail + 6 : detail;
    const char* end = strstr(name, " (");
    size_t n = end != NULL ? (size_t)(end - name) : strlen(name);
    snprintf(out, size, "%.*s", (int)n, name);
}
