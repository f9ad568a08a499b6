/*
 * graph.c — public recording and replay of calls (mxmoe_graph_*): checks, then the backend.
 *
 * A graph belongs to the context that recorded it (its device, its error word), so it replays
 * and is freed only there.
 */
#include <stdlib.h>

#include "core/backend.h"

struct mxmoe_graph {
    const mxmoe_ctx* owner;
    void* backend_graph;
};

static mxmoe_status graph_supported(mxmoe_ctx* ctx, const char* call) {
    MXMOE_RETURN_IF(ctx->ops->graph_begin == NULL, ctx, MXMOE_ERR_UNSUPPORTED,
                    "%s: the %s backend runs each call as it comes; recording needs CUDA", call,
                    ctx->ops->name);
    return MXMOE_OK;
}

mxmoe_status mxmoe_graph_begin(mxmoe_ctx* ctx) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_FORWARD(graph_supported(ctx, "graph_begin"));
    MXMOE_RETURN_IF(ctx->recording, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "graph_begin: this context is already recording");
    MXMOE_FORWARD(ctx->ops->graph_begin(ctx));
    ctx->recording = 1;
    ctx->recording_status = MXMOE_OK;
    ctx->recording_error[0] = '\0';
    return MXMOE_OK;
}

mxmoe_status mxmoe_graph_end(mxmoe_ctx* ctx, mxmoe_graph** out) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF(out == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "graph_end: out is NULL");
    *out = NULL;
    MXMOE_FORWARD(graph_supported(ctx, "graph_end"));
    MXMOE_RETURN_IF(!ctx->recording, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "graph_end: this context is not recording (mxmoe_graph_begin first)");
    ctx->recording = 0;
    mxmoe_graph* g = malloc(sizeof *g);
    void* backend_graph = NULL;
    mxmoe_status st = ctx->ops->graph_end(ctx, &backend_graph); /* ends it, even without g */
    if (st == MXMOE_OK && (g == NULL || ctx->recording_status != MXMOE_OK)) {
        ctx->ops->graph_free(ctx, backend_graph);
        st = g == NULL ? mxmoe_fail(ctx, MXMOE_ERR_NO_MEMORY, "graph_end: out of host memory")
                       : mxmoe_fail(ctx, ctx->recording_status,
                                    "graph_end: a call failed while recording, so no graph was "
                                    "built (the first failure: %s)",
                                    ctx->recording_error);
    }
    if (st != MXMOE_OK) {
        free(g);
        return st;
    }
    g->owner = ctx;
    g->backend_graph = backend_graph;
    *out = g;
    return MXMOE_OK;
}

mxmoe_status mxmoe_graph_replay(mxmoe_ctx* ctx, const mxmoe_graph* graph) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF(graph == NULL, ctx, MXMOE_ERR_INVALID_ARGUMENT, "graph_replay: graph is NULL");
    MXMOE_RETURN_IF_RECORDING(ctx, "graph_replay");
    MXMOE_RETURN_IF(graph->owner != ctx, ctx, MXMOE_ERR_INVALID_ARGUMENT,
                    "graph_replay: the graph was recorded on another context");
    return ctx->ops->graph_replay(ctx, graph->backend_graph);
}

void mxmoe_graph_free(mxmoe_ctx* ctx, mxmoe_graph* graph) {
    if (ctx == NULL || graph == NULL) {
        return;
    }
    if (graph->owner != ctx) {
        mxmoe_fail(ctx, MXMOE_ERR_INVALID_ARGUMENT,
                   "graph_free: the graph was recorded on another context; not freed");
        return;
    }
    ctx->ops->graph_free(ctx, graph->backend_graph);
    free(graph);
}
