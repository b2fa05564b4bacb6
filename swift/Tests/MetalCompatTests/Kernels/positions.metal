// Every position attribute, recorded per thread, for 2-D grids with partial threadgroups.
#include <metal_stdlib>
using namespace metal;

struct PositionRecord {
    uint tpig[3];
    uint tgpig[3];
    uint tptg[3];
    uint threads_per_tg[3];
    uint tgs_per_grid[3];
    uint threads_per_grid[3];
    uint index_in_tg;
    uint lane;
    uint simdgroup;
    uint simd_width;
    uint simdgroups;
    uint written;
};

// Grid: dispatchThreads(W, H, 1) with threadgroups of (8, 4, 1): partial threadgroups on both edges.
// Thread (x, y) writes record y * W + x. Mixed position types (uint3, ushort2, uint2, ushort) on purpose.
kernel void record_positions(device PositionRecord* out [[buffer(0)]],
                             constant uint& width [[buffer(1)]],
                             uint3 tpig [[thread_position_in_grid]],
                             uint2 tgpig [[threadgroup_position_in_grid]],
                             ushort2 tptg [[thread_position_in_threadgroup]],
                             uint3 tptg_size [[threads_per_threadgroup]],
                             uint3 tgs [[threadgroups_per_grid]],
                             uint2 grid [[threads_per_grid]],
                             ushort index [[thread_index_in_threadgroup]],
                             uint lane [[thread_index_in_simdgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]],
                             uint width_simd [[threads_per_simdgroup]],
                             uint sgs [[simdgroups_per_threadgroup]]) {
    device PositionRecord& r = out[tpig.y * width + tpig.x];
    for (int i = 0; i < 3; i++) {
        r.tpig[i] = tpig[i];
        r.threads_per_tg[i] = tptg_size[i];
        r.tgs_per_grid[i] = tgs[i];
    }
    r.tgpig[0] = tgpig.x; r.tgpig[1] = tgpig.y; r.tgpig[2] = 0;
    r.tptg[0] = tptg.x; r.tptg[1] = tptg.y; r.tptg[2] = 0;
    r.threads_per_grid[0] = grid.x; r.threads_per_grid[1] = grid.y; r.threads_per_grid[2] = 1;
    r.index_in_tg = index;
    r.lane = lane;
    r.simdgroup = sg;
    r.simd_width = width_simd;
    r.simdgroups = sgs;
    r.written += 1;
}
