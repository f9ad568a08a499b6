/*
 * thread_pool.c — persistent workers with a spin-then-sleep wait.
 *
 * A region is published by bumping `generation` (under the mutex, so a sleeping worker cannot
 * miss it); workers spin briefly before sleeping, because the backend issues several short
 * regions per call (prepare, GEMM, activation...) and a futex wake-up costs more than the
 * spin. Tasks are claimed with one fetch-add each; the last finisher wakes the caller.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations (about 10-40 ns each) before a worker or the caller goes to sleep. */
#define SPIN_LIMIT 20000

struct mxmoe_pool {
    int threads;
    pthread_t* workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;    /* workers wait here for a new generation */
    pthread_cond_t done;    /* the caller waits here for the last task */
    atomic_uint generation; /* bumped per region; workers compare with the one they last ran */
    atomic_int stop;
    /* the current region */
    mxmoe_pool_fn fn;
    void* arg;
    int64_t num_tasks;
    atomic_llong next_task;
    atomic_int busy; /* workers still inside the current region */
    int caller_waiting;
};

typedef struct worker_arg {
    mxmoe_pool* pool;
    int index;
} worker_arg;

static void run_tasks(mxmoe_pool* pool, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add(&pool->next_task, 1);
        if (t >= pool->num_tasks) {
            return;
        }
        pool->fn(pool->arg, t, thread);
    }
}

static void* worker_main(void* p) {
    worker_arg* wa = (worker_arg*)p;
    mxmoe_pool* pool = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load(&pool->generation);
        for (int spin = 0; gen == seen && spin < SPIN_LIMIT && !atomic_load(&pool->stop); spin++) {
            CPU_RELAX();
            gen = atomic_load(&pool->generation);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop)) {
                pthread_cond_wait(&pool->wake, &pool->mutex);
            }
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) {
            return NULL;
        }
        seen = gen;
        run_tasks(pool, index);
        if (atomic_fetch_sub(&pool->busy, 1) == 1) {
            pthread_mutex_lock(&pool->mutex);
            if (pool->caller_waiting) {
                pthread_cond_signal(&pool->done);
            }
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

int mxmoe_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) {
            return n;
        }
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

mxmoe_pool* mxmoe_pool_create(int threads) {
    mxmoe_pool* pool = calloc(1, sizeof *pool);
    if (pool == NULL) {
        return NULL;
    }
    pool->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->busy, 0);
    if (pool->threads > 1) {
        pool->workers = calloc((size_t)pool->threads - 1, sizeof *pool->workers);
        if (pool->workers == NULL) {
            pool->threads = 1;
            mxmoe_pool_destroy(pool);
            return NULL;
        }
        for (int i = 1; i < pool->threads; i++) {
            worker_arg* wa = malloc(sizeof *wa);
            if (wa != NULL) {
                wa->pool = pool;
                wa->index = i;
            }
            if (wa == NULL || pthread_create(&pool->workers[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                pool->threads = i; /* destroy joins the i - 1 workers started so far */
                mxmoe_pool_destroy(pool);
                return NULL;
            }
        }
    }
    return pool;
}

void mxmoe_pool_destroy(mxmoe_pool* pool) {
    if (pool == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->threads; i++) {
        pthread_join(pool->workers[i - 1], NULL);
    }
    free(pool->workers);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
}

int mxmoe_pool_threads(const mxmoe_pool* pool) {
    return pool != NULL ? pool->threads : 1;
}

void mxmoe_pool_run(mxmoe_pool* pool, int64_t num_tasks, mxmoe_pool_fn fn, void* arg) {
    if (num_tasks <= 0) {
        return;
    }
    if (pool == NULL || pool->threads == 1 || num_tasks == 1) {
        for (int64_t t = 0; t < num_tasks; t++) {
            fn(arg, t, 0);
        }
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->fn = fn;
    pool->arg = arg;
    pool->num_tasks = num_tasks;
    atomic_store(&pool->next_task, 0);
    atomic_store(&pool->busy, pool->threads - 1);
    pool->caller_waiting = 0;
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    run_tasks(pool, 0);

    for (int spin = 0; atomic_load(&pool->busy) != 0 && spin < SPIN_LIMIT; spin++) {
        CPU_RELAX();
    }
    if (atomic_load(&pool->busy) != 0) {
        pthread_mutex_lock(&pool->mutex);
        pool->caller_waiting = 1;
        while (atomic_load(&pool->busy) != 0) {
            pthread_cond_wait(&pool->done, &pool->mutex);
        }
        pool->caller_waiting = 0;
        pthread_mutex_unlock(&pool->mutex);
    }
}
