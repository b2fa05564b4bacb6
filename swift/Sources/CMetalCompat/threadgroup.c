// threadgroup.c: runs the threadgroups of a job on one worker, one fiber per thread.
//
// The scheduler resumes runnable fibers round-robin; a fiber runs until it finishes or blocks at a
// barrier / SIMD collective. A full pass in which no fiber could run, while some have not finished,
// is a deadlock (barriers in divergent control flow): the threadgroup is abandoned and the dispatch
// fails with a message, instead of hanging.
#if defined(__linux__)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

__thread mc_worker *mc_tl_worker;

/* Computed once by whichever worker comes first; atomic because workers ask concurrently (every thread
 * computes the same value, so which store wins does not matter). */
static size_t page_size(void) {
    static _Atomic size_t ps;
    size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (v == 0) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

/* Fiber stack size: METALCOMPAT_STACK_KB (default 64 KiB), plus one guard page below each stack so
 * that an overflow faults instead of silently corrupting the neighbouring fiber. */
static size_t stack_size(void) {
    static _Atomic size_t size;
    size_t v = atomic_load_explicit(&size, memory_order_relaxed);
    if (v == 0) {
        const char *env = getenv("METALCOMPAT_STACK_KB");
        long kb = env ? atol(env) : 0;
        if (kb < 16 || kb > 65536) kb = 64;
        v = ((size_t)kb * 1024 + page_size() - 1) & ~(page_size() - 1);
        atomic_store_explicit(&size, v, memory_order_relaxed);
    }
    return v;
}

/* Grows the worker's fibers to at least n. Stacks are mapped once per growth and kept for the
 * worker's lifetime (lazily committed by the kernel, so unused depth costs no memory). */
static int ensure_fibers(mc_worker *w, uint32_t n) {
    if (n <= w->fiber_cap) return 0;
    uint32_t cap = w->fiber_cap ? w->fiber_cap : 32;
    while (cap < n) cap *= 2;
    if (cap > MC_MAX_THREADS_PER_THREADGROUP) cap = MC_MAX_THREADS_PER_THREADGROUP;
    mc_fiber *fibers = realloc(w->fibers, cap * sizeof(mc_fiber));
    if (fibers == NULL) return -1;
    memset(fibers + w->fiber_cap, 0, (cap - w->fiber_cap) * sizeof(mc_fiber));
    w->fibers = fibers;
    size_t ss = stack_size(), slot = ss + page_size();
    size_t count = cap - w->fiber_cap;
    char *region = mmap(NULL, slot * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (region == MAP_FAILED) return -1;
    for (size_t i = 0; i < count; i++) {
        char *guard = region + i * slot;
        mprotect(guard, page_size(), PROT_NONE);
        fibers[w->fiber_cap + i].stack = guard + page_size();
    }
    w->stack_size = ss;
    w->fiber_cap = cap;
    return 0;
}

static int ensure_tg_memory(mc_worker *w, size_t bytes, int checking) {
    if (bytes > w->tg_mem_cap) {
        free(w->tg_mem);
        w->tg_mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        w->tg_mem_cap = w->tg_mem ? bytes : 0;
        if (w->tg_mem == NULL) return -1;
    }
    if (checking && bytes > w->shadow_cap) {
        free(w->shadow);
        w->shadow = malloc(bytes * sizeof(mc_shadow));
        w->shadow_cap = w->shadow ? bytes : 0;
        if (w->shadow == NULL) return -1;
    }
    if (w->sgs == NULL) {
        w->sgs = aligned_alloc(64, sizeof(mc_simdgroup) * MC_MAX_SIMDGROUPS);
        if (w->sgs == NULL) return -1;
    }
    return 0;
}

static void fiber_finish(mc_worker *w, mc_fiber *f) {
    f->done = 1;
    w->n_live--;
    if (w->bar_arrived > 0 && w->bar_arrived == w->n_live) mc_threadgroup_release(w);
    mc_simdgroup *sg = &w->sgs[f->inv.simdgroup_index_in_threadgroup];
    sg->n_live--;
    if (sg->arrived > 0 && sg->arrived == sg->n_live) mc_simdgroup_release(sg);
}

static void fiber_main(void *arg) {
    mc_fiber *f = arg;
    mc_worker *w = f->w;
    w->job->entry(&f->inv);
    fiber_finish(w, f);
    mc_context_exit(&f->ctx, &w->sched);
}

void mc_fiber_block(mc_worker *w, const uint32_t *wait_ptr, uint32_t wait_val, uint8_t kind) {
    mc_fiber *f = w->cur;
    f->wait_ptr = wait_ptr;
    f->wait_val = wait_val;
    f->wait_kind = kind;
    mc_context_switch(&f->ctx, &w->sched);
}

_Noreturn void mc_fiber_abort(mc_worker *w, int32_t status, const char *message) {
    mc_job_fail(w->job, status, "kernel '%s', threadgroup (%u, %u, %u), thread %u: %s", w->job->k->name,
                w->tg_pos[0], w->tg_pos[1], w->tg_pos[2], w->cur->inv.thread_index_in_threadgroup, message);
    w->abort = 1;
    mc_context_exit(&w->cur->ctx, &w->sched); /* an aborted threadgroup's fibers are never resumed */
}

static void report_deadlock(mc_worker *w) {
    uint32_t at_tg = 0, at_simd = 0, first_tg = UINT32_MAX, first_simd = UINT32_MAX;
    for (uint32_t i = 0; i < w->n_threads; i++) {
        mc_fiber *f = &w->fibers[i];
        if (f->done) continue;
        if (f->wait_kind == MC_WAIT_THREADGROUP) {
            at_tg++;
            if (first_tg == UINT32_MAX) first_tg = i;
        } else {
            at_simd++;
            if (first_simd == UINT32_MAX) first_simd = i;
        }
    }
    mc_job_fail(w->job, MC_ERR_DEADLOCK,
                "kernel '%s', threadgroup (%u, %u, %u): deadlock: %u thread(s) wait at threadgroup_barrier "
                "(first: thread %d) while %u wait in SIMD-group functions (first: thread %d) and %u have "
                "returned; a barrier or SIMD-group function is in divergent control flow",
                w->job->k->name, w->tg_pos[0], w->tg_pos[1], w->tg_pos[2], at_tg,
                first_tg == UINT32_MAX ? -1 : (int)first_tg, at_simd,
                first_simd == UINT32_MAX ? -1 : (int)first_simd, w->n_threads - w->n_live);
}

/* Sets the per-thread values of thread t in a threadgroup of size tsize at tg_pos. */
static void fill_invocation(mc_invocation *inv, const mc_job *job, const uint32_t tg_pos[3],
                            const uint32_t tsize[3], uint32_t n, uint32_t t, void *const *tg_args) {
    const uint32_t *group = job->d->group;
    uint32_t local[3] = {t % tsize[0], (t / tsize[0]) % tsize[1], t / (tsize[0] * tsize[1])};
    for (int i = 0; i < 3; i++) {
        inv->thread_position_in_threadgroup[i] = local[i];
        inv->threadgroup_position_in_grid[i] = tg_pos[i];
        inv->thread_position_in_grid[i] = tg_pos[i] * group[i] + local[i];
        inv->threads_per_threadgroup[i] = tsize[i];
        inv->dispatch_threads_per_threadgroup[i] = group[i];
        inv->threadgroups_per_grid[i] = job->groups[i];
        inv->threads_per_grid[i] = job->threads_per_grid[i];
        inv->grid_origin[i] = 0;
    }
    inv->thread_index_in_threadgroup = t;
    inv->thread_index_in_simdgroup = t % MC_SIMD_WIDTH;
    inv->simdgroup_index_in_threadgroup = t / MC_SIMD_WIDTH;
    inv->threads_per_simdgroup = MC_SIMD_WIDTH;
    inv->simdgroups_per_threadgroup = (n + MC_SIMD_WIDTH - 1) / MC_SIMD_WIDTH;
    inv->buffers = job->buffers;
    inv->threadgroup_args = tg_args;
}

static void run_threadgroup(mc_worker *w, mc_job *job, uint64_t index) {
    const uint32_t *group = job->d->group;
    uint32_t tg_pos[3] = {(uint32_t)(index % job->groups[0]), (uint32_t)((index / job->groups[0]) % job->groups[1]),
                          (uint32_t)(index / ((uint64_t)job->groups[0] * job->groups[1]))};
    /* dispatchThreads: the last threadgroup in each dimension only has the threads left over. */
    uint32_t tsize[3];
    for (int i = 0; i < 3; i++) {
        uint32_t rest = job->threads_per_grid[i] - tg_pos[i] * group[i];
        tsize[i] = rest < group[i] ? rest : group[i];
    }
    uint32_t n = tsize[0] * tsize[1] * tsize[2];
    if (ensure_fibers(w, n) != 0 || ensure_tg_memory(w, job->tg_block, job->checking) != 0) {
        mc_job_fail(job, MC_ERR_RESOURCES, "kernel '%s': out of memory for %u fiber stacks", job->k->name, n);
        return;
    }
    /* Threadgroup memory starts as NaN-like 0xff bytes, not as what the last threadgroup left. */
    if (job->tg_block > 0) memset(w->tg_mem, 0xff, job->tg_block);
    for (int i = 0; i < MC_MAX_THREADGROUP_ARGS; i++)
        w->tg_args[i] = (job->k->threadgroup_mask >> i) & 1 ? w->tg_mem + job->tg_offsets[i] : NULL;
    memcpy(w->tg_pos, tg_pos, sizeof tg_pos);
    w->n_threads = n;
    w->n_live = n;
    w->bar_arrived = 0;
    w->bar_gen = 0;
    w->abort = 0;
    w->n_sg = (n + MC_SIMD_WIDTH - 1) / MC_SIMD_WIDTH;
    for (uint32_t s = 0; s < w->n_sg; s++) {
        mc_simdgroup *sg = &w->sgs[s];
        uint32_t lanes = n - s * MC_SIMD_WIDTH;
        sg->n_live = lanes < MC_SIMD_WIDTH ? lanes : MC_SIMD_WIDTH;
        sg->arrived = 0;
        sg->gen = 0;
        sg->mem_gen = 0;
        sg->bank = 0;
    }
    for (uint32_t t = 0; t < n; t++) {
        mc_fiber *f = &w->fibers[t];
        f->w = w;
        f->done = 0;
        f->wait_ptr = NULL;
        f->wait_kind = MC_WAIT_NONE;
        f->simd_seq = 0;
        fill_invocation(&f->inv, job, tg_pos, tsize, n, t, w->tg_args);
        if (mc_context_init(&f->ctx, f->stack, w->stack_size, fiber_main, f) != 0) {
            mc_job_fail(job, MC_ERR_RESOURCES, "kernel '%s': cannot create fiber contexts", job->k->name);
            return;
        }
    }
    if (job->checking) mc_check_begin_threadgroup(w);
    for (;;) {
        int ran = 0;
        for (uint32_t i = 0; i < n; i++) {
            mc_fiber *f = &w->fibers[i];
            if (f->done) continue;
            if (f->wait_ptr != NULL) {
                if (*f->wait_ptr == f->wait_val) continue;
                f->wait_ptr = NULL;
                f->wait_kind = MC_WAIT_NONE;
            }
            w->cur = f;
            mc_context_switch(&w->sched, &f->ctx);
            ran = 1;
            if (w->abort) goto out;
        }
        if (w->n_live == 0) break;
        if (!ran) {
            report_deadlock(w);
            break;
        }
    }
out:
    if (job->checking) mc_check_end_threadgroup(w);
    w->cur = NULL;
}

void mc_worker_run_job(mc_worker *w, mc_job *job) {
    mc_tl_worker = w;
    w->job = job;
    while (!atomic_load_explicit(&job->failed, memory_order_relaxed)) {
        uint64_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->n_groups) break;
        run_threadgroup(w, job, i);
    }
    w->job = NULL;
}
#endif /* __linux__ */
