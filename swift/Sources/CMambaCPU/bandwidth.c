/* The read-bandwidth probe: the ceiling a decode step can reach, since it reads every weight once. */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "mamba_cpu.h"
#include "ops.h"
#include "pack.h"
#include "pool.h"

/* Small pieces taken in turn: a thread that starts late still gets its share of the work. */
#define PIECES_PER_THREAD 16
#define MAX_THREADS 64

typedef struct {
    const mcpu_ops *ops;
    char *p;
    int64_t part;
    int fill;
    double sums[PIECES_PER_THREAD * MAX_THREADS];
} probe_job;

static void probe_task(void *ctx, int task, int thread) {
    (void)thread;
    probe_job *j = ctx;
    char *p = j->p + task * j->part;
    if (j->fill) {
        float *f = (float *)p;
        for (int64_t i = 0; i < j->part / 4; i++) f[i] = (float)(i & 1023) * 0.001f;
        return;
    }
    j->sums[task] = j->ops->sum_bytes(p, j->part);
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double mcpu_read_bandwidth(int64_t bytes, int32_t passes, int32_t threads) {
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int32_t)n : 1;
    }
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (passes < 1) return -1;
    mcpu_pool *pool = mcpu_pool_create(threads);
    if (!pool) return -1;
    const int pieces = mcpu_pool_threads(pool) * PIECES_PER_THREAD;
    probe_job j = {.ops = mcpu_ops_best(), .part = bytes / pieces / 4096 * 4096, .fill = 1};
    j.p = j.part > 0 ? mcpu_alloc_huge((size_t)(j.part * pieces)) : NULL;
    if (!j.p) {
        mcpu_pool_destroy(pool);
        return -1;
    }
    mcpu_pool_run(pool, probe_task, &j, pieces);
    j.fill = 0;
    double best = 1e30, checksum = 0;
    for (int pass = 0; pass < passes; pass++) {
        double t0 = seconds();
        mcpu_pool_run(pool, probe_task, &j, pieces);
        double t = seconds() - t0;
        if (t < best) best = t;
        for (int i = 0; i < pieces; i++) checksum += j.sums[i];
    }
    mcpu_free_huge(j.p, (size_t)(j.part * pieces));
    mcpu_pool_destroy(pool);
    /* the checksum keeps the sums alive; it is never negative for this fill */
    return checksum < 0 ? -1 : (double)(j.part * pieces) / best / 1e9;
}
