/*
 * ctx.c — context life cycle and backend choice.
 *
 * AUTO picks CUDA when that backend is available (compiled in, kernels present, a device
 * visible), else the CPU. The environment variable MXMOE_BACKEND=cpu|cuda|auto overrides AUTO
 * (an explicit backend in the params wins over the environment); any other value is an error,
 * so a typo never silently runs somewhere else.
 */
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/prepared.h"

static const mxmoe_backend_ops* backend_ops(mxmoe_backend backend) {
    switch (backend) {
    case MXMOE_BACKEND_CPU:
        return &mxmoe_cpu_backend;
    case MXMOE_BACKEND_CUDA:
        return &mxmoe_cuda_backend;
    default:
        return NULL;
    }
}

const char* mxmoe_backend_name(mxmoe_backend backend) {
    switch (backend) {
    case MXMOE_BACKEND_AUTO:
        return "auto";
    case MXMOE_BACKEND_CPU:
        return "cpu";
    case MXMOE_BACKEND_CUDA:
        return "cuda";
    default:
        return "unknown";
    }
}

int mxmoe_backend_compiled(mxmoe_backend backend) {
    const mxmoe_backend_ops* ops = backend_ops(backend);
    return ops != NULL && ops->compiled;
}

int mxmoe_backend_available(mxmoe_backend backend) {
    const mxmoe_backend_ops* ops = backend_ops(backend);
    return ops != NULL && ops->compiled && ops->available();
}

mxmoe_ctx_params mxmoe_ctx_params_default(void) {
    mxmoe_ctx_params p;
    memset(&p, 0, sizeof p);
    p.backend = MXMOE_BACKEND_AUTO;
    p.log_level = MXMOE_LOG_WARN;
    return p;
}

/* Resolves AUTO (and MXMOE_BACKEND) to a concrete backend. */
static mxmoe_status choose_backend(mxmoe_ctx* ctx, mxmoe_backend requested, mxmoe_backend* chosen) {
    if (requested == MXMOE_BACKEND_AUTO) {
        const char* env = getenv("MXMOE_BACKEND");
        if (env != NULL && env[0] != '\0' && strcmp(env, "auto") != 0) {
            if (strcmp(env, "cpu") == 0) {
                requested = MXMOE_BACKEND_CPU;
            } else if (strcmp(env, "cuda") == 0) {
                requested = MXMOE_BACKEND_CUDA;
            } else {
                return mxmoe_fail(ctx, MXMOE_ERR_INVALID_ARGUMENT,
                                  "MXMOE_BACKEND='%s' is not one of auto, cpu, cuda", env);
            }
        }
    }
    if (requested == MXMOE_BACKEND_AUTO) {
        *chosen =
            mxmoe_backend_available(MXMOE_BACKEND_CUDA) ? MXMOE_BACKEND_CUDA : MXMOE_BACKEND_CPU;
        return MXMOE_OK;
    }
    MXMOE_RETURN_IF(!mxmoe_backend_available(requested), ctx, MXMOE_ERR_UNSUPPORTED,
                    "backend '%s' is not available in this build or on this machine",
                    mxmoe_backend_name(requested));
    *chosen = requested;
    return MXMOE_OK;
}

mxmoe_status mxmoe_ctx_init(mxmoe_ctx** out, const mxmoe_ctx_params* params) {
    if (out == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    mxmoe_ctx_params p = params != NULL ? *params : mxmoe_ctx_params_default();
    /* A stack context carries the error message of a failed init to the log callback. */
    mxmoe_ctx probe;
    memset(&probe, 0, sizeof probe);
    probe.params = p;
    MXMOE_RETURN_IF((unsigned)p.backend >= MXMOE_BACKEND_COUNT, &probe, MXMOE_ERR_INVALID_ARGUMENT,
                    "backend %d is not a mxmoe_backend", (int)p.backend);
    MXMOE_RETURN_IF(p.num_threads < 0, &probe, MXMOE_ERR_INVALID_ARGUMENT,
                    "num_threads %d is negative", (int)p.num_threads);
    MXMOE_RETURN_IF(p.cuda_device < 0, &probe, MXMOE_ERR_INVALID_ARGUMENT,
                    "cuda_device %d is negative", (int)p.cuda_device);
    mxmoe_backend chosen = MXMOE_BACKEND_CPU;
    MXMOE_FORWARD(choose_backend(&probe, p.backend, &chosen));

    mxmoe_ctx* ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return mxmoe_fail(&probe, MXMOE_ERR_NO_MEMORY, "cannot allocate a context");
    }
    ctx->params = p;
    ctx->backend = chosen;
    ctx->ops = backend_ops(chosen);
    if (ctx->ops->init != NULL) {
        mxmoe_status status = ctx->ops->init(ctx);
        if (status != MXMOE_OK) {
            free(ctx);
            return status;
        }
    }
    if (ctx->detail[0] == '\0') {
        strncpy(ctx->detail, ctx->ops->name, sizeof ctx->detail - 1);
    }
    *out = ctx;
    return MXMOE_OK;
}

void mxmoe_ctx_free(mxmoe_ctx* ctx) {
    if (ctx == NULL) {
        return;
    }
    if (ctx->recording) { /* end and discard an unfinished recording */
        void* graph = NULL;
        ctx->recording = 0;
        if (ctx->ops->graph_end(ctx, &graph) == MXMOE_OK) {
            ctx->ops->graph_free(ctx, graph);
        }
    }
    mxmoe_prepared_clear(ctx); /* the backend frees what it derived, while it still can */
    if (ctx->ops != NULL && ctx->ops->release != NULL) {
        ctx->ops->release(ctx);
    }
    free(ctx);
}

mxmoe_backend mxmoe_ctx_backend(const mxmoe_ctx* ctx) {
    return ctx != NULL ? ctx->backend : MXMOE_BACKEND_AUTO;
}

const char* mxmoe_ctx_backend_detail(const mxmoe_ctx* ctx) {
    return ctx != NULL ? ctx->detail : "";
}

const char* mxmoe_ctx_last_error(const mxmoe_ctx* ctx) {
    return ctx != NULL ? ctx->last_error : "no context";
}

mxmoe_status mxmoe_ctx_set_stream(mxmoe_ctx* ctx, void* cuda_stream) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF_RECORDING(ctx, "ctx_set_stream");
    ctx->params.cuda_stream = cuda_stream;
    return MXMOE_OK;
}

mxmoe_status mxmoe_ctx_synchronize(mxmoe_ctx* ctx) {
    if (ctx == NULL) {
        return MXMOE_ERR_INVALID_ARGUMENT;
    }
    ctx->last_error[0] = '\0';
    MXMOE_RETURN_IF_RECORDING(ctx, "ctx_synchronize");
    return ctx->ops->synchronize != NULL ? ctx->ops->synchronize(ctx) : MXMOE_OK;
}
