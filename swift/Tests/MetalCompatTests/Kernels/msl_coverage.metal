// Breadth of the MSL compatibility header: math, integer, relational, geometric, conversions, half and
// bfloat, SIMD/quad functions and atomics, each result checked against a Swift reference.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(1, 1, 1) x 1 thread. out[0 ..< 40]: see MslCoverageTests.scalarReference.
kernel void scalar_functions(device const float* in [[buffer(0)]],
                             device float* out [[buffer(1)]],
                             device atomic_int* ai [[buffer(2)]]) {
    float x = in[0], y = in[1];  // x in (0, 1), y in (1, 2)
    int i = int(in[2]);          // a negative integer
    uint u = uint(in[3]);        // a positive integer
    out[0] = exp(x); out[1] = fast::exp(x); out[2] = precise::log(y); out[3] = sqrt(y);
    out[4] = rsqrt(y); out[5] = pow(y, x); out[6] = tanh(x); out[7] = exp2(x);
    out[8] = max(x, y); out[9] = min(x, 0.5f); out[10] = clamp(y, 1.25f, 1.5f); out[11] = fma(x, y, 1.0f);
    out[12] = mix(x, y, 0.25f); out[13] = step(0.5f, x); out[14] = abs(-y); out[15] = select(x, y, x > y);
    out[16] = float(abs(i)); out[17] = float(max(i, -3)); out[18] = float(popcount(u)); out[19] = float(clz(u));
    out[20] = as_type<float>(as_type<uint>(x)); out[21] = float(half(x)); out[22] = float(bfloat(y));
    half h = half(x) * 2.0h + 1.0h; out[23] = float(h);
    float3 v = float3(x, y, 1.0f);
    out[24] = dot(v, v); out[25] = length(v); out[26] = normalize(v).z; out[27] = cross(v, float3(0.0f, 0.0f, 1.0f)).x;
    out[28] = any(isnan(float2(x, NAN))) ? 1.0f : 0.0f; out[29] = all(float4(1.0f) > float4(0.0f)) ? 1.0f : 0.0f;
    out[30] = isinf(INFINITY) ? 1.0f : 0.0f; out[31] = float(numeric_limits<half>::max());
    float4 w = float4(1.0f, 2.0f, 3.0f, 4.0f); w.xy = w.yx; out[32] = w.x * 10.0f + w.y;
    uint2 p = uint2(float2(2.7f, 5.2f)); out[33] = float(p.x + p.y);
    vec<float, 4> q = vec<float, 4>(0.5f); out[34] = q.w + q.x;
    atomic_store_explicit(ai, 10, memory_order_relaxed);
    atomic_fetch_max_explicit(ai, 42, memory_order_relaxed);
    atomic_fetch_min_explicit(ai, 40, memory_order_relaxed);
    int expected = 40;
    bool swapped = atomic_compare_exchange_weak_explicit(ai, &expected, 7, memory_order_relaxed, memory_order_relaxed);
    int old = atomic_exchange_explicit(ai, 5, memory_order_relaxed);
    out[35] = float(old) + (swapped ? 100.0f : 0.0f) + float(atomic_load_explicit(ai, memory_order_relaxed));
    out[36] = fract(y); out[37] = floor(-x); out[38] = float(int(round(y * 10.0f))); out[39] = saturate(y);
}

// Grid: dispatchThreadgroups(1, 1, 1) x 32 threads. out[lane * 8 ..< lane * 8 + 8]: see
// MslCoverageTests.simdReference.
kernel void simd_functions(device const float* in [[buffer(0)]],
                           device float* out [[buffer(1)]],
                           ushort lane [[thread_index_in_simdgroup]],
                           ushort quad_lane [[thread_index_in_quadgroup]]) {
    float v = in[lane];
    uint bits = 1u << (lane % 8);
    device float* o = out + lane * 8;
    o[0] = simd_prefix_inclusive_sum(v);
    o[1] = simd_shuffle_rotate_down(v, 5);
    o[2] = simd_broadcast_first(v);
    o[3] = float(ulong(simd_ballot(v > 0.0f)) & 0xffffu);
    o[4] = float(simd_or(bits));
    o[5] = quad_sum(v);
    o[6] = quad_shuffle(v, 3 - quad_lane);
    simdgroup_barrier(mem_flags::mem_none);
    o[7] = simd_is_first() ? 1.0f : 0.0f;
}
