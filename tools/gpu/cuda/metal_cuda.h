// metal_cuda.h: the Metal Shading Language subset of metal/*.metal, on CUDA (the GPU proxy, tools/gpu).
//
// tools/metal_bindings/emit_cuda.ts turns each .metal file into a CUDA view (address-space qualifiers
// and [[attributes]] removed, helpers made __device__, kernels made __device__ functions) and includes
// that view once per pipeline specialization, with the function constants as constexpr values, as Metal
// specialises. This header supplies what the view needs; the kernels themselves are not edited.
//
//   simdgroup  = warp (32 lanes, lane = linear thread index % 32, x-major like Metal)
//   threadgroup_barrier / simdgroup_barrier = __syncthreads / __syncwarp
//   [[threadgroup(n)]] memory = one dynamic shared block, at offsets the runner chooses
//   simdgroup_float8x8 = MetalCompat's lane layout (row lane/4, columns 2·(lane%4) and +1), exact f32
//   math = CUDA's precise f32 functions (Metal defaults to fast math: results differ in the last bits)
//
// MC_CHECK_SIMD (a separate build): every SIMD-group function first checks that all live lanes of its
// SIMD group reached the same call (same source line, same count of SIMD-group calls), the MSL rule that
// no sanitizer checks; a violation is counted in mc_report and the call returns without exchanging.
#pragma once

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;

#define MC_D __device__ __forceinline__

namespace metal {

// ---- half: storage plus conversions (kernels read f16 and widen it; they do no f16 arithmetic) ----
struct half {
    unsigned short bits;
    half() = default;
    MC_D half(float f) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(f)); }
    MC_D operator float() const {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
        return f;
    }
};

// ---- vectors: MSL constructors (float4(a, b, c, d), float4(x), float4(h4)), operators, members -----
template <class T, int N> struct vec;

template <class T> struct vec<T, 2> {
    T x, y;
    vec() = default;
    MC_D constexpr vec(T a, T b) : x(a), y(b) {}
    MC_D explicit constexpr vec(T s) : x(s), y(s) {}
    template <class U> MC_D explicit vec(const vec<U, 2> &o) : x(T(o.x)), y(T(o.y)) {}
    MC_D T &operator[](int i) { return i == 0 ? x : y; }
    MC_D T operator[](int i) const { return i == 0 ? x : y; }
};

template <class T> struct vec<T, 3> {
    T x, y, z;
    vec() = default;
    MC_D constexpr vec(T a, T b, T c) : x(a), y(b), z(c) {}
    MC_D explicit constexpr vec(T s) : x(s), y(s), z(s) {}
    template <class U> MC_D explicit vec(const vec<U, 3> &o) : x(T(o.x)), y(T(o.y)), z(T(o.z)) {}
    MC_D T &operator[](int i) { return i == 0 ? x : (i == 1 ? y : z); }
    MC_D T operator[](int i) const { return i == 0 ? x : (i == 1 ? y : z); }
};

// half4 is storage only (kernels load it and widen it to float4): one 64-bit word, so that the load is
// one 64-bit access. Converting member by member read global memory as four 16-bit loads (seen in SASS
// in the feasibility run: in_proj 10.9 → 6.0 µs with the wide load).
struct alignas(8) half4 {
    unsigned long long raw;
    MC_D half operator[](int i) const {
        half h;
        h.bits = (unsigned short)(raw >> (16 * i));
        return h;
    }
};

template <class T> struct alignas(4 * sizeof(T)) vec<T, 4> {
    T x, y, z, w;
    vec() = default;
    MC_D constexpr vec(T a, T b, T c, T d) : x(a), y(b), z(c), w(d) {}
    MC_D explicit constexpr vec(T s) : x(s), y(s), z(s), w(s) {}
    template <class U> MC_D explicit vec(const vec<U, 4> &o) : x(T(o.x)), y(T(o.y)), z(T(o.z)), w(T(o.w)) {}
    MC_D explicit vec(const half4 o) : x(T(float(o[0]))), y(T(float(o[1]))), z(T(float(o[2]))), w(T(float(o[3]))) {}
    MC_D T &operator[](int i) { return i == 0 ? x : (i == 1 ? y : (i == 2 ? z : w)); }
    MC_D T operator[](int i) const { return i == 0 ? x : (i == 1 ? y : (i == 2 ? z : w)); }
};


#define MC_VEC_OP(op)                                                                                      \
    template <class T, int N> MC_D vec<T, N> operator op(vec<T, N> a, const vec<T, N> &b) {                \
        for (int i = 0; i < N; i++) a[i] = a[i] op b[i];                                                   \
        return a;                                                                                          \
    }                                                                                                      \
    template <class T, int N> MC_D vec<T, N> operator op(vec<T, N> a, T s) {                               \
        for (int i = 0; i < N; i++) a[i] = a[i] op s;                                                      \
        return a;                                                                                          \
    }                                                                                                      \
    template <class T, int N> MC_D vec<T, N> operator op(T s, vec<T, N> a) {                               \
        for (int i = 0; i < N; i++) a[i] = s op a[i];                                                      \
        return a;                                                                                          \
    }                                                                                                      \
    template <class T, int N, class U> MC_D vec<T, N> &operator op##=(vec<T, N> &a, const U &b) {          \
        a = a op b;                                                                                        \
        return a;                                                                                          \
    }
MC_VEC_OP(+)
MC_VEC_OP(-)
MC_VEC_OP(*)
MC_VEC_OP(/)
#undef MC_VEC_OP

template <class T, int N> MC_D T dot(const vec<T, N> &a, const vec<T, N> &b) {
    T s = a[0] * b[0];
    for (int i = 1; i < N; i++) s += a[i] * b[i];
    return s;
}


// ---- math not in CUDA's global overloads (exp, log, rsqrt, min, max on float and int are) -----------
MC_D float clamp(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }
MC_D int clamp(int x, int lo, int hi) { return x < lo ? lo : (x > hi ? hi : x); }
template <class T> MC_D T select(T a, T b, bool c) { return c ? b : a; }

// ---- barriers ------------------------------------------------------------------------------------
enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
MC_D void threadgroup_barrier(mem_flags) { __syncthreads(); }
MC_D void simdgroup_barrier(mem_flags) { __syncwarp(); }

// ---- SIMD-group functions --------------------------------------------------------------------------
MC_D uint mc_lane() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32u; }

#ifdef MC_CHECK_SIMD
// Per thread of the block: (count of SIMD-group calls << 16 | source line of the current one), or
// MC_EXITED once the thread has returned from the kernel (the wrapper writes it).
__shared__ unsigned mc_simd_slot[1024];
__shared__ unsigned mc_simd_bad; // a violation was seen in this threadgroup: stop checking (and waiting)
__device__ unsigned mc_report[4]; // violations, first line, first dispatch site, first block
constexpr unsigned MC_EXITED = 0xffffffffu;
__device__ unsigned mc_site_now; // set by the wrapper from the argument table (first writer wins)

MC_D uint mc_linear() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

// True when every live lane of this SIMD group is at this call (line) as its count-th SIMD-group call.
inline __device__ bool mc_simd_uniform(unsigned line, unsigned site) {
    if (*(volatile unsigned *)&mc_simd_bad) return false;
    const uint me = mc_linear(), base = me - me % 32u, threads = blockDim.x * blockDim.y * blockDim.z;
    const unsigned mine = (((mc_simd_slot[me] >> 16) + 1u) << 16) | (line & 0xffffu);
    volatile unsigned *slot = mc_simd_slot;
    slot[me] = mine;
    __threadfence_block();
    bool ok = true;
    for (uint l = base; l < base + 32u && l < threads; l++) {
        for (int spin = 0;; spin++) {
            const unsigned v = slot[l];
            if (v == MC_EXITED || (v >> 16) > (mine >> 16)) break;  // gone, or already past this call
            if ((v >> 16) == (mine >> 16)) {
                if ((v & 0xffffu) != (mine & 0xffffu)) ok = false;  // the same count at another call
                break;
            }
            if (spin > 20000) {  // never came (~1 ms): stuck at a barrier, or in another branch
                ok = false;
                break;
            }
            __nanosleep(32);
        }
    }
    if (!ok) *(volatile unsigned *)&mc_simd_bad = 1u;
    if (!ok && atomicAdd(&mc_report[0], 1u) == 0u) {
        mc_report[1] = line;
        mc_report[2] = site;
        mc_report[3] = blockIdx.x + 65536u * blockIdx.y;
    }
    return ok;
}
#define MC_SIMD_CHECK(line)                                                                                \
    if (!mc_simd_uniform(line, mc_site_now)) return x;
#else
#define MC_SIMD_CHECK(line)
#endif

template <class T> MC_D T simd_sum(T x, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
template <class T> MC_D T simd_max(T x, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    for (int o = 16; o > 0; o >>= 1) x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
template <class T> MC_D T simd_min(T x, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
template <class T> MC_D T simd_prefix_inclusive_sum(T x, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    const uint lane = mc_lane();
    for (int o = 1; o < 32; o <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= uint(o)) x += y;
    }
    return x;
}
template <class T> MC_D T simd_prefix_exclusive_sum(T x, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    const uint lane = mc_lane();
    T inc = x;
    for (int o = 1; o < 32; o <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= uint(o)) inc += y;
    }
    return inc - x;
}
template <class T> MC_D T simd_broadcast(T x, ushort from, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    return __shfl_sync(0xffffffffu, x, from);
}
template <class T> MC_D T simd_shuffle(T x, ushort from, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    return __shfl_sync(0xffffffffu, x, from);
}
template <class T> MC_D T simd_shuffle_xor(T x, ushort mask, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    return __shfl_xor_sync(0xffffffffu, x, mask);
}
template <class T> MC_D T simd_shuffle_down(T x, ushort d, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    return __shfl_down_sync(0xffffffffu, x, d);
}
template <class T> MC_D T simd_shuffle_up(T x, ushort d, unsigned line = __builtin_LINE()) {
    MC_SIMD_CHECK(line)
    return __shfl_up_sync(0xffffffffu, x, d);
}

// ---- 8×8 SIMD-group matrices: MetalCompat's layout (lane owns row lane/4, columns 2·(lane%4), +1) ----
template <class T, int Cols, int Rows = Cols> struct simdgroup_matrix {
    static_assert(Cols == 8 && Rows == 8, "8x8 simdgroup matrices only");
    T e[2];
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;

template <class T, int C, int R = C> MC_D simdgroup_matrix<T, C, R> make_filled_simdgroup_matrix(T v) {
    simdgroup_matrix<T, C, R> m;
    m.e[0] = v;
    m.e[1] = v;
    return m;
}

template <class T, class S, int C, int R>
MC_D void simdgroup_load(simdgroup_matrix<T, C, R> &d, const S *src, ulong elements_per_row = C,
                         vec<ulong, 2> origin = vec<ulong, 2>(0ul), bool transpose = false) {
    const uint lane = mc_lane(), row = lane / 4;
    for (uint j = 0; j < 2; j++) {
        const uint col = 2 * (lane % 4) + j;
        const ulong r = transpose ? col : row, c = transpose ? row : col;
        d.e[j] = T(src[(origin.y + r) * elements_per_row + origin.x + c]);
    }
}

template <class T, class S, int C, int R>
MC_D void simdgroup_store(const simdgroup_matrix<T, C, R> &a, S *dst, ulong elements_per_row = C,
                          vec<ulong, 2> origin = vec<ulong, 2>(0ul), bool transpose = false) {
    const uint lane = mc_lane(), row = lane / 4;
    for (uint j = 0; j < 2; j++) {
        const uint col = 2 * (lane % 4) + j;
        const ulong r = transpose ? col : row, c = transpose ? row : col;
        dst[(origin.y + r) * elements_per_row + origin.x + c] = S(a.e[j]);
    }
}

// d = a·b + c: this lane's row of a (from the 4 lanes of that row) and two columns of b (from the 8 lanes
// of those columns) by shuffles, then 16 FMAs. Exact f32; says nothing about Apple's matrix units.
template <class T, int C, int R, int K>
MC_D void simdgroup_multiply_accumulate(simdgroup_matrix<T, C, R> &d, const simdgroup_matrix<T, K, R> &a,
                                        const simdgroup_matrix<T, C, K> &b, const simdgroup_matrix<T, C, R> &c,
                                        unsigned line = __builtin_LINE()) {
#ifdef MC_CHECK_SIMD
    if (!mc_simd_uniform(line, mc_site_now)) return;
#endif
    const uint lane = mc_lane(), row = lane / 4, q = lane % 4;
    T arow[8];
    for (int k = 0; k < 4; k++) {
        arow[2 * k] = __shfl_sync(0xffffffffu, a.e[0], row * 4 + k);
        arow[2 * k + 1] = __shfl_sync(0xffffffffu, a.e[1], row * 4 + k);
    }
    T p0 = T(0), p1 = T(0);
    for (int k = 0; k < 8; k++) {
        const T b0 = __shfl_sync(0xffffffffu, b.e[0], k * 4 + q);
        const T b1 = __shfl_sync(0xffffffffu, b.e[1], k * 4 + q);
        p0 += arow[k] * b0;
        p1 += arow[k] * b1;
    }
    d.e[0] = p0 + c.e[0];
    d.e[1] = p1 + c.e[1];
}

template <class T, int C, int R, int K>
MC_D void simdgroup_multiply(simdgroup_matrix<T, C, R> &d, const simdgroup_matrix<T, K, R> &a,
                             const simdgroup_matrix<T, C, K> &b) {
    simdgroup_multiply_accumulate(d, a, b, make_filled_simdgroup_matrix<T, C, R>(T(0)));
}

} // namespace metal

// ---- the names kernels see ------------------------------------------------------------------------
// CUDA predeclares float4, uint3, … in the global namespace, so `using namespace metal` alone would make
// them ambiguous. The views are included inside namespace msl, whose own declarations hide the global
// ones during unqualified lookup.
namespace msl {
using namespace metal;
#define MC_VECTOR_TYPES(T, name)                                                                           \
    typedef metal::vec<T, 2> name##2;                                                                      \
    typedef metal::vec<T, 3> name##3;                                                                      \
    typedef metal::vec<T, 4> name##4;
MC_VECTOR_TYPES(float, float)
MC_VECTOR_TYPES(int, int)
MC_VECTOR_TYPES(uint, uint)
MC_VECTOR_TYPES(short, short)
MC_VECTOR_TYPES(ushort, ushort)
MC_VECTOR_TYPES(uchar, uchar)
MC_VECTOR_TYPES(long, long)
MC_VECTOR_TYPES(ulong, ulong)
#undef MC_VECTOR_TYPES
typedef metal::half half;
typedef metal::half4 half4;
typedef metal::mem_flags mem_flags;
typedef metal::simdgroup_float8x8 simdgroup_float8x8;
} // namespace msl

// ---- the generated __global__ wrappers' side: argument table and position attributes ----------------
namespace mc {
typedef metal::vec<uint, 3> u3;

constexpr int kMaxThreadgroupArgs = 4;

// One dispatch's arguments (passed by value, 288 bytes): buffer pointers, byte offsets of the
// [[threadgroup(n)]] memory in the dynamic shared block, and for dispatchThreads the grid in threads
// (0 for dispatchThreadgroups).
struct args {
    void *buffers[31];
    unsigned tg_offset[kMaxThreadgroupArgs];
    unsigned grid_threads[3];
    unsigned site; // the dispatch's index in its trace, for check-mode reports
};

enum attr {
    thread_position_in_grid,
    threadgroup_position_in_grid,
    thread_position_in_threadgroup,
    threads_per_threadgroup,
    threadgroups_per_grid,
    threads_per_grid,
    thread_index_in_threadgroup,
    thread_index_in_simdgroup,
    simdgroup_index_in_threadgroup,
    threads_per_simdgroup,
    simdgroups_per_threadgroup,
};

extern __shared__ __align__(16) unsigned char mc_dynamic_shared[];

// Threads per threadgroup as Metal reports them: a partial threadgroup at the edge of a dispatchThreads
// grid is smaller (the CUDA block keeps its size; the threads outside the grid have already returned).
MC_D u3 tptg(const args &a) {
    u3 t(blockDim.x, blockDim.y, blockDim.z);
    if (a.grid_threads[0] != 0) {
        t.x = min(t.x, a.grid_threads[0] - blockIdx.x * blockDim.x);
        t.y = min(t.y, a.grid_threads[1] - blockIdx.y * blockDim.y);
        t.z = min(t.z, a.grid_threads[2] - blockIdx.z * blockDim.z);
    }
    return t;
}

MC_D u3 position(const args &a, int which) {
    switch (which) {
    case thread_position_in_grid:
        return u3(blockIdx.x * blockDim.x + threadIdx.x, blockIdx.y * blockDim.y + threadIdx.y,
                  blockIdx.z * blockDim.z + threadIdx.z);
    case threadgroup_position_in_grid: return u3(blockIdx.x, blockIdx.y, blockIdx.z);
    case thread_position_in_threadgroup: return u3(threadIdx.x, threadIdx.y, threadIdx.z);
    case threads_per_threadgroup: return tptg(a);
    case threadgroups_per_grid: return u3(gridDim.x, gridDim.y, gridDim.z);
    case threads_per_grid:
        if (a.grid_threads[0] != 0) return u3(a.grid_threads[0], a.grid_threads[1], a.grid_threads[2]);
        return u3(gridDim.x * blockDim.x, gridDim.y * blockDim.y, gridDim.z * blockDim.z);
    default: {
        // Linear index x-major, as the CUDA warp is formed (equal to Metal's dense index except in a
        // partial threadgroup of more than one row, where no kernel here calls SIMD-group functions).
        const uint linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        const u3 t = tptg(a);
        uint v = 0;
        if (which == thread_index_in_threadgroup) v = linear;
        else if (which == thread_index_in_simdgroup) v = linear % 32u;
        else if (which == simdgroup_index_in_threadgroup) v = linear / 32u;
        else if (which == threads_per_simdgroup) v = 32u;
        else if (which == simdgroups_per_threadgroup) v = (t.x * t.y * t.z + 31u) / 32u;
        return u3(v, 0u, 0u);
    }
    }
}

// Declared parameter types of a kernel, by index: param<decltype(&kernel), I>::type.
template <int I, class... P> struct pick;
template <class H, class... P> struct pick<0, H, P...> {
    typedef H type;
};
template <int I, class H, class... P> struct pick<I, H, P...> {
    typedef typename pick<I - 1, P...>::type type;
};
template <class F, int I> struct param;
template <class... P, int I> struct param<void (*)(P...), I> {
    typedef typename pick<I, P...>::type type;
};

template <class T> MC_D T buffer(const args &a, int n) { return (T)a.buffers[n]; }
template <class T> MC_D T threadgroup(const args &a, int n) { return (T)(mc_dynamic_shared + a.tg_offset[n]); }

template <class T> struct from_position {
    MC_D static T get(u3 v) { return T(v.x); }
};
template <class E> struct from_position<metal::vec<E, 2>> {
    MC_D static metal::vec<E, 2> get(u3 v) { return metal::vec<E, 2>(E(v.x), E(v.y)); }
};
template <class E> struct from_position<metal::vec<E, 3>> {
    MC_D static metal::vec<E, 3> get(u3 v) { return metal::vec<E, 3>(E(v.x), E(v.y), E(v.z)); }
};
template <class T> MC_D T pos(const args &a, int which) { return from_position<T>::get(position(a, which)); }

// Before the kernel body: false for threads outside a dispatchThreads grid (they return, as on Metal).
MC_D bool enter(const args &a) {
    bool inside = true;
    if (a.grid_threads[0] != 0) {
        inside = blockIdx.x * blockDim.x + threadIdx.x < a.grid_threads[0] &&
                 blockIdx.y * blockDim.y + threadIdx.y < a.grid_threads[1] &&
                 blockIdx.z * blockDim.z + threadIdx.z < a.grid_threads[2];
    }
#ifdef MC_CHECK_SIMD
    const uint me = metal::mc_linear();
    metal::mc_simd_slot[me] = 0u;
    if (me == 0) {
        metal::mc_site_now = a.site;
        metal::mc_simd_bad = 0u;
    }
    __syncthreads();
    if (!inside) ((volatile unsigned *)metal::mc_simd_slot)[me] = metal::MC_EXITED;
#endif
    return inside;
}

// After the kernel body (check mode: this lane no longer takes part in SIMD-group functions).
MC_D void leave() {
#ifdef MC_CHECK_SIMD
    ((volatile unsigned *)metal::mc_simd_slot)[metal::mc_linear()] = metal::MC_EXITED;
#endif
}

} // namespace mc
