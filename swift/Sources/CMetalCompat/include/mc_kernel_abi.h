/*
 * mc_kernel_abi.h: what compiled kernels and the generated binding tables see of the MetalCompat runtime.
 *
 * A kernel from a metal/ .metal file is compiled as C++ (see ../../MetalKernelsCPU). The generator
 * (tools/gen_metal_bindings.ts) writes, per .metal file, a table of its kernels (mc_file_desc) whose
 * entries are trampolines: each takes the per-thread mc_invocation below, unpacks buffer pointers,
 * threadgroup pointers and position values, and calls the kernel. The runtime calls at the bottom
 * (barriers, SIMD-group exchange) are what the MSL compatibility header lowers its functions to.
 */
#ifndef MC_KERNEL_ABI_H
#define MC_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Metal's argument tables: [[buffer(0..30)]] and [[threadgroup(0..30)]]. */
#define MC_MAX_BUFFERS 31
#define MC_MAX_THREADGROUP_ARGS 31
/* Threads in one SIMD group, as on Apple GPUs (threadExecutionWidth). */
#define MC_SIMD_WIDTH 32
/* Largest value one lane can contribute to a SIMD-group collective (a float4, or a matrix exchange). */
#define MC_SIMD_SLOT_BYTES 16

/* Per-thread values a trampoline passes to its kernel. Positions are uint32; the trampoline narrows
 * them to the type the kernel declares (uint, ushort2, uint3, ...). */
typedef struct mc_invocation {
    uint32_t thread_position_in_grid[3];
    uint32_t threadgroup_position_in_grid[3];
    uint32_t thread_position_in_threadgroup[3];
    uint32_t threads_per_threadgroup[3];          /* actual size: smaller in partial threadgroups */
    uint32_t dispatch_threads_per_threadgroup[3]; /* size given at dispatch */
    uint32_t threadgroups_per_grid[3];
    uint32_t threads_per_grid[3];
    uint32_t grid_origin[3];                      /* always 0 for compute dispatches */
    uint32_t thread_index_in_threadgroup;
    uint32_t thread_index_in_simdgroup;
    uint32_t simdgroup_index_in_threadgroup;
    uint32_t threads_per_simdgroup;
    uint32_t simdgroups_per_threadgroup;
    void *const *buffers;          /* [MC_MAX_BUFFERS]: bound buffer + offset, NULL when unbound */
    void *const *threadgroup_args; /* [MC_MAX_THREADGROUP_ARGS]: this threadgroup's memory */
} mc_invocation;

typedef void (*mc_kernel_entry)(const mc_invocation *inv);

/* One kernel of a .metal file. */
typedef struct mc_kernel_desc {
    const char *name;
    mc_kernel_entry entry;         /* compiled normally */
    mc_kernel_entry entry_checked; /* compiled with load/store hooks (checking mode) */
    uint64_t buffer_mask;          /* bit n: the kernel declares [[buffer(n)]] */
    uint64_t threadgroup_mask;     /* bit n: the kernel declares [[threadgroup(n)]] */
    uint32_t max_total_threads;    /* [[max_total_threads_per_threadgroup(N)]], 0 when absent */
} mc_kernel_desc;

/* One [[function_constant(index)]] of a .metal file. */
typedef struct mc_constant_desc {
    const char *name;
    int32_t index;
    int32_t data_type; /* MTLDataType raw value of the declared type */
    int32_t size;      /* bytes */
} mc_constant_desc;

/* One compiled .metal file. */
typedef struct mc_file_desc {
    const char *name;        /* e.g. "ssm_scan.metal" */
    const char *source_hash; /* mc_source_hash of the source text, 16 hex digits */
    const mc_kernel_desc *kernels;
    int32_t n_kernels;
    const mc_constant_desc *constants;
    int32_t n_constants;
    /* Stores the file's function-constant values (values[i] for constants[i], NULL = not defined).
     * The runtime calls it under its dispatch lock, right before running one of the file's kernels. */
    void (*set_constants)(const void *const *values);
    /* Buffers kernel `k` needs under the current constant values: buffer_mask minus arguments whose
     * [[function_constant(...)]] condition is false. Called after set_constants. */
    uint64_t (*required_buffers)(int32_t k);
} mc_file_desc;

/* Called by generated code at load time (C++ static initialization). */
void mc_register_file(const mc_file_desc *file);

/* --- Runtime calls made from kernel code (MSL compatibility header). Valid only on a kernel fiber. --- */

/* threadgroup_barrier(flags): every live thread of the threadgroup must arrive before any passes. */
void mc_threadgroup_barrier(uint32_t mem_flags);

/* SIMD-group operation codes: lanes of one SIMD group must reach the same kind of operation. */
enum mc_simd_op {
    MC_SIMD_BARRIER = 1,
    MC_SIMD_REDUCE = 2,  /* simd_sum/product/min/max/and/or/xor, simd_all/any/ballot */
    MC_SIMD_SCAN = 3,    /* simd_prefix_* */
    MC_SIMD_SHUFFLE = 4, /* simd_shuffle*, simd_broadcast*, quad_* */
    MC_SIMD_MATRIX = 5,  /* simdgroup_multiply(_accumulate) */
};

/*
 * The one SIMD-group collective: stores `size` bytes of this lane's `value` in its slot, waits until
 * every live lane of the SIMD group has arrived, and returns the slot array (lane l's value at
 * result + l * MC_SIMD_SLOT_BYTES) with the mask of lanes that took part in *active. The slots stay
 * valid until this lane's next collective. `op` | (size << 8) must match across lanes.
 */
const void *mc_simd_exchange(const void *value, uint32_t size, uint32_t op, uint32_t *active);

/* The calling thread's index in its SIMD group (thread_index_in_simdgroup). */
uint32_t mc_simd_lane(void);

/* Reports a kernel-side usage error (for example a SIMD-group matrix op in a partial SIMD group).
 * The dispatch fails with this message; the kernel keeps running to the end of its threadgroup. */
void mc_kernel_error(const char *message);

#ifdef __cplusplus
}
#endif
#endif /* MC_KERNEL_ABI_H */
