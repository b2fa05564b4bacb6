// Function-constant specialization: a kernel whose bias buffer only exists when USE_BIAS is true and
// whose scale falls back to 1 when SCALE is not defined.
#include <metal_stdlib>
using namespace metal;

constant bool USE_BIAS [[function_constant(0)]];
constant float SCALE [[function_constant(1)]];
constant uint OFFSET [[function_constant(2)]];
constant bool HAS_SCALE = is_function_constant_defined(SCALE);
constant float EFFECTIVE_SCALE = HAS_SCALE ? SCALE : 1.0f;

// Grid: dispatchThreads(n, 1, 1) x 32 threads. out[i] = x[i] * scale + (USE_BIAS ? bias[i] : 0) + OFFSET
// (OFFSET is 0 when undefined).
kernel void scale_bias(device const float* x [[buffer(0)]],
                       device const float* bias [[buffer(1), function_constant(USE_BIAS)]],
                       device float* out [[buffer(2)]],
                       uint i [[thread_position_in_grid]]) {
    float v = x[i] * EFFECTIVE_SCALE;
    if (USE_BIAS) v += bias[i];
    if (is_function_constant_defined(OFFSET)) v += float(OFFSET);
    out[i] = v;
}
