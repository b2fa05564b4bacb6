/* AVX2 + FMA + F16C kernels for x86-64, chosen at run time when the CPU has them. */
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define OPS_SUFFIX _avx2
#define OPS_NAME "avx2+fma+f16c"
#define OPS_HAS_FMA 1 /* fmaf is one instruction */
#define OPS_INT_DOT 1 /* quantized decode multiplies codes as integers (ops_quant.inc) */
#include "ops.inc"
#pragma clang attribute pop

const mcpu_ops *mcpu_ops_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return &ops_table_avx2;
    return 0;
}
#else
#include "ops.h"
const mcpu_ops *mcpu_ops_avx2(void) { return 0; }
#endif

const mcpu_ops *mcpu_ops_best(void) {
    const char *force = getenv("MAMBA_CPU_KERNELS");
    if (force && strcmp(force, "generic") == 0) return mcpu_ops_generic();
    const mcpu_ops *o = force && strcmp(force, "avx2") == 0 ? 0 : mcpu_ops_avxvnni();
    if (!o) o = mcpu_ops_avx2();
    return o ? o : mcpu_ops_generic();
}

const mcpu_ops *mcpu_ops_pick(int32_t which) {
    if (which == 1) return mcpu_ops_generic();
    const mcpu_ops *best = mcpu_ops_best(), *avx2 = mcpu_ops_avx2();
    return which == 2 && best == mcpu_ops_avxvnni() && avx2 ? avx2 : best;
}
