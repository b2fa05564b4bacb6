// The Mamba2 mixer for a block of prompt tokens, in mamba_ssm's chunked form (SSD): causal conv,
// dt and its cumulative decay per chunk, each chunk's own state, the state passed from chunk to chunk
// (starting from the sequence's current state), and each chunk's output. C·Bᵀ per (chunk, group) comes
// from matmul.metal between chunk_cumsum and chunk_scan.
//
// Per head h with A = -exp(A_log) < 0, within a chunk starting from state S0:
//   dt_t = clamp(softplus(dt_raw_t + dt_bias), dt_min, dt_max),  cs_t = Σ_{s ≤ t} dt_s · A
//   y_t  = Σ_{s ≤ t} (C_t·B_s) exp(cs_t − cs_s) dt_s x_s + exp(cs_t) C_t·S0 + D x_t
//   S_end = exp(cs_last) S0 + Σ_s exp(cs_last − cs_s) dt_s x_s ⊗ B_s
// Every exponent is ≤ 0 (cs only decreases), so nothing overflows however long the chunk.
//
// Buffers of a block of T ≤ SSD_CAPACITY tokens (T is read from `count`, so one pipeline serves every
// block length): zxbcdt (T, d_in_proj) = z | x B C (raw) | dt_raw; xbc (T, conv_dim) = silu(conv);
// dt (heads, SSD_CAPACITY); cs (heads, 2, SSD_CAPACITY): each sum as hi + lo, see chunk_cumsum;
// states (chunks, heads, P, N); gated (T, d_inner).
#include <metal_stdlib>
using namespace metal;
#include "activations.h"

constant int SSD_D_INNER [[function_constant(0)]];
constant int SSD_D_STATE [[function_constant(1)]];   // N
constant int SSD_HEAD_DIM [[function_constant(2)]];  // P
constant int SSD_HEADS [[function_constant(3)]];
constant int SSD_GROUPS [[function_constant(4)]];
constant int SSD_D_CONV [[function_constant(5)]];
constant int SSD_CHUNK [[function_constant(6)]];     // Q: tokens per chunk
constant int SSD_CAPACITY [[function_constant(7)]];  // tokens per block at most: the stride of dt and cs
constant float SSD_DT_MIN [[function_constant(8)]];
constant float SSD_DT_MAX [[function_constant(9)]];

#define SSD_TILE 32
#define SSD_THREADS 128

inline int conv_dim() { return SSD_D_INNER + 2 * SSD_GROUPS * SSD_D_STATE; }

// a + b = s + e exactly (Knuth's TwoSum; no assumption on which is larger).
inline float2 two_sum(float a, float b) {
    const float s = a + b, bb = s - a;
    return float2(s, (a - (s - bb)) + (b - bb));
}

// Where head h's cumulative sums start in cs: SSD_CAPACITY high parts, then SSD_CAPACITY low parts.
inline int cs_row(int h) { return 2 * h * SSD_CAPACITY; }
inline int d_in_proj() { return SSD_D_INNER + conv_dim() + SSD_HEADS; }

// xbc[t, c] = silu(conv_b[c] + Σ_j conv_w[c, j] · input[t − (K−1) + j, c]), where inputs before the block
// come from the channel's ring, and the ring is left holding the last K inputs so that decode (or the
// next block) continues exactly. conv_pos was already advanced by T (embedding_gather_prompt), so the
// input of time τ (τ < 0: before the block) lives in slot (pos0 + 1 + τ) mod K, pos0 = the slot of τ = −1.
// Grid: dispatchThreadgroups(ceil(conv_dim / 32), 1, 1). Threadgroup (32, 8): 32 channels, whose 8 rows
// of threads stride over the tokens. All threads of a channel share the threadgroup, so one barrier
// separates every read of the old ring from the writes that replace it.
kernel void conv1d_prefill(device const float *zxbcdt [[buffer(0)]],   // (T, d_in_proj)
                           device float *conv_state [[buffer(1)]],     // (conv_dim, K) rings, this layer
                           device const uint *conv_pos [[buffer(2)]],  // this sequence's newest slot
                           device const float *conv_w [[buffer(3)]],   // (conv_dim, K)
                           device const float *conv_b [[buffer(4)]],   // (conv_dim)
                           device float *xbc [[buffer(5)]],            // (T, conv_dim)
                           device const uint *count [[buffer(6)]],
                           uint2 tg [[threadgroup_position_in_grid]],
                           uint2 tid [[thread_position_in_threadgroup]]) {
    const int K = SSD_D_CONV, CD = conv_dim(), DP = d_in_proj(), T = int(count[0]);
    const int c = int(tg.x) * 32 + int(tid.x);
    const int pos0 = (int(conv_pos[0]) + K - T % K) % K;
    const bool live = c < CD;
    device float *ring = conv_state + c * K;
    if (live) {
        for (int t = int(tid.y); t < T; t += 8) {
            float acc = conv_b[c];
            for (int j = 0; j < K; j++) {
                const int tau = t - (K - 1) + j;
                const float v = tau >= 0 ? zxbcdt[tau * DP + SSD_D_INNER + c] : ring[(pos0 + 1 + tau + K) % K];
                acc += conv_w[c * K + j] * v;
            }
            xbc[t * CD + c] = silu(acc);
        }
    }
    threadgroup_barrier(mem_flags::mem_device);
    if (live) {
        for (int t = int(tid.y); t < T; t += 8) {
            if (t >= T - K) ring[(pos0 + 1 + t) % K] = zxbcdt[t * DP + SSD_D_INNER + c];
        }
    }
}

// dt[h, t] = clamp(softplus(dt_raw + dt_bias[h]), dt_min, dt_max) and cs[h, t] = the inclusive sum of
// dt · A[h] from the start of t's chunk, as an unevaluated sum hi + lo. Why: with dt up to ≈4 and A ≈ −15
// the sum reaches −10⁴ within a 256-token chunk, where a float's spacing is ≈10⁻³, while tokens with
// small dt after it still weigh exp(cs_t − cs_s) ≈ 1: a plain float sum put errors of ~10⁻³ into those
// weights (seen as 10⁻³ errors in single outputs). The kernels take differences as
// (hi_t − hi_s) + (lo_t − lo_s), whose error is then ~10⁻⁷ of the difference itself.
// Grid: dispatchThreadgroups(heads, chunks, 1). Threadgroup: 32 threads (one simdgroup), which walks
// the chunk 32 tokens at a time (a compensated prefix sum by shuffles), carrying the running sum.
kernel void chunk_cumsum(device const float *zxbcdt [[buffer(0)]],  // (T, d_in_proj)
                         device const float *head_p [[buffer(1)]],  // dt_bias | A | D, (3, heads)
                         device float *dt [[buffer(2)]],            // (heads, SSD_CAPACITY)
                         device float *cs [[buffer(3)]],            // (heads, SSD_CAPACITY)
                         device const uint *count [[buffer(4)]],
                         uint2 tg [[threadgroup_position_in_grid]],
                         uint lane [[thread_index_in_simdgroup]]) {
    const int h = int(tg.x), start = int(tg.y) * SSD_CHUNK;
    const int len = min(SSD_CHUNK, int(count[0]) - start);
    const float bias = head_p[h], A = head_p[SSD_HEADS + h];
    const int at = h * SSD_CAPACITY + start, hi_at = cs_row(h) + start, lo_at = hi_at + SSD_CAPACITY;
    float carry_hi = 0.0f, carry_lo = 0.0f;
    for (int base = 0; base < len; base += 32) {
        const int t = base + int(lane);
        float d = 0.0f;
        if (t < len) {
            d = clamp(softplus(zxbcdt[(start + t) * d_in_proj() + SSD_D_INNER + conv_dim() + h] + bias), SSD_DT_MIN,
                      SSD_DT_MAX);
        }
        float hi = d * A, lo = 0.0f;
        for (ushort o = 1; o < 32; o <<= 1) {
            const float hi_before = simd_shuffle_up(hi, o), lo_before = simd_shuffle_up(lo, o);
            if (lane >= o) {
                const float2 s = two_sum(hi_before, hi);
                hi = s.x;
                lo = s.y + (lo_before + lo);
            }
        }
        const float2 s = two_sum(carry_hi, hi);
        hi = s.x;
        lo = s.y + (carry_lo + lo);
        if (t < len) {
            dt[at + t] = d;
            cs[hi_at + t] = hi;
            cs[lo_at + t] = lo;
        }
        carry_hi = simd_broadcast(hi, ushort(31));
        carry_lo = simd_broadcast(lo, ushort(31));
    }
}

// states[c, h, p, n] = Σ_{s in chunk c} exp(cs_last − cs_s) dt_s x_s[p] B_s[n]: chunk c's state when it
// starts from zero, as a (P × Q)·(Q × N) product.
// Grid: dispatchThreadgroups(ceil(N / 32), ceil(P / 32), chunks · heads). Threadgroup: 128 threads =
// 4 simdgroups in 2 × 2, each a 16 × 16 block of the 32 × 32 (p, n) tile as 8×8 simdgroup matrices;
// Q is walked 32 tokens at a time, the decay-weighted x and B staged in threadgroup memory.
// Threadgroup memory: 2 · 32 · 32 + 32 floats.
kernel void chunk_state(device const float *xbc [[buffer(0)]],      // (T, conv_dim)
                        device const float *dt [[buffer(1)]],       // (heads, SSD_CAPACITY)
                        device const float *cs [[buffer(2)]],       // (heads, 2, SSD_CAPACITY)
                        device float *states [[buffer(3)]],         // (chunks, heads, P, N)
                        device const uint *count [[buffer(4)]],
                        threadgroup float *shared [[threadgroup(0)]],
                        uint3 tg [[threadgroup_position_in_grid]],
                        uint tid [[thread_index_in_threadgroup]],
                        uint sg [[simdgroup_index_in_threadgroup]]) {
    const int P = SSD_HEAD_DIM, N = SSD_D_STATE, H = SSD_HEADS, CD = conv_dim(), S = SSD_TILE;
    const int n0 = int(tg.x) * S, p0 = int(tg.y) * S, c = int(tg.z) / H, h = int(tg.z) % H;
    const int g = h / (H / SSD_GROUPS), start = c * SSD_CHUNK;
    const int len = min(SSD_CHUNK, int(count[0]) - start);
    device const float *dth = dt + h * SSD_CAPACITY + start, *csh = cs + cs_row(h) + start;
    device const float *csl = csh + SSD_CAPACITY;
    const float last_hi = csh[len - 1], last_lo = csl[len - 1];
    threadgroup float *Xs = shared, *Bs = shared + S * S, *w = shared + 2 * S * S;  // [s][p], [s][n], [s]

    const int sp = (int(sg) / 2) * 16, sn = (int(sg) % 2) * 16;
    simdgroup_float8x8 acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

    for (int s0 = 0; s0 < len; s0 += S) {
        if (int(tid) < S) {
            const int s = s0 + int(tid);
            w[tid] = s < len ? exp((last_hi - csh[s]) + (last_lo - csl[s])) * dth[s] : 0.0f;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int i = int(tid); i < S * S; i += SSD_THREADS) {
            const int s = i / S, e = i % S, row = (start + s0 + s) * CD;
            const bool in_chunk = s0 + s < len;
            Xs[i] = in_chunk && p0 + e < P ? xbc[row + h * P + p0 + e] * w[s] : 0.0f;
            Bs[i] = in_chunk && n0 + e < N ? xbc[row + SSD_D_INNER + g * N + n0 + e] : 0.0f;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < S; kk += 8) {
            simdgroup_float8x8 a[2], b[2];
            // A = (x·w)ᵀ: rows p, columns s.
            for (int i = 0; i < 2; i++) simdgroup_load(a[i], Xs + kk * S + sp + 8 * i, S, ulong2(0), true);
            for (int j = 0; j < 2; j++) simdgroup_load(b[j], Bs + kk * S + sn + 8 * j, S);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    threadgroup float *Os = shared;  // [p][n]
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) simdgroup_store(acc[i][j], Os + (sp + 8 * i) * S + sn + 8 * j, S);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    device float *out = states + (c * H + h) * P * N;
    for (int i = int(tid); i < S * S; i += SSD_THREADS) {
        const int p = p0 + i / S, n = n0 + i % S;
        if (p < P && n < N) out[p * N + n] = Os[i];
    }
}

// Chunk to chunk, in place: states[c] becomes the state at the START of chunk c (the sequence's
// current state for c = 0), and the state after the block's last token goes back to ssm_state, where
// decode (or the next block) continues from it.
// Grid: dispatchThreads(P · N, heads, 1); threadgroup (256, 1, 1). One thread per state element walks
// the chunks in order.
kernel void state_passing(device float *states [[buffer(0)]],       // (chunks, heads, P, N)
                          device float *ssm_state [[buffer(1)]],    // (heads, P, N), this sequence and layer
                          device const float *cs [[buffer(2)]],     // (heads, 2, SSD_CAPACITY)
                          device const uint *count [[buffer(3)]],
                          uint2 gid [[thread_position_in_grid]]) {
    const int PN = SSD_HEAD_DIM * SSD_D_STATE, i = int(gid.x), h = int(gid.y);
    if (i >= PN || h >= SSD_HEADS) return;
    const int T = int(count[0]), chunks = (T + SSD_CHUNK - 1) / SSD_CHUNK;
    float state = ssm_state[h * PN + i];
    for (int c = 0; c < chunks; c++) {
        const int last = min((c + 1) * SSD_CHUNK, T) - 1;
        device float *sc = states + (c * SSD_HEADS + h) * PN + i;
        const float local = *sc;
        *sc = state;
        state = exp(cs[cs_row(h) + last] + cs[cs_row(h) + SSD_CAPACITY + last]) * state + local;
    }
    ssm_state[h * PN + i] = state;
}

// gated[t, h·P + p] = (y_t[p] + D x_t[p]) · silu(z_t[p]) with
//   y_t = exp(cs_t) C_t·S_start(chunk)                        (the state the chunk started from)
//       + Σ_{s ≤ t} CB[t, s] exp(cs_t − cs_s) dt_s x_s          (within the chunk; CB = C·Bᵀ, causal)
// Grid: dispatchThreadgroups(ceil(P / 32), ceil(min(Q, T) / 32), chunks · heads). Threadgroup: 128
// threads = 4 simdgroups in 2 × 2, each a 16 × 16 block of the 32 × 32 (t, p) tile as 8×8 simdgroup
// matrices; both terms accumulate into the same matrices, N and then s walked 32 at a time.
// Threadgroup memory: 2 · 32 · 32 + 2 · 32 floats.
kernel void chunk_scan(device const float *zxbcdt [[buffer(0)]],  // (T, d_in_proj): z
                       device const float *xbc [[buffer(1)]],     // (T, conv_dim): x, C
                       device const float *dt [[buffer(2)]],      // (heads, SSD_CAPACITY)
                       device const float *cs [[buffer(3)]],      // (heads, 2, SSD_CAPACITY)
                       device const float *cb [[buffer(4)]],      // (chunks, groups, Q, Q)
                       device const float *states [[buffer(5)]],  // (chunks, heads, P, N): start states
                       device const float *head_p [[buffer(6)]],  // dt_bias | A | D
                       device float *gated [[buffer(7)]],         // (T, d_inner)
                       device const uint *count [[buffer(8)]],
                       threadgroup float *shared [[threadgroup(0)]],
                       uint3 tg [[threadgroup_position_in_grid]],
                       uint tid [[thread_index_in_threadgroup]],
                       uint sg [[simdgroup_index_in_threadgroup]]) {
    const int P = SSD_HEAD_DIM, N = SSD_D_STATE, H = SSD_HEADS, G = SSD_GROUPS, Q = SSD_CHUNK;
    const int CD = conv_dim(), S = SSD_TILE;
    const int p0 = int(tg.x) * S, t0 = int(tg.y) * S, c = int(tg.z) / H, h = int(tg.z) % H;
    const int g = h / (H / G), start = c * Q;
    const int len = min(Q, int(count[0]) - start);
    if (t0 >= len) return;
    device const float *dth = dt + h * SSD_CAPACITY + start, *csh = cs + cs_row(h) + start;
    device const float *csl = csh + SSD_CAPACITY;
    threadgroup float *As = shared, *Bs = shared + S * S;
    threadgroup float *cs_t = shared + 2 * S * S, *cs_lo_t = cs_t + S;  // per row t of the tile: hi, lo

    if (int(tid) < S) {
        const int t = t0 + int(tid);
        cs_t[tid] = t < len ? csh[t] : 0.0f;
        cs_lo_t[tid] = t < len ? csl[t] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const int st = (int(sg) / 2) * 16, sp = (int(sg) % 2) * 16;
    simdgroup_float8x8 acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

    // The chunk's start state: (exp(cs_t) C_t) · S_startᵀ over n.
    device const float *state = states + (c * H + h) * P * N;
    for (int n0 = 0; n0 < N; n0 += S) {
        for (int i = int(tid); i < S * S; i += SSD_THREADS) {
            const int r = i / S, e = i % S;
            As[i] = t0 + r < len && n0 + e < N
                        ? xbc[(start + t0 + r) * CD + SSD_D_INNER + G * N + g * N + n0 + e] * exp(cs_t[r] + cs_lo_t[r])
                        : 0.0f;                                                          // [t][n]
            Bs[i] = p0 + r < P && n0 + e < N ? state[(p0 + r) * N + n0 + e] : 0.0f;     // [p][n]
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < S; kk += 8) {
            simdgroup_float8x8 a[2], b[2];
            for (int i = 0; i < 2; i++) simdgroup_load(a[i], As + (st + 8 * i) * S + kk, S);
            for (int j = 0; j < 2; j++) simdgroup_load(b[j], Bs + (sp + 8 * j) * S + kk, S, ulong2(0), true);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    // Within the chunk: causal, so s only runs up to the tile's last row.
    device const float *cbg = cb + (c * G + g) * Q * Q;
    const int s_end = min(t0 + S, len);
    for (int s0 = 0; s0 < s_end; s0 += S) {
        for (int i = int(tid); i < S * S; i += SSD_THREADS) {
            const int r = i / S, e = i % S, t = t0 + r, s = s0 + e;
            // s ≤ t < len; the mask comes before exp so that no exp(positive) is ever formed.
            As[i] = t < len && s <= t ? cbg[t * Q + s] * exp((cs_t[r] - csh[s]) + (cs_lo_t[r] - csl[s])) * dth[s]
                                      : 0.0f;                                                      // [t][s]
            const int s2 = s0 + r;
            Bs[i] = s2 < len && p0 + e < P ? xbc[(start + s2) * CD + h * P + p0 + e] : 0.0f;  // [s][p]
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < S; kk += 8) {
            simdgroup_float8x8 a[2], b[2];
            for (int i = 0; i < 2; i++) simdgroup_load(a[i], As + (st + 8 * i) * S + kk, S);
            for (int j = 0; j < 2; j++) simdgroup_load(b[j], Bs + kk * S + sp + 8 * j, S);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    threadgroup float *Os = shared;  // [t][p]
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) simdgroup_store(acc[i][j], Os + (st + 8 * i) * S + sp + 8 * j, S);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const float Dh = head_p[2 * H + h];
    for (int i = int(tid); i < S * S; i += SSD_THREADS) {
        const int t = t0 + i / S, p = p0 + i % S;
        if (t >= len || p >= P) continue;
        const int row = start + t;
        const float y = Os[i] + Dh * xbc[row * CD + h * P + p];
        gated[row * SSD_D_INNER + h * P + p] = y * silu(zxbcdt[row * d_in_proj() + h * P + p]);
    }
}
