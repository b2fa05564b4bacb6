/*
 * internal.h: the runtime's shared structures (not part of the public headers).
 *
 * A dispatch is one mc_job. Its threadgroups are handed out to mc_workers (the calling thread plus a
 * small pool, see pool.c); a worker runs one threadgroup at a time, with one fiber per thread of the
 * threadgroup, all on the worker's OS thread (threadgroup.c). Barriers and SIMD-group collectives are
 * group barriers over the threadgroup's / SIMD group's live fibers (barrier.c).
 */
#ifndef MC_INTERNAL_H
#define MC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "fiber.h"
#include "mc_host.h"

#define MC_MAX_THREADS_PER_THREADGROUP 1024
#define MC_MAX_SIMDGROUPS (MC_MAX_THREADS_PER_THREADGROUP / MC_SIMD_WIDTH)
#define MC_MAX_THREADGROUP_MEMORY 32768
/* Guard bytes after each [[threadgroup(n)]] argument: checking mode flags any access to them. */
#define MC_REDZONE 64

/* What a blocked fiber waits for (for deadlock reports). */
enum { MC_WAIT_NONE = 0, MC_WAIT_THREADGROUP = 1, MC_WAIT_SIMD = 2 };

typedef struct mc_job {
    const mc_dispatch_desc *d;
    const mc_kernel_desc *k;
    mc_kernel_entry entry;
    int checking;
    uint32_t groups[3];           /* threadgroups per grid */
    uint64_t n_groups;
    uint32_t threads_per_grid[3];
    uint32_t tg_offsets[MC_MAX_THREADGROUP_ARGS]; /* byte offset of each argument in the block */
    uint32_t tg_block;            /* bytes of threadgroup memory per threadgroup, redzones included */
    void *buffers[MC_MAX_BUFFERS];
    /* Checking mode: the slack after each bound buffer's end, and the range covering them all. */
    uintptr_t slack_lo[MC_MAX_BUFFERS], slack_hi[MC_MAX_BUFFERS];
    uintptr_t slack_min, slack_max;
    _Atomic uint64_t next;        /* next threadgroup to hand out */
    _Atomic int failed;
    pthread_mutex_t error_lock;
    int32_t status;
    char message[640];
} mc_job;

typedef struct mc_fiber {
    mc_context ctx;
    char *stack;
    struct mc_worker *w;
    const uint32_t *wait_ptr; /* blocked until *wait_ptr != wait_val */
    uint32_t wait_val;
    uint8_t wait_kind;
    uint8_t done;
    uint32_t simd_seq;        /* collectives entered: selects the slot bank */
    mc_invocation inv;
} mc_fiber;

typedef struct mc_simdgroup {
    uint32_t n_live;  /* lanes that have not returned */
    uint32_t arrived; /* lanes waiting in the current collective */
    uint32_t gen;     /* completed collectives */
    uint32_t mem_gen; /* completed simdgroup_barrier calls (checking mode epochs) */
    uint32_t bank;    /* bank of the collective in progress */
    uint32_t mask[2];
    uint32_t code[2];
    _Alignas(16) unsigned char slots[2][MC_SIMD_WIDTH][MC_SIMD_SLOT_BYTES];
} mc_simdgroup;

/* Checking-mode shadow of one byte of threadgroup memory: its last write and its last read. */
typedef struct mc_shadow {
    uint32_t w_epoch; /* threadgroup barriers completed when written */
    uint16_t writer;  /* thread index + 1; 0 = never written; MC_SHADOW_REDZONE = guard byte */
    uint16_t w_sgen;  /* writer's SIMD group mem_gen when written (truncated) */
    uint32_t r_epoch;
    uint16_t reader;  /* thread index + 1 of the last read; 0 = none */
    uint16_t r_sgen;
} mc_shadow;
#define MC_SHADOW_REDZONE 0xffff

typedef struct mc_worker {
    mc_context sched; /* this OS thread's scheduler context */
    mc_fiber *fibers;
    uint32_t fiber_cap;
    size_t stack_size;
    mc_simdgroup *sgs; /* [MC_MAX_SIMDGROUPS] */
    unsigned char *tg_mem;
    size_t tg_mem_cap;
    mc_shadow *shadow;
    size_t shadow_cap;
    void *tg_args[MC_MAX_THREADGROUP_ARGS];
    /* The threadgroup being run. */
    mc_job *job;
    mc_fiber *cur;
    uint32_t tg_pos[3];
    uint32_t n_threads;
    uint32_t n_live;
    uint32_t bar_arrived;
    uint32_t bar_gen;
    uint32_t n_sg;
    int abort; /* the threadgroup cannot continue (deadlock, divergence): fibers are abandoned */
    /* Checking mode: the first read of never-written memory, reported at the next barrier unless another
     * thread's write in the same barrier interval shows it to be a missing barrier instead. */
    int pending_uninit;
    uint32_t pending_offset, pending_size, pending_thread;
} mc_worker;

extern __thread mc_worker *mc_tl_worker;

/* threadgroup.c */
void mc_worker_run_job(mc_worker *w, mc_job *job);
/* Switches from the running fiber back to the scheduler until the fiber's wait is over. */
void mc_fiber_block(mc_worker *w, const uint32_t *wait_ptr, uint32_t wait_val, uint8_t kind);
/* Stops the current threadgroup from a fiber: records the error and never returns. */
_Noreturn void mc_fiber_abort(mc_worker *w, int32_t status, const char *message);

/* barrier.c */
void mc_simdgroup_release(mc_simdgroup *sg);
void mc_threadgroup_release(mc_worker *w);

/* pool.c */
void mc_pool_run(mc_job *job, mc_worker *caller);

/* dispatch.c */
/* Records the dispatch's first error (later ones are dropped) and stops handing out threadgroups. */
void mc_job_fail(mc_job *job, int32_t status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* checking.c */
/* Arms the load/store hooks for the threadgroup `w` is about to run (or disarms them). */
void mc_check_begin_threadgroup(mc_worker *w);
/* A threadgroup barrier completed / the threadgroup finished: reports a pending uninitialized read. */
void mc_check_barrier(mc_worker *w);
void mc_check_end_threadgroup(mc_worker *w);

#endif /* MC_INTERNAL_H */
