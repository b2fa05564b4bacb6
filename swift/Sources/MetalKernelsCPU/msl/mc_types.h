// mc_types.h (MSL compatibility, part of metal_stdlib): scalar and vector types.
//
// Vectors are clang ext_vector_types, so MSL's operators, swizzles (.xy, .zyx, .rgba), splats from
// scalars and element access work natively. MSL's constructor syntax (float4(a, b, c, d),
// float4(v.xy, z, w), float4(x), float4(half4)) is provided by function-like macros defined at the
// end of metal_stdlib: `float4` alone stays the type, `float4(...)` becomes a call to mc_vec below.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <limits>
#include <type_traits>
#include <utility>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef _Float16 half;
typedef __bf16 bfloat;

#define MC_VECTOR_TYPES(T, name)                                                                             \
    typedef T name##2 __attribute__((ext_vector_type(2)));                                                  \
    typedef T name##3 __attribute__((ext_vector_type(3)));                                                  \
    typedef T name##4 __attribute__((ext_vector_type(4)));
MC_VECTOR_TYPES(float, float)
MC_VECTOR_TYPES(half, half)
MC_VECTOR_TYPES(bfloat, bfloat)
MC_VECTOR_TYPES(int, int)
MC_VECTOR_TYPES(uint, uint)
MC_VECTOR_TYPES(short, short)
MC_VECTOR_TYPES(ushort, ushort)
MC_VECTOR_TYPES(char, char)
MC_VECTOR_TYPES(uchar, uchar)
MC_VECTOR_TYPES(long, long)
MC_VECTOR_TYPES(ulong, ulong)
MC_VECTOR_TYPES(bool, bool)
#undef MC_VECTOR_TYPES

// MSL's half literal suffix (1.0h).
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wuser-defined-literals"
constexpr half operator""h(long double x) { return (half)x; }
constexpr half operator""h(unsigned long long x) { return (half)x; }
#pragma clang diagnostic pop

namespace metal {

template <class T, int N> using vec = T __attribute__((ext_vector_type(N)));

// Element type and width of a scalar or vector type.
template <class T> struct mc_vinfo {
    static constexpr int n = 1;
    static constexpr bool is_vec = false;
    using elem = T;
};
template <class T, int N> struct mc_vinfo<T __attribute__((ext_vector_type(N)))> {
    static constexpr int n = N;
    static constexpr bool is_vec = true;
    using elem = T;
};
template <class T> using mc_plain = std::remove_cv_t<std::remove_reference_t<T>>;
template <class T> constexpr bool mc_is_vec = mc_vinfo<mc_plain<T>>::is_vec;
template <class T> constexpr int mc_width = mc_vinfo<mc_plain<T>>::n;
template <class T> using mc_elem = typename mc_vinfo<mc_plain<T>>::elem;

template <class T, int N, class A> inline __attribute__((always_inline)) void mc_put(T *out, int &k, const A &a) {
    if constexpr (mc_is_vec<A>) {
        for (int i = 0; i < mc_width<A>; i++) out[k++] = (T)a[i];
    } else {
        out[k++] = (T)a;
    }
}

// MSL vector construction: no arguments (zero), one scalar (splat), one vector of the same width
// (element conversion) or scalars and vectors whose widths add up to N (composition).
template <class T, int N, class... A> inline __attribute__((always_inline)) vec<T, N> mc_vec(const A &...a) {
    if constexpr (sizeof...(A) == 0) {
        return vec<T, N>(T(0));
    } else if constexpr (sizeof...(A) == 1 && !(mc_is_vec<A> && ...)) {
        return vec<T, N>((T)(a, ...));
    } else {
        static_assert((mc_width<A> + ...) == N, "vector constructor: component count does not match");
        T parts[N];
        int k = 0;
        (mc_put<T, N>(parts, k, a), ...);
        vec<T, N> r;
        for (int i = 0; i < N; i++) r[i] = parts[i];
        return r;
    }
}

// Reinterprets the bits of a value as another type of the same size (MSL as_type<T>).
template <class To, class From> inline To as_type(const From &x) {
    static_assert(sizeof(To) == sizeof(From), "as_type: sizes differ");
    return __builtin_bit_cast(To, x);
}

} // namespace metal

using metal::vec;
