// Matrix × vector for decode: in_proj (with the pre-mixer RMSNorm fused in), out_proj (with the gated
// group RMSNorm fused in, plus the residual add) and the lm_head (with the final RMSNorm fused in).
// Weights are f32, f16 or affine-quantized (quantized.h), chosen by function constants.
#include <metal_stdlib>
using namespace metal;
#include "quantized.h"
#include "simd_reduce.h"

constant int MV_ROWS [[function_constant(0)]];             // N: outputs, rows of W
constant int MV_COLS [[function_constant(1)]];             // K: inputs, columns of W
constant int MV_BATCH [[function_constant(2)]];            // activation rows in this dispatch, 1..8
constant bool MV_HALF [[function_constant(3)]];            // W stored as f16 (else f32)
constant bool MV_NORM [[function_constant(4)]];            // x̂ = x · scale · norm_w (a fused RMSNorm), else x̂ = x
constant bool MV_GATED [[function_constant(5)]];           // MV_NORM's scale per group, from sumsq (the gated norm)
constant bool MV_ACCUMULATE [[function_constant(6)]];      // y += W·x̂ (the residual add) instead of y = W·x̂
constant int MV_GROUPS [[function_constant(7)]];           // MV_GATED: groups of the gated norm
constant int MV_HEADS [[function_constant(8)]];            // MV_GATED: per-head sums of squares per row
constant float MV_EPS [[function_constant(9)]];            // RMSNorm epsilon
constant int MV_ROWS_PER_SIMDGROUP [[function_constant(10)]]; // 1..4
constant bool MV_QUANT [[function_constant(11)]];          // W is affine-quantized codes (quantized.h), else float
constant int MV_BITS [[function_constant(12)]];            // MV_QUANT: 4 or 8 bits per code
constant int MV_GROUP_SIZE [[function_constant(13)]];      // MV_QUANT: columns per scale and bias: 16, 32, 64, 128
constant bool MV_SCALES_HALF [[function_constant(14)]];    // MV_QUANT: scales and biases f16 (else f32)
// Parallelism (MetalTuning): indices from 20 on, so the weight formats' constants can grow below them.
constant int MV_SPLIT_K [[function_constant(20)]];         // simdgroups sharing each row, each a slice of K: 1, 2, 4
constant int MV_HEAD_PARTS [[function_constant(21)]];      // MV_GATED: sums of squares per head (the SSM block's split)

constant bool MV_RMS = MV_NORM && !MV_GATED;              // scale = rsqrt(mean(x²) + eps), per row
constant bool MV_GROUP = MV_NORM && MV_GATED;             // scale = rsqrt(group's sumsq / group + eps)
// One scale per activation row (the RMSNorm, or a gated norm of one group, whose group is all of K):
// computed from the x the main loop loads anyway and applied to the row's sum, so there is no pass over x
// and no barrier before the loop (one memory latency less per dispatch).
constant bool MV_ROW_SCALE = MV_RMS || (MV_GROUP && MV_GROUPS == 1);
// Several groups: their scales come from the SSM block's sums of squares, before the loop.
constant bool MV_GROUP_SCALES = MV_GROUP && MV_GROUPS > 1;
// With K split, the slices meet at a barrier anyway; there the threadgroup's simdgroups can share the sums of
// squares instead of each block of rows summing every batch row's x² over its slice in its main loop (the
// batched matvecs are bound by instruction issue on the proxy). Simdgroup s sums batch rows s, s + 4, … and
// writes them to threadgroup memory; every batch size takes the same path, so batched rows stay bit-identical
// to single rows:
// MV_SHARED_SQ (the RMSNorms, K split in 2, so two blocks of rows per threadgroup): x² over all of K after the
// main loop, when x is in L1: half the squares per simdgroup and none of their shuffles.
constant bool MV_SHARED_SQ = MV_RMS && !MV_QUANT && MV_SPLIT_K == 2 && MV_COLS % 4 == 0;
// MV_PARTIAL_SQ (the gated norm of one group): the SSM block's per-block sums of squares of this very x,
// loaded before the main loop so that their latency overlaps it, added after it: no squares at all.
constant bool MV_PARTIAL_SQ = MV_GROUP && MV_GROUPS == 1 && MV_SPLIT_K > 1;
constant bool MV_SQ_AT_END = MV_SHARED_SQ || MV_PARTIAL_SQ;

#define MV_SIMDGROUPS 4
#define MV_MAX_BATCH 8
#define MV_MAX_ROWS 4
#define MV_CHUNK 8     // float4s of weights a lane holds in registers: 8 / R steps of K at a time
#define MV_X_AHEAD 12  // float4s of x and norm_w a lane may load ahead with them

// y[b, r] (= or +=) Σ_k W[r, k] · x̂[b, k] for b < MV_BATCH, where x̂ is
//   !MV_NORM: x;
//   MV_RMS:   x · rsqrt(mean(x²) + eps) · norm_w                  (pre-mixer and final RMSNorm);
//   MV_GROUP: x · rsqrt(Σ_group x² / group + eps) · norm_w        (the gated RMSNorm; with several groups
//             the sums of squares are those the SSM block kernel left per block of a head's rows, so no
//             extra pass over x is needed; with one group, as MV_RMS).
// norm_w and sumsq exist only when MV_NORM and MV_GATED switch them on (function-constant arguments).
// Every weight row is read once for all batch rows; weights are widened to f32 in registers.
// Quantized weights (MV_QUANT) are not dequantized element by element: a lane's step covers 64 / bits
// columns of one quantization group (G ≥ 16), so it adds scale · Σ (q − mid)·x̂ + bias' · Σ x̂ (Σ x̂ shared
// by the rows; mid and bias' below).
// Parallelism: R = MV_ROWS_PER_SIMDGROUP rows per simdgroup, and MV_SPLIT_K simdgroups per row block, each
// summing one slice of K (every MV_SPLIT_K-th 32-lane step, so each simdgroup's loads stay contiguous); the
// slices' sums meet in threadgroup memory and slice 0 adds them in slice order: exact and deterministic.
// Fewer rows per threadgroup and more slices give more threadgroups and shorter chains per simdgroup
// (a small N such as out_proj's d_model), more rows per simdgroup fewer, longer ones (a large N).
// Grid: dispatchThreadgroups(ceil(N / (4 / MV_SPLIT_K · R)), 1, 1).
// Threadgroup: 128 threads = 4 simdgroups; simdgroup s owns rows ((4 / MV_SPLIT_K)·tg + s / MV_SPLIT_K)·R
// … +R-1 and slice s % MV_SPLIT_K of K; its 32 lanes stride over the slice in float4 steps (scalar steps
// when K or the group size is not a multiple of 4), or, with MV_QUANT, in steps of 8 bytes of codes per row
// (one uint2 per lane: 8 columns at 8 bits, 16 at 4).
// Threadgroup memory: MV_BATCH · max(MV_GROUPS, 1) floats of scales, then (MV_SPLIT_K > 1) 4 · R ·
// MV_BATCH floats of the slices' sums and 4 · MV_BATCH of their sums of squares.
[[max_total_threads_per_threadgroup(128)]]
kernel void matvec(device const uchar *W [[buffer(0)]],        // (N, K) f16 or f32; MV_QUANT: (N, K·bits/8) codes
                   device const float *x [[buffer(1)]],        // (batch, K)
                   device float *y [[buffer(2)]],              // (batch, N)
                   device const float *norm_w [[buffer(3), function_constant(MV_NORM)]],  // (K)
                   device const float *sumsq [[buffer(4), function_constant(MV_GATED)]],  // (batch, heads, parts)
                   device const uchar *scales [[buffer(5), function_constant(MV_QUANT)]], // (N, K / G) f16 or f32
                   device const uchar *biases [[buffer(6), function_constant(MV_QUANT)]], // (N, K / G)
                   threadgroup float *scale [[threadgroup(0)]],
                   uint tg [[threadgroup_position_in_grid]],
                   uint sg [[simdgroup_index_in_threadgroup]],
                   uint lane [[thread_index_in_simdgroup]]) {
    const int K = MV_COLS, N = MV_ROWS, NB = MV_BATCH, R = MV_ROWS_PER_SIMDGROUP, SK = MV_SPLIT_K;
    const int group = MV_GROUP ? K / MV_GROUPS : K;

    if (MV_GROUP_SCALES) {
        // A group's sum of squares: its heads' MV_HEAD_PARTS partial sums each, by one simdgroup per
        // (row, group), so a large split adds no serial chain here.
        const int per_group = MV_HEADS / MV_GROUPS * MV_HEAD_PARTS;
        for (int i = int(sg); i < NB * MV_GROUPS; i += MV_SIMDGROUPS) {
            const int b = i / MV_GROUPS, g = i % MV_GROUPS;
            device const float *parts = sumsq + b * MV_HEADS * MV_HEAD_PARTS + g * per_group;
            float ss = 0.0f;
            for (int j = int(lane); j < per_group; j += 32) ss += parts[j];
            ss = simd_sum(ss);
            if (lane == 0) scale[i] = rsqrt(ss / float(group) + MV_EPS);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    const int row0 = (int(tg) * (MV_SIMDGROUPS / SK) + int(sg) / SK) * R, slice = int(sg) % SK;
    const int k_first = 32 * slice + int(lane), k_step = 32 * SK;  // this simdgroup's steps of K
    // The sums leave the simdgroup transposed (simd_sums_transposed): value r · NB + b of NS (R · NB padded
    // to a power of two) lands in lanes lane >> (5 − log2 NS) = r · NB + b, and the first of those lanes of
    // slice 0 writes output (row0 + r, b). With MV_ACCUMULATE its old value is read now, so that the lane
    // waits for it together with its weights instead of after its sum (only this lane writes it).
    const int NS = R * NB <= 1 ? 1 : R * NB <= 2 ? 2 : R * NB <= 4 ? 4 : R * NB <= 8 ? 8 : R * NB <= 16 ? 16 : 32;
    const int NS_SHIFT = NS == 1 ? 5 : NS == 2 ? 4 : NS == 4 ? 3 : NS == 8 ? 2 : NS == 16 ? 1 : 0;
    const int NQ = NB <= 1 ? 1 : NB <= 2 ? 2 : NB <= 4 ? 4 : 8;  // the sums of squares, likewise
    const int NQ_SHIFT = NQ == 1 ? 5 : NQ == 2 ? 4 : NQ == 4 ? 3 : 2;
    const int mine = int(lane) >> NS_SHIFT, out_r = mine / NB, out_b = mine % NB, out_row = row0 + out_r;
    const bool first = (int(lane) & ((1 << NS_SHIFT) - 1)) == 0;
    const bool writes = slice == 0 && first && mine < R * NB && out_row < N;
    const float prior = MV_ACCUMULATE && writes ? y[out_b * N + out_row] : 0.0f;
    // MV_PARTIAL_SQ: the first two of this lane's partial sums for each of its batch rows (clamped, not
    // conditional, so that the loads are issued here).
    const int own = NB > MV_SIMDGROUPS ? 2 : 1, parts = MV_HEADS * MV_HEAD_PARTS;  // batch rows per simdgroup
    float part[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
    if (MV_PARTIAL_SQ) {
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < 2; j++) {
                const int b = min(int(sg) + MV_SIMDGROUPS * i, NB - 1), at = min(int(lane) + 32 * j, parts - 1);
                part[i][j] = sumsq[b * parts + at];
            }
        }
    }
    float acc[MV_MAX_ROWS][MV_MAX_BATCH], ssq[MV_MAX_BATCH];
    for (int b = 0; b < MV_MAX_BATCH; b++) {
        ssq[b] = 0.0f;
        for (int r = 0; r < MV_MAX_ROWS; r++) acc[r][b] = 0.0f;
    }

    if (MV_QUANT) {
        const int E = 64 / MV_BITS, steps = K / E, groups = K / MV_GROUP_SIZE;  // E: columns per step
        // w = scale·(q − mid) + (bias + scale·mid): the bias term moves to the group's middle code, so
        // scale·Σ(q − mid)·x̂ and bias'·Σx̂ stay small where w is centred on zero (exactly 0 for GGUF's
        // Q8_0 and Q4_0, whose bias is −mid·scale) instead of cancelling in float32.
        const float mid = float(1 << (MV_BITS - 1));
        for (int s = k_first; s < steps; s += k_step) {
            const int k0 = s * E;
            uint2 q[MV_MAX_ROWS];
            float qs[MV_MAX_ROWS], qb[MV_MAX_ROWS];
            for (int r = 0; r < R; r++) {
                const int row = row0 + r;
                if (row >= N) break;
                q[r] = ((device const uint2 *)W)[ulong(row) * ulong(steps) + ulong(s)];
                const ulong g = ulong(row) * ulong(groups) + ulong(k0 / MV_GROUP_SIZE);
                qs[r] = affine_param(scales, g, MV_SCALES_HALF);
                qb[r] = fma(qs[r], mid, affine_param(biases, g, MV_SCALES_HALF));
            }
            for (int b = 0; b < NB; b++) {
                float4 xv[4];
                float sx = 0.0f;
                for (int i = 0; i < E / 4; i++) {
                    float4 v = ((device const float4 *)(x + b * K + k0))[i];
                    if (MV_ROW_SCALE && !MV_SQ_AT_END) ssq[b] += dot(v, v);
                    if (MV_NORM) v *= ((device const float4 *)(norm_w + k0))[i];
                    if (MV_GROUP_SCALES) {
                        for (int e = 0; e < 4; e++) v[e] *= scale[b * MV_GROUPS + (k0 + 4 * i + e) / group];
                    }
                    xv[i] = v;
                    sx += v.x + v.y + v.z + v.w;
                }
                for (int r = 0; r < R; r++) {
                    if (row0 + r >= N) break;
                    float d = 0.0f;
                    for (int i = 0; i < E / 4; i++) d += dot(affine_codes4(q[r], i, MV_BITS) - mid, xv[i]);
                    acc[r][b] += qs[r] * d + qb[r] * sx;
                }
            }
        }
    } else if (K % 4 == 0 && group % 4 == 0) {
        // A lane's steps of K are a compile-time count, taken MV_CHUNK / R at a time: all of a chunk's
        // weight loads (and, when they fit, its x and norm_w loads) are issued before its first product, so
        // a lane waits about one memory latency per chunk instead of one per step. The loads are clamped
        // into the matrix, not skipped: a conditional load stays where the condition is, after the
        // products before it (nvcc did so on the GPU proxy). Rows past N and steps past K are never added.
        // norm_w multiplies the weights, R products per element instead of NB (one per batch row).
        // The chunk is not halved for many sums (4 rows × 8 batch rows keep 32, plus 2 steps of 4 rows of
        // weights): one step per chunk would put a memory latency on every step of those layouts, which the
        // proxy measured slower (lm_head 4 × 1 at batch 8: 40.8 → 37.0 µs, given the registers).
        const int K4 = K / 4, steps = (K4 + k_step - 1) / k_step;
        const int chunk = max(1, MV_CHUNK / R);
        const bool ragged = K4 % k_step != 0;  // some lanes have one step fewer
        const int span = min(chunk, steps), xw = NB + 1;  // per step: norm_w, then x of each batch row
        const bool x_ahead = span * xw <= MV_X_AHEAD;
        for (int c = 0; c < steps; c += chunk) {
            // (step of the chunk, row): f16 weights stay f16 until used; (step, norm_w | x of each batch row)
            half4 wh[MV_CHUNK];
            float4 wf[MV_CHUNK], xa[MV_X_AHEAD];
            // Unrolled so that wh, wf and xa stay in registers (indexed by a loop counter, they would not).
#pragma unroll
            for (int j = 0; j < chunk; j++) {
                const int k4 = min(k_first + (c + j) * k_step, K4 - 1);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const ulong at = ulong(min(row0 + r, N - 1)) * ulong(K4) + ulong(k4);
                    if (MV_HALF) wh[j * R + r] = ((device const half4 *)W)[at];
                    else wf[j * R + r] = ((device const float4 *)W)[at];
                }
                if (x_ahead && j < span) {
                    xa[j * xw] = MV_NORM ? ((device const float4 *)norm_w)[k4] : float4(1.0f);
#pragma unroll
                    for (int b = 0; b < NB; b++) xa[j * xw + 1 + b] = ((device const float4 *)(x + b * K))[k4];
                }
            }
#pragma unroll
            for (int j = 0; j < chunk; j++) {
                const int k4 = k_first + (c + j) * k_step;
                if (c + j >= steps || (ragged && k4 >= K4)) break;
                const float4 nw = x_ahead ? xa[j * xw] : MV_NORM ? ((device const float4 *)norm_w)[k4] : float4(1.0f);
                float4 wn[MV_MAX_ROWS];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const float4 wv = MV_HALF ? float4(wh[j * R + r]) : wf[j * R + r];
                    wn[r] = MV_NORM ? wv * nw : wv;
                }
                // Batch row by batch row, so that only one row of x is live at a time.
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    float4 xb = x_ahead ? xa[j * xw + 1 + b] : ((device const float4 *)(x + b * K))[k4];
                    if (MV_ROW_SCALE && !MV_SQ_AT_END) ssq[b] += dot(xb, xb);
                    if (MV_GROUP_SCALES) xb *= scale[b * MV_GROUPS + (4 * k4) / group];
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        float a = acc[r][b];
                        a = fma(wn[r].x, xb.x, a);
                        a = fma(wn[r].y, xb.y, a);
                        a = fma(wn[r].z, xb.z, a);
                        acc[r][b] = fma(wn[r].w, xb.w, a);
                    }
                }
            }
        }
    } else {
        for (int k = k_first; k < K; k += k_step) {
            const float nw = MV_NORM ? norm_w[k] : 1.0f;
            float xv[MV_MAX_BATCH];
            for (int b = 0; b < NB; b++) {
                const float xb = x[b * K + k];
                if (MV_ROW_SCALE && !MV_SQ_AT_END) ssq[b] += xb * xb;
                xv[b] = xb * nw;
                if (MV_GROUP_SCALES) xv[b] *= scale[b * MV_GROUPS + k / group];
            }
            for (int r = 0; r < R; r++) {
                const int row = row0 + r;
                if (row >= N) break;
                const ulong at = ulong(row) * ulong(K) + ulong(k);
                const float w = MV_HALF ? float(((device const half *)W)[at]) : ((device const float *)W)[at];
                for (int b = 0; b < NB; b++) acc[r][b] += w * xv[b];
            }
        }
    }

    threadgroup float *sums = scale + NB * max(MV_GROUPS, 1);     // (simdgroup, R, NB)
    threadgroup float *squares = sums + MV_SIMDGROUPS * R * NB;   // (simdgroup, NB); MV_SHARED_SQ: (NB)
    if (MV_SQ_AT_END) {
        const int K4 = K / 4;
        float sq_own[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int b = int(sg) + MV_SIMDGROUPS * i;
            float a = 0.0f;
            if (i < own && b < NB) {
                if (MV_PARTIAL_SQ) {
                    for (int j = 0; j < 2; j++) a += int(lane) + 32 * j < parts ? part[i][j] : 0.0f;
                    for (int j = int(lane) + 64; j < parts; j += 32) a += sumsq[b * parts + j];
                } else {
                    // A compile-time count of steps, loads clamped not conditional: all issued at once.
                    for (int j = 0; j < (K4 + 31) / 32; j++) {
                        const int k4 = int(lane) + 32 * j;
                        const float4 v = ((device const float4 *)(x + b * K))[min(k4, K4 - 1)];
                        a += k4 < K4 ? dot(v, v) : 0.0f;
                    }
                }
            }
            sq_own[i] = a;
        }
        const float q = simd_sums_transposed(sq_own, own, lane);  // batch row sg + 4 · (lane >> (5 − log2 own))
        const int qb = int(sg) + MV_SIMDGROUPS * (int(lane) >> (own == 1 ? 5 : 4));
        if ((int(lane) & (own == 1 ? 31 : 15)) == 0 && qb < NB) squares[qb] = q;
    }

    float sums_t[32], squares_t[8];
#pragma unroll
    for (int i = 0; i < NS; i++) sums_t[i] = i < R * NB ? acc[i / NB][i % NB] : 0.0f;
#pragma unroll
    for (int i = 0; i < NQ; i++) squares_t[i] = i < NB ? ssq[i] : 0.0f;
    const float s_mine = simd_sums_transposed(sums_t, NS, lane);
    // Σx² of batch row out_b: reduced the same way, then fetched from a lane that holds it.
    const float q_mine = MV_ROW_SCALE && !MV_SQ_AT_END ? simd_sums_transposed(squares_t, NQ, lane) : 0.0f;
    const float q_out = MV_ROW_SCALE && SK == 1 ? simd_shuffle(q_mine, ushort(min(out_b, NB - 1) << NQ_SHIFT)) : 0.0f;
    if (SK == 1) {
        // This simdgroup summed all of K: its rows and their scales are complete.
        float s = s_mine;
        if (MV_ROW_SCALE) s *= rsqrt(q_out / float(K) + MV_EPS);
        if (writes) y[out_b * N + out_row] = MV_ACCUMULATE ? prior + s : s;
    } else {
        // Each slice's sums (and sums of squares) into threadgroup memory; slice 0 adds them in slice order.
        if (first && mine < R * NB) sums[(int(sg) * R + out_r) * NB + out_b] = s_mine;
        const int qb = int(lane) >> NQ_SHIFT;
        if (MV_ROW_SCALE && !MV_SQ_AT_END && (int(lane) & ((1 << NQ_SHIFT) - 1)) == 0 && qb < NB) {
            squares[int(sg) * NB + qb] = q_mine;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (writes) {
            float s = 0.0f, ss = 0.0f;
            for (int j = 0; j < SK; j++) {
                s += sums[((int(sg) + j) * R + out_r) * NB + out_b];
                if (MV_ROW_SCALE && !MV_SQ_AT_END) ss += squares[(int(sg) + j) * NB + out_b];
            }
            if (MV_SQ_AT_END) ss = squares[out_b];
            if (MV_ROW_SCALE) s *= rsqrt(ss / float(K) + MV_EPS);
            y[out_b * N + out_row] = MV_ACCUMULATE ? prior + s : s;
        }
    }
}
