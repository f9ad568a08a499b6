/*
 * memory.c — public memory, copy and timing calls: dispatch to the context's backend (none of
 * them can be recorded into a graph: each waits for the device or allocates).
 */
#include "core/backend.h"

mxmoe_status mxmoe_malloc(mxmoe_ctx* ctx, size_t bytes, void** ptr) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF(ptr == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "malloc: ptr is NULL");
    *ptr = NULL;
    MXMOE_RETURN_IF_RECORDING(ctx, "malloc");
    return ctx->ops->alloc(ctx, bytes, ptr);
}

void mxmoe_free(mxmoe_ctx* ctx, void* ptr) {
    if (ctx == NULL || ptr == NULL) {
        return;
    }
    if (ctx->recording) { /* freeing waits for the device: the memory stays until freed later */
        mxmoe_fail(ctx, MXMOE_ERR_INVALID_ARGUMENT,
                   "free cannot be recorded (mxmoe_graph_begin is active): not freed");
        return;
    }
    ctx->ops->dealloc(ctx, ptr);
}

mxmoe_status mxmoe_memcpy(mxmoe_ctx* ctx, void* dst, const void* src, size_t bytes,
                          mxmoe_copy_kind kind) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF((unsigned)kind >= MXMOE_COPY_KIND_COUNT, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "memcpy: kind %d is not a mxmoe_copy_kind", (int)kind);
    MXMOE_RETURN_IF(bytes != 0 && (dst == NULL || src == NULL), ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "memcpy: NULL %s", dst == NULL ? "dst" : "src");
    MXMOE_RETURN_IF_RECORDING(ctx, "memcpy");
    return bytes == 0 ? MXMOE_OK : ctx->ops->copy(ctx, dst, src, bytes, kind);
}

mxmoe_status mxmoe_timer_start(mxmoe_ctx* ctx) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF_RECORDING(ctx, "timer_start");
    return ctx->ops->timer_start(ctx);
}

mxmoe_status mxmoe_timer_stop(mxmoe_ctx* ctx, double* microseconds) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF(microseconds == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "timer_stop: microseconds is NULL");
    MXMOE_RETURN_IF_RECORDING(ctx, "timer_stop");
    return ctx->ops->timer_stop(ctx, microseconds);
}
