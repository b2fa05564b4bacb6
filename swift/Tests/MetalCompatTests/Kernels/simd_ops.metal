// SIMD-group functions, one result per thread and function, over threadgroups whose last SIMD
// group is partial.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(groups, 1, 1) x T threads (T not a multiple of 32, e.g. 48: SIMD group 1
// has 16 lanes). out has 10 floats per thread: sum, max, min, shuffle(lane ^ 1 via xor), shuffle_down(1),
// shuffle_up(2), broadcast(lane 3), shuffle(reverse lane), prefix_exclusive_sum, all(v > 0) as 0/1.
kernel void simd_ops(device const float* x [[buffer(0)]],
                     device float* out [[buffer(1)]],
                     uint gid [[thread_position_in_grid]],
                     ushort lane [[thread_index_in_simdgroup]]) {
    float v = x[gid];
    device float* o = out + gid * 10;
    o[0] = simd_sum(v);
    o[1] = simd_max(v);
    o[2] = simd_min(v);
    o[3] = simd_shuffle_xor(v, 1);
    o[4] = simd_shuffle_down(v, 1);
    o[5] = simd_shuffle_up(v, 2);
    o[6] = simd_broadcast(v, 3);
    o[7] = simd_shuffle(v, 31 - lane);
    o[8] = simd_prefix_exclusive_sum(v);
    o[9] = simd_all(v > 0.0f) ? 1.0f : 0.0f;
}

// Grid: dispatchThreadgroups(1, 1, 1) x 64 threads. Lanes of the same SIMD group call different
// SIMD-group functions (lanes < 16: simd_sum, others: simd_shuffle): MetalCompat reports it.
kernel void divergent_simd(device float* out [[buffer(0)]],
                           uint tid [[thread_index_in_threadgroup]],
                           uint lane [[thread_index_in_simdgroup]]) {
    float v = float(tid);
    out[tid] = lane < 16 ? simd_sum(v) : simd_shuffle(v, 0);
}

// Grid: dispatchThreadgroups(1, 1, 1) x 64 threads. Lane 0 of each SIMD group waits at a threadgroup
// barrier that the other lanes never reach (they wait in simd_sum for lane 0): a deadlock on any GPU.
kernel void divergent_barrier(device float* out [[buffer(0)]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]]) {
    if (lane == 0) threadgroup_barrier(mem_flags::mem_threadgroup);
    out[tid] = simd_sum(1.0f);
}
