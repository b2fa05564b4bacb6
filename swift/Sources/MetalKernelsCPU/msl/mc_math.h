// mc_math.h (MSL compatibility, part of metal_stdlib): math, common, integer, relational and geometric
// functions for float, half, bfloat and their vectors.
//
// Scalars are computed in float with clang builtins (no <cmath>: its global double overloads would make
// MSL calls ambiguous) and rounded to the argument type. Vectors apply the scalar function per element.
// fast:: and precise:: variants are the same functions: this is a correctness tool. MSL has no double,
// so an unsuffixed literal like 0.5 (a double in C++) takes the float overloads.
#pragma once

#include "mc_types.h"

namespace metal {

template <class T> struct mc_is_float_t : std::false_type {};
template <> struct mc_is_float_t<float> : std::true_type {};
template <> struct mc_is_float_t<half> : std::true_type {};
template <> struct mc_is_float_t<bfloat> : std::true_type {};
template <> struct mc_is_float_t<double> : std::true_type {};
template <class T> constexpr bool mc_is_float = mc_is_float_t<mc_plain<T>>::value;
template <class T> constexpr bool mc_is_int = std::is_integral_v<mc_plain<T>> && !std::is_same_v<mc_plain<T>, bool>;

template <class V> using mc_if_fvec = std::enable_if_t<mc_is_vec<V> && mc_is_float<mc_elem<V>>, int>;
template <class V> using mc_if_ivec = std::enable_if_t<mc_is_vec<V> && mc_is_int<mc_elem<V>>, int>;
template <class V> using mc_if_vec = std::enable_if_t<mc_is_vec<V>, int>;
template <class S> using mc_if_scalar = std::enable_if_t<std::is_arithmetic_v<mc_plain<S>> || mc_is_float<S>, int>;

#define MC_INLINE inline __attribute__((always_inline))

// f(float) from a builtin expression of x; half/bfloat/double overloads and vectors follow from it.
#define MC_UNARY_FLOAT(name, expr)                                                                           \
    MC_INLINE float name(float x) { return expr; }                                                          \
    MC_INLINE half name(half x) { return (half)name((float)x); }                                             \
    MC_INLINE bfloat name(bfloat x) { return (bfloat)name((float)x); }                                       \
    MC_INLINE float name(double x) { return name((float)x); }                                                \
    template <class V, mc_if_fvec<V> = 0> MC_INLINE V name(V v) {                                            \
        V r;                                                                                                 \
        for (int i = 0; i < mc_width<V>; i++) r[i] = name(v[i]);                                             \
        return r;                                                                                            \
    }

MC_UNARY_FLOAT(exp, __builtin_expf(x))
MC_UNARY_FLOAT(exp2, __builtin_exp2f(x))
MC_UNARY_FLOAT(exp10, __builtin_powf(10.0f, x))
MC_UNARY_FLOAT(log, __builtin_logf(x))
MC_UNARY_FLOAT(log2, __builtin_log2f(x))
MC_UNARY_FLOAT(log10, __builtin_log10f(x))
MC_UNARY_FLOAT(sqrt, __builtin_sqrtf(x))
MC_UNARY_FLOAT(rsqrt, 1.0f / __builtin_sqrtf(x))
MC_UNARY_FLOAT(sin, __builtin_sinf(x))
MC_UNARY_FLOAT(cos, __builtin_cosf(x))
MC_UNARY_FLOAT(tan, __builtin_tanf(x))
MC_UNARY_FLOAT(sinpi, __builtin_sinf(x * 3.14159265358979f))
MC_UNARY_FLOAT(cospi, __builtin_cosf(x * 3.14159265358979f))
MC_UNARY_FLOAT(asin, __builtin_asinf(x))
MC_UNARY_FLOAT(acos, __builtin_acosf(x))
MC_UNARY_FLOAT(atan, __builtin_atanf(x))
MC_UNARY_FLOAT(sinh, __builtin_sinhf(x))
MC_UNARY_FLOAT(cosh, __builtin_coshf(x))
MC_UNARY_FLOAT(tanh, __builtin_tanhf(x))
MC_UNARY_FLOAT(asinh, __builtin_asinhf(x))
MC_UNARY_FLOAT(acosh, __builtin_acoshf(x))
MC_UNARY_FLOAT(atanh, __builtin_atanhf(x))
MC_UNARY_FLOAT(floor, __builtin_floorf(x))
MC_UNARY_FLOAT(ceil, __builtin_ceilf(x))
MC_UNARY_FLOAT(round, __builtin_roundf(x))
MC_UNARY_FLOAT(rint, __builtin_rintf(x))
MC_UNARY_FLOAT(trunc, __builtin_truncf(x))
MC_UNARY_FLOAT(fabs, __builtin_fabsf(x))
MC_UNARY_FLOAT(fract, __builtin_fminf(x - __builtin_floorf(x), 0x1.fffffep-1f))
MC_UNARY_FLOAT(saturate, __builtin_fminf(__builtin_fmaxf(x, 0.0f), 1.0f))
MC_UNARY_FLOAT(sign, x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x == x ? 0.0f : 0.0f)
MC_UNARY_FLOAT(abs, __builtin_fabsf(x))
#undef MC_UNARY_FLOAT

// Integer abs and bit counts.
#define MC_INT_SCALARS(X) X(char) X(uchar) X(short) X(ushort) X(int) X(uint) X(long) X(ulong)
#define MC_INT_ABS(T)                                                                                        \
    MC_INLINE T abs(T x) {                                                                                   \
        if constexpr (std::is_signed_v<T>) return x < 0 ? (T)-x : x;                                         \
        else return x;                                                                                       \
    }                                                                                                        \
    MC_INLINE T popcount(T x) { return (T)__builtin_popcountll((unsigned long long)(std::make_unsigned_t<T>)x); } \
    MC_INLINE T clz(T x) {                                                                                   \
        using U = std::make_unsigned_t<T>;                                                                   \
        return (T)(U)x == 0 ? (T)(sizeof(T) * 8)                                                             \
                            : (T)(__builtin_clzll((unsigned long long)(U)x) - (64 - sizeof(T) * 8));         \
    }                                                                                                        \
    MC_INLINE T ctz(T x) {                                                                                   \
        using U = std::make_unsigned_t<T>;                                                                   \
        return (U)x == 0 ? (T)(sizeof(T) * 8) : (T)__builtin_ctzll((unsigned long long)(U)x);                \
    }
MC_INT_SCALARS(MC_INT_ABS)
#undef MC_INT_ABS
template <class V, mc_if_ivec<V> = 0> MC_INLINE V abs(V v) {
    V r;
    for (int i = 0; i < mc_width<V>; i++) r[i] = abs(v[i]);
    return r;
}
template <class V, mc_if_ivec<V> = 0> MC_INLINE V popcount(V v) {
    V r;
    for (int i = 0; i < mc_width<V>; i++) r[i] = popcount(v[i]);
    return r;
}
MC_INLINE uint mulhi(uint a, uint b) { return (uint)(((uint64_t)a * b) >> 32); }
MC_INLINE int mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }

// Scalar arithmetic of mixed types follows C's usual conversions; floating results are computed in float.
template <class A, class B> using mc_common = std::remove_cv_t<decltype(true ? A() : B())>;
template <class T> MC_INLINE T mc_fmin(T a, T b) {
    if constexpr (mc_is_float<T>) return (T)__builtin_fminf((float)a, (float)b);
    else return b < a ? b : a;
}
template <class T> MC_INLINE T mc_fmax(T a, T b) {
    if constexpr (mc_is_float<T>) return (T)__builtin_fmaxf((float)a, (float)b);
    else return a < b ? b : a;
}

// A binary function of scalars of any arithmetic types, plus vector-vector, vector-scalar and scalar-vector.
#define MC_BINARY(name, scalar_expr)                                                                         \
    template <class A, class B, mc_if_scalar<A> = 0, mc_if_scalar<B> = 0>                                    \
    MC_INLINE auto name(A a_, B b_) {                                                                        \
        using T = std::conditional_t<std::is_same_v<mc_common<A, B>, double>, float, mc_common<A, B>>;       \
        T a = (T)a_, b = (T)b_;                                                                              \
        return (T)(scalar_expr);                                                                             \
    }                                                                                                        \
    template <class V, mc_if_vec<V> = 0> MC_INLINE V name(V a, V b) {                                        \
        V r;                                                                                                 \
        for (int i = 0; i < mc_width<V>; i++) r[i] = name(a[i], b[i]);                                       \
        return r;                                                                                            \
    }                                                                                                        \
    template <class V, class S, mc_if_vec<V> = 0, mc_if_scalar<S> = 0> MC_INLINE V name(V a, S b) {          \
        return name(a, V((mc_elem<V>)b));                                                                    \
    }                                                                                                        \
    template <class V, class S, mc_if_vec<V> = 0, mc_if_scalar<S> = 0> MC_INLINE V name(S a, V b) {          \
        return name(V((mc_elem<V>)a), b);                                                                    \
    }

MC_BINARY(min, mc_fmin(a, b))
MC_BINARY(max, mc_fmax(a, b))
MC_BINARY(fmin, mc_fmin(a, b))
MC_BINARY(fmax, mc_fmax(a, b))
MC_BINARY(pow, __builtin_powf((float)a, (float)b))
MC_BINARY(powr, __builtin_powf((float)a, (float)b))
MC_BINARY(atan2, __builtin_atan2f((float)a, (float)b))
MC_BINARY(fmod, __builtin_fmodf((float)a, (float)b))
MC_BINARY(copysign, __builtin_copysignf((float)a, (float)b))
MC_BINARY(fdim, (float)a > (float)b ? (float)a - (float)b : 0.0f)
MC_BINARY(step, (float)b < (float)a ? 0.0f : 1.0f)
MC_BINARY(divide, (float)a / (float)b)
MC_BINARY(absdiff, a > b ? a - b : b - a)
#undef MC_BINARY

template <class X, class L, class H> MC_INLINE auto clamp(X x, L lo, H hi) { return min(max(x, lo), hi); }
template <class X, class Y, class A> MC_INLINE auto mix(X x, Y y, A a) { return x + (y - x) * a; }
template <class E0, class E1, class X> MC_INLINE auto smoothstep(E0 e0, E1 e1, X x) {
    auto t = clamp((x - e0) / (e1 - e0), 0.0f, 1.0f);
    return t * t * (3.0f - 2.0f * t);
}

MC_INLINE float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
MC_INLINE half fma(half a, half b, half c) { return (half)__builtin_fmaf((float)a, (float)b, (float)c); }
MC_INLINE bfloat fma(bfloat a, bfloat b, bfloat c) { return (bfloat)__builtin_fmaf((float)a, (float)b, (float)c); }
template <class V, mc_if_fvec<V> = 0> MC_INLINE V fma(V a, V b, V c) {
    V r;
    for (int i = 0; i < mc_width<V>; i++) r[i] = fma(a[i], b[i], c[i]);
    return r;
}
template <class A, class B, class C> MC_INLINE auto mad(A a, B b, C c) { return a * b + c; }

// Relational functions: scalars give bool, vectors give vec<bool, N>.
#define MC_PREDICATE(name, expr)                                                                             \
    template <class S, std::enable_if_t<mc_is_float<S>, int> = 0> MC_INLINE bool name(S s) {                 \
        float x = (float)s;                                                                                  \
        return expr;                                                                                         \
    }                                                                                                        \
    template <class V, mc_if_fvec<V> = 0> MC_INLINE vec<bool, mc_width<V>> name(V v) {                       \
        vec<bool, mc_width<V>> r;                                                                            \
        for (int i = 0; i < mc_width<V>; i++) r[i] = name(v[i]);                                             \
        return r;                                                                                            \
    }
MC_PREDICATE(isnan, x != x)
MC_PREDICATE(isinf, __builtin_isinf(x))
MC_PREDICATE(isfinite, __builtin_isfinite(x))
MC_PREDICATE(isnormal, __builtin_isnormal(x))
MC_PREDICATE(signbit, __builtin_signbit(x))
#undef MC_PREDICATE

// any/all take bool vectors and the integer masks that vector comparisons produce.
MC_INLINE bool any(bool b) { return b; }
MC_INLINE bool all(bool b) { return b; }
template <class V, mc_if_vec<V> = 0> MC_INLINE bool any(V v) {
    for (int i = 0; i < mc_width<V>; i++)
        if (v[i]) return true;
    return false;
}
template <class V, mc_if_vec<V> = 0> MC_INLINE bool all(V v) {
    for (int i = 0; i < mc_width<V>; i++)
        if (!v[i]) return false;
    return true;
}

// select(a, b, c): b where c is true, else a.
template <class T, std::enable_if_t<!mc_is_vec<T>, int> = 0> MC_INLINE T select(T a, T b, bool c) { return c ? b : a; }
template <class V, class M, mc_if_vec<V> = 0> MC_INLINE V select(V a, V b, M c) {
    V r;
    for (int i = 0; i < mc_width<V>; i++) {
        if constexpr (mc_is_vec<M>) r[i] = c[i] ? b[i] : a[i];
        else r[i] = c ? b[i] : a[i];
    }
    return r;
}

// Geometric functions (float accumulation).
template <class V, mc_if_fvec<V> = 0> MC_INLINE mc_elem<V> dot(V a, V b) {
    float s = 0.0f;
    for (int i = 0; i < mc_width<V>; i++) s += (float)a[i] * (float)b[i];
    return (mc_elem<V>)s;
}
template <class V, mc_if_fvec<V> = 0> MC_INLINE mc_elem<V> length_squared(V v) { return dot(v, v); }
template <class V, mc_if_fvec<V> = 0> MC_INLINE mc_elem<V> length(V v) { return sqrt(dot(v, v)); }
template <class V, mc_if_fvec<V> = 0> MC_INLINE mc_elem<V> distance(V a, V b) { return length(a - b); }
template <class V, mc_if_fvec<V> = 0> MC_INLINE V normalize(V v) { return v * rsqrt(dot(v, v)); }
template <class V, mc_if_fvec<V> = 0> MC_INLINE V cross(V a, V b) {
    static_assert(mc_width<V> == 3, "cross needs 3-component vectors");
    V r;
    r[0] = a[1] * b[2] - a[2] * b[1];
    r[1] = a[2] * b[0] - a[0] * b[2];
    r[2] = a[0] * b[1] - a[1] * b[0];
    return r;
}

#define MC_MATH_NAMES(X)                                                                                     \
    X(exp) X(exp2) X(exp10) X(log) X(log2) X(log10) X(sqrt) X(rsqrt) X(sin) X(cos) X(tan) X(sinpi) X(cospi) \
    X(asin) X(acos) X(atan) X(sinh) X(cosh) X(tanh) X(asinh) X(acosh) X(atanh) X(floor) X(ceil) X(round)   \
    X(rint) X(trunc) X(fabs) X(fract) X(saturate) X(sign) X(abs) X(min) X(max) X(fmin) X(fmax) X(pow)      \
    X(powr) X(atan2) X(fmod) X(copysign) X(fdim) X(step) X(divide) X(clamp) X(mix) X(smoothstep) X(fma)    \
    X(mad) X(isnan) X(isinf) X(isfinite) X(dot) X(length) X(length_squared) X(distance) X(normalize)       \
    X(cross)
#define MC_USING(name) using metal::name;
namespace fast {
MC_MATH_NAMES(MC_USING)
}
namespace precise {
MC_MATH_NAMES(MC_USING)
}
#undef MC_USING
#undef MC_MATH_NAMES

// numeric_limits for the scalar types kernels use.
template <class T> struct numeric_limits {
    static constexpr T min() { return std::numeric_limits<T>::min(); }
    static constexpr T max() { return std::numeric_limits<T>::max(); }
    static constexpr T lowest() { return std::numeric_limits<T>::lowest(); }
    static constexpr T epsilon() { return std::numeric_limits<T>::epsilon(); }
    static constexpr T infinity() { return std::numeric_limits<T>::infinity(); }
    static constexpr T quiet_NaN() { return std::numeric_limits<T>::quiet_NaN(); }
};
template <> struct numeric_limits<half> {
    static constexpr half min() { return (half)6.103515625e-05f; }
    static constexpr half max() { return (half)65504.0f; }
    static constexpr half lowest() { return (half)-65504.0f; }
    static constexpr half epsilon() { return (half)0.0009765625f; }
    static constexpr half infinity() { return (half)__builtin_inff(); }
    static constexpr half quiet_NaN() { return (half)__builtin_nanf(""); }
};

} // namespace metal

#ifndef INFINITY
#define INFINITY __builtin_inff()
#endif
#ifndef NAN
#define NAN __builtin_nanf("")
#endif
#ifndef HUGE_VALF
#define HUGE_VALF __builtin_huge_valf()
#endif
#ifndef MAXFLOAT
#define MAXFLOAT 0x1.fffffep+127f
#endif
#ifndef FLT_MAX
#define FLT_MAX 0x1.fffffep+127f
#endif
#ifndef FLT_MIN
#define FLT_MIN 0x1p-126f
#endif
#ifndef FLT_EPSILON
#define FLT_EPSILON 0x1p-23f
#endif
#define HALF_MAX ((half)65504.0f)
#define HALF_MIN ((half)6.103515625e-05f)
#define HALF_EPSILON ((half)0.0009765625f)
#define M_E_F 2.71828182845904523536f
#define M_LOG2E_F 1.44269504088896340736f
#define M_LOG10E_F 0.434294481903251827651f
#define M_LN2_F 0.693147180559945309417f
#define M_LN10_F 2.30258509299404568402f
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_PI_4_F 0.785398163397448309616f
#define M_1_PI_F 0.318309886183790671538f
#define M_2_PI_F 0.636619772367581343076f
#define M_2_SQRTPI_F 1.12837916709551257390f
#define M_SQRT2_F 1.41421356237309504880f
#define M_SQRT1_2_F 0.707106781186547524401f
#define M_PI_H ((half)M_PI_F)
#define M_LN2_H ((half)M_LN2_F)
