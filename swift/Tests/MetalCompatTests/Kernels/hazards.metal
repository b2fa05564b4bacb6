// Threadgroup-memory hazards that checking mode must find, and their correct twin.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(groups, 1, 1) x 64 threads; threadgroup memory: 64 floats.
// Each thread reads its neighbour's element after a barrier: correct.
kernel void neighbour_with_barrier(device const float* x [[buffer(0)]],
                                   device float* out [[buffer(1)]],
                                   threadgroup float* shared [[threadgroup(0)]],
                                   uint gid [[thread_position_in_grid]],
                                   uint tid [[thread_index_in_threadgroup]],
                                   uint threads [[threads_per_threadgroup]]) {
    shared[tid] = x[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[gid] = shared[(tid + 1) % threads];
}

// Same layout, but the barrier is missing: reading the neighbour's element races with its write.
kernel void neighbour_missing_barrier(device const float* x [[buffer(0)]],
                                      device float* out [[buffer(1)]],
                                      threadgroup float* shared [[threadgroup(0)]],
                                      uint gid [[thread_position_in_grid]],
                                      uint tid [[thread_index_in_threadgroup]],
                                      uint threads [[threads_per_threadgroup]]) {
    shared[tid] = x[gid];
    out[gid] = shared[(tid + 1) % threads];
}

// Same layout, barrier missing, reading the previous neighbour's element instead of the next one's.
kernel void previous_missing_barrier(device const float* x [[buffer(0)]],
                                     device float* out [[buffer(1)]],
                                     threadgroup float* shared [[threadgroup(0)]],
                                     uint gid [[thread_position_in_grid]],
                                     uint tid [[thread_index_in_threadgroup]],
                                     uint threads [[threads_per_threadgroup]]) {
    shared[tid] = x[gid];
    out[gid] = shared[(tid + threads - 1) % threads];
}

// Same layout; threads read an element nobody wrote (only even threads write).
kernel void uninitialized_read(device const float* x [[buffer(0)]],
                               device float* out [[buffer(1)]],
                               threadgroup float* shared [[threadgroup(0)]],
                               uint gid [[thread_position_in_grid]],
                               uint tid [[thread_index_in_threadgroup]]) {
    if (tid % 2 == 0) shared[tid] = x[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[gid] = shared[tid ^ 1];
}

// Same layout; the last thread writes one float past the threadgroup memory it was given.
kernel void out_of_bounds(device const float* x [[buffer(0)]],
                          device float* out [[buffer(1)]],
                          threadgroup float* shared [[threadgroup(0)]],
                          uint gid [[thread_position_in_grid]],
                          uint tid [[thread_index_in_threadgroup]]) {
    shared[tid + 1] = x[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[gid] = shared[tid];
}
