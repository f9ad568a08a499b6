/*
 * status.c — version, status strings and error reporting (mxmoe_fail / mxmoe_log).
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/ctx.h"

#define MXMOE_STR2(x) #x
#define MXMOE_STR(x)  MXMOE_STR2(x)

unsigned mxmoe_version_number(void) {
    return MXMOE_VERSION_NUMBER;
}

const char* mxmoe_version_string(void) {
    return MXMOE_STR(MXMOE_VERSION_MAJOR) "." MXMOE_STR(MXMOE_VERSION_MINOR) "." MXMOE_STR(
        MXMOE_VERSION_PATCH);
}

const char* mxmoe_status_string(mxmoe_status status) {
    static const char* const names[MXMOE_STATUS_COUNT] = {
        [MXMOE_OK] = "ok",
        [MXMOE_ERR_INVALID_ARGUMENT] = "invalid argument",
        [MXMOE_ERR_DTYPE] = "unsupported dtype",
        [MXMOE_ERR_SHAPE] = "shape mismatch",
        [MXMOE_ERR_OVERFLOW] = "size overflow",
        [MXMOE_ERR_OUT_OF_RANGE] = "value out of range",
        [MXMOE_ERR_WORKSPACE] = "workspace too small",
        [MXMOE_ERR_UNSUPPORTED] = "unsupported",
        [MXMOE_ERR_NO_MEMORY] = "out of memory",
        [MXMOE_ERR_BACKEND] = "backend failure",
        [MXMOE_ERR_IO] = "i/o error",
        [MXMOE_ERR_FORMAT] = "malformed file",
    };
    if ((unsigned)status >= MXMOE_STATUS_COUNT) {
        return "unknown status";
    }
    return names[status];
}

static void log_message(mxmoe_ctx* ctx, mxmoe_log_level level, const char* message) {
    if (ctx != NULL && ctx->params.log != NULL && level <= ctx->params.log_level) {
        ctx->params.log(level, message, ctx->params.log_user_data);
    }
}

mxmoe_status mxmoe_fail(mxmoe_ctx* ctx, mxmoe_status status, const char* fmt, ...) {
    if (ctx == NULL) {
        return status;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, args);
    va_end(args);
    log_message(ctx, MXMOE_LOG_ERROR, ctx->last_error);
    if (ctx->recording && ctx->recording_status == MXMOE_OK) {
        ctx->recording_status = status;
        snprintf(ctx->recording_error, sizeof ctx->recording_error, "%.255s", ctx->last_error);
    }
    return status;
}

void mxmoe_log(mxmoe_ctx* ctx, mxmoe_log_level level, const char* fmt, ...) {
    if (ctx == NULL || ctx->params.log == NULL || level > ctx->params.log_level) {
        return;
    }
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    log_message(ctx, level, message);
}
