/*
 * ctx.h — the context behind `mxmoe_ctx`: chosen backend, threads, stream, last error, logging.
 *
 * Internal. Every layer reports failure through mxmoe_fail(), which formats the message into
 * the context (for mxmoe_ctx_last_error) and forwards it to the log callback if one is set.
 */
#ifndef MXMOE_CORE_CTX_H
#define MXMOE_CORE_CTX_H

#include "mxmoe.h"

struct mxmoe_backend_ops;
struct mxmoe_prepared_entry;

struct mxmoe_ctx {
    mxmoe_ctx_params params;
    mxmoe_backend backend;
    const struct mxmoe_backend_ops* ops;
    void* backend_state;  /* owned by the backend (init/release) */
    char detail[128];     /* backend detail line, filled by the backend's init */
    double timer_mark_us; /* CPU stopwatch start (mxmoe_timer_start) */
    char last_error[512];
    struct mxmoe_prepared_entry* prepared; /* mxmoe_weights_prepare's list (core/prepared.h) */
    int prepared_count, prepared_capacity;
    int recording; /* between mxmoe_graph_begin and mxmoe_graph_end */
    /* The first failure while recording (mxmoe_fail notes it): no graph is built then. */
    mxmoe_status recording_status;
    char recording_error[256];
};

#if defined(__GNUC__)
#define MXMOE_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define MXMOE_PRINTF(fmt_idx, arg_idx)
#endif

/* Records `status` with a printf-style message on ctx (may be NULL) and returns `status`. */
mxmoe_status mxmoe_fail(mxmoe_ctx* ctx, mxmoe_status status, const char* fmt, ...)
    MXMOE_PRINTF(3, 4);

/* Sends an informational message to the log callback (nothing is stored). */
void mxmoe_log(mxmoe_ctx* ctx, mxmoe_log_level level, const char* fmt, ...) MXMOE_PRINTF(3, 4);

/* Returns early from the calling function with the status of `expr` if it is not MXMOE_OK. */
#define MXMOE_FORWARD(expr)                                                                        \
    do {                                                                                           \
        mxmoe_status forward_status_ = (expr);                                                     \
        if (forward_status_ != MXMOE_OK) {                                                         \
            return forward_status_;                                                                \
        }                                                                                          \
    } while (0)

/* Returns mxmoe_fail(ctx, status, ...) from the calling function when `cond` holds. */
#define MXMOE_RETURN_IF(cond, ctx, status, ...)                                                    \
    do {                                                                                           \
        if (cond) {                                                                                \
            return mxmoe_fail((ctx), (status), __VA_ARGS__);                                       \
        }                                                                                          \
    } while (0)

/* Fails a call that cannot be recorded into a graph (it waits for the device or changes the
 * context) while mxmoe_graph_begin is active. */
#define MXMOE_RETURN_IF_RECORDING(ctx, call)                                                       \
    MXMOE_RETURN_IF((ctx)->recording, ctx, MXMOE_ERR_INVALID_ARGUMENT,                             \
                    "%s cannot be recorded: it waits for the device or changes the context "       \
                    "(mxmoe_graph_begin is active; end the recording first)",                      \
                    call)

#endif /* MXMOE_CORE_CTX_H */
