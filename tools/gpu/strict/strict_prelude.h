// The strict compile of the GPU proxy's CI check (tools/gpu/build.ts --strict): metal/*.metal as C++ with
// MetalCompat's MSL header, but with `device`, `constant` and `threadgroup` as real, distinct address
// spaces (as Apple's compiler treats them) instead of MetalCompat's empty macros, and `double` refused
// (MSL has none). A pointer passed across address spaces, a device pointer where a threadgroup one is
// expected, or an unqualified pointer kernel argument then fails to compile here as it would on a Mac.
#pragma once
#include <metal_stdlib>

// MetalCompat's vector helpers look through cv-qualifiers; here they must also look through the
// address space of a value read from device or threadgroup memory.
namespace metal {
template <class T> struct mc_vinfo<T __attribute__((address_space(1)))> : mc_vinfo<T> {};
template <class T> struct mc_vinfo<T __attribute__((address_space(2)))> : mc_vinfo<T> {};
template <class T> struct mc_vinfo<T __attribute__((address_space(3)))> : mc_vinfo<T> {};
} // namespace metal

#undef device
#undef constant
#undef threadgroup
#undef thread
#define device __attribute__((address_space(1)))
#define constant __attribute__((address_space(2)))
#define threadgroup __attribute__((address_space(3)))
#define thread

#pragma clang poison double
