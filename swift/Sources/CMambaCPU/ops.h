/* Vector kernels, compiled once per instruction set (ops_avx2.c, ops_generic.c) from ops.inc. */
#ifndef MCPU_OPS_H
#define MCPU_OPS_H

#include <stddef.h>

#include "mamba_cpu.h"

/* Widest causal convolution handled (mamba models use 4). */
#define MCPU_CONV_MAX 16

/* Rows per panel of a packed matrix: two 8-float vectors of outputs per kernel column. */
#define MCPU_PANEL 16

/* A weight matrix repacked for streaming (pack.c): panel p holds rows [16p, 16p + 16), rows past the
 * end zero, one contiguous stream per panel so the hardware prefetchers stay on it.
 *
 * F32 / F16 / BF16: the panel is stored column by column, [cols][16] in the original dtype: a column
 * of 16 rows is two vectors that multiply one broadcast activation.
 *
 * Q8 / Q4 (docs/quantization.md's form, re-laid): the panel is cols / G group blocks in column order,
 * each block the group's codes, then its 16 scales, then its 16 biases (scale_dtype). The codes of a
 * block come in steps of MCPU_STEP columns, each step two halves (rows 0-7, then rows 8-15) of
 * MCPU_HALF bytes, and within a half, for its row i:
 *   Q8  byte 2i + c      = q[k + c]                      (k the step's first column, c < 2)
 *   Q4  byte 4i + c      = q[k + c] | q[k + 4 + c] << 4  (c < 4)
 * so that a Q8 half widened to 16-bit lanes is (row, column pair) products for pmaddwd, and each
 * nibble plane of a Q4 half is (row, 4 columns) bytes for pmaddubsw. */
typedef struct {
    const void *data;
    int32_t dtype, rows, cols, panels;
    int32_t group_size, scale_dtype; /* Q8 / Q4 */
    size_t panel_bytes;
} mcpu_packed;

static inline int mcpu_is_quant(int dtype) { return dtype == MCPU_Q8 || dtype == MCPU_Q4; }
static inline size_t mcpu_dtype_size(int dtype) { return dtype == MCPU_F32 ? 4 : 2; }
static inline int mcpu_bits(int dtype) { return dtype == MCPU_Q8 ? 8 : 4; }
/* Columns per step and bytes per half step of a group block (layout above). */
#define MCPU_STEP(dtype) ((dtype) == MCPU_Q8 ? 2 : 8)
#define MCPU_HALF(dtype) ((dtype) == MCPU_Q8 ? 16 : 32)
/* Bytes of the codes of one group block: 16 rows × G columns. */
static inline size_t mcpu_group_codes(int dtype, int G) { return (size_t)MCPU_PANEL * (size_t)G * mcpu_bits(dtype) / 8; }
/* Bytes of one group block: codes, 16 scales, 16 biases. */
static inline size_t mcpu_group_bytes(int dtype, int G, int scale_dtype) {
    return mcpu_group_codes(dtype, G) + 2 * MCPU_PANEL * mcpu_dtype_size(scale_dtype);
}
static inline const void *mcpu_panel(const mcpu_packed *W, int p) {
    return (const char *)W->data + (size_t)p * W->panel_bytes;
}

/* Quantized decode reads the activations prepared once per token (ops->quant_prep), shared by every
 * row: per group its sum Σx (the bias term) and, for the integer kernels, x as fixed point per group:
 *   Q8  x[k] ≈ dx[g] · (hi[k] · 2^15 + lo[k]),                hi, lo int16       (|X| < 2^29)
 *   Q4  x[k] ≈ dx[g] · (l0[k] + l1[k] · 2^8 + l2[k] · 2^16),  l0, l1, l2 int8    (|X| < 2^23)
 * Layout per token: sum[K/G], dx[K/G] floats, then hi[K], lo[K] (Q8) or l0[K], l1[K], l2[K] (Q4). */
static inline size_t mcpu_prep_bytes(int K, int G) { return (size_t)K / (size_t)G * 8 + (size_t)K * 4; }

/* Tokens a quantized matrix product takes per pass of the integer kernels (mcpu_matmul runs more in
 * passes of this many). Each token's arithmetic does not depend on the pass or tile it is in, so a
 * sequence gets the same bits in a step of any number of sequences and in prefill as in decode. */
#define MCPU_QDIRECT_MAX 8

typedef struct {
    const char *name;
    /* y[b*ldy + r] (=, or += when accumulate) W[r, :] · x[b*ldx + :] for the rows of panels [p0, p1)
     * and b in [0, nb). Tokens go in tiles of up to 6 with the panels of the range inside each tile,
     * so a range sized for L2 is read from memory once. */
    void (*gemm_panels)(const mcpu_packed *W, int p0, int p1, const float *x, int ldx, int nb, float *y, int ldy,
                        int accumulate);
    /* The same for a quantized W and nb <= MCPU_QDIRECT_MAX tokens; prep holds each token's
     * activations prepared by quant_prep, prep_stride bytes apart. Tiles of up to 4 tokens; each
     * token's arithmetic is the same whatever the tile, so results do not depend on the batch. */
    void (*qgemm_panels)(const mcpu_packed *W, int p0, int p1, const float *x, int ldx, const void *prep,
                         size_t prep_stride, int nb, float *y, int ldy, int accumulate);
    /* prep (mcpu_prep_bytes(K, G)) from one token's activations x[K], for a matrix of `dtype`. */
    void (*quant_prep)(const float *x, int K, int G, int dtype, void *prep);
    /* out[i] = W[row, i] as float32, from the packed form (any dtype). */
    void (*packed_row_to_f32)(const mcpu_packed *W, int row, float *out);
    /* C[i*ldc + j] (=, or +=) sum_k A[i*sai + k*sak] * B[k*ldb + j], i < M, j < N, k < K. With causal,
     * row i sums only k <= i (A is lower triangular; the rest is never read). */
    void (*gemm)(int M, int N, int K, const float *A, ptrdiff_t sai, ptrdiff_t sak, const float *B, ptrdiff_t ldb,
                 float *C, ptrdiff_t ldc, int accumulate, int causal);
    /* out[i] = W[row, i] as float32 (row-major W, any dtype; quantized values fmaf(scale, q, bias), docs/quantization.md). */
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

/* Each kernel set, NULL where the CPU lacks it (generic is always there). */
const mcpu_ops *mcpu_ops_avx512vnni(void);
const mcpu_ops *mcpu_ops_avxvnni(void);
const mcpu_ops *mcpu_ops_avx2(void);
const mcpu_ops *mcpu_ops_generic(void);
/* The first of avx512vnni, avxvnni, avx2, generic the CPU has; MAMBA_CPU_KERNELS=generic, =avx2 or =avxvnni
 * caps the choice (so each set's correctness can be tested on a machine that has a better one). */
const mcpu_ops *mcpu_ops_best(void);
/* The testing hooks' choice: 0 the best, 1 generic, 2 avx2, 3 avxvnni (the best where that set is absent). */
const mcpu_ops *mcpu_ops_pick(int32_t which);

#endif
