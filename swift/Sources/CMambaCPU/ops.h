/* Vector kernels, compiled once per instruction set (ops_avx2.c, ops_generic.c) from ops.inc. */
#ifndef MCPU_OPS_H
#define MCPU_OPS_H

#include <stddef.h>

#include "mamba_cpu.h"

/* Widest causal convolution handled (mamba models use 4). */
#define MCPU_CONV_MAX 16

/* Rows per panel of a packed matrix: two 8-float vectors of outputs per kernel column. */
#define MCPU_PANEL 16

/* A weight matrix repacked for streaming (pack.c): panel p holds rows [16p, 16p + 16) stored
 * column by column, [cols][16] in the original dtype, rows past the end zero. One contiguous stream
 * per panel keeps the hardware prefetchers on it, and a column of 16 rows is two vectors that
 * multiply one broadcast activation. */
typedef struct {
    const void *data;
    int32_t dtype, rows, cols, panels;
} mcpu_packed;

static inline size_t mcpu_dtype_size(int dtype) { return dtype == MCPU_F32 ? 4 : 2; }
static inline const void *mcpu_panel(const mcpu_packed *W, int p) {
    return (const char *)W->data + (size_t)p * MCPU_PANEL * (size_t)W->cols * mcpu_dtype_size(W->dtype);
}

typedef struct {
    const char *name;
    /* y[b*ldy + r] (=, or += when accumulate) W[r, :] · x[b*ldx + :] for the rows of panels [p0, p1)
     * and b in [0, nb). Tokens go in tiles of up to 6 with the panels of the range inside each tile,
     * so a range sized for L2 is read from memory once. */
    void (*gemm_panels)(const mcpu_packed *W, int p0, int p1, const float *x, int ldx, int nb, float *y, int ldy,
                        int accumulate);
    /* C[i*ldc + j] (=, or +=) sum_k A[i*sai + k*sak] * B[k*ldb + j], i < M, j < N, k < K. With causal,
     * row i sums only k <= i (A is lower triangular; the rest is never read). */
    void (*gemm)(int M, int N, int K, const float *A, ptrdiff_t sai, ptrdiff_t sak, const float *B, ptrdiff_t ldb,
                 float *C, ptrdiff_t ldc, int accumulate, int causal);
    /* out[i] = W[row, i] as float32 (row-major W). */
    void (*row_to_f32)(const mcpu_matrix *W, int row, float *out);
    float (*dot)(const float *a, const float *b, int n);
    /* x[i] = exp(x[i]) (about 1 ulp; 0 below -87.3, +inf above 88.7). */
    void (*exp_inplace)(float *x, int n);
    /* x[i] = x[i] * sigmoid(x[i]) */
    void (*silu_inplace)(float *x, int n);
    /* out[i] = x[i] * scale * w[i] */
    void (*scale_mul)(float *out, const float *x, float scale, const float *w, int n);
    /* Causal depthwise conv + silu over n consecutive tokens of C channels:
     *   out[r*ldo + c] = silu(bias[c] + sum_k w[c*K + k] * u[k]),  u = the channel's K - 1 newest stored
     *   inputs, then in[r*ldi + c]
     * state (C, K), oldest input first, advances to the channel's K newest inputs. */
    void (*conv_silu)(const float *in, ptrdiff_t ldi, float *out, ptrdiff_t ldo, int n, float *state,
                      const float *w, const float *bias, int C, int K);
    /* One decode step of one head: state (P, N) = state * dA + (dt * x) ⊗ B, y = state · C + D * x. */
    void (*ssm_step_head)(float *state, int P, int N, const float *x, const float *B, const float *C, float dt,
                          float dA, float D, float *y);
    /* Sum of `bytes` bytes read as float32 vectors (bandwidth probe). */
    double (*sum_bytes)(const void *p, int64_t bytes);
} mcpu_ops;

const mcpu_ops *mcpu_ops_avx2(void);
const mcpu_ops *mcpu_ops_generic(void);
const mcpu_ops *mcpu_ops_best(void);

#endif
