/*
 * thread_pool.c — persistent workers with a spin-then-sleep wait.
 *
 * Regions are numbered; region g lives in slot g % NUM_SLOTS. The caller publishes a region by
 * filling its slot and bumping `generation`, works on its tasks too, and returns as soon as
 * every task is *done* — it does not wait for workers that were slow to wake (a descheduled
 * worker on a busy machine would otherwise stall every call). Such a straggler still checks in
 * and out of each region in order; a slot is reused (NUM_SLOTS regions later) only once every
 * worker has left it, so a straggler never sees a half-written slot and never runs the wrong
 * region's task. Workers spin briefly before sleeping: the backend issues several short regions
 * per call.
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

/* Regions in flight: how far a straggler may fall behind before the caller waits for it. */
#define NUM_SLOTS 8

/* Spin iterations (a pause is 10-40 ns: about 0.1 ms) before a worker or the caller sleeps. */
#define SPIN_LIMIT 4000

typedef struct region {
    mxmoe_pool_fn fn;
    void* arg;
    int64_t num_tasks;
    atomic_llong next; /* next task to claim */
    atomic_llong done; /* tasks finished */
    atomic_int inside; /* workers that have not yet left this region */
    char pad[64];      /* keep the slots' counters on separate cache lines */
} region;

struct mxmoe_pool {
    int threads;
    pthread_t* workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* workers wait here for the next generation */
    pthread_cond_t done; /* the caller waits here for the last task */
    atomic_uint generation;
    atomic_int stop;
    atomic_int caller_sleeping;
    region slots[NUM_SLOTS];
};

typedef struct worker_arg {
    mxmoe_pool* pool;
    int index;
} worker_arg;

/* Claims and runs tasks of `r` until none is left; wakes a sleeping caller after the last. */
static void run_tasks(mxmoe_pool* pool, region* r, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add(&r->next, 1);
        if (t >= r->num_tasks) {
            return;
        }
        r->fn(r->arg, t, thread);
        if (atomic_fetch_add(&r->done, 1) + 1 == r->num_tasks &&
            atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

static void* worker_main(void* p) {
    worker_arg* wa = (worker_arg*)p;
    mxmoe_pool* pool = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        /* regions are entered in order: the next one is seen + 1 */
        unsigned target = seen + 1;
        int ready = 0;
        for (int spin = 0; spin < SPIN_LIMIT; spin++) {
            if ((int)(atomic_load(&pool->generation) - target) >= 0 || atomic_load(&pool->stop)) {
                ready = 1;
                break;
            }
            CPU_RELAX();
        }
        if (!ready) {
            pthread_mutex_lock(&pool->mutex);
            while ((int)(atomic_load(&pool->generation) - target) < 0 &&
                   !atomic_load(&pool->stop)) {
                pthread_cond_wait(&pool->wake, &pool->mutex);
            }
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) {
            return NULL;
        }
        region* r = &pool->slots[target % NUM_SLOTS];
        run_tasks(pool, r, index);
        atomic_fetch_sub(&r->inside, 1);
        seen = target;
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
    atomic_init(&pool->caller_sleeping, 0);
    for (int i = 0; i < NUM_SLOTS; i++) {
        atomic_init(&pool->slots[i].next, 0);
        atomic_init(&pool->slots[i].done, 0);
        atomic_init(&pool->slots[i].inside, 0);
    }
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
    unsigned g = atomic_load(&pool->generation) + 1;
    region* r = &pool->slots[g % NUM_SLOTS];
    /* the slot was last used NUM_SLOTS regions ago: wait for its stragglers to leave */
    for (int spin = 0; atomic_load(&r->inside) != 0; spin++) {
        if (spin < SPIN_LIMIT) {
            CPU_RELAX();
        } else {
            sched_yield();
        }
    }
    r->fn = fn;
    r->arg = arg;
    r->num_tasks = num_tasks;
    atomic_store(&r->next, 0);
    atomic_store(&r->done, 0);
    atomic_store(&r->inside, pool->threads - 1);
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->generation, g);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    run_tasks(pool, r, 0);

    for (int spin = 0; atomic_load(&r->done) != num_tasks && spin < SPIN_LIMIT; spin++) {
        CPU_RELAX();
    }
    if (atomic_load(&r->done) != num_tasks) {
        pthread_mutex_lock(&pool->mutex);
        atomic_store(&pool->caller_sleeping, 1);
        while (atomic_load(&r->done) != num_tasks) {
            pthread_cond_wait(&pool->done, &pool->mutex);
        }
        atomic_store(&pool->caller_sleeping, 0);
        pthread_mutex_unlock(&pool->mutex);
    }
}
