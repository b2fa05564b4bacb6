// checking.c: checking mode's threadgroup-memory hazard detection.
//
// Kernels are compiled a second time with -fsanitize-coverage=func,trace-loads,trace-stores, which makes
// clang call __sanitizer_cov_loadN(addr) / __sanitizer_cov_storeN(addr) before every load and store.
// The hooks only look at addresses inside the running threadgroup's threadgroup memory (a thread-local
// range test, so other accesses cost a compare). A shadow records, per byte, the last write and the
// last read: which thread, in which barrier interval ("epoch"). Hazards:
//   - read after write: a thread reads a byte another thread wrote in the current epoch;
//   - write after read: a thread writes a byte another thread read in the current epoch;
//   (both are a missing threadgroup_barrier; a simdgroup_barrier also orders lanes of one SIMD group)
//   - uninitialized read: a byte no thread wrote since the threadgroup started. Reported at the next
//     barrier, because with threads run one after another a missing barrier first looks like this
//     (thread 0 reads what thread 1 writes later): the write, if it comes, reports the real cause;
//   - out of bounds: the redzone after an argument (past its setThreadgroupMemoryLength length).
// Device memory: an access to the slack after a bound buffer's end (memory of the buffer's own
// allocation that is not part of the buffer, see mc_dispatch_desc.buffer_slack) is out of bounds.
// The first hazard fails the dispatch with a message naming the kernel, thread and byte offset.
#if defined(__linux__)
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread uintptr_t chk_lo;
static __thread uintptr_t chk_size; /* 0: hooks disarmed */
/* Device buffers: [slack_min, slack_max) covers the slack after every bound buffer (see dispatch.c). */
static __thread uintptr_t slack_min, slack_span;

void mc_check_begin_threadgroup(mc_worker *w) {
    mc_job *job = w->job;
    size_t n = job->tg_block;
    if (n > 0) memset(w->shadow, 0, n * sizeof(mc_shadow)); /* no shadow is allocated for n == 0 */
    for (int i = 0; i < MC_MAX_THREADGROUP_ARGS; i++) {
        if (!((job->k->threadgroup_mask >> i) & 1)) continue;
        uint32_t end = job->tg_offsets[i] + job->d->threadgroup_lengths[i];
        for (uint32_t b = end; b < end + MC_REDZONE; b++) w->shadow[b].writer = MC_SHADOW_REDZONE;
    }
    w->pending_uninit = 0;
    chk_lo = (uintptr_t)w->tg_mem;
    chk_size = n;
    slack_min = job->slack_min;
    slack_span = job->slack_max > job->slack_min ? job->slack_max - job->slack_min : 0;
}

/* Names the argument a byte offset of the block belongs to. */
static void describe_offset(const mc_job *job, uint32_t off, char *out, size_t len) {
    for (int i = 0; i < MC_MAX_THREADGROUP_ARGS; i++) {
        if (!((job->k->threadgroup_mask >> i) & 1)) continue;
        uint32_t start = job->tg_offsets[i], arg_len = job->d->threadgroup_lengths[i];
        if (off >= start && off < start + arg_len) {
            snprintf(out, len, "[[threadgroup(%d)]] at byte offset %u", i, off - start);
            return;
        }
        if (off >= start + arg_len && off < start + arg_len + MC_REDZONE) {
            snprintf(out, len, "byte offset %u of [[threadgroup(%d)]], past its length %u", off - start, i,
                     arg_len);
            return;
        }
    }
    snprintf(out, len, "threadgroup memory byte %u", off);
}

static void report(mc_worker *w, uint32_t thread, uint32_t off, uint32_t size, int store, const char *why) {
    char where[128];
    describe_offset(w->job, off, where, sizeof where);
    mc_job_fail(w->job, MC_ERR_CHECK,
                "kernel '%s', threadgroup (%u, %u, %u), thread %u: threadgroup memory hazard: %u-byte %s of "
                "%s %s",
                w->job->k->name, w->tg_pos[0], w->tg_pos[1], w->tg_pos[2], thread, size, store ? "write" : "read",
                where, why);
    chk_size = 0; /* one report per dispatch: the job stops after this threadgroup */
    slack_span = 0;
}

static void report_pending(mc_worker *w) {
    if (!w->pending_uninit || chk_size == 0) return;
    w->pending_uninit = 0;
    report(w, w->pending_thread, w->pending_offset, w->pending_size, 0,
           "that no thread has written (uninitialized threadgroup memory)");
}

void mc_check_barrier(mc_worker *w) { report_pending(w); }

void mc_check_end_threadgroup(mc_worker *w) {
    if (!w->abort) report_pending(w);
    chk_size = 0;
    slack_span = 0;
}

/* A device access that landed in the slack after a bound buffer: past its end. */
static void check_slack(uintptr_t addr, uint32_t size, int store) {
    mc_worker *w = mc_tl_worker;
    mc_job *job = w->job;
    if (w->cur == NULL) return;
    for (int i = 0; i < MC_MAX_BUFFERS; i++) {
        if (addr < job->slack_lo[i] || addr >= job->slack_hi[i]) continue;
        uintptr_t base = (uintptr_t)job->buffers[i];
        mc_job_fail(job, MC_ERR_CHECK,
                    "kernel '%s', threadgroup (%u, %u, %u), thread %u: %u-byte %s at byte %llu of [[buffer(%d)]], "
                    "past the end of the %llu bytes bound there (out of bounds)",
                    job->k->name, w->tg_pos[0], w->tg_pos[1], w->tg_pos[2],
                    w->cur->inv.thread_index_in_threadgroup, size, store ? "write" : "read",
                    (unsigned long long)(addr - base), i, (unsigned long long)(job->slack_lo[i] - base));
        chk_size = 0;
        slack_span = 0;
        return;
    }
}

/* Whether an access by `me` (SIMD group sgid) is ordered after another thread's access recorded as
 * (thread + 1, epoch, sgen): a threadgroup barrier in between, or a simdgroup_barrier within one group. */
static int ordered(mc_worker *w, uint32_t me, uint32_t sgid, uint16_t other, uint32_t epoch, uint16_t sgen) {
    if (other == 0 || other == me || epoch != w->bar_gen) return 1;
    return (uint32_t)(other - 1) / MC_SIMD_WIDTH == sgid && (uint16_t)w->sgs[sgid].mem_gen != sgen;
}

static void check(uintptr_t off, uint32_t size, int store) {
    mc_worker *w = mc_tl_worker;
    mc_fiber *f = w->cur;
    if (f == NULL) return;
    uint32_t thread = f->inv.thread_index_in_threadgroup, me = thread + 1;
    uint32_t sgid = f->inv.simdgroup_index_in_threadgroup;
    uint16_t sgen = (uint16_t)w->sgs[sgid].mem_gen;
    char why[192];
    for (uintptr_t b = off; b < off + size; b++) {
        if (b >= chk_size) {
            report(w, thread, (uint32_t)off, size, store, "(past the end of threadgroup memory)");
            return;
        }
        mc_shadow *s = &w->shadow[b];
        if (s->writer == MC_SHADOW_REDZONE) {
            report(w, thread, (uint32_t)b, size, store, "(out of bounds)");
            return;
        }
        if (store) {
            if (!ordered(w, me, sgid, s->reader, s->r_epoch, s->r_sgen)) {
                snprintf(why, sizeof why,
                         "that thread %u read since the last threadgroup_barrier (missing barrier between that "
                         "read and this write)",
                         (unsigned)s->reader - 1);
                report(w, thread, (uint32_t)b, size, store, why);
                return;
            }
            s->writer = (uint16_t)me;
            s->w_epoch = w->bar_gen;
            s->w_sgen = sgen;
            continue;
        }
        if (s->writer == 0) {
            if (!w->pending_uninit) {
                w->pending_uninit = 1;
                w->pending_offset = (uint32_t)b;
                w->pending_size = size;
                w->pending_thread = thread;
            }
        } else if (!ordered(w, me, sgid, s->writer, s->w_epoch, s->w_sgen)) {
            snprintf(why, sizeof why,
                     "that thread %u wrote since the last threadgroup_barrier (missing barrier between that write "
                     "and this read)",
                     (unsigned)s->writer - 1);
            report(w, thread, (uint32_t)b, size, store, why);
            return;
        }
        s->reader = (uint16_t)me;
        s->r_epoch = w->bar_gen;
        s->r_sgen = sgen;
    }
}

#define MC_HOOK(kind, n, store)                                                                              \
    void __sanitizer_cov_##kind##n(void *addr);                                                              \
    void __sanitizer_cov_##kind##n(void *addr) {                                                             \
        uintptr_t off = (uintptr_t)addr - chk_lo;                                                            \
        if (__builtin_expect(off < chk_size, 0)) check(off, n, store);                                       \
        else if (__builtin_expect((uintptr_t)addr - slack_min < slack_span, 0))                              \
            check_slack((uintptr_t)addr, n, store);                                                          \
    }
MC_HOOK(load, 1, 0)
MC_HOOK(load, 2, 0)
MC_HOOK(load, 4, 0)
MC_HOOK(load, 8, 0)
MC_HOOK(load, 16, 0)
MC_HOOK(store, 1, 1)
MC_HOOK(store, 2, 1)
MC_HOOK(store, 4, 1)
MC_HOOK(store, 8, 1)
MC_HOOK(store, 16, 1)
#endif /* __linux__ */
