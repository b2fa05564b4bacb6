// mc_sync.h (MSL compatibility, part of metal_stdlib): barriers, SIMD-group functions, atomics.
//
// Every SIMD-group function is one mc_simd_exchange (CMetalCompat/barrier.c): each lane publishes its
// value, the live lanes meet, then every lane computes its result from the slots of the lanes that took
// part, in lane order (so all lanes of a reduction get bit-identical results). Lanes that have returned,
// or do not exist in a partial threadgroup, do not take part; reading such a lane through a shuffle or
// broadcast returns the caller's own value.
#pragma once

#include "mc_kernel_abi.h"
#include "mc_types.h"

namespace metal {

enum class mem_flags : uint32_t {
    mem_none = 0,
    mem_device = 1,
    mem_threadgroup = 2,
    mem_texture = 4,
    mem_threadgroup_imageblock = 8,
    mem_object_data = 16,
};
constexpr mem_flags operator|(mem_flags a, mem_flags b) { return (mem_flags)((uint32_t)a | (uint32_t)b); }

MC_INLINE void threadgroup_barrier(mem_flags flags) { mc_threadgroup_barrier((uint32_t)flags); }
MC_INLINE void simdgroup_barrier(mem_flags flags) {
    uint32_t active;
    (void)flags;
    mc_simd_exchange(nullptr, 0, MC_SIMD_BARRIER, &active);
}

// The collectives below are kept out of line: they are uninstrumented header code, so checking mode does
// not trace their reads of the exchange slots (a context switch dominates their cost anyway).
#define MC_COLLECTIVE inline __attribute__((noinline))

// Publishes v and returns the slots; lane l's value is mc_lane<T>(slots, l).
template <class T> MC_INLINE const unsigned char *mc_exchange(const T &v, uint32_t op, uint32_t *active) {
    static_assert(sizeof(T) <= MC_SIMD_SLOT_BYTES, "SIMD-group value too large");
    return (const unsigned char *)mc_simd_exchange(&v, sizeof(T), op, active);
}
template <class T> MC_INLINE T mc_lane(const unsigned char *slots, uint32_t lane) {
    T x;
    __builtin_memcpy(&x, slots + lane * MC_SIMD_SLOT_BYTES, sizeof(T));
    return x;
}
MC_INLINE uint32_t mc_my_lane() { return mc_simd_lane(); }

// Reductions over the active lanes, in lane order.
template <class T, class F> MC_COLLECTIVE T mc_reduce(T v, F combine) {
    uint32_t active;
    const unsigned char *s = mc_exchange(v, MC_SIMD_REDUCE, &active);
    bool first = true;
    T r = v;
    for (uint32_t l = 0; l < MC_SIMD_WIDTH; l++) {
        if (!((active >> l) & 1)) continue;
        T x = mc_lane<T>(s, l);
        r = first ? x : combine(r, x);
        first = false;
    }
    return r;
}
template <class T> MC_INLINE T simd_sum(T v) { return mc_reduce(v, [](T a, T b) { return (T)(a + b); }); }
template <class T> MC_INLINE T simd_product(T v) { return mc_reduce(v, [](T a, T b) { return (T)(a * b); }); }
template <class T> MC_INLINE T simd_min(T v) { return mc_reduce(v, [](T a, T b) { return min(a, b); }); }
template <class T> MC_INLINE T simd_max(T v) { return mc_reduce(v, [](T a, T b) { return max(a, b); }); }
template <class T> MC_INLINE T simd_and(T v) { return mc_reduce(v, [](T a, T b) { return (T)(a & b); }); }
template <class T> MC_INLINE T simd_or(T v) { return mc_reduce(v, [](T a, T b) { return (T)(a | b); }); }
template <class T> MC_INLINE T simd_xor(T v) { return mc_reduce(v, [](T a, T b) { return (T)(a ^ b); }); }
MC_INLINE bool simd_all(bool v) { return mc_reduce(v, [](bool a, bool b) { return a && b; }); }
MC_INLINE bool simd_any(bool v) { return mc_reduce(v, [](bool a, bool b) { return a || b; }); }

// simd_vote: a mask with one bit per lane.
struct simd_vote {
    typedef uint64_t vote_t;
    vote_t v;
    explicit constexpr simd_vote(vote_t x = 0) : v(x) {}
    explicit constexpr operator vote_t() const { return v; }
    constexpr bool all() const { return v == 0xffffffffull; }
    constexpr bool any() const { return v != 0; }
};
MC_COLLECTIVE simd_vote simd_ballot(bool b) {
    uint32_t active;
    const unsigned char *s = mc_exchange(b, MC_SIMD_REDUCE, &active);
    uint64_t m = 0;
    for (uint32_t l = 0; l < MC_SIMD_WIDTH; l++)
        if (((active >> l) & 1) && mc_lane<bool>(s, l)) m |= 1ull << l;
    return simd_vote(m);
}
MC_COLLECTIVE simd_vote simd_active_threads_mask() {
    uint32_t active;
    mc_exchange(true, MC_SIMD_REDUCE, &active);
    return simd_vote(active);
}
MC_COLLECTIVE bool simd_is_first() {
    uint32_t active;
    mc_exchange(true, MC_SIMD_REDUCE, &active);
    return (uint32_t)__builtin_ctz(active) == mc_my_lane();
}

// Prefix scans over the active lanes below the caller.
template <class T, class F> MC_COLLECTIVE T mc_scan(T v, bool inclusive, T identity, F combine) {
    uint32_t active;
    const unsigned char *s = mc_exchange(v, MC_SIMD_SCAN, &active);
    uint32_t me = mc_my_lane();
    T r = identity;
    for (uint32_t l = 0; l < me + (inclusive ? 1u : 0u); l++)
        if ((active >> l) & 1) r = combine(r, mc_lane<T>(s, l));
    return r;
}
template <class T> MC_INLINE T simd_prefix_exclusive_sum(T v) {
    return mc_scan(v, false, (T)0, [](T a, T b) { return (T)(a + b); });
}
template <class T> MC_INLINE T simd_prefix_inclusive_sum(T v) {
    return mc_scan(v, true, (T)0, [](T a, T b) { return (T)(a + b); });
}
template <class T> MC_INLINE T simd_prefix_exclusive_product(T v) {
    return mc_scan(v, false, (T)1, [](T a, T b) { return (T)(a * b); });
}
template <class T> MC_INLINE T simd_prefix_inclusive_product(T v) {
    return mc_scan(v, true, (T)1, [](T a, T b) { return (T)(a * b); });
}

// Shuffles: the value of lane `src(me)`, or the caller's own value when that lane is out of range or
// inactive.
template <class T, class F> MC_COLLECTIVE T mc_shuffle(T v, F src) {
    uint32_t active;
    const unsigned char *s = mc_exchange(v, MC_SIMD_SHUFFLE, &active);
    int from = src((int)mc_my_lane());
    if (from < 0 || from >= MC_SIMD_WIDTH || !((active >> from) & 1)) return v;
    return mc_lane<T>(s, (uint32_t)from);
}
template <class T> MC_INLINE T simd_shuffle(T v, ushort lane) {
    return mc_shuffle(v, [=](int) { return (int)lane; });
}
template <class T> MC_INLINE T simd_broadcast(T v, ushort lane) { return simd_shuffle(v, lane); }
template <class T> MC_INLINE T simd_shuffle_down(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return me + (int)delta; });
}
template <class T> MC_INLINE T simd_shuffle_up(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return me - (int)delta; });
}
template <class T> MC_INLINE T simd_shuffle_xor(T v, ushort mask) {
    return mc_shuffle(v, [=](int me) { return me ^ (int)mask; });
}
template <class T> MC_INLINE T simd_shuffle_rotate_down(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return (me + (int)delta) % MC_SIMD_WIDTH; });
}
template <class T> MC_INLINE T simd_shuffle_rotate_up(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return (me - (int)delta % MC_SIMD_WIDTH + MC_SIMD_WIDTH) % MC_SIMD_WIDTH; });
}
template <class T> MC_COLLECTIVE T simd_broadcast_first(T v) {
    uint32_t active;
    const unsigned char *s = mc_exchange(v, MC_SIMD_SHUFFLE, &active);
    return mc_lane<T>(s, (uint32_t)__builtin_ctz(active));
}

// Quad-group functions: groups of 4 consecutive lanes.
template <class T> MC_INLINE T quad_shuffle(T v, ushort lane) {
    return mc_shuffle(v, [=](int me) { return (me & ~3) + ((int)lane & 3); });
}
template <class T> MC_INLINE T quad_broadcast(T v, ushort lane) { return quad_shuffle(v, lane); }
template <class T> MC_INLINE T quad_shuffle_xor(T v, ushort mask) {
    return mc_shuffle(v, [=](int me) { return (me & ~3) + ((me ^ (int)mask) & 3); });
}
template <class T> MC_INLINE T quad_shuffle_down(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return (me & 3) + (int)delta < 4 ? me + (int)delta : me; });
}
template <class T> MC_INLINE T quad_shuffle_up(T v, ushort delta) {
    return mc_shuffle(v, [=](int me) { return (me & 3) >= (int)delta ? me - (int)delta : me; });
}
template <class T, class F> MC_COLLECTIVE T mc_quad_reduce(T v, F combine) {
    uint32_t active;
    const unsigned char *s = mc_exchange(v, MC_SIMD_REDUCE, &active);
    uint32_t base = mc_my_lane() & ~3u;
    bool first = true;
    T r = v;
    for (uint32_t l = base; l < base + 4; l++) {
        if (!((active >> l) & 1)) continue;
        T x = mc_lane<T>(s, l);
        r = first ? x : combine(r, x);
        first = false;
    }
    return r;
}
template <class T> MC_INLINE T quad_sum(T v) { return mc_quad_reduce(v, [](T a, T b) { return (T)(a + b); }); }
template <class T> MC_INLINE T quad_min(T v) { return mc_quad_reduce(v, [](T a, T b) { return min(a, b); }); }
template <class T> MC_INLINE T quad_max(T v) { return mc_quad_reduce(v, [](T a, T b) { return max(a, b); }); }

// Atomics. Device atomics are real hardware atomics (threadgroups run on several OS threads); they are
// kept out of line and uninstrumented so that checking mode neither traces nor flags them.
enum memory_order { memory_order_relaxed = __ATOMIC_RELAXED, memory_order_seq_cst = __ATOMIC_SEQ_CST };
enum memory_scope { memory_scope_thread, memory_scope_simdgroup, memory_scope_threadgroup, memory_scope_device };

template <class T> struct atomic {
    T v;
};
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<float> atomic_float;
typedef atomic<bool> atomic_bool;
typedef atomic<ulong> atomic_ulong;

#define MC_ATOMIC __attribute__((noinline))
template <class T> using mc_atomic_value = std::remove_cv_t<decltype(std::declval<T>().v)>;

// The generic __atomic builtins work for float as well as integers.
template <class A, class T> MC_ATOMIC void atomic_store_explicit(A *obj, T desired, memory_order) {
    mc_atomic_value<A> v = (mc_atomic_value<A>)desired;
    __atomic_store((mc_atomic_value<A> *)&obj->v, &v, __ATOMIC_RELAXED);
}
template <class A> MC_ATOMIC mc_atomic_value<A> atomic_load_explicit(A *obj, memory_order) {
    mc_atomic_value<A> v;
    __atomic_load((mc_atomic_value<A> *)&obj->v, &v, __ATOMIC_RELAXED);
    return v;
}
template <class A, class T> MC_ATOMIC mc_atomic_value<A> atomic_exchange_explicit(A *obj, T desired, memory_order) {
    mc_atomic_value<A> v = (mc_atomic_value<A>)desired, old;
    __atomic_exchange((mc_atomic_value<A> *)&obj->v, &v, &old, __ATOMIC_RELAXED);
    return old;
}
template <class A, class E, class T>
MC_ATOMIC bool atomic_compare_exchange_weak_explicit(A *obj, E *expected, T desired, memory_order, memory_order) {
    mc_atomic_value<A> v = (mc_atomic_value<A>)desired;
    return __atomic_compare_exchange((mc_atomic_value<A> *)&obj->v, (mc_atomic_value<A> *)expected, &v, true,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
template <class A, class E, class T>
MC_ATOMIC bool atomic_compare_exchange_strong_explicit(A *obj, E *expected, T desired, memory_order, memory_order) {
    mc_atomic_value<A> v = (mc_atomic_value<A>)desired;
    return __atomic_compare_exchange((mc_atomic_value<A> *)&obj->v, (mc_atomic_value<A> *)expected, &v, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
// Read-modify-write through a compare-exchange loop, so float (and any op) works the same way.
template <class A, class F> MC_INLINE mc_atomic_value<A> mc_atomic_rmw(A *obj, F op) {
    using V = mc_atomic_value<A>;
    V *p = (V *)&obj->v;
    V old, next;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        next = (V)op(old);
    } while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
#define MC_ATOMIC_RMW(name, expr)                                                                            \
    template <class A, class T> MC_ATOMIC mc_atomic_value<A> name(A *obj, T arg, memory_order) {             \
        using V = mc_atomic_value<A>;                                                                        \
        V a = (V)arg;                                                                                        \
        return mc_atomic_rmw(obj, [a](V x) { return expr; });                                                \
    }
MC_ATOMIC_RMW(atomic_fetch_add_explicit, x + a)
MC_ATOMIC_RMW(atomic_fetch_sub_explicit, x - a)
MC_ATOMIC_RMW(atomic_fetch_and_explicit, x & a)
MC_ATOMIC_RMW(atomic_fetch_or_explicit, x | a)
MC_ATOMIC_RMW(atomic_fetch_xor_explicit, x ^ a)
MC_ATOMIC_RMW(atomic_fetch_min_explicit, a < x ? a : x)
MC_ATOMIC_RMW(atomic_fetch_max_explicit, x < a ? a : x)
#undef MC_ATOMIC_RMW
#undef MC_ATOMIC

} // namespace metal
