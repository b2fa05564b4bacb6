/* The AVX-VNNI set (ops_avxvnni.c) with 512-bit quantized decode panels (ops_quant_vnni512.inc), for x86-64
 * CPUs with AVX-512 F/BW/VL and VNNI; everything else is compiled as in ops_avx2.c. */
#include "ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), \
                             apply_to = function)
#define OPS_SUFFIX _avx512vnni
#define OPS_NAME "avx2+fma+f16c+avx512vnni"
#define OPS_HAS_FMA 1 /* fmaf is one instruction */
#define OPS_INT_DOT 1 /* quantized decode multiplies codes as integers (ops_quant.inc) */
#define OPS_VNNI512 1 /* ... with vpdpbusd / vpdpwssd on 512-bit registers (ops_quant_vnni512.inc) */
#include "ops.inc"
#pragma clang attribute pop

const mcpu_ops *mcpu_ops_avx512vnni(void) {
    __builtin_cpu_init();
    if (mcpu_ops_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return &ops_table_avx512vnni;
    return 0;
}
#else
const mcpu_ops *mcpu_ops_avx512vnni(void) { return 0; }
#endif
