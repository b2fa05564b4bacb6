/* AVX2 + FMA + F16C + AVX-VNNI kernels for x86-64 (Zen 4, Alder Lake and later), chosen at run time
 * when the CPU has them. Everything is ops_avx2.c's except the quantized decode panels, which
 * multiply-accumulate codes in one instruction (ops_quant_vnni.inc) with bitwise the same results. */
#include "ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#define OPS_SUFFIX _avxvnni
#define OPS_NAME "avx2+fma+f16c+vnni"
#define OPS_HAS_FMA 1 /* fmaf is one instruction */
#define OPS_INT_DOT 1 /* quantized decode multiplies codes as integers (ops_quant.inc) */
#define OPS_VNNI 1    /* ... with vpdpbusd / vpdpwssd (ops_quant_vnni.inc) */
#include "ops.inc"
#pragma clang attribute pop

const mcpu_ops *mcpu_ops_avxvnni(void) {
    __builtin_cpu_init();
    if (mcpu_ops_avx2() && __builtin_cpu_supports("avxvnni")) return &ops_table_avxvnni;
    return 0;
}
#else
const mcpu_ops *mcpu_ops_avxvnni(void) { return 0; }
#endif
