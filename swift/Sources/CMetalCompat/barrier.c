// barrier.c: threadgroup barriers and SIMD-group collectives as group barriers over live fibers.
//
// A barrier is an arrival counter plus a generation. An arriving fiber that is not the last blocks
// until the generation changes; the last one bumps it and runs on. Finished fibers leave their groups
// (threadgroup.c), which may complete a barrier the others are waiting at. A fiber inside a SIMD
// collective is not at the threadgroup barrier, so the threadgroup barrier keeps waiting for it.
#if defined(__linux__)
#include <stdio.h>
#include <string.h>

#include "internal.h"

void mc_threadgroup_release(mc_worker *w) {
    w->bar_arrived = 0;
    w->bar_gen++;
    if (w->job->checking) mc_check_barrier(w);
}

void mc_simdgroup_release(mc_simdgroup *sg) {
    sg->arrived = 0;
    sg->gen++;
    if ((sg->code[sg->bank] & 0xff) == MC_SIMD_BARRIER) sg->mem_gen++;
}

void mc_threadgroup_barrier(uint32_t mem_flags) {
    (void)mem_flags; /* every barrier orders all memory here: threads of a group share one OS thread */
    mc_worker *w = mc_tl_worker;
    uint32_t gen = w->bar_gen;
    if (++w->bar_arrived == w->n_live) {
        mc_threadgroup_release(w);
        return;
    }
    mc_fiber_block(w, &w->bar_gen, gen, MC_WAIT_THREADGROUP);
}

static const char *op_name(uint32_t code) {
    switch (code & 0xff) {
    case MC_SIMD_BARRIER: return "simdgroup_barrier";
    case MC_SIMD_REDUCE: return "a SIMD-group reduction";
    case MC_SIMD_SCAN: return "a SIMD-group prefix scan";
    case MC_SIMD_SHUFFLE: return "a SIMD-group shuffle/broadcast";
    case MC_SIMD_MATRIX: return "a simdgroup matrix multiply";
    default: return "a SIMD-group function";
    }
}

const void *mc_simd_exchange(const void *value, uint32_t size, uint32_t op, uint32_t *active) {
    mc_worker *w = mc_tl_worker;
    mc_fiber *f = w->cur;
    uint32_t lane = f->inv.thread_index_in_simdgroup;
    mc_simdgroup *sg = &w->sgs[f->inv.simdgroup_index_in_threadgroup];
    /* Two banks: a lane may enter collective k+1 while slower lanes still read the slots of k; none
     * can reach k+2 before every lane has left k (k+1 needs them all). */
    uint32_t bank = f->simd_seq++ & 1;
    uint32_t code = op | (size << 8);
    if (sg->arrived == 0) {
        sg->bank = bank;
        sg->mask[bank] = 0;
        sg->code[bank] = code;
    } else if (sg->code[bank] != code || sg->bank != bank) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "lanes of SIMD group %u reached different SIMD-group functions (%s, %u-byte values, and "
                 "%s, %u-byte values): SIMD-group functions must be called by all live lanes together",
                 f->inv.simdgroup_index_in_threadgroup, op_name(sg->code[sg->bank]), sg->code[sg->bank] >> 8,
                 op_name(code), size);
        mc_fiber_abort(w, MC_ERR_DIVERGENT, msg);
    }
    if (size > 0) memcpy(sg->slots[bank][lane], value, size);
    sg->mask[bank] |= 1u << lane;
    uint32_t gen = sg->gen;
    if (++sg->arrived == sg->n_live) {
        mc_simdgroup_release(sg);
    } else {
        mc_fiber_block(w, &sg->gen, gen, MC_WAIT_SIMD);
    }
    *active = sg->mask[bank];
    return sg->slots[bank];
}

uint32_t mc_simd_lane(void) { return mc_tl_worker->cur->inv.thread_index_in_simdgroup; }

void mc_kernel_error(const char *message) {
    mc_worker *w = mc_tl_worker;
    char msg[320];
    snprintf(msg, sizeof msg, "%s (thread %u of threadgroup (%u, %u, %u))", message,
             w->cur->inv.thread_index_in_threadgroup, w->tg_pos[0], w->tg_pos[1], w->tg_pos[2]);
    mc_job_fail(w->job, MC_ERR_KERNEL, "kernel '%s': %s", w->job->k->name, msg);
}
#endif /* __linux__ */
