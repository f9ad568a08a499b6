/*
 * demo_workers.c — the threads of `mxmoe demo`'s host-side work (weight synthesis, FP64 check):
 * one worker per core, each with its own single-threaded CPU context.
 *
 * The jobs (experts) are independent and much coarser than the library's own row split, so one
 * job per thread beats one thread-pooled context working through them in turn; a context per
 * worker keeps the library's thread pools from competing with the workers for the cores. Which
 * worker does a job never changes its result (every library call used is exact), and the
 * callers split the jobs by index, so the output is the same on any machine.
 */
#include <pthread.h>
#include <stdlib.h>

#include "cli.h"
#include "demo.h"

int demo_worker_count(int64_t jobs) {
    int64_t workers = cli_cpu_count();
    workers = workers > jobs ? jobs : workers;
    workers = workers > 16 ? 16 : workers;
    return workers < 1 ? 1 : (int)workers;
}

typedef struct worker {
    const char* cmd;
    demo_worker_fn fn;
    void* arg;
    int index, workers, rc;
} worker;

static void* worker_main(void* p) {
    worker* w = p;
    mxmoe_ctx_params cp = mxmoe_ctx_params_default();
    cp.backend = MXMOE_BACKEND_CPU;
    cp.num_threads = 1;
    mxmoe_ctx* ctx = NULL;
    mxmoe_status st = mxmoe_ctx_init(&ctx, &cp);
    if (st != MXMOE_OK) {
        w->rc = cli_error(w->cmd, "cannot create a CPU context for worker %d (%s)", w->index,
                          mxmoe_status_string(st));
    } else {
        w->rc = w->fn(ctx, w->index, w->workers, w->arg);
    }
    mxmoe_ctx_free(ctx);
    return NULL;
}

int demo_run_workers(const char* cmd, int workers, demo_worker_fn fn, void* args, size_t arg_size) {
    worker* w = calloc((size_t)workers, sizeof *w);
    pthread_t* threads = calloc((size_t)workers, sizeof *threads);
    if (w == NULL || threads == NULL) {
        free(w);
        free(threads);
        return cli_error(cmd, "out of memory for %d worker threads", workers);
    }
    int rc = 0, started = 0;
    for (; started < workers; started++) {
        worker one = {cmd, fn, (char*)args + (size_t)started * arg_size, started, workers, 0};
        w[started] = one;
        if (pthread_create(&threads[started], NULL, worker_main, &w[started]) != 0) {
            rc = cli_error(cmd, "cannot start worker thread %d", started);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        rc = rc != 0 ? rc : w[i].rc;
    }
    free(w);
    free(threads);
    return rc == 0 ? 0 : -1;
}
