// Threadgroup reductions: a barrier-synchronized tree in threadgroup memory, and a two-level
// simd_sum + threadgroup-memory variant.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(groups, 1, 1) x T threads, T a power of two (threadgroup memory: T floats).
// Threadgroup g sums x[g * T ..< g * T + T] (elements past n count as 0) into sums[g].
kernel void tree_sum(device const float* x [[buffer(0)]],
                     device float* sums [[buffer(1)]],
                     constant uint& n [[buffer(2)]],
                     threadgroup float* partial [[threadgroup(0)]],
                     uint gid [[thread_position_in_grid]],
                     uint tid [[thread_index_in_threadgroup]],
                     uint group [[threadgroup_position_in_grid]],
                     uint threads [[threads_per_threadgroup]]) {
    partial[tid] = gid < n ? x[gid] : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint stride = threads / 2; stride > 0; stride /= 2) {
        if (tid < stride) partial[tid] += partial[tid + stride];
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) sums[group] = partial[0];
}

// Grid: dispatchThreads(n, 1, 1) x T threads (T a multiple of 32; the last threadgroup partial, so its
// last SIMD group may be partial too). Threadgroup memory: T / 32 floats. Each SIMD group sums its
// lanes with simd_sum, SIMD group 0 sums the partial sums; sums[g] gets threadgroup g's total.
kernel void simd_tree_sum(device const float* x [[buffer(0)]],
                          device float* sums [[buffer(1)]],
                          threadgroup float* partial [[threadgroup(0)]],
                          uint gid [[thread_position_in_grid]],
                          uint group [[threadgroup_position_in_grid]],
                          uint lane [[thread_index_in_simdgroup]],
                          uint sg [[simdgroup_index_in_threadgroup]],
                          uint sgs [[simdgroups_per_threadgroup]]) {
    float s = simd_sum(x[gid]);
    if (lane == 0) partial[sg] = s;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg == 0) {
        float t = lane < sgs ? partial[lane] : 0.0f;
        t = simd_sum(t);
        if (lane == 0) sums[group] = t;
    }
}
