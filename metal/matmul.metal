// Tiled matrix × matrixᵀ for many tokens at once (prefill): in_proj with the pre-mixer RMSNorm fused
// in, out_proj with the gated group RMSNorm fused in (plus the residual add), and the SSD's C·Bᵀ per
// (chunk, group) with a causal mask. W is f32, f16 or affine-quantized (quantized.h), chosen by function
// constants.
#include <metal_stdlib>
using namespace metal;
#include "quantized.h"

constant int MM_N [[function_constant(0)]];            // columns of Y (rows of W); causal: ignored
constant int MM_K [[function_constant(1)]];            // reduction length
constant int MM_M [[function_constant(2)]];            // rows of Y per outer batch index (at most)
constant int MM_BM [[function_constant(3)]];           // tile rows: 16, 32 or 64
constant int MM_BN [[function_constant(4)]];           // tile columns: 16, 32 or 64
constant int MM_BK [[function_constant(5)]];           // reduction step: a multiple of 8, ≤ 64
constant bool MM_W_HALF [[function_constant(6)]];      // W stored as f16 (else f32)
constant bool MM_NORM [[function_constant(7)]];        // X̂ = RMSNorm of X over MM_NORM_GROUPS groups · norm_w
constant int MM_NORM_GROUPS [[function_constant(8)]];  // MM_NORM: groups of K/G channels (1: the plain RMSNorm)
constant float MM_EPS [[function_constant(9)]];        // RMSNorm epsilon
constant bool MM_ACCUMULATE [[function_constant(10)]]; // Y += … (the residual add) instead of Y = …
constant bool MM_CAUSAL [[function_constant(11)]];     // square per batch index; Y[m, n] = 0 for n > m
constant int MM_LDX [[function_constant(12)]];         // row strides, in elements
constant int MM_LDW [[function_constant(13)]];
constant int MM_LDY [[function_constant(14)]];
constant int MM_Z_INNER [[function_constant(15)]];     // batch index z = outer · MM_Z_INNER + inner
constant int MM_X_OUTER [[function_constant(16)]];     // element offsets per outer / inner batch step
constant int MM_X_INNER [[function_constant(17)]];
constant int MM_W_OUTER [[function_constant(18)]];
constant int MM_W_INNER [[function_constant(19)]];
constant int MM_Y_OUTER [[function_constant(20)]];
constant int MM_Y_INNER [[function_constant(21)]];
constant bool MM_QUANT [[function_constant(22)]];        // W is affine-quantized codes, rows of MM_LDW columns (no z offsets)
constant int MM_BITS [[function_constant(23)]];          // MM_QUANT: 4 or 8 bits per code
constant int MM_GROUP_SIZE [[function_constant(24)]];    // MM_QUANT: columns per scale and bias
constant bool MM_SCALES_HALF [[function_constant(25)]];  // MM_QUANT: scales and biases f16 (else f32)

#define MM_THREADS 128
#define MM_MAX_FRAGS 4

// Y[z][m, n] (= or +=) Σ_k X̂[z][m, k] · W[z][n, k], where X̂ = X, or with MM_NORM (G = MM_NORM_GROUPS)
// X̂[m, k] = X[m, k] · rsqrt(mean over k's group of X[m, ·]² + eps) · norm_w[k] (G = 1: the plain
// RMSNorm); norm_w exists only with MM_NORM. The rows of batch index z are min(MM_M, count − outer · MM_M):
// with MM_M = the block capacity and one batch index that is every token of the block; with MM_M =
// chunk_size, outer = chunk and inner = group it is C·Bᵀ of each (chunk, group).
// Grid: dispatchThreadgroups(ceil(cols / MM_BN), ceil(rows / MM_BM), batch indices).
// Threadgroup: 128 threads = 4 simdgroups in a 2 × 2 arrangement; each owns a (MM_BM/2) × (MM_BN/2)
// block of the output tile as 8×8 simdgroup matrices, accumulated in f32 over MM_BK-wide slices of X̂
// and W staged in threadgroup memory (W widened to f32 there; quantized W dequantized there, so each
// code is read once per tile and no dequantized copy of W is ever written to device memory).
// Threadgroup memory: max((MM_BM + MM_BN) · MM_BK, MM_BM · MM_BN) + MM_BM · max(G, 1) floats.
kernel void matmul(device const uchar *W [[buffer(0)]],     // (N, K) rows of stride MM_LDW, f16/f32 or codes
                   device const float *X [[buffer(1)]],     // (M, K) rows of stride MM_LDX
                   device float *Y [[buffer(2)]],           // (M, N) rows of stride MM_LDY
                   device const float *norm_w [[buffer(3), function_constant(MM_NORM)]],  // (K)
                   device const uint *count [[buffer(4)]],  // tokens in this block
                   device const uchar *scales [[buffer(5), function_constant(MM_QUANT)]],  // (N, MM_LDW / G)
                   device const uchar *biases [[buffer(6), function_constant(MM_QUANT)]],  // (N, MM_LDW / G)
                   threadgroup float *shared [[threadgroup(0)]],
                   uint3 tg [[threadgroup_position_in_grid]],
                   uint tid [[thread_index_in_threadgroup]],
                   uint sg [[simdgroup_index_in_threadgroup]],
                   uint lane [[thread_index_in_simdgroup]]) {
    const int BM = MM_BM, BN = MM_BN, BK = MM_BK, K = MM_K, G = MM_NORM ? MM_NORM_GROUPS : 0;
    const int outer = int(tg.z) / MM_Z_INNER, inner = int(tg.z) % MM_Z_INNER;
    const int rows = min(MM_M, int(count[0]) - outer * MM_M);
    const int cols = MM_CAUSAL ? rows : MM_N;
    const int m0 = int(tg.y) * BM, n0 = int(tg.x) * BN;
    if (m0 >= rows || n0 >= cols) return;
    device const float *x = X + outer * MM_X_OUTER + inner * MM_X_INNER;
    device float *y = Y + outer * MM_Y_OUTER + inner * MM_Y_INNER;
    const ulong w_base = ulong(outer) * ulong(MM_W_OUTER) + ulong(inner) * ulong(MM_W_INNER);

    // A tile wholly above the diagonal is zero: no reduction needed.
    if (MM_CAUSAL && n0 > m0 + BM - 1) {
        for (int i = int(tid); i < BM * BN; i += MM_THREADS) {
            const int m = m0 + i / BN, n = n0 + i % BN;
            if (!MM_ACCUMULATE && m < rows && n < cols) y[m * MM_LDY + n] = 0.0f;
        }
        return;
    }

    threadgroup float *Xs = shared;                  // [BM][BK]
    threadgroup float *Ws = shared + BM * BK;        // [BN][BK]
    threadgroup float *Ys = shared;                  // [BM][BN], after the reduction
    threadgroup float *scale = shared + max((BM + BN) * BK, BM * BN);  // [BM][G]

    // Row scales first (one simdgroup per (row, group)), so every X̂ slice is normalised as it is staged.
    if (G > 0) {
        const int group = K / G;
        for (int i = int(sg); i < BM * G; i += MM_THREADS / 32) {
            const int m = m0 + i / G, g = i % G;
            float ss = 0.0f;
            if (m < rows) {
                for (int k = g * group + int(lane); k < (g + 1) * group; k += 32) ss += x[m * MM_LDX + k] * x[m * MM_LDX + k];
            }
            ss = simd_sum(ss);
            if (lane == 0) scale[i] = rsqrt(ss / float(group) + MM_EPS);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    const int FM = BM / 16, FN = BN / 16;               // 8×8 blocks per simdgroup, per side
    const int sm = (int(sg) / 2) * (BM / 2), sn = (int(sg) % 2) * (BN / 2);
    simdgroup_float8x8 acc[MM_MAX_FRAGS][MM_MAX_FRAGS];
    for (int i = 0; i < FM; i++)
        for (int j = 0; j < FN; j++) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = int(tid); i < BM * BK; i += MM_THREADS) {
            const int m = m0 + i / BK, k = k0 + i % BK;
            float v = 0.0f;
            if (m < rows && k < K) {
                v = x[m * MM_LDX + k];
                if (G > 0) v *= scale[(i / BK) * G + k / (K / G)] * norm_w[k];
            }
            Xs[i] = v;
        }
        if (MM_QUANT) {
            // Runs of 4 columns (BK and G are multiples of 4): one load of their codes, one scale and bias.
            for (int i = int(tid); i < BN * BK / 4; i += MM_THREADS) {
                const int n = n0 + (4 * i) / BK, k = k0 + (4 * i) % BK;
                float4 v = float4(0.0f);
                if (n < cols && k < K) {
                    v = affine_values4(W, scales, biases, ulong(n), k, MM_LDW, MM_BITS, MM_GROUP_SIZE, MM_SCALES_HALF);
                }
                for (int e = 0; e < 4; e++) Ws[4 * i + e] = k + e < K ? v[e] : 0.0f;
            }
        } else {
            for (int i = int(tid); i < BN * BK; i += MM_THREADS) {
                const int n = n0 + i / BK, k = k0 + i % BK;
                float v = 0.0f;
                if (n < cols && k < K) {
                    const ulong at = w_base + ulong(n) * ulong(MM_LDW) + ulong(k);
                    v = MM_W_HALF ? float(((device const half *)W)[at]) : ((device const float *)W)[at];
                }
                Ws[i] = v;
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < BK; kk += 8) {
            simdgroup_float8x8 a[MM_MAX_FRAGS], b[MM_MAX_FRAGS];
            for (int i = 0; i < FM; i++) simdgroup_load(a[i], Xs + (sm + 8 * i) * BK + kk, BK);
            // B = Wᵀ: the transposed load of W's rows.
            for (int j = 0; j < FN; j++) simdgroup_load(b[j], Ws + (sn + 8 * j) * BK + kk, BK, ulong2(0), true);
            for (int i = 0; i < FM; i++)
                for (int j = 0; j < FN; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    // Through threadgroup memory, so edges, the causal mask and the accumulate are plain per-element code.
    for (int i = 0; i < FM; i++)
        for (int j = 0; j < FN; j++) simdgroup_store(acc[i][j], Ys + (sm + 8 * i) * BN + sn + 8 * j, BN);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int i = int(tid); i < BM * BN; i += MM_THREADS) {
        const int m = m0 + i / BN, n = n0 + i % BN;
        if (m >= rows || n >= cols) continue;
        const float v = MM_CAUSAL && n > m ? 0.0f : Ys[i];
        device float *out = y + m * MM_LDY + n;
        *out = MM_ACCUMULATE ? *out + v : v;
    }
}
