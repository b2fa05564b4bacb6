// dispatch.c: validates a dispatch and runs it as one job over the worker pool.
//
// Dispatches are serialized process-wide by one lock: function-constant values live in per-file
// globals of the compiled kernels (set right before the run), so two dispatches of the same file with
// different constants must not overlap. Compat runs one dispatch at a time anyway.
#if defined(__linux__)
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t dispatch_lock = PTHREAD_MUTEX_INITIALIZER;
/* The calling thread's worker; only used under dispatch_lock. */
static mc_worker caller_worker;

void mc_job_fail(mc_job *job, int32_t status, const char *fmt, ...) {
    pthread_mutex_lock(&job->error_lock);
    if (job->status == MC_OK) {
        job->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->message, sizeof job->message, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&job->error_lock);
    atomic_store(&job->failed, 1);
}

static int32_t fail(char *err, size_t errlen, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int32_t fail(char *err, size_t errlen, int32_t status, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Checks what the kernel needs against what is bound, and lays out threadgroup memory. */
static int32_t validate(mc_job *job, uint64_t required, char *err, size_t errlen) {
    const mc_dispatch_desc *d = job->d;
    const mc_kernel_desc *k = job->k;
    for (int i = 0; i < MC_MAX_BUFFERS; i++) {
        if (((required >> i) & 1) && d->buffers[i] == NULL)
            return fail(err, errlen, MC_ERR_BINDING,
                        "kernel '%s' uses [[buffer(%d)]] but no buffer is bound at index %d", k->name, i, i);
    }
    /* Threadgroup memory: each argument followed by a redzone (see MC_REDZONE). */
    uint64_t total = 0, offset = 0;
    for (int i = 0; i < MC_MAX_THREADGROUP_ARGS; i++) {
        job->tg_offsets[i] = 0;
        if (!((k->threadgroup_mask >> i) & 1)) continue;
        uint32_t len = d->threadgroup_lengths[i];
        if (len == 0)
            return fail(err, errlen, MC_ERR_BINDING,
                        "kernel '%s' uses [[threadgroup(%d)]] but setThreadgroupMemoryLength was not called "
                        "for index %d",
                        k->name, i, i);
        if (len % 16 != 0)
            return fail(err, errlen, MC_ERR_BINDING,
                        "kernel '%s': threadgroup memory length %u at index %d is not a multiple of 16", k->name,
                        len, i);
        job->tg_offsets[i] = (uint32_t)offset;
        total += len;
        if (total > MC_MAX_THREADGROUP_MEMORY)
            return fail(err, errlen, MC_ERR_LIMITS,
                        "kernel '%s': threadgroup memory (%llu bytes up to index %d) exceeds "
                        "maxThreadgroupMemoryLength (%d)",
                        k->name, (unsigned long long)total, i, MC_MAX_THREADGROUP_MEMORY);
        offset += len + MC_REDZONE;
    }
    job->tg_block = (uint32_t)offset;

    const uint32_t *g = d->group;
    uint64_t threads = (uint64_t)g[0] * g[1] * g[2];
    uint32_t limit = MC_MAX_THREADS_PER_THREADGROUP;
    if (d->max_total_threads > 0 && d->max_total_threads < limit) limit = d->max_total_threads;
    if (k->max_total_threads > 0 && k->max_total_threads < limit) limit = k->max_total_threads;
    if (g[0] == 0 || g[1] == 0 || g[2] == 0 || threads > limit)
        return fail(err, errlen, MC_ERR_LIMITS,
                    "kernel '%s': threadsPerThreadgroup (%u, %u, %u) must be non-zero with at most %u threads "
                    "(maxTotalThreadsPerThreadgroup)",
                    k->name, g[0], g[1], g[2], limit);
    for (int i = 0; i < 3; i++) {
        if (d->nonuniform) {
            job->threads_per_grid[i] = d->grid[i];
            job->groups[i] = (uint32_t)(((uint64_t)d->grid[i] + g[i] - 1) / g[i]);
        } else {
            uint64_t t = (uint64_t)d->grid[i] * g[i];
            if (t > UINT32_MAX)
                return fail(err, errlen, MC_ERR_LIMITS,
                            "kernel '%s': %u threadgroups of %u threads in dimension %d exceed 2^32 threads",
                            k->name, d->grid[i], g[i], i);
            job->threads_per_grid[i] = (uint32_t)t;
            job->groups[i] = d->grid[i];
        }
    }
    job->n_groups = (uint64_t)job->groups[0] * job->groups[1] * job->groups[2];
    return MC_OK;
}

int32_t mc_dispatch(const mc_dispatch_desc *d, char *err, size_t errlen) {
    if (err != NULL && errlen > 0) err[0] = 0;
    mc_counter_add(MC_COUNTER_DISPATCHES, 1);
    if (d->file == NULL || d->kernel < 0 || d->kernel >= d->file->n_kernels)
        return fail(err, errlen, MC_ERR_BINDING, "dispatch without a valid kernel");
    const mc_kernel_desc *k = &d->file->kernels[d->kernel];

    static mc_job job; /* one dispatch at a time (dispatch_lock) */
    pthread_mutex_lock(&dispatch_lock);
    memset(&job, 0, sizeof job);
    pthread_mutex_init(&job.error_lock, NULL);
    job.d = d;
    job.k = k;
    job.checking = d->checking != 0;
    job.entry = job.checking ? k->entry_checked : k->entry;
    memcpy(job.buffers, d->buffers, sizeof job.buffers);
    job.slack_min = UINTPTR_MAX;
    for (int i = 0; i < MC_MAX_BUFFERS; i++) {
        if (d->buffers[i] == NULL || d->buffer_slack[i] == 0) continue;
        job.slack_lo[i] = (uintptr_t)d->buffers[i] + d->buffer_lengths[i];
        job.slack_hi[i] = job.slack_lo[i] + d->buffer_slack[i];
        if (job.slack_lo[i] < job.slack_min) job.slack_min = job.slack_lo[i];
        if (job.slack_hi[i] > job.slack_max) job.slack_max = job.slack_hi[i];
    }

    if (d->file->n_constants > 0 && d->file->set_constants != NULL) {
        /* No values given: every constant is undefined (is_function_constant_defined is false). */
        const void **none = NULL;
        if (d->constant_values == NULL) {
            none = calloc((size_t)d->file->n_constants, sizeof(void *));
            if (none == NULL) {
                pthread_mutex_unlock(&dispatch_lock);
                return fail(err, errlen, MC_ERR_RESOURCES, "kernel '%s': out of memory", k->name);
            }
        }
        d->file->set_constants(d->constant_values ? d->constant_values : none);
        free(none);
    }
    uint64_t required = d->file->required_buffers ? d->file->required_buffers(d->kernel) : k->buffer_mask;

    int32_t status = validate(&job, required, err, errlen);
    if (status == MC_OK && job.n_groups > 0) {
        mc_pool_run(&job, &caller_worker);
        status = job.status;
        if (status != MC_OK && err != NULL && errlen > 0) snprintf(err, errlen, "%s", job.message);
    }
    pthread_mutex_destroy(&job.error_lock);
    pthread_mutex_unlock(&dispatch_lock);
    return status;
}
#endif /* __linux__ */
