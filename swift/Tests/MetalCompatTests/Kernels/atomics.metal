// Device and threadgroup atomics.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreads(n, 1, 1) x 64 threads; threadgroup memory: 16 bytes (one atomic_uint used).
// counters[0] counts all threads (device atomic), counters[1] counts threadgroups (one add per group of
// the threadgroup's thread count, accumulated in a threadgroup atomic); total[0] sums x (atomic_float).
kernel void count_threads(device atomic_uint* counters [[buffer(0)]],
                          device atomic_float* total [[buffer(1)]],
                          device const float* x [[buffer(2)]],
                          threadgroup atomic_uint* local_count [[threadgroup(0)]],
                          uint gid [[thread_position_in_grid]],
                          uint tid [[thread_index_in_threadgroup]]) {
    if (tid == 0) atomic_store_explicit(local_count, 0u, memory_order_relaxed);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    atomic_fetch_add_explicit(&counters[0], 1u, memory_order_relaxed);
    atomic_fetch_add_explicit(local_count, 1u, memory_order_relaxed);
    atomic_fetch_add_explicit(total, x[gid], memory_order_relaxed);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) atomic_fetch_add_explicit(&counters[1], atomic_load_explicit(local_count, memory_order_relaxed), memory_order_relaxed);
}
