// mc_matrix.h (MSL compatibility, part of metal_stdlib): 8x8 SIMD-group matrices.
//
// As on the GPU, a simdgroup_matrix is distributed over the 32 lanes of a SIMD group: each lane owns two
// of the 64 elements (row lane / 4, columns 2 * (lane % 4) and the next one; Apple's real layout is
// unspecified, kernels must not rely on it). Loads and stores touch only the caller's elements;
// multiply(-accumulate) gathers A and B from all lanes with one SIMD-group exchange and computes the
// caller's elements of the result (accumulating in float). Matrix multiplies need all 32 lanes.
#pragma once

#include "mc_sync.h"

namespace metal {

template <class T, int Cols, int Rows = Cols> struct simdgroup_matrix {
    static_assert(Cols == 8 && Rows == 8, "MetalCompat supports 8x8 simdgroup matrices");
    vec<T, 2> e; // this lane's elements

    simdgroup_matrix() = default;
    // MSL: a diagonal matrix with dval on the diagonal.
    explicit simdgroup_matrix(T dval) {
        uint32_t lane = mc_simd_lane();
        for (int j = 0; j < 2; j++) e[j] = (int)(lane / 4) == (int)(2 * (lane % 4)) + j ? dval : T(0);
    }
    vec<T, 2> &thread_elements() { return e; }
    const vec<T, 2> &thread_elements() const { return e; }
};

typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int Cols, int Rows = Cols> MC_INLINE simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value) {
    simdgroup_matrix<T, Cols, Rows> m;
    m.e = vec<T, 2>(value);
    return m;
}

// Element (row, col) of the matrix at src with the given origin (x = column, y = row); transposed loads
// read element (col, row) of the stored matrix.
template <class T, class S>
MC_INLINE void mc_matrix_io(vec<T, 2> &e, S *mem, ulong elements_per_row, ulong2 origin, bool transpose, bool store) {
    uint32_t lane = mc_simd_lane();
    uint32_t row = lane / 4;
    for (uint32_t j = 0; j < 2; j++) {
        uint32_t col = 2 * (lane % 4) + j;
        ulong r = transpose ? col : row, c = transpose ? row : col;
        S *p = mem + (origin.y + r) * elements_per_row + origin.x + c;
        if (store) *p = (S)e[j];
        else e[j] = (T)*p;
    }
}

template <class T, class S, int C, int R>
MC_INLINE void simdgroup_load(simdgroup_matrix<T, C, R> &d, const S *src, ulong elements_per_row = C,
                              ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
    mc_matrix_io(d.e, const_cast<S *>(src), elements_per_row, matrix_origin, transpose_matrix, false);
}

template <class T, class S, int C, int R>
MC_INLINE void simdgroup_store(const simdgroup_matrix<T, C, R> &a, S *dst, ulong elements_per_row = C,
                               ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
    vec<T, 2> e = a.e;
    mc_matrix_io(e, dst, elements_per_row, matrix_origin, transpose_matrix, true);
}

// d = a * b + c (c may be d).
template <class TD, class TA, class TB, class TC, int C, int R, int K>
MC_COLLECTIVE void simdgroup_multiply_accumulate(simdgroup_matrix<TD, C, R> &d, const simdgroup_matrix<TA, K, R> &a,
                                             const simdgroup_matrix<TB, C, K> &b,
                                             const simdgroup_matrix<TC, C, R> &c) {
    struct pair {
        vec<TA, 2> a;
        vec<TB, 2> b;
    } mine = {a.e, b.e};
    uint32_t active;
    const unsigned char *s = mc_exchange(mine, MC_SIMD_MATRIX, &active);
    if (active != 0xffffffffu) {
        mc_kernel_error("simdgroup matrix multiply in a SIMD group with fewer than 32 active lanes");
        d.e = vec<TD, 2>(TD(0));
        return;
    }
    float A[64], B[64];
    for (uint32_t l = 0; l < 32; l++) {
        pair p = mc_lane<pair>(s, l);
        for (int j = 0; j < 2; j++) {
            A[2 * l + j] = (float)p.a[j];
            B[2 * l + j] = (float)p.b[j];
        }
    }
    uint32_t lane = mc_simd_lane(), row = lane / 4;
    vec<TD, 2> out;
    for (uint32_t j = 0; j < 2; j++) {
        uint32_t col = 2 * (lane % 4) + j;
        float acc = (float)c.e[j];
        float prod = 0.0f;
        for (int k = 0; k < 8; k++) prod += A[row * 8 + k] * B[k * 8 + col];
        out[j] = (TD)(prod + acc);
    }
    d.e = out;
}

template <class TD, class TA, class TB, int C, int R, int K>
MC_INLINE void simdgroup_multiply(simdgroup_matrix<TD, C, R> &d, const simdgroup_matrix<TA, K, R> &a,
                                  const simdgroup_matrix<TB, C, K> &b) {
    simdgroup_matrix<TD, C, R> zero = make_filled_simdgroup_matrix<TD, C, R>(TD(0));
    simdgroup_multiply_accumulate(d, a, b, zero);
}

} // namespace metal
