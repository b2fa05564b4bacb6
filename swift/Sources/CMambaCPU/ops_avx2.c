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

/* The best set the CPU has, below the cap `name` sets (NULL: no cap). */
static const mcpu_ops *best_below(const char *name) {
    const mcpu_ops *o = 0;
    int cap = !name                           ? 3
              : strcmp(name, "generic") == 0 ? 0
              : strcmp(name, "avx2") == 0    ? 1
              : strcmp(name, "avxvnni") == 0 ? 2
                                             : 3;
    if (cap >= 3) o = mcpu_ops_avx512vnni();
    if (!o && cap >= 2) o = mcpu_ops_avxvnni();
    if (!o && cap >= 1) o = mcpu_ops_avx2();
    return o ? o : mcpu_ops_generic();
}

const mcpu_ops *mcpu_ops_best(void) { return best_below(getenv("MAMBA_CPU_KERNELS")); }

const mcpu_ops *mcpu_ops_pick(int32_t which) {
    const mcpu_ops *o = which == 1   ? mcpu_ops_generic()
                        : which == 2 ? mcpu_ops_avx2()
                        : which == 3 ? mcpu_ops_avxvnni()
                                     : 0;
    return o ? o : mcpu_ops_best();
}
