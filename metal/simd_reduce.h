// SIMD-group reductions shared by matvec.metal and ssm_decode.metal. Include it after <metal_stdlib> and
// `using namespace metal;`; tools/gen_metal_bindings.ts inlines it like activations.h (no guard, same reason).

// Σ over the simdgroup of each of a lane's n values v[0 … n−1] (n = 2^m ≤ 32, a compile-time count), by
// halving: at each of the first m levels a lane keeps half of its values and adds its partner's copy of
// them, one shuffle per value kept; the last 5 − m levels add the one value left. n sums cost n − 1 + 5 − m
// shuffles instead of 5n (26 instead of 120 for the 24 sums of 2 rows at batch 8), and each is the same
// tree of pairwise sums as a butterfly simd_sum's. Returns the sum of value lane >> (5 − m), which lanes
// with equal lane >> (5 − m) share.
inline float simd_sums_transposed(thread float *v, const int n, uint lane) {
    int live = n;
#pragma unroll
    for (int level = 0; level < 5; level++) {
        const int o = 16 >> level;
        if (live > 1) {
            const bool upper = (lane & uint(o)) != 0;
            live /= 2;
            // A constant bound (live is one only once the level loop is unrolled), so that this unrolls too
            // and v stays in registers.
#pragma unroll
            for (int k = 0; k < 16; k++) {
                if (k >= live) break;
                const float send = upper ? v[k] : v[k + live], keep = upper ? v[k + live] : v[k];
                v[k] = keep + simd_shuffle_xor(send, ushort(o));
            }
        } else {
            v[0] += simd_shuffle_xor(v[0], ushort(o));
        }
    }
    return v[0];
}
