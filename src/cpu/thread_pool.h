/*
 * thread_pool.h — the CPU backend's persistent workers: created with the context, parked
 * between calls, never created per call.
 *
 * A parallel region is `num_tasks` independent tasks, handed out in order from one atomic
 * counter; the calling thread works too and returns when every task is done. Which thread runs
 * a task never changes what the task computes, so results do not depend on the thread count.
 */
#ifndef MXMOE_CPU_THREAD_POOL_H
#define MXMOE_CPU_THREAD_POOL_H

#include <stdint.h>

typedef struct mxmoe_pool mxmoe_pool;

/* Runs task `task` on worker `thread` (0 = the caller, < mxmoe_pool_threads). */
typedef void (*mxmoe_pool_fn)(void* arg, int64_t task, int thread);

/* Starts threads - 1 workers (threads >= 1). Returns NULL if a thread cannot be created. */
mxmoe_pool* mxmoe_pool_create(int threads);
void mxmoe_pool_destroy(mxmoe_pool* pool); /* NULL is a no-op */
int mxmoe_pool_threads(const mxmoe_pool* pool);

/* Runs fn(arg, t, thread) for t in [0, num_tasks) across the pool; returns when all are done. */
void mxmoe_pool_run(mxmoe_pool* pool, int64_t num_tasks, mxmoe_pool_fn fn, void* arg);

/* The number of CPUs this process may run on (at least 1). */
int mxmoe_cpu_count(void);

#endif /* MXMOE_CPU_THREAD_POOL_H */
