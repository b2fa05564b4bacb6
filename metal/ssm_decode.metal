// The fused Mamba2 block for one decode token: causal conv update, SSM state update and output, gate.
#include <metal_stdlib>
using namespace metal;
#include "activations.h"
#include "simd_reduce.h"

constant int SSM_D_INNER [[function_constant(0)]];
constant int SSM_D_STATE [[function_constant(1)]];  // N
constant int SSM_HEAD_DIM [[function_constant(2)]]; // P
constant int SSM_HEADS [[function_constant(3)]];
constant int SSM_GROUPS [[function_constant(4)]];
constant int SSM_D_CONV [[function_constant(5)]];
constant int SSM_LAYERS [[function_constant(6)]];   // state buffers hold every layer: per-sequence stride
constant float SSM_DT_MIN [[function_constant(7)]];
constant float SSM_DT_MAX [[function_constant(8)]];
constant int SSM_SPLIT [[function_constant(9)]];    // threadgroups per head (MetalTuning.ssmSplit: 1, 2, 4 or 8)

#define SSM_SIMDGROUPS 8  // the threadgroup: 256 threads
#define SSM_PREFETCH 8    // float4s of state a lane may hold in registers across the conv stage
#define SSM_CONV_ITEMS 2  // conv channels a thread loads at once (rows + 2N ≤ 512 for every Mamba2 shape)
#define SSM_MAX_CONV 4    // d_conv up to which a channel's window and weights are loaded ahead (Mamba2's is 4)
#define SSM_BC_REGS 4     // float4s of B and of C a lane holds for all its rows (N ≤ 512)

// One (block of a head's rows, sequence) per threadgroup:
//   conv:  x (the block's channels of this head), B and C (N channels each, of the head's group)
//          = silu(Σ_j conv_w[c, j] · window[c, j] + conv_b[c]); conv_state is a ring of d_conv inputs
//          per channel whose newest slot conv_pos[b] was advanced by the embedding kernel. Each block
//          writes its own x channels; only block 0 of the first head of a group writes the group's B and
//          C (every block of the group computes them again, which costs less than another dispatch), and
//          the others read only the other slots, so no second dispatch is needed to advance them.
//   SSM:   dt = clamp(softplus(dt_raw + dt_bias)), dA = exp(dt · A);
//          state[p, n] = state[p, n] · dA + dt · x[p] · B[n];  y[p] = Σ_n state[p, n] · C[n] + D · x[p]
//   gate:  gated[p] = y[p] · silu(z[p]), and the block's Σ_p gated[p]² (one partial per block, added in
//          block order by the out_proj kernel's group norm: exact and deterministic, no atomics).
// Why blocks: one threadgroup per head is 24 threadgroups for mamba2-130m at batch 1, too few to fill a
// large GPU and a long chain of dependent row updates in each; SSM_SPLIT blocks of ⌈P / SSM_SPLIT⌉ rows
// give H · SSM_SPLIT threadgroups per sequence with fewer rows each. A block's state rows are loaded into
// registers before the conv stage (when they fit in SSM_PREFETCH float4s per lane), so their memory latency
// overlaps the conv's instead of following it.
// Grid: dispatchThreadgroups(SSM_HEADS · SSM_SPLIT, batch, 1); threadgroup (h · SSM_SPLIT + block, b).
// Threadgroup: 256 threads = 8 simdgroups; simdgroup s updates the block's rows s, s+8, …; its lanes cover
// n in float4 steps, so each state element is read, updated in registers and written back exactly once.
// Threadgroup memory: ⌈P / SSM_SPLIT⌉ + 2N + 8 floats: B (N), C (N), the block's x (⌈P / SSM_SPLIT⌉), the
// simdgroups' partial sums (8); B and C first, so that they are float4-aligned whatever the block's rows.
[[max_total_threads_per_threadgroup(256)]]
kernel void ssm_decode_block(device const float *zxbcdt [[buffer(0)]],  // (batch, d_in_proj): z | xBC | dt
                             device float *conv_state [[buffer(1)]],    // (batch, layers, conv_dim, d_conv), at this layer
                             device float *ssm_state [[buffer(2)]],     // (batch, layers, heads, P, N), at this layer
                             device const uint *conv_pos [[buffer(3)]], // (batch)
                             device const float *conv_w [[buffer(4)]],  // (conv_dim, d_conv)
                             device const float *conv_b [[buffer(5)]],  // (conv_dim)
                             device const float *head_p [[buffer(6)]],  // dt_bias (heads) | A (heads) | D (heads)
                             device float *gated [[buffer(7)]],         // (batch, d_inner)
                             device float *sumsq [[buffer(8)]],         // (batch, heads, SSM_SPLIT) Σ gated² per block
                             threadgroup float *shared [[threadgroup(0)]],
                             uint2 tg [[threadgroup_position_in_grid]],
                             uint tid [[thread_index_in_threadgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]],
                             uint lane [[thread_index_in_simdgroup]]) {
    const int S = SSM_SPLIT, h = int(tg.x) / S, block = int(tg.x) % S, b = int(tg.y);
    const int P = SSM_HEAD_DIM, N = SSM_D_STATE, K = SSM_D_CONV, D = SSM_D_INNER, G = SSM_GROUPS;
    const int rows = (P + S - 1) / S, p0 = min(P, block * rows), np = min(P, p0 + rows) - p0;  // this block's rows
    const int conv_dim = D + 2 * G * N;
    const int heads_per_group = SSM_HEADS / G, g = h / heads_per_group;
    const bool owns_bc = h % heads_per_group == 0 && block == 0;
    device const float *zx = zxbcdt + b * (D + conv_dim + SSM_HEADS);
    device float *ring_base = conv_state + b * (SSM_LAYERS * conv_dim * K);
    device float *state = ssm_state + b * (SSM_LAYERS * SSM_HEADS * P * N) + (h * P + p0) * N;
    threadgroup float *Bs = shared, *Cs = shared + N, *xs = shared + 2 * N, *partial = shared + 2 * N + rows;

    // dt, dA and the state rows need nothing from the conv stage: loaded first, their latency overlaps it.
    const float dt = clamp(softplus(zx[D + conv_dim + h] + head_p[h]), SSM_DT_MIN, SSM_DT_MAX);
    const float dA = exp(dt * head_p[SSM_HEADS + h]);
    const float Dh = head_p[2 * SSM_HEADS + h];
    const int N4 = N / 4, steps = (N4 + 31) / 32, per_sg = (rows + SSM_SIMDGROUPS - 1) / SSM_SIMDGROUPS;
    const bool prefetch = N % 4 == 0 && per_sg * steps <= SSM_PREFETCH;
    float4 pre[SSM_PREFETCH];
    if (prefetch) {
        for (int i = 0; i < per_sg; i++) {
            const int p = int(sg) + i * SSM_SIMDGROUPS;
            for (int j = 0; j < steps; j++) {
                const int n4 = int(lane) + 32 * j;
                pre[i * steps + j] = p < np && n4 < N4 ? ((device const float4 *)(state + p * N))[n4] : float4(0.0f);
            }
        }
    }

    // z of the simdgroup's rows (the gate), before the barrier for the same reason.
    float zs[SSM_PREFETCH];
    for (int i = 0; i < SSM_PREFETCH && i < per_sg; i++) {
        const int p = int(sg) + i * SSM_SIMDGROUPS;
        zs[i] = p < np ? zx[h * P + p0 + p] : 0.0f;
    }

    // The conv stage: a thread's channels are i = tid, tid + 256, … < rows + 2N (i < rows: the block's x
    // channels, then the group's B and C). A thread loads the inputs of SSM_CONV_ITEMS channels before it
    // sums any: channel by channel, it would wait for its second channel's ring only after its first
    // channel's store (they might alias, as far as a compiler knows), one memory latency more. The ring
    // slots wait for conv_pos: the slot at conv_pos is being written by the block that owns the channel,
    // so the others must not read it.
    const uint pos = conv_pos[b];
    for (int t0 = 0; t0 * 32 * SSM_SIMDGROUPS < rows + 2 * N; t0 += SSM_CONV_ITEMS) {
        float ins[SSM_CONV_ITEMS], acc[SSM_CONV_ITEMS];
        float win[SSM_CONV_ITEMS][SSM_MAX_CONV], ws[SSM_CONV_ITEMS][SSM_MAX_CONV];  // the window, the weights
        for (int t = 0; t < SSM_CONV_ITEMS; t++) {
            const int i = int(tid) + (t0 + t) * 32 * SSM_SIMDGROUPS;
            const int c = i < rows ? h * P + p0 + i
                                   : (i < rows + N ? D + g * N + (i - rows) : D + G * N + g * N + (i - rows - N));
            // Not a channel: past the last one, or in the gap the last block of a head leaves when the split
            // does not divide P.
            const bool live = i < rows + 2 * N && !(i >= np && i < rows);
            ins[t] = live ? zx[D + c] : 0.0f;
            acc[t] = live ? conv_b[c] : 0.0f;
            if (K == 4) {  // Mamba2's d_conv: a channel's weights are one aligned float4 (buffers are page-aligned)
                const float4 w4 = live ? ((device const float4 *)conv_w)[c] : float4(0.0f);
                for (int j = 0; j < 4; j++) ws[t][j] = w4[j];
            }
            for (int j = 0; j < K && j < SSM_MAX_CONV; j++) {
                if (K != 4) ws[t][j] = live ? conv_w[c * K + j] : 0.0f;
                win[t][j] = live && j < K - 1 ? ring_base[c * K + int((pos + 1u + uint(j)) % uint(K))] : 0.0f;
            }
        }
        for (int t = 0; t < SSM_CONV_ITEMS; t++) {
            const int i = int(tid) + (t0 + t) * 32 * SSM_SIMDGROUPS;
            if (i >= rows + 2 * N) break;
            if (i >= np && i < rows) continue;
            const int c = i < rows ? h * P + p0 + i
                                   : (i < rows + N ? D + g * N + (i - rows) : D + G * N + g * N + (i - rows - N));
            device float *ring = ring_base + c * K;
            if (K <= SSM_MAX_CONV) {
                float a = acc[t] + ws[t][min(K, SSM_MAX_CONV) - 1] * ins[t];
                for (int j = 0; j < K - 1; j++) a += ws[t][j] * win[t][j];
                acc[t] = a;
            } else {  // a d_conv larger than any Mamba2's: the rest of the window from memory
                device const float *w = conv_w + c * K;
                float a = acc[t] + w[K - 1] * ins[t];
                for (int j = 0; j < K - 1; j++) a += w[j] * (j < SSM_MAX_CONV ? win[t][j] : ring[int((pos + 1u + uint(j)) % uint(K))]);
                acc[t] = a;
            }
            if (i < rows || owns_bc) ring[pos] = ins[t];
            shared[i < rows ? 2 * N + i : i - rows] = silu(acc[t]);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Every simdgroup has per_sg rows when the split divides P into multiples of 8 (every Mamba2 shape at
    // every split): then the row loop has no branch and unrolls, B and C are read from threadgroup memory
    // once for all the rows, and the rows' sums leave the simdgroup transposed (simd_sums_transposed: one
    // chain of 5 shuffle levels for all rows instead of one per row), landing in lane i << (5 − log2 per_sg)
    // for row i.
    const bool all_rows = P % S == 0 && rows % SSM_SIMDGROUPS == 0;
    const bool fast = all_rows && N % 4 == 0 && steps <= SSM_BC_REGS && prefetch &&
                      (per_sg == 1 || per_sg == 2 || per_sg == 4 || per_sg == 8);
    float sq = 0.0f;
    if (fast) {
        float4 Bv[SSM_BC_REGS], Cv[SSM_BC_REGS];
        for (int j = 0; j < steps; j++) {
            const int n4 = min(int(lane) + 32 * j, N4 - 1);  // clamped: lanes past N4 add nothing below
            Bv[j] = ((threadgroup const float4 *)Bs)[n4];
            Cv[j] = ((threadgroup const float4 *)Cs)[n4];
        }
        float accs[SSM_PREFETCH];
#pragma unroll
        for (int i = 0; i < SSM_PREFETCH; i++) {
            if (i >= per_sg) break;
            const int p = int(sg) + i * SSM_SIMDGROUPS;
            const float xdt = xs[p] * dt;
            device float4 *row = (device float4 *)(state + p * N);
            float acc = 0.0f;
            for (int j = 0; j < steps; j++) {
                const int n4 = int(lane) + 32 * j;
                if (n4 >= N4) break;
                const float4 s = pre[i * steps + j] * dA + xdt * Bv[j];
                row[n4] = s;
                acc += dot(s, Cv[j]);
            }
            accs[i] = acc;
        }
        const int m = per_sg == 1 ? 0 : per_sg == 2 ? 1 : per_sg == 4 ? 2 : 3;
        const int mine = int(lane) >> (5 - m);  // the row whose sum this lane holds
        const float ysum = simd_sums_transposed(accs, per_sg, lane);
        float z = zs[0];
        for (int i = 1; i < SSM_PREFETCH && i < per_sg; i++) z = mine == i ? zs[i] : z;
        const int p_mine = int(sg) + mine * SSM_SIMDGROUPS;
        const float gv = (ysum + Dh * xs[p_mine]) * silu(z);
        if ((int(lane) & ((1 << (5 - m)) - 1)) == 0) gated[b * D + h * P + p0 + p_mine] = gv;
        // Σ gv² in row order, by lane 0, as the loop below adds it.
        for (int i = 0; i < SSM_PREFETCH && i < per_sg; i++) {
            const float g = simd_shuffle(gv, ushort(i << (5 - m)));
            sq += g * g;
        }
    } else {
#pragma unroll
        for (int i = 0; i < per_sg; i++) {
            const int p = int(sg) + i * SSM_SIMDGROUPS;  // a row of the block: the same for the whole simdgroup
            if (!all_rows && p >= np) break;
            const float z = i < SSM_PREFETCH ? zs[i] : zx[h * P + p0 + p];
            const float xdt = xs[p] * dt;
            float acc = 0.0f;
            device float *row = state + p * N;
            if (N % 4 == 0) {
                for (int j = 0; j < steps; j++) {
                    const int n4 = int(lane) + 32 * j;
                    if (n4 >= N4) break;
                    const float4 Bv = ((threadgroup const float4 *)Bs)[n4], Cv = ((threadgroup const float4 *)Cs)[n4];
                    const float4 old = prefetch ? pre[i * steps + j] : ((device float4 *)row)[n4];
                    const float4 s = old * dA + xdt * Bv;
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
            const float gv = y * silu(z);
            if (lane == 0) {
                gated[b * D + h * P + p0 + p] = gv;
                sq += gv * gv;
            }
        }
    }
    if (lane == 0) partial[sg] = sq;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        float s = 0.0f;
        for (int i = 0; i < SSM_SIMDGROUPS; i++) s += partial[i];
        sumsq[(b * SSM_HEADS + h) * S + block] = s;
    }
}
