// pool.c: the worker threads that run threadgroups in parallel.
//
// Threads start on the first dispatch with more than one threadgroup and live for the process. Each
// owns its mc_worker (fiber stacks, threadgroup memory), allocated once and reused. The thread that
// calls mc_dispatch works too, then waits for the helpers to finish the job.
#if defined(__linux__)
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MC_MAX_WORKERS 16

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
static mc_job *pool_job;
static uint64_t pool_generation;
static int pending;
static int helpers; /* started helper threads */
static int helpers_wanted = -1;
static mc_worker helper_workers[MC_MAX_WORKERS];

int32_t mc_worker_count(void) {
    pthread_mutex_lock(&pool_lock);
    if (helpers_wanted < 0) {
        const char *env = getenv("METALCOMPAT_THREADS");
        long n = env ? atol(env) : 0;
        if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
        if (n > MC_MAX_WORKERS) n = MC_MAX_WORKERS;
        helpers_wanted = (int)n - 1;
    }
    int32_t count = helpers_wanted + 1;
    pthread_mutex_unlock(&pool_lock);
    return count;
}

static void *helper_main(void *arg) {
    mc_worker *w = arg;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool_lock);
        while (pool_generation == seen) pthread_cond_wait(&work_ready, &pool_lock);
        seen = pool_generation;
        mc_job *job = pool_job;
        pthread_mutex_unlock(&pool_lock);

        mc_worker_run_job(w, job);

        pthread_mutex_lock(&pool_lock);
        if (--pending == 0) pthread_cond_signal(&work_done);
        pthread_mutex_unlock(&pool_lock);
    }
    return NULL;
}

/* Starts helper threads up to the wanted count; returns how many run. Called under pool_lock. */
static int start_helpers(void) {
    while (helpers < helpers_wanted) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, helper_main, &helper_workers[helpers]);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer helpers is fine: the caller does the rest */
        helpers++;
    }
    return helpers;
}

void mc_pool_run(mc_job *job, mc_worker *caller) {
    mc_worker_count();
    int n = 0;
    if (job->n_groups > 1) {
        pthread_mutex_lock(&pool_lock);
        n = start_helpers();
        if (n > 0) {
            pool_job = job;
            pending = n;
            pool_generation++;
            pthread_cond_broadcast(&work_ready);
        }
        pthread_mutex_unlock(&pool_lock);
    }
    mc_worker_run_job(caller, job);
    if (n > 0) {
        pthread_mutex_lock(&pool_lock);
        while (pending > 0) pthread_cond_wait(&work_done, &pool_lock);
        pthread_mutex_unlock(&pool_lock);
    }
}
#endif /* __linux__ */
