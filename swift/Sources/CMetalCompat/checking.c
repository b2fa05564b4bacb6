// checking.c: checking mode's threadgroup-memory hazard detection.
//
// Kernels are compiled a second time with -fsanitize-coverage=func,trace-loads,trace-stores, which makes
// clang call __sanitizer_cov_loadN(addr) / __sanitizer_cov_storeN(addr) before every load and store.
// The hooks only look at addresses inside the running threadgroup's threadgroup memory (a thread-local
// range test, so other accesses cost a compare). A shadow records, per byte, the writing thread and
// the barrier epoch of the last write. A read is a hazard when
//   - no thread wrote the byte since the threadgroup started (uninitialized threadgroup memory), or
//   - another thread wrote it in the current barrier epoch (a missing threadgroup_barrier; a
//     simdgroup_barrier also orders writes between lanes of one SIMD group), or
//   - it touches the redzone after an argument (past the length given to setThreadgroupMemoryLength).
// The first hazard fails the dispatch with a message naming the kernel, thread and byte offset.
#if defined(__linux__)
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread uintptr_t chk_lo;
static __thread uintptr_t chk_size; /* 0: hooks disarmed */

void mc_check_begin_threadgroup(mc_worker *w) {
    mc_job *job = w->job;
    size_t n = job->tg_block;
    memset(w->shadow, 0, n * sizeof(mc_shadow));
    for (int i = 0; i < MC_MAX_THREADGROUP_ARGS; i++) {
        if (!((job->k->threadgroup_mask >> i) & 1)) continue;
        uint32_t end = job->tg_offsets[i] + job->d->threadgroup_lengths[i];
        for (uint32_t b = end; b < end + MC_REDZONE; b++) w->shadow[b].writer = MC_SHADOW_REDZONE;
    }
    chk_lo = (uintptr_t)w->tg_mem;
    chk_size = n;
}

void mc_check_end_threadgroup(void) { chk_size = 0; }

/* Names the argument a byte offset of the block belongs to: "threadgroup(i) byte k" or the redzone. */
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

static void report(mc_worker *w, uint32_t off, uint32_t size, int store, const char *why) {
    char where[128];
    describe_offset(w->job, off, where, sizeof where);
    mc_fiber *f = w->cur;
    mc_job_fail(w->job, MC_ERR_CHECK,
                "kernel '%s', threadgroup (%u, %u, %u), thread %u: threadgroup memory hazard: %u-byte %s of "
                "%s %s",
                w->job->k->name, w->tg_pos[0], w->tg_pos[1], w->tg_pos[2], f->inv.thread_index_in_threadgroup,
                size, store ? "write" : "read", where, why);
    chk_size = 0; /* one report per dispatch: the job stops after this threadgroup */
}

static void check(uintptr_t off, uint32_t size, int store) {
    mc_worker *w = mc_tl_worker;
    mc_fiber *f = w->cur;
    if (f == NULL) return;
    uint32_t me = f->inv.thread_index_in_threadgroup + 1;
    uint32_t sgid = f->inv.simdgroup_index_in_threadgroup;
    mc_simdgroup *sg = &w->sgs[sgid];
    for (uintptr_t b = off; b < off + size; b++) {
        if (b >= chk_size) {
            report(w, (uint32_t)off, size, store, "(past the end of threadgroup memory)");
            return;
        }
        mc_shadow *s = &w->shadow[b];
        if (s->writer == MC_SHADOW_REDZONE) {
            report(w, (uint32_t)b, size, store, "(out of bounds)");
            return;
        }
        if (store) {
            s->writer = (uint16_t)me;
            s->epoch = w->bar_gen;
            s->sgen = (uint16_t)sg->mem_gen;
            continue;
        }
        if (s->writer == 0) {
            report(w, (uint32_t)b, size, store, "that no thread has written (uninitialized threadgroup memory)");
            return;
        }
        if (s->writer != me && s->epoch == w->bar_gen) {
            uint32_t writer_sg = (uint32_t)(s->writer - 1) / MC_SIMD_WIDTH;
            if (writer_sg == sgid && (uint16_t)sg->mem_gen != s->sgen) continue; /* simdgroup_barrier */
            char why[160];
            snprintf(why, sizeof why,
                     "that thread %u wrote since the last threadgroup_barrier (missing barrier between the "
                     "write and this read)",
                     (unsigned)s->writer - 1);
            report(w, (uint32_t)b, size, store, why);
            return;
        }
    }
}

#define MC_HOOK(kind, n, store)                                                                              \
    void __sanitizer_cov_##kind##n(void *addr);                                                              \
    void __sanitizer_cov_##kind##n(void *addr) {                                                             \
        uintptr_t off = (uintptr_t)addr - chk_lo;                                                            \
        if (__builtin_expect(off < chk_size, 0)) check(off, n, store);                                       \
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
