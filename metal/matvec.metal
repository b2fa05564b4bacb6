// Matrix × vector for decode: in_proj (with the pre-mixer RMSNorm fused in), out_proj (with the gated
// group RMSNorm fused in, plus the residual add) and the lm_head (with the final RMSNorm fused in).
// Weights are f32, f16 or affine-quantized (quantized.h), chosen by function constants.
#include <metal_stdlib>
using namespace metal;
#include "quantized.h"

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

constant bool MV_RMS = MV_NORM && !MV_GATED;              // scale = rsqrt(mean(x²) + eps), per row
constant bool MV_GROUP = MV_NORM && MV_GATED;             // scale = rsqrt(group's sumsq / group + eps)

#define MV_SIMDGROUPS 4
#define MV_MAX_BATCH 8
#define MV_MAX_ROWS 4

// y[b, r] (= or +=) Σ_k W[r, k] · x̂[b, k] for b < MV_BATCH, where x̂ is
//   !MV_NORM: x;
//   MV_RMS:   x · rsqrt(mean(x²) + eps) · norm_w                  (pre-mixer and final RMSNorm);
//   MV_GROUP: x · rsqrt(Σ_heads-of-group sumsq / group + eps) · norm_w  (the gated RMSNorm, whose
//             sums of squares the SSM block kernel left per head, so no extra pass over x is needed).
// norm_w and sumsq exist only when MV_NORM and MV_GATED switch them on (function-constant arguments).
// Every weight row is read once for all batch rows; weights are widened to f32 in registers.
// Quantized weights (MV_QUANT) are not dequantized element by element: a lane's step covers 64 / bits
// columns of one quantization group (G ≥ 16), so it adds scale · Σ (q − mid)·x̂ + bias' · Σ x̂ (Σ x̂ shared
// by the rows; mid and bias' below).
// Grid: dispatchThreadgroups(ceil(N / (4 · MV_ROWS_PER_SIMDGROUP)), 1, 1).
// Threadgroup: 128 threads = 4 simdgroups; simdgroup s owns rows (4·tg + s)·R … +R-1 and its 32 lanes
// stride over K in float4 steps (scalar steps when K or the group size is not a multiple of 4), or, with
// MV_QUANT, in steps of 8 bytes of codes per row (one uint2 per lane: 8 columns at 8 bits, 16 at 4).
// Threadgroup memory: MV_BATCH · max(MV_GROUPS, 1) floats of scales.
kernel void matvec(device const uchar *W [[buffer(0)]],        // (N, K) f16 or f32; MV_QUANT: (N, K·bits/8) codes
                   device const float *x [[buffer(1)]],        // (batch, K)
                   device float *y [[buffer(2)]],              // (batch, N)
                   device const float *norm_w [[buffer(3), function_constant(MV_NORM)]],  // (K)
                   device const float *sumsq [[buffer(4), function_constant(MV_GATED)]],  // (batch, heads)
                   device const uchar *scales [[buffer(5), function_constant(MV_QUANT)]], // (N, K / G) f16 or f32
                   device const uchar *biases [[buffer(6), function_constant(MV_QUANT)]], // (N, K / G)
                   threadgroup float *scale [[threadgroup(0)]],
                   uint tg [[threadgroup_position_in_grid]],
                   uint tid [[thread_index_in_threadgroup]],
                   uint sg [[simdgroup_index_in_threadgroup]],
                   uint lane [[thread_index_in_simdgroup]]) {
    const int K = MV_COLS, N = MV_ROWS, NB = MV_BATCH, R = MV_ROWS_PER_SIMDGROUP;
    const int group = MV_GROUP ? K / MV_GROUPS : K;

    if (MV_RMS) {
        for (int b = int(sg); b < NB; b += MV_SIMDGROUPS) {
            float ss = 0.0f;
            for (int k = int(lane); k < K; k += 32) ss += x[b * K + k] * x[b * K + k];
            ss = simd_sum(ss);
            if (lane == 0) scale[b] = rsqrt(ss / float(K) + MV_EPS);
        }
    } else if (MV_GROUP) {
        const int per_group = MV_HEADS / MV_GROUPS;
        for (int i = int(tid); i < NB * MV_GROUPS; i += 32 * MV_SIMDGROUPS) {
            const int b = i / MV_GROUPS, g = i % MV_GROUPS;
            float ss = 0.0f;
            for (int h = 0; h < per_group; h++) ss += sumsq[b * MV_HEADS + g * per_group + h];
            scale[i] = rsqrt(ss / float(group) + MV_EPS);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const int row0 = (int(tg) * MV_SIMDGROUPS + int(sg)) * R;
    float acc[MV_MAX_ROWS][MV_MAX_BATCH];
    for (int r = 0; r < MV_MAX_ROWS; r++)
        for (int b = 0; b < MV_MAX_BATCH; b++) acc[r][b] = 0.0f;

    if (MV_QUANT) {
        const int E = 64 / MV_BITS, steps = K / E, groups = K / MV_GROUP_SIZE;  // E: columns per step
        // w = scale·(q − mid) + (bias + scale·mid): the bias term moves to the group's middle code, so
        // scale·Σ(q − mid)·x̂ and bias'·Σx̂ stay small where w is centred on zero (exactly 0 for GGUF's
        // Q8_0 and Q4_0, whose bias is −mid·scale) instead of cancelling in float32.
        const float mid = float(1 << (MV_BITS - 1));
        for (int s = int(lane); s < steps; s += 32) {
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
                    if (MV_NORM) v *= ((device const float4 *)(norm_w + k0))[i];
                    if (MV_GROUP) {
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
        const int K4 = K / 4;
        for (int k4 = int(lane); k4 < K4; k4 += 32) {
            const float4 nw = MV_NORM ? ((device const float4 *)norm_w)[k4] : float4(1.0f);
            float4 xv[MV_MAX_BATCH];
            for (int b = 0; b < NB; b++) {
                xv[b] = ((device const float4 *)(x + b * K))[k4] * nw;
                if (MV_GROUP) xv[b] *= scale[b * MV_GROUPS + (4 * k4) / group];
            }
            for (int r = 0; r < R; r++) {
                const int row = row0 + r;
                if (row >= N) break;
                const ulong at = ulong(row) * ulong(K4) + ulong(k4);
                const float4 w = MV_HALF ? float4(((device const half4 *)W)[at]) : ((device const float4 *)W)[at];
                for (int b = 0; b < NB; b++) acc[r][b] += dot(w, xv[b]);
            }
        }
    } else {
        for (int k = int(lane); k < K; k += 32) {
            const float nw = MV_NORM ? norm_w[k] : 1.0f;
            float xv[MV_MAX_BATCH];
            for (int b = 0; b < NB; b++) {
                xv[b] = x[b * K + k] * nw;
                if (MV_GROUP) xv[b] *= scale[b * MV_GROUPS + k / group];
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

    for (int r = 0; r < R; r++) {
        const int row = row0 + r;
        for (int b = 0; b < NB; b++) {
            float s = simd_sum(acc[r][b]);
            if (MV_RMS) s *= scale[b];
            if (lane == 0 && row < N) {
                device float *out = y + b * N + row;
                *out = MV_ACCUMULATE ? *out + s : s;
            }
        }
    }
}
