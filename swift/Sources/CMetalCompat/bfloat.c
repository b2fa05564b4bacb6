// bfloat.c: float -> bfloat conversions for kernels that use MSL's bfloat (__bf16 in C++).
//
// clang lowers these conversions to the runtime calls below, which come from compiler-rt or a recent
// libgcc; neither is linked here, so MetalCompat provides them (weak: a real runtime's copy wins).
// Round to nearest even, NaNs stay quiet NaNs. bfloat -> float is a shift and needs no call.
#if defined(__linux__)
#include <stdint.h>
#include <string.h>

__bf16 __truncsfbf2(float f);
__bf16 __truncdfbf2(double d);

__attribute__((weak)) __bf16 __truncsfbf2(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r = (uint16_t)((u >> 16) | 0x40);
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        r = (uint16_t)(u >> 16);
    }
    __bf16 b;
    memcpy(&b, &r, sizeof b);
    return b;
}

/* Through float: double rounding, as close as kernels written for a GPU without doubles expect. */
__attribute__((weak)) __bf16 __truncdfbf2(double d) { return __truncsfbf2((float)d); }
#endif /* __linux__ */
