/* A fork-join thread pool for the per-token hot path: workers spin briefly between jobs (a decode
 * step issues five jobs per layer back to back), then sleep on a condition variable. */
#ifndef MCPU_POOL_H
#define MCPU_POOL_H

typedef struct mcpu_pool mcpu_pool;
/* fn(ctx, task, thread) for task in [0, ntasks); thread in [0, nthreads) identifies per-thread scratch. */
typedef void (*mcpu_task_fn)(void *ctx, int task, int thread);

mcpu_pool *mcpu_pool_create(int nthreads);
void mcpu_pool_destroy(mcpu_pool *pool);
int mcpu_pool_threads(const mcpu_pool *pool);
/* Runs all tasks, the caller taking part as thread 0; returns when every task is done. Workers
 * that are asleep or descheduled simply get fewer tasks. */
void mcpu_pool_run(mcpu_pool *pool, mcpu_task_fn fn, void *ctx, int ntasks);

#endif
