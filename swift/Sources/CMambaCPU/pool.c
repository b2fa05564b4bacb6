#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle worker spins before it sleeps, in nanoseconds. Long enough to cover the gap between
 * two jobs of one decode step (the caller's serial work between two parallel phases: microseconds), so
 * a step never waits for a wake-up; short enough that a longer gap (JavaScript between steps, a server's
 * HTTP work) costs one wake-up at the next job instead of this core for the whole gap. A time, not a
 * count of pause instructions: those take 10 to 140 cycles depending on the CPU (200000 of them, the
 * bound this replaces, were 5 to 13 ms on a Zen core). */
#define SPIN_NS 100000

/*
 * One job at a time. `work` packs the job's generation, its task count and the index of the next
 * unclaimed task, so a task is claimed by one compare-and-swap on a word that names the job; a claim
 * that succeeds proves the job is still running, so its fn and ctx can be read safely afterwards. The
 * caller takes part in every job and waits only for tasks that were claimed, never for a worker that
 * has not woken up yet: on a busy machine a descheduled worker costs its own tasks, not a time slice
 * per job.
 */
#define TASK_BITS 20
#define TASK_MASK ((UINT64_C(1) << TASK_BITS) - 1)
#define MAX_TASKS ((int)TASK_MASK)
struct mcpu_pool {
    int nthreads; /* including the calling thread */
    pthread_t *threads;
    _Atomic uint64_t work;
    _Atomic int done; /* tasks of the current job finished */
    _Atomic int sleepers;
    _Atomic int stop;
    /* the job's function, written before `work` publishes its generation */
    mcpu_task_fn fn;
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

typedef struct {
    mcpu_pool *pool;
    int index;
} worker_arg;

/* work = generation << 40 | ntasks << 20 | next task */
static inline uint64_t generation_of(uint64_t w) { return w >> (2 * TASK_BITS); }
static inline int ntasks_of(uint64_t w) { return (int)((w >> TASK_BITS) & TASK_MASK); }
static inline int next_of(uint64_t w) { return (int)(w & TASK_MASK); }

/* Runs tasks of the job with generation `gen` until none is left unclaimed. */
static void run_tasks(mcpu_pool *pool, uint64_t gen, int thread) {
    uint64_t w = atomic_load_explicit(&pool->work, memory_order_acquire);
    for (;;) {
        if (generation_of(w) != gen || next_of(w) >= ntasks_of(w)) return;
        if (atomic_compare_exchange_weak_explicit(&pool->work, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            pool->fn(pool->ctx, next_of(w), thread);
            atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
            w = atomic_load_explicit(&pool->work, memory_order_acquire);
        }
    }
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* No job after the one of generation `seen`, and the pool is not stopping. */
static int idle(mcpu_pool *pool, uint64_t seen) {
    return generation_of(atomic_load_explicit(&pool->work, memory_order_acquire)) == seen &&
           !atomic_load(&pool->stop);
}

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    mcpu_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        /* the clock is read every 64 pauses (~30 ns against microseconds of pausing) */
        uint64_t deadline = now_ns() + SPIN_NS;
        for (unsigned spins = 1; idle(pool, seen); spins++) {
            CPU_RELAX();
            if (spins % 64 != 0 || now_ns() < deadline) continue;
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleepers, 1);
            while (generation_of(atomic_load(&pool->work)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = generation_of(atomic_load_explicit(&pool->work, memory_order_acquire));
        run_tasks(pool, seen, arg.index);
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
    /* (jobs have at most a few thousand tasks; more than the word holds would run here, serially) */
    if (pool->nthreads == 1 || ntasks == 1 || ntasks > MAX_TASKS) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint64_t gen = generation_of(atomic_load(&pool->work)) + 1;
    atomic_store_explicit(&pool->work, (gen << (2 * TASK_BITS)) | ((uint64_t)ntasks << TASK_BITS),
                          memory_order_seq_cst);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    run_tasks(pool, gen, 0);
    /* Every task is claimed; wait for the ones still running elsewhere. A worker running one may have
     * been preempted (more runnable threads than cores): after a short spin, give the core away. */
    for (int spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < ntasks; spins++) {
        if (spins < 4000) CPU_RELAX();
        else sched_yield();
    }
}
