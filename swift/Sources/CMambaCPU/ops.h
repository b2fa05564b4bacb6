/* Vector kernels, compiled once per instruction set (ops_avx2.c, ops_generic.c) from ops.inc. */
#ifndef MCPU_OPS_H
#define MCPU_OPS_H

#include "mamba_cpu.h"

typedef struct {
    const char *name;
    /* y[b*ldy + r] (=, or += when accumulate) dot(W[r, :], x[b*ldx + :]) for r in [r0, r1), b in [0, nb).
     * scratch: 4 * W->cols floats, used to convert rows once when nb > 2. */
    void (*matvec)(const mcpu_matrix *W, int r0, int r1, const float *x, int ldx, int nb, float *y, int ldy,
                   int accumulate, float *scratch);
    /* out[i] = W[row, i] as float32 */
    void (*row_to_f32)(const mcpu_matrix *W, int row, float *out);
    float (*dot)(const float *a, const float *b, int n);
    float (*sum_squares)(const float *a, int n);
    /* Sum of `bytes` bytes read as float32 vectors (bandwidth probe). */
    double (*sum_bytes)(const void *p, int64_t bytes);
} mcpu_ops;

const mcpu_ops *mcpu_ops_avx2(void);
const mcpu_ops *mcpu_ops_generic(void);
const mcpu_ops *mcpu_ops_best(void);

#endif
