/*
 * mc_host.h: the MetalCompat runtime as the Swift API layer (../../MetalCompat) drives it.
 */
#ifndef MC_HOST_H
#define MC_HOST_H

#include "mc_kernel_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- Registry of compiled .metal files --- */

/* FNV-1a 64 of `text` with every "\r\n" read as "\n", as 16 lowercase hex digits plus NUL in out[17].
 * tools/gen_metal_bindings.ts computes the same hash for the tables it writes. */
void mc_source_hash(const char *text, size_t length, char out[17]);
/* The registered file whose source hash is `hash`, or NULL. */
const mc_file_desc *mc_find_file(const char *hash);
/* Registered files, for error messages: index 0 ..< mc_file_count(). */
int32_t mc_file_count(void);
const mc_file_desc *mc_file_at(int32_t index);

/* --- Dispatch --- */

enum mc_status {
    MC_OK = 0,
    MC_ERR_BINDING = 1,   /* a buffer or threadgroup argument the kernel uses is missing or invalid */
    MC_ERR_LIMITS = 2,    /* threadgroup size, grid or threadgroup memory over the limits */
    MC_ERR_DEADLOCK = 3,  /* threads wait at barriers no other thread can reach */
    MC_ERR_DIVERGENT = 4, /* lanes of a SIMD group reached different SIMD-group functions */
    MC_ERR_CHECK = 5,     /* checking mode found a threadgroup-memory hazard */
    MC_ERR_KERNEL = 6,    /* a kernel-side usage error (mc_kernel_error) */
    MC_ERR_RESOURCES = 7, /* out of memory for stacks or threadgroup memory */
};

typedef struct mc_dispatch_desc {
    const mc_file_desc *file;
    int32_t kernel;                     /* index into file->kernels */
    const void *const *constant_values; /* [file->n_constants], entries NULL when undefined */
    void *buffers[MC_MAX_BUFFERS];      /* base + offset, NULL when unbound */
    uint64_t buffer_lengths[MC_MAX_BUFFERS]; /* bytes from the bound offset to the buffer's end */
    /* Bytes after the buffer's end that belong to its allocation (no other resource lives there):
     * checking mode reports any access to them as out of bounds. */
    uint64_t buffer_slack[MC_MAX_BUFFERS];
    uint32_t threadgroup_lengths[MC_MAX_THREADGROUP_ARGS];
    uint32_t grid[3];  /* threadgroups per grid, or threads per grid when nonuniform */
    uint32_t group[3]; /* threads per threadgroup */
    int32_t nonuniform; /* 1: dispatchThreads (partial threadgroups at the edges) */
    int32_t checking;   /* 1: run the instrumented kernel and check threadgroup memory */
    uint32_t max_total_threads; /* the pipeline's maxTotalThreadsPerThreadgroup */
} mc_dispatch_desc;

/* Runs every threadgroup of the dispatch and returns when all are done. Dispatches from all threads
 * are serialized by one process-wide lock (function constants live in per-file globals). On failure
 * returns an mc_status and writes a message naming the kernel into err[errlen]. */
int32_t mc_dispatch(const mc_dispatch_desc *d, char *err, size_t errlen);

/* --- Settings --- */

/* Checking mode default for new dispatches: METALCOMPAT_CHECK=1 in the environment, or set here. */
int32_t mc_checking_enabled(void);
void mc_set_checking_enabled(int32_t on);
/* Worker threads used for threadgroups (METALCOMPAT_THREADS, default: online CPUs, at most 16). */
int32_t mc_worker_count(void);

/* --- Counters (process-wide, cumulative) --- */

enum mc_counter {
    MC_COUNTER_COMMAND_BUFFERS = 0,
    MC_COUNTER_COMPUTE_ENCODERS = 1,
    MC_COUNTER_DISPATCHES = 2,
    MC_COUNTER_BUFFER_ALLOCATIONS = 3,
    MC_COUNTER_HEAP_ALLOCATIONS = 4,
    MC_COUNTER_ALLOCATED_BYTES = 5,
    MC_COUNTER_COUNT = 6,
};

void mc_counter_add(int32_t counter, uint64_t amount);
/* Copies all counters into out[MC_COUNTER_COUNT]. */
void mc_counters_snapshot(uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* MC_HOST_H */
