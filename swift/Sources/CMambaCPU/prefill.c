/*
 * Prefill: the layers of forward.c over blocks of up to prefill_block tokens of one sequence, with the
 * SSM scanned by the chunked (SSD) algorithm of mamba_ssm instead of token by token.
 *
 * Within a chunk of Q tokens, per head (dA_cs = inclusive cumsum of dt * A over the chunk, S = the
 * head's state (head_dim, d_state) when the chunk starts):
 *
 *   y[t]  = exp(dA_cs[t]) · C[t] · Sᵀ                                        (state entering the chunk)
 *         + Σ_{s<=t} (C[t]·B[s]) exp(dA_cs[t] - dA_cs[s]) dt[s] x[s]        (the chunk itself)
 *         + D x[t]
 *   S    <- exp(dA_cs[Q-1]) S + Σ_s exp(dA_cs[Q-1] - dA_cs[s]) dt[s] x[s] ⊗ B[s]
 *
 * which is the recurrence of forward.c summed in closed form: every product is a small matrix product
 * (ops->gemm), and the chunks of a head run in order, each starting from the state the previous one
 * left (state passing), the first from the sequence's current state. C·Bᵀ depends only on the group,
 * so it is computed once per (group, chunk) for all the group's heads.
 */
#include <string.h>

#include "engine.h"

typedef struct {
    mcpu_engine *e;
    const mcpu_layer *L;
    int layer, seq, T, chunks;
} block_job;

static float *cb_of(const mcpu_engine *e, int g, int chunk) {
    const mcpu_model *m = e->m;
    size_t Q = (size_t)m->chunk_size;
    return e->cb + ((size_t)g * (size_t)(m->prefill_block / m->chunk_size) + (size_t)chunk) * Q * Q;
}

/* Task (group, chunk): CB[t, s] = C[t] · B[s] for t, s in the chunk. */
static void cb_task(void *ctx, int task, int thread) {
    block_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    int g = task / j->chunks, c = task % j->chunks;
    int Qc = m->chunk_size, N = m->d_state, t0 = c * Qc;
    int Q = j->T - t0 < Qc ? j->T - t0 : Qc;
    const float *B = e->xbc + (size_t)t0 * e->conv_dim + m->d_inner + g * N;
    const float *C = B + (size_t)m->n_groups * N;
    float *Bt = mcpu_scratch(e, thread); /* (N, Q) */
    for (int s = 0; s < Q; s++)
        for (int n = 0; n < N; n++) Bt[(size_t)n * Q + s] = B[(size_t)s * e->conv_dim + n];
    e->ops->gemm(Q, Q, N, C, e->conv_dim, 1, Bt, Q, cb_of(e, g, c), Qc, 0, 0);
}

/* Task head: every chunk of the block in order, carrying the head's state. */
static void ssd_head_task(void *ctx, int h, int thread) {
    block_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    const mcpu_layer *L = j->L;
    const mcpu_ops *ops = e->ops;
    const int P = m->head_dim, N = m->d_state, Qc = m->chunk_size, ld = e->conv_dim;
    const int g = h / (m->n_heads / m->n_groups);
    const float A = L->A[h], D = L->D[h];
    float *S = mcpu_ssm_state(e, j->seq, j->layer) + (size_t)h * P * N; /* (P, N) */

    float *scratch = mcpu_scratch(e, thread);
    float *dt = scratch;               /* (Q) */
    float *acs = dt + Qc;              /* (Q) inclusive cumsum of dt * A, high part */
    float *acs_lo = acs + Qc;          /* (Q) its low part: acs + acs_lo is the sum to ~double precision */
    float *decay = acs_lo + Qc;        /* (Q) */
    float *M = decay + Qc;             /* (Q, Q) CB ∘ exp(segsum) ∘ dt, lower triangular */
    float *St = M + (size_t)Qc * Qc;   /* (N, P) Sᵀ */
    float *Bw = St + (size_t)N * P;    /* (Q, N) B[s] scaled by its decay to the chunk's end */

    for (int c = 0; c < j->chunks; c++) {
        const int t0 = c * Qc, Q = j->T - t0 < Qc ? j->T - t0 : Qc;
        const float *X = e->xbc + (size_t)t0 * ld + h * P;                          /* (Q, P), row stride ld */
        const float *B = e->xbc + (size_t)t0 * ld + m->d_inner + g * N;              /* (Q, N) */
        const float *C = B + (size_t)m->n_groups * N;                                /* (Q, N) */
        float *Y = e->y + (size_t)t0 * m->d_inner + h * P;                          /* (Q, P), stride d_inner */
        const float *raw = e->zxbcdt + (size_t)t0 * e->d_in_proj + m->d_inner + e->conv_dim + h;

        /* The sum in double, kept as hi + lo: with dt up to ~4 and A ~ -15 it reaches -1e4 within a
         * 256-token chunk, where a float's spacing is ~1e-3, while tokens with small dt after it still weigh
         * exp(acs[t] - acs[s]) ~ 1; differences (hi_t - hi_s) + (lo_t - lo_s) keep that weight exact to float. */
        double run = 0.0;
        for (int t = 0; t < Q; t++) {
            dt[t] = mcpu_head_dt(m, L, h, raw[(size_t)t * e->d_in_proj]);
            run += (double)(dt[t] * A);
            acs[t] = (float)run;
            acs_lo[t] = (float)(run - (double)acs[t]);
        }

        /* the state entering the chunk: Y = exp(acs) ∘ (C · Sᵀ) + D x */
        for (int p = 0; p < P; p++)
            for (int n = 0; n < N; n++) St[(size_t)n * P + p] = S[(size_t)p * N + n];
        ops->gemm(Q, P, N, C, ld, 1, St, P, Y, m->d_inner, 0, 0);
        for (int t = 0; t < Q; t++) decay[t] = acs[t] + acs_lo[t];
        ops->exp_inplace(decay, Q);
        for (int t = 0; t < Q; t++) {
            float *yt = Y + (size_t)t * m->d_inner;
            const float *xt = X + (size_t)t * ld;
            for (int p = 0; p < P; p++) yt[p] = decay[t] * yt[p] + D * xt[p];
        }

        /* the chunk itself: Y += M · X, M[t, s] = CB[t, s] exp(acs[t] - acs[s]) dt[s] for s <= t */
        const float *CB = cb_of(e, g, c);
        for (int t = 0; t < Q; t++) {
            float *row = M + (size_t)t * Qc;
            for (int s = 0; s <= t; s++) row[s] = (acs[t] - acs[s]) + (acs_lo[t] - acs_lo[s]);
            ops->exp_inplace(row, t + 1);
            for (int s = 0; s <= t; s++) row[s] *= CB[(size_t)t * Qc + s] * dt[s];
            /* the causal product reads up to the end of each 4-row tile: zeros there */
            int end = (t | 3) + 1 < Q ? (t | 3) + 1 : Q;
            for (int s = t + 1; s < end; s++) row[s] = 0.0f;
        }
        ops->gemm(Q, P, Q, M, Qc, 1, X, ld, Y, m->d_inner, 1, 1);

        /* the state leaving the chunk: S = exp(acs[Q-1]) S + Xᵀ · Bw */
        for (int s = 0; s < Q; s++) decay[s] = (acs[Q - 1] - acs[s]) + (acs_lo[Q - 1] - acs_lo[s]);
        ops->exp_inplace(decay, Q);
        for (int s = 0; s < Q; s++) {
            float w = decay[s] * dt[s];
            for (int n = 0; n < N; n++) Bw[(size_t)s * N + n] = w * B[(size_t)s * ld + n];
        }
        float total = acs[Q - 1] + acs_lo[Q - 1];
        ops->exp_inplace(&total, 1);
        for (size_t i = 0; i < (size_t)P * N; i++) S[i] *= total;
        ops->gemm(P, N, Q, X, 1, ld, Bw, N, S, N, 1, 0);
    }
}

static void prefill_block(mcpu_engine *e, const int32_t *tokens, int T, int seq) {
    const mcpu_model *m = e->m;
    const int Dm = m->d_model;
    for (int t = 0; t < T; t++) mcpu_embed(e, tokens[t], e->residual + (size_t)t * Dm);
    for (int l = 0; l < m->n_layer; l++) {
        const mcpu_layer *L = &m->layers[l];
        mcpu_rmsnorm_rows(e, L->norm, T);
        mcpu_matmul(e, &e->in_proj[l], e->hidden, Dm, T, e->zxbcdt, e->d_in_proj, 0);
        mcpu_conv_rows(e, L, l, T, seq);
        block_job j = {e, L, l, seq, T, (T + m->chunk_size - 1) / m->chunk_size};
        mcpu_pool_run(e->pool, cb_task, &j, m->n_groups * j.chunks);
        mcpu_pool_run(e->pool, ssd_head_task, &j, m->n_heads);
        mcpu_gated_norm_rows(e, L, T);
        mcpu_matmul(e, &e->out_proj[l], e->y, m->d_inner, T, e->residual, Dm, 1);
    }
}

void mcpu_prefill(mcpu_engine *e, const int32_t *tokens, int32_t n, int32_t seq) {
    const mcpu_model *m = e->m;
    int T = 0;
    for (int32_t done = 0; done < n; done += T) {
        T = n - done < m->prefill_block ? n - done : m->prefill_block;
        prefill_block(e, tokens + done, T, seq);
    }
    /* only the last token's logits: one row through the final norm and lm_head */
    float *last = e->residual + (size_t)(T - 1) * m->d_model;
    if (T > 1) memcpy(e->residual, last, (size_t)m->d_model * sizeof(float));
    mcpu_rmsnorm_rows(e, m->norm_f, 1);
    mcpu_matmul(e, &e->lm_head, e->hidden, m->d_model, 1, m->logits + (size_t)seq * m->vocab, m->vocab, 0);
}
