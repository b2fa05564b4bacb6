// Element-wise kernels over a 1-D grid that is not a multiple of the threadgroup size.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreads(n, 1, 1) with threadgroups of 64 threads (the last one partial): one thread
// per element, so no bounds check; threads past n must not exist.
kernel void vector_add(device const float* a [[buffer(0)]],
                       device const float* b [[buffer(1)]],
                       device float* out [[buffer(2)]],
                       uint gid [[thread_position_in_grid]]) {
    out[gid] = a[gid] + b[gid];
}

// Grid: dispatchThreadgroups(ceil(n / 32), 1, 1) x 32 threads; threads past n return early.
// Exercises MSL vector syntax on float4 / half4 data: constructors, swizzles, splats, math.
kernel void vector_math(device const float4* x [[buffer(0)]],
                        device float4* out [[buffer(1)]],
                        constant uint& n [[buffer(2)]],
                        uint gid [[thread_position_in_grid]]) {
    if (gid >= n) return;
    float4 v = x[gid];
    half4 h = half4(v);
    float2 lo = float2(h.xy);
    float4 w = float4(lo, v.z, 1.0f) * 0.5f;
    float4 s = select(float4(0.0f), float4(1.0f), v > float4(0.0f));
    float r = rsqrt(fabs(v.w) + 1.0f);
    out[gid] = fma(w.wzyx, float4(r), s) + clamp(v, float4(-1.0f), float4(1.0f)) + fast::exp(float4(v.x * 0.25f));
}
