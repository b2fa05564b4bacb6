// 8x8 SIMD-group matrix products.
#include <metal_stdlib>
using namespace metal;

// Grid: dispatchThreadgroups(1, 1, 1) x 32 threads (one SIMD group). d = a * b + c, all 8x8 row-major
// floats in device memory.
kernel void matmul8x8(device const float* a [[buffer(0)]],
                      device const float* b [[buffer(1)]],
                      device const float* c [[buffer(2)]],
                      device float* d [[buffer(3)]]) {
    simdgroup_float8x8 ma, mb, mc;
    simdgroup_load(ma, a, 8);
    simdgroup_load(mb, b, 8);
    simdgroup_load(mc, c, 8);
    simdgroup_multiply_accumulate(mc, ma, mb, mc);
    simdgroup_store(mc, d, 8);
}

// Grid: dispatchThreadgroups(N / 16, M / 16, 1) x 128 threads (4 SIMD groups, each one 8x8 tile of a
// 16x16 output tile). out (M x N) = a (M x K, row-major) * bt^T (bt is N x K, row-major), K a multiple
// of 8. Threadgroup memory: 2 * 16 * 8 halves for the staged a and bt tiles (half precision storage,
// float accumulation), loaded cooperatively with barriers; bt tiles are read with transposed loads.
kernel void matmul_tiled(device const half* a [[buffer(0)]],
                         device const half* bt [[buffer(1)]],
                         device float* out [[buffer(2)]],
                         constant uint3& mnk [[buffer(3)]],
                         threadgroup half* stage [[threadgroup(0)]],
                         uint2 tile [[threadgroup_position_in_grid]],
                         ushort tid [[thread_index_in_threadgroup]],
                         ushort sg [[simdgroup_index_in_threadgroup]]) {
    const uint K = mnk.z, N = mnk.y;
    threadgroup half* sa = stage;            // 16 rows x 8 k
    threadgroup half* sb = stage + 16 * 8;   // 16 cols x 8 k
    const uint row0 = tile.y * 16, col0 = tile.x * 16;
    const uint r = (sg / 2) * 8, c = (sg % 2) * 8;
    simdgroup_float8x8 acc = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    for (uint k0 = 0; k0 < K; k0 += 8) {
        // 128 threads stage 128 + 128 halves.
        sa[tid] = a[(row0 + tid / 8) * K + k0 + tid % 8];
        sb[tid] = bt[(col0 + tid / 8) * K + k0 + tid % 8];
        threadgroup_barrier(mem_flags::mem_threadgroup);
        simdgroup_half8x8 ma, mb;
        simdgroup_load(ma, sa, 8, ulong2(0, r));
        simdgroup_load(mb, sb, 8, ulong2(0, c), true);
        simdgroup_multiply_accumulate(acc, ma, mb, acc);
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    simdgroup_store(acc, out, N, ulong2(col0 + c, row0 + r));
}
