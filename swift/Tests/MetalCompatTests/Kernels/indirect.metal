// Small kernels chained through an indirect command buffer.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreads(n, 1, 1) x 32 threads. x[i] = x[i] + v.
kernel void add_scalar(device float* x [[buffer(0)]],
                       constant float& v [[buffer(1)]],
                       uint i [[thread_position_in_grid]]) {
    x[i] += v;
}

// Grid: dispatchThreadgroups(ceil(n / 32), 1, 1) x 32 threads; threads past n return. x[i] = x[i] * v.
kernel void mul_scalar(device float* x [[buffer(0)]],
                       constant float& v [[buffer(1)]],
                       constant uint& n [[buffer(2)]],
                       uint i [[thread_position_in_grid]]) {
    if (i < n) x[i] *= v;
}
