/*
 * mamba_cpu.h: the CPU backend's compute core (C, portable; AVX2/F16C on x86-64 when present).
 *
 * The Swift side owns every buffer (weights, state, logits) and validates all inputs; this layer
 * only computes. Weights are read in their stored dtype and converted in registers.
 */
#ifndef MAMBA_CPU_H
#define MAMBA_CPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MCPU_F32 = 0, MCPU_F16 = 1, MCPU_BF16 = 2, MCPU_Q8 = 3, MCPU_Q4 = 4 };

/* A row-major weight matrix (rows, cols) in its stored dtype.
 *
 * F32 / F16 / BF16: data holds rows * cols elements; the quantization fields are 0 / NULL.
 *
 * Q8 / Q4, affine group quantization in MLX's layout (docs/quantization.md is the contract):
 *   data    rows * cols * bits / 8 bytes of unsigned codes q, row-major. Q4 packs two codes per byte,
 *           column 2j in the low nibble of byte j of its row (MLX's little-endian uint32 packing).
 *   groups  each row splits into cols / group_size groups of group_size consecutive columns
 *           (group_size in {16, 32, 64, 128}, cols % group_size == 0).
 *   scales, biases  (rows, cols / group_size) values of scale_dtype (MCPU_F16 or MCPU_F32).
 *   value   w[r, c] = fmaf(scale[r, c / G], (float)q[r, c], bias[r, c / G])  (one rounding: exact for
 *           every GGUF conversion in docs/quantization.md). */
typedef struct {
    const void *data;
    int32_t dtype;
    int32_t rows, cols;
    int32_t group_size;  /* Q8/Q4: columns per group; 0 otherwise */
    int32_t scale_dtype; /* Q8/Q4: MCPU_F16 or MCPU_F32 */
    const void *scales;  /* Q8/Q4: (rows, cols / group_size) */
    const void *biases;  /* Q8/Q4: (rows, cols / group_size) */
} mcpu_matrix;

/* One Mamba2 block. Shapes use the model's sizes: conv_dim = d_inner + 2*n_groups*d_state,
 * d_in_proj = 2*d_inner + 2*n_groups*d_state + n_heads. */
typedef struct {
    const float *norm;    /* (d_model)              pre-mixer RMSNorm weight */
    mcpu_matrix in_proj;  /* (d_in_proj, d_model)   output rows: z | x B C | dt */
    const float *conv_w;  /* (conv_dim, d_conv)     depthwise causal conv */
    const float *conv_b;  /* (conv_dim) */
    const float *dt_bias; /* (n_heads) */
    const float *A;       /* (n_heads)              A = -exp(A_log) */
    const float *D;       /* (n_heads) */
    const float *gnorm;   /* (d_inner)              gated RMSNorm weight, normalised per group */
    mcpu_matrix out_proj; /* (d_model, d_inner) */
} mcpu_layer;

typedef struct {
    int32_t d_model, n_layer, d_inner, d_state, d_conv, n_heads, head_dim, n_groups, vocab, batch;
    int32_t chunk_size;    /* SSD chunk length of the prefill */
    int32_t prefill_block; /* tokens per prefill block, a multiple of chunk_size (scratch is sized for it) */
    float eps, dt_min, dt_max;
    mcpu_matrix embedding;    /* (vocab, d_model) */
    mcpu_matrix lm_head;      /* (vocab, d_model), the embedding when tied */
    const float *norm_f;      /* (d_model) */
    const mcpu_layer *layers; /* [n_layer] */
    float *conv_state;        /* (batch, n_layer, conv_dim, d_conv), oldest input first */
    float *ssm_state;         /* (batch, n_layer, n_heads, head_dim, d_state) */
    float *logits;            /* (batch, vocab) */
} mcpu_model;

typedef struct mcpu_engine mcpu_engine;

/* Allocates the thread pool and all scratch memory once, and copies the large matrices into the
 * packed layout decode streams best (ops.h). threads <= 0: one per online core. The model descriptor
 * must outlive the engine. Once this returns, the engine never reads in_proj, out_proj or lm_head
 * through their descriptors again, nor the embedding when it is tied (the same data as lm_head: its
 * rows come from the packed lm_head), so the caller may release those pages; an untied embedding is
 * read a row per token. NULL on failure: out of memory, or a matrix the kernels do not handle (a
 * quantized one needs group_size 16, 32, 64 or 128 dividing cols, and f16 or f32 scales). */
mcpu_engine *mcpu_create(const mcpu_model *model, int32_t threads);
void mcpu_destroy(mcpu_engine *engine);
int32_t mcpu_threads(const mcpu_engine *engine);
/* Name of the kernel set in use ("avx2+fma+f16c+avx512vnni", "avx2+fma+f16c+vnni", "avx2+fma+f16c",
 * "generic"). */
const char *mcpu_isa(void);

/* One token per sequence: tokens[batch], all in range. Writes logits (batch, vocab). */
void mcpu_step(mcpu_engine *engine, const int32_t *tokens);
/* One token for each of n sequences: tokens[i] for sequence seqs[i] (distinct, 1 <= n <= batch, all in
 * range). Writes those sequences' logits rows; no other sequence's state or logits are touched. */
void mcpu_step_seqs(mcpu_engine *engine, const int32_t *tokens, const int32_t *seqs, int32_t n);
/* n > 0 tokens for sequence seq, continuing its state, by the chunked (SSD) algorithm. Writes logits
 * row seq for the last token. */
void mcpu_prefill(mcpu_engine *engine, const int32_t *tokens, int32_t n, int32_t seq);

/* Read bandwidth in GB/s (1e9 bytes/s): the best of `passes` passes in which `threads` threads
 * (<= 0: one per core) each sum a disjoint part of a `bytes`-byte buffer with vector loads. The buffer
 * lives in memory like the packed weights' (huge pages where available) and is written before the
 * first pass, so every read reaches DRAM rather than a shared zero page. Negative on failure. */
double mcpu_read_bandwidth(int64_t bytes, int32_t passes, int32_t threads);

/* Testing hooks: the engine's own packing and kernels on one matrix, outside a model.
 * mcpu_test_matmul: y (nb, rows) (=, or += with accumulate) x (nb, cols) · Wᵀ, by the path a product
 * of nb tokens takes (decode kernels up to 8 tokens, dequantized float32 panels above). kernels: 0 the
 * best set, 1 generic, 2 avx2, 3 avxvnni (the best where the CPU lacks that set).
 * 0, or -1 when out of memory.
 * mcpu_test_rows: rows[i] of W as float32 into out (n, cols), read as the embedding is: from the
 * row-major form (packed_form 0) or from the packed copy of a tied lm_head (1). Both return -1 for a
 * matrix mcpu_create would refuse, or a row out of range. */
int32_t mcpu_test_matmul(const mcpu_matrix *W, const float *x, int32_t nb, float *y, int32_t accumulate,
                         int32_t threads, int32_t kernels);
int32_t mcpu_test_rows(const mcpu_matrix *W, const int32_t *rows, int32_t n, float *out, int32_t packed_form,
                       int32_t kernels);

/* The calling thread's buffer for mamba_last_error(). */
char *mcpu_error_buffer(void);
int32_t mcpu_error_buffer_size(void);

#ifdef __cplusplus
}
#endif
#endif
