#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle worker spins before sleeping: long enough to cover the gap between two jobs of
 * one decode step, short enough not to burn a core while the host is busy elsewhere. */
#define SPIN_ITERATIONS 200000

struct mcpu_pool {
    int nthreads; /* including the calling thread */
    pthread_t *threads;
    _Atomic uint64_t generation; /* bumped once per job */
    _Atomic int next_task;
    _Atomic int busy_workers;
    _Atomic int sleepers;
    _Atomic int stop;
    mcpu_task_fn fn;
    void *ctx;
    int ntasks;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

typedef struct {
    mcpu_pool *pool;
    int index;
} worker_arg;

static void run_tasks(mcpu_pool *pool, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (t >= pool->ntasks) return;
        pool->fn(pool->ctx, t, thread);
    }
}

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    mcpu_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop)) {
            if (++spins < SPIN_ITERATIONS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = atomic_load(&pool->generation);
        run_tasks(pool, arg.index);
        atomic_fetch_sub_explicit(&pool->busy_workers, 1, memory_order_release);
    }
}

mcpu_pool *mcpu_pool_create(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    mcpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->nthreads = nthreads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    if (nthreads > 1) {
        pool->threads = calloc((size_t)nthreads - 1, sizeof(pthread_t));
        if (!pool->threads) {
            free(pool);
            return NULL;
        }
        for (int i = 1; i < nthreads; i++) {
            worker_arg *arg = malloc(sizeof *arg);
            if (arg) *arg = (worker_arg){pool, i};
            if (!arg || pthread_create(&pool->threads[i - 1], NULL, worker_main, arg) != 0) {
                /* Fewer workers than asked: run with what started. */
                free(arg);
                pool->nthreads = i;
                break;
            }
        }
    }
    return pool;
}

void mcpu_pool_destroy(mcpu_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->nthreads; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

int mcpu_pool_threads(const mcpu_pool *pool) { return pool->nthreads; }

void mcpu_pool_run(mcpu_pool *pool, mcpu_task_fn fn, void *ctx, int ntasks) {
    if (ntasks <= 0) return;
    if (pool->nthreads == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    pool->ntasks = ntasks;
    atomic_store(&pool->next_task, 0);
    atomic_store(&pool->busy_workers, pool->nthreads - 1);
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    run_tasks(pool, 0);
    /* A worker still busy may have been preempted (more runnable threads than cores): after a short
     * spin, give the core away instead of burning the rest of our time slice. */
    for (int spins = 0; atomic_load_explicit(&pool->busy_workers, memory_order_acquire) > 0; spins++) {
        if (spins < 4000) CPU_RELAX();
        else sched_yield();
    }
}
