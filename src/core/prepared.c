/*
 * prepared.c — the context's list of prepared weights (see prepared.h).
 */
#include "core/prepared.h"

#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

static int same_tensor(const mxmoe_prepared_entry* e, const mxmoe_mx_tensor* w) {
    return e->packed == w->packed.data && e->scales == w->scales.data &&
           e->layout == w->scale_layout && e->dims[0] == w->packed.dims[0] &&
           e->dims[1] == w->packed.dims[1] && e->dims[2] == w->packed.dims[2] &&
           e->scales_numel == mxmoe_tensor_numel(&w->scales);
}

static mxmoe_prepared_entry* find_entry(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    if (w->packed.ndim != 3) {
        return NULL;
    }
    for (int i = 0; i < ctx->prepared_count; i++) {
        if (same_tensor(&ctx->prepared[i], w)) {
            return &ctx->prepared[i];
        }
    }
    return NULL;
}

static void release_data(mxmoe_ctx* ctx, void* data) {
    if (data != NULL && ctx->ops->weights_release != NULL) {
        ctx->ops->weights_release(ctx, data);
    }
}

const mxmoe_prepared_entry* mxmoe_prepared_entry_of(const mxmoe_ctx* ctx,
                                                    const mxmoe_mx_tensor* w) {
    return find_entry(ctx, w);
}

int mxmoe_prepared_repacked(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    const mxmoe_prepared_entry* e = find_entry(ctx, w);
    return e != NULL && e->repacked;
}

mxmoe_status mxmoe_prepared_add(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, void* data,
                                int repacked) {
    mxmoe_prepared_entry* e = find_entry(ctx, w);
    if (e != NULL) {
        release_data(ctx, e->data);
        e->data = data;
        e->repacked = repacked;
        return MXMOE_OK;
    }
    if (ctx->prepared_count == ctx->prepared_capacity) {
        int capacity = ctx->prepared_capacity ? 2 * ctx->prepared_capacity : 8;
        mxmoe_prepared_entry* grown = realloc(ctx->prepared, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            release_data(ctx, data);
            return mxmoe_fail(ctx, MXMOE_ERR_NO_MEMORY, "weights_prepare: out of host memory");
        }
        ctx->prepared = grown;
        ctx->prepared_capacity = capacity;
    }
    e = &ctx->prepared[ctx->prepared_count++];
    e->packed = w->packed.data;
    e->scales = w->scales.data;
    memcpy(e->dims, w->packed.dims, sizeof e->dims);
    e->scales_numel = mxmoe_tensor_numel(&w->scales);
    e->layout = w->scale_layout;
    e->data = data;
    e->repacked = repacked;
    return MXMOE_OK;
}

int mxmoe_prepared_remove(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w) {
    mxmoe_prepared_entry* e = find_entry(ctx, w);
    if (e == NULL) {
        return 0;
    }
    release_data(ctx, e->data);
    *e = ctx->prepared[--ctx->prepared_count];
    return 1;
}

void mxmoe_prepared_clear(mxmoe_ctx* ctx) {
    for (int i = 0; i < ctx->prepared_count; i++) {
        release_data(ctx, ctx->prepared[i].data);
    }
    free(ctx->prepared);
    ctx->prepared = NULL;
    ctx->prepared_count = ctx->prepared_capacity = 0;
}
