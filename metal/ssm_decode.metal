// The fused Mamba2 block for one decode token: causal conv update, SSM state update and output, gate.
#include <metal_stdlib>
using namespace metal;
#include "activations.h"

constant int SSM_D_INNER [[function_constant(0)]];
constant int SSM_D_STATE [[function_constant(1)]];  // N
constant int SSM_HEAD_DIM [[function_constant(2)]]; // P
constant int SSM_HEADS [[function_constant(3)]];
constant int SSM_GROUPS [[function_constant(4)]];
constant int SSM_D_CONV [[function_constant(5)]];
constant int SSM_LAYERS [[function_constant(6)]];   // state buffers hold every layer: per-sequence stride
constant float SSM_DT_MIN [[function_constant(7)]];
constant float SSM_DT_MAX [[function_constant(8)]];


// One (head, sequence) per threadgroup:
//   conv:  x (P channels of this head), B and C (N channels each, of the head's group)
//          = silu(Σ_j conv_w[c, j] · window[c, j] + conv_b[c]); conv_state is a ring of d_conv inputs
//          per channel whose newest slot conv_pos[b] was advanced by the embedding kernel. Each head
//          writes its own x channels; only the first head of a group writes the group's B and C, and
//          the others read only the other slots, so no second dispatch is needed to advance them.
//   SSM:   dt = clamp(softplus(dt_raw + dt_bias)), dA = exp(dt · A);
//          state[p, n] = state[p, n] · dA + dt · x[p] · B[n];  y[p] = Σ_n state[p, n] · C[n] + D · x[p]
//   gate:  gated[p] = y[p] · silu(z[p]), and sumsq = Σ_p gated[p]² for the out_proj kernel's group norm.
// Grid: dispatchThreadgroups(SSM_HEADS, batch, 1). Threadgroup: 256 threads = 8 simdgroups; simdgroup s
// updates state rows p = s, s+8, …; its lanes cover n in float4 steps, so each state element is read,
// updated in registers and written back exactly once. Threadgroup memory: P + 2N + 8 floats.
kernel void ssm_decode_block(device const float *zxbcdt [[buffer(0)]],  // (batch, d_in_proj): z | xBC | dt
                             device float *conv_state [[buffer(1)]],    // (batch, layers, conv_dim, d_conv), at this layer
                             device float *ssm_state [[buffer(2)]],     // (batch, layers, heads, P, N), at this layer
                             device const uint *conv_pos [[buffer(3)]], // (batch)
                             device const float *conv_w [[buffer(4)]],  // (conv_dim, d_conv)
                             device const float *conv_b [[buffer(5)]],  // (conv_dim)
                             device const float *head_p [[buffer(6)]],  // dt_bias (heads) | A (heads) | D (heads)
                             device float *gated [[buffer(7)]],         // (batch, d_inner)
                             device float *sumsq [[buffer(8)]],         // (batch, heads)
                             threadgroup float *shared [[threadgroup(0)]],
                             uint2 tg [[threadgroup_position_in_grid]],
                             uint tid [[thread_index_in_threadgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]],
                             uint lane [[thread_index_in_simdgroup]],
                             uint nthreads [[threads_per_threadgroup]]) {
    const int h = int(tg.x), b = int(tg.y);
    const int P = SSM_HEAD_DIM, N = SSM_D_STATE, K = SSM_D_CONV, D = SSM_D_INNER, G = SSM_GROUPS;
    const int conv_dim = D + 2 * G * N;
    const int heads_per_group = SSM_HEADS / G, g = h / heads_per_group;
    const bool owns_bc = h % heads_per_group == 0;
    const int nsg = int(nthreads) / 32;
    device const float *zx = zxbcdt + b * (D + conv_dim + SSM_HEADS);
    device float *ring_base = conv_state + b * (SSM_LAYERS * conv_dim * K);
    device float *state = ssm_state + b * (SSM_LAYERS * SSM_HEADS * P * N) + h * P * N;
    const int pos = int(conv_pos[b]);
    threadgroup float *xs = shared, *Bs = shared + P, *Cs = shared + P + N, *partial = shared + P + 2 * N;

    for (int i = int(tid); i < P + 2 * N; i += int(nthreads)) {
        const int c = i < P ? h * P + i : (i < P + N ? D + g * N + (i - P) : D + G * N + g * N + (i - P - N));
        const float in = zx[D + c];
        device float *ring = ring_base + c * K;
        device const float *w = conv_w + c * K;
        float acc = conv_b[c] + w[K - 1] * in;
        for (int j = 0; j < K - 1; j++) acc += w[j] * ring[(pos + 1 + j) % K];
        if (i < P || owns_bc) ring[pos] = in;
        shared[i] = silu(acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const float dt = clamp(softplus(zx[D + conv_dim + h] + head_p[h]), SSM_DT_MIN, SSM_DT_MAX);
    const float dA = exp(dt * head_p[SSM_HEADS + h]);
    const float Dh = head_p[2 * SSM_HEADS + h];
    float sq = 0.0f;
    for (int p = int(sg); p < P; p += nsg) {
        const float xdt = xs[p] * dt;
        float acc = 0.0f;
        device float *row = state + p * N;
        if (N % 4 == 0) {
            for (int n4 = int(lane); n4 < N / 4; n4 += 32) {
                const float4 Bv = float4(Bs[4 * n4], Bs[4 * n4 + 1], Bs[4 * n4 + 2], Bs[4 * n4 + 3]);
                const float4 Cv = float4(Cs[4 * n4], Cs[4 * n4 + 1], Cs[4 * n4 + 2], Cs[4 * n4 + 3]);
                const float4 s = ((device float4 *)row)[n4] * dA + xdt * Bv;
                ((device float4 *)row)[n4] = s;
                acc += dot(s, Cv);
            }
        } else {
            for (int n = int(lane); n < N; n += 32) {
                const float s = row[n] * dA + xdt * Bs[n];
                row[n] = s;
                acc += s * Cs[n];
            }
        }
        const float y = simd_sum(acc) + Dh * xs[p];
        const float gv = y * silu(zx[h * P + p]);
        if (lane == 0) {
            gated[b * D + h * P + p] = gv;
            sq += gv * gv;
        }
    }
    if (lane == 0) partial[sg] = sq;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        float s = 0.0f;
        for (int i = 0; i < nsg; i++) s += partial[i];
        sumsq[b * SSM_HEADS + h] = s;
    }
}
