/* The CPU engine's private state, shared by forward.c (setup, decode) and prefill.c. */
#ifndef MCPU_ENGINE_H
#define MCPU_ENGINE_H

#include <math.h>
#include <stddef.h>

#include "mamba_cpu.h"
#include "ops.h"
#include "pool.h"

struct mcpu_engine {
    const mcpu_model *m;
    const mcpu_ops *ops;
    mcpu_pool *pool;
    int conv_dim, d_in_proj, max_rows; /* max_rows: rows of activations in flight (batch or prefill block) */

    void *packed;          /* every packed matrix, in huge pages */
    size_t packed_bytes;
    mcpu_packed *in_proj;  /* [n_layer] (d_in_proj, d_model) */
    mcpu_packed *out_proj; /* [n_layer] (d_model, d_inner) */
    mcpu_packed lm_head;   /* (vocab, d_model) */
    const mcpu_packed *embedding_packed; /* lm_head when the embedding is tied to it, else NULL */

    /* quantized matrices (ops_quant.inc) */
    void *qprep;           /* (MCPU_QDIRECT_MAX, qprep_stride bytes) each decode token's prepared activations */
    size_t qprep_stride;

    float *residual;       /* (max_rows, d_model) */
    float *hidden;         /* (max_rows, d_model)   normalised residual */
    float *zxbcdt;         /* (max_rows, d_in_proj) in_proj output; z is replaced by silu(z) */
    float *xbc;            /* (max_rows, conv_dim)  conv output after silu: x | B | C */
    float *y;              /* (max_rows, d_inner)   SSM output, then gated and normalised */
    float *cb;             /* (n_groups, prefill_block / chunk_size, chunk_size, chunk_size)  C·Bᵀ per chunk */
    float *thread_scratch; /* per thread: scratch_floats */
    float *subset_logits;  /* (batch, vocab) lm_head rows of a subset step whose sequences are not one run */
    const int32_t *row_seq; /* decode: the sequence of each activation row (NULL: row b is sequence b) */
    size_t scratch_floats;
    float *arena;          /* all of the float buffers above but qprep */
};

static inline float mcpu_silu(float x) { return x / (1.0f + expf(-x)); }
static inline float mcpu_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* Row `token` of the embedding as float32 into out[d_model]. */
static inline void mcpu_embed(const mcpu_engine *e, int token, float *out) {
    if (e->embedding_packed) e->ops->packed_row_to_f32(e->embedding_packed, token, out);
    else e->ops->row_to_f32(&e->m->embedding, token, out);
}

static inline float *mcpu_scratch(const mcpu_engine *e, int thread) {
    return e->thread_scratch + (size_t)thread * e->scratch_floats;
}

/* The sequence whose state decode row `row` advances. */
static inline int mcpu_row_seq(const mcpu_engine *e, int row) { return e->row_seq ? e->row_seq[row] : row; }

/* conv_state of one sequence and layer: (conv_dim, d_conv), oldest input first. */
static inline float *mcpu_conv_state(const mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    return m->conv_state + ((size_t)seq * m->n_layer + layer) * (size_t)e->conv_dim * m->d_conv;
}

/* ssm_state of one sequence and layer: (n_heads, head_dim, d_state). */
static inline float *mcpu_ssm_state(const mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    return m->ssm_state + ((size_t)seq * m->n_layer + layer) * (size_t)m->n_heads * m->head_dim * m->d_state;
}

/* dt = clamp(softplus(raw + dt_bias), dt_min, dt_max), as mamba_ssm does in prefill and decode alike. */
static inline float mcpu_head_dt(const mcpu_model *m, const mcpu_layer *L, int h, float raw) {
    float dt = mcpu_softplus(raw + L->dt_bias[h]);
    return fminf(fmaxf(dt, m->dt_min), m->dt_max);
}

/* y[b, :] (= or +=) W · x[b, :] for b < nb, split over the pool by ranges of panels. A quantized W
 * goes through the integer kernels MCPU_QDIRECT_MAX tokens at a time. */
void mcpu_matmul(mcpu_engine *e, const mcpu_packed *W, const float *x, int ldx, int nb, float *y, int ldy,
                 int accumulate);
/* hidden[r] = rmsnorm(residual[r]) * w for rows [0, n). */
void mcpu_rmsnorm_rows(mcpu_engine *e, const float *w, int n);
/* Causal conv + silu of rows [0, n) of zxbcdt into xbc. seq < 0: row b belongs to sequence
 * mcpu_row_seq(b) (decode);
 * else all rows are consecutive tokens of sequence seq (prefill). Advances conv_state. */
void mcpu_conv_rows(mcpu_engine *e, const mcpu_layer *L, int layer, int n, int seq);
/* y[r] = rmsnorm_per_group(y[r] * silu(z[r])) * gnorm for rows [0, n). */
void mcpu_gated_norm_rows(mcpu_engine *e, const mcpu_layer *L, int n);

#endif
