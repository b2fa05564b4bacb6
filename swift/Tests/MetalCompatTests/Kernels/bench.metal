// Micro-benchmarks of MetalCompat's costs (PerformanceTests): barriers, SIMD-group functions, dispatch.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(groups, 1, 1) x T threads. `iters` threadgroup barriers per thread.
kernel void barrier_loop(device float* out [[buffer(0)]],
                         constant uint& iters [[buffer(1)]],
                         uint gid [[thread_position_in_grid]]) {
    float v = float(gid);
    for (uint i = 0; i < iters; i++) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
        v = v * 0.5f + 1.0f;
    }
    out[gid] = v;
}

// Grid: dispatchThreadgroups(groups, 1, 1) x T threads (T a multiple of 32). `iters` simd_sum per thread.
kernel void simd_loop(device float* out [[buffer(0)]],
                      constant uint& iters [[buffer(1)]],
                      uint gid [[thread_position_in_grid]]) {
    float v = float(gid & 31);
    for (uint i = 0; i < iters; i++) v = simd_sum(v) * (1.0f / 32.0f);
    out[gid] = v;
}

// Grid: dispatchThreads(n, 1, 1) x 256 threads. The dispatch and per-thread overhead alone.
kernel void empty_kernel(device float* out [[buffer(0)]],
                         uint gid [[thread_position_in_grid]]) {
    out[gid] = 1.0f;
}
