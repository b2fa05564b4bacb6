// mc_bind.h: how a generated trampoline calls a kernel compiled from a .metal file.
//
// The generator describes each kernel parameter by what it is bound to (a [[buffer(n)]], a
// [[threadgroup(n)]] or a position attribute, in declaration order); the parameter *types* come from the
// kernel function itself, so typedefs, templates and qualifiers never need parsing. invoke() converts
// each slot of the per-thread mc_invocation to the declared type: pointers are cast, references are
// dereferenced buffers, positions are narrowed to the declared scalar or vector (uint, ushort2, uint3...).
#pragma once

#include <metal_stdlib>

#include "mc_kernel_abi.h"

#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)

namespace mc_bind {

enum kind : int { buffer, threadgroup_memory, position };

enum position_attribute : int {
    thread_position_in_grid,
    threadgroup_position_in_grid,
    thread_position_in_threadgroup,
    threads_per_threadgroup,
    dispatch_threads_per_threadgroup,
    threadgroups_per_grid,
    threads_per_grid,
    grid_origin,
    thread_index_in_threadgroup,
    thread_index_in_simdgroup,
    simdgroup_index_in_threadgroup,
    threads_per_simdgroup,
    simdgroups_per_threadgroup,
    thread_index_in_quadgroup,
    quadgroup_index_in_threadgroup,
    quadgroups_per_threadgroup,
    dispatch_simdgroups_per_threadgroup,
    dispatch_quadgroups_per_threadgroup,
};

struct spec {
    int kind;
    int index; // buffer / threadgroup index, or a position_attribute
};

// What a reference parameter sees when its buffer is unbound because a [[function_constant]] disabled it.
alignas(64) inline char unbound_buffer[4096];

template <class T> inline __attribute__((always_inline)) T position_value(const mc_invocation *inv, int which) {
    uint32_t scalar[3] = {0, 0, 0};
    const uint32_t *v = scalar;
    switch (which) {
    case thread_position_in_grid: v = inv->thread_position_in_grid; break;
    case threadgroup_position_in_grid: v = inv->threadgroup_position_in_grid; break;
    case thread_position_in_threadgroup: v = inv->thread_position_in_threadgroup; break;
    case threads_per_threadgroup: v = inv->threads_per_threadgroup; break;
    case dispatch_threads_per_threadgroup: v = inv->dispatch_threads_per_threadgroup; break;
    case threadgroups_per_grid: v = inv->threadgroups_per_grid; break;
    case threads_per_grid: v = inv->threads_per_grid; break;
    case grid_origin: v = inv->grid_origin; break;
    case thread_index_in_threadgroup: scalar[0] = inv->thread_index_in_threadgroup; break;
    case thread_index_in_simdgroup: scalar[0] = inv->thread_index_in_simdgroup; break;
    case simdgroup_index_in_threadgroup: scalar[0] = inv->simdgroup_index_in_threadgroup; break;
    case threads_per_simdgroup: scalar[0] = inv->threads_per_simdgroup; break;
    case simdgroups_per_threadgroup: scalar[0] = inv->simdgroups_per_threadgroup; break;
    case thread_index_in_quadgroup: scalar[0] = inv->thread_index_in_threadgroup % 4; break;
    case quadgroup_index_in_threadgroup: scalar[0] = inv->thread_index_in_threadgroup / 4; break;
    case quadgroups_per_threadgroup:
        scalar[0] = (inv->threads_per_threadgroup[0] * inv->threads_per_threadgroup[1] * inv->threads_per_threadgroup[2] + 3) / 4;
        break;
    case dispatch_simdgroups_per_threadgroup:
    case dispatch_quadgroups_per_threadgroup: {
        const uint32_t *d = inv->dispatch_threads_per_threadgroup;
        uint32_t width = which == dispatch_simdgroups_per_threadgroup ? MC_SIMD_WIDTH : 4;
        scalar[0] = (d[0] * d[1] * d[2] + width - 1) / width;
        break;
    }
    }
    if constexpr (metal::mc_is_vec<T>) {
        T r;
        for (int i = 0; i < metal::mc_width<T>; i++) r[i] = (metal::mc_elem<T>)v[i];
        return r;
    } else {
        return (T)v[0];
    }
}

template <class T> inline __attribute__((always_inline)) T argument(const mc_invocation *inv, spec s) {
    if constexpr (std::is_pointer_v<T>) {
        void *p = s.kind == buffer ? inv->buffers[s.index] : inv->threadgroup_args[s.index];
        return (T)p;
    } else if constexpr (std::is_reference_v<T>) {
        using U = std::remove_reference_t<T>;
        void *p = inv->buffers[s.index];
        return *(U *)(p != nullptr ? p : (void *)unbound_buffer);
    } else {
        return position_value<T>(inv, s.index);
    }
}

template <class... P, size_t... I>
inline __attribute__((always_inline)) void call(void (*fn)(P...), const mc_invocation *inv, const spec *specs,
                                                std::index_sequence<I...>) {
    fn(argument<P>(inv, specs[I])...);
}

template <class... P>
inline __attribute__((always_inline)) void invoke(void (*fn)(P...), const mc_invocation *inv, const spec *specs) {
    call(fn, inv, specs, std::index_sequence_for<P...>{});
}

// Stores one function constant's value (value == NULL: not defined, is_function_constant_defined false).
template <class T> inline void store_constant(T &var, bool &defined, const void *value) {
    defined = value != nullptr;
    if (value != nullptr) __builtin_memcpy(&var, value, sizeof(T));
    else var = T();
}

} // namespace mc_bind

#pragma clang attribute pop
