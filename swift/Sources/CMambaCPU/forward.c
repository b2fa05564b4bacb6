/*
 * The Mamba2 forward pass on the CPU, following mamba_ssm:
 *
 *   residual = embedding[token]
 *   for each layer:
 *     h              = rmsnorm(residual) * norm
 *     z | xBC | dt   = in_proj(h)
 *     xBC            = silu(causal_conv1d(conv_state ++ xBC) + conv_b)      (conv_state keeps d_conv inputs)
 *     x | B | C      = xBC                                                   (B, C shared by a group of heads)
 *     dt             = clamp(softplus(dt + dt_bias), dt_min, dt_max)         (softplus = identity above 20)
 *     state          = state * exp(dt * A) + dt * x ⊗ B                      (per head: (head_dim, d_state))
 *     y              = state · C + D * x
 *     y              = rmsnorm_per_group(y * silu(z)) * gnorm
 *     residual      += out_proj(y)
 *   logits = lm_head(rmsnorm(residual) * norm_f)
 *
 * Everything is float32; weights are read in their stored dtype and widened in registers. This file
 * sets the engine up and runs the decode step; prefill.c runs the same layers over blocks of tokens
 * with the chunked (SSD) scan.
 *
 * A decode step is bound by memory bandwidth: it streams every weight once. So the large matrices
 * are packed (pack.c) into one contiguous stream per 16 rows, the threads split each matrix by panels,
 * and the small per-layer work between the matrices (conv, SSM, norms) is vectorised and short.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "pack.h"

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

const char *mcpu_isa(void) { return mcpu_ops_best()->name; }

int32_t mcpu_threads(const mcpu_engine *e) { return mcpu_pool_threads(e->pool); }

static int online_cores(void) {
    long n = 1;
#ifdef _SC_NPROCESSORS_ONLN
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? (int)n : 1;
}

/* ---- setup ------------------------------------------------------------------------------------ */

typedef struct {
    const mcpu_matrix *src;
    void *dst;
    int panels_per_task;
} pack_job;

static void pack_task(void *ctx, int task, int thread) {
    (void)thread;
    pack_job *j = ctx;
    int panels = (j->src->rows + MCPU_PANEL - 1) / MCPU_PANEL;
    int p0 = task * j->panels_per_task, p1 = p0 + j->panels_per_task;
    mcpu_pack_panels(j->src, j->dst, p0, p1 < panels ? p1 : panels);
}

static mcpu_packed pack(mcpu_engine *e, const mcpu_matrix *W, char **cursor) {
    mcpu_packed p = mcpu_packed_view(W, *cursor);
    pack_job j = {W, *cursor, 64};
    mcpu_pool_run(e->pool, pack_task, &j, (p.panels + j.panels_per_task - 1) / j.panels_per_task);
    *cursor += mcpu_packed_bytes(W);
    return p;
}

static int pack_weights(mcpu_engine *e) {
    const mcpu_model *m = e->m;
    size_t bytes = mcpu_packed_bytes(&m->lm_head);
    for (int l = 0; l < m->n_layer; l++)
        bytes += mcpu_packed_bytes(&m->layers[l].in_proj) + mcpu_packed_bytes(&m->layers[l].out_proj);
    e->in_proj = calloc((size_t)m->n_layer, sizeof(mcpu_packed));
    e->out_proj = calloc((size_t)m->n_layer, sizeof(mcpu_packed));
    e->packed = mcpu_alloc_huge(bytes);
    e->packed_bytes = bytes;
    if (!e->in_proj || !e->out_proj || !e->packed) return 0;
    /* in the order decode reads them */
    char *cursor = e->packed;
    for (int l = 0; l < m->n_layer; l++) {
        e->in_proj[l] = pack(e, &m->layers[l].in_proj, &cursor);
        e->out_proj[l] = pack(e, &m->layers[l].out_proj, &cursor);
    }
    e->lm_head = pack(e, &m->lm_head, &cursor);
    const mcpu_matrix *E = &m->embedding, *H = &m->lm_head;
    int tied = E->data == H->data && E->dtype == H->dtype && E->rows == H->rows && E->cols == H->cols &&
               E->scales == H->scales && E->biases == H->biases && E->group_size == H->group_size &&
               E->scale_dtype == H->scale_dtype;
    e->embedding_packed = tied ? &e->lm_head : NULL;
    return 1;
}

/* Scratch of the quantized products among Ws: the prepared activations of MCPU_QDIRECT_MAX tokens. */
static int quant_scratch(mcpu_engine *e, const mcpu_packed *const *Ws, int n) {
    size_t prep = 0;
    for (int i = 0; i < n; i++) {
        const mcpu_packed *W = Ws[i];
        if (!mcpu_is_quant(W->dtype)) continue;
        size_t b = mcpu_prep_bytes(W->cols, W->group_size);
        if (b > prep) prep = b;
    }
    if (prep == 0) return 1;
    e->qprep_stride = round_up(prep, 64);
    e->qprep = aligned_alloc(64, MCPU_QDIRECT_MAX * e->qprep_stride);
    return e->qprep != NULL;
}

static int model_quant_scratch(mcpu_engine *e) {
    const mcpu_model *m = e->m;
    const mcpu_packed **Ws = calloc(2 * (size_t)m->n_layer + 1, sizeof *Ws);
    if (!Ws) return 0;
    Ws[0] = &e->lm_head;
    for (int l = 0; l < m->n_layer; l++) Ws[1 + 2 * l] = &e->in_proj[l], Ws[2 + 2 * l] = &e->out_proj[l];
    int ok = quant_scratch(e, Ws, 2 * m->n_layer + 1);
    free(Ws);
    return ok;
}

/* A matrix the kernels handle: a known dtype and, quantized, a group size of 16–128 dividing the columns
 * and f16 or f32 scales. (The loaders check files; this keeps a bad descriptor from reaching a kernel.) */
static int matrix_ok(const mcpu_matrix *W) {
    if (!W->data || W->rows < 1 || W->cols < 1 || W->dtype < MCPU_F32 || W->dtype > MCPU_Q4) return 0;
    if (!mcpu_is_quant(W->dtype)) return 1;
    int G = W->group_size;
    return (G == 16 || G == 32 || G == 64 || G == 128) && W->cols % G == 0 &&
           (W->scale_dtype == MCPU_F16 || W->scale_dtype == MCPU_F32) && W->scales && W->biases;
}

static int model_ok(const mcpu_model *m) {
    if (m->d_conv > MCPU_CONV_MAX || m->chunk_size < 1 || m->prefill_block % m->chunk_size != 0) return 0;
    if (!matrix_ok(&m->embedding) || !matrix_ok(&m->lm_head)) return 0;
    for (int l = 0; l < m->n_layer; l++)
        if (!matrix_ok(&m->layers[l].in_proj) || !matrix_ok(&m->layers[l].out_proj)) return 0;
    return 1;
}

mcpu_engine *mcpu_create(const mcpu_model *m, int32_t threads) {
    if (!model_ok(m)) return NULL;
    mcpu_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->m = m;
    e->ops = mcpu_ops_best();
    e->conv_dim = m->d_inner + 2 * m->n_groups * m->d_state;
    e->d_in_proj = 2 * m->d_inner + 2 * m->n_groups * m->d_state + m->n_heads;
    e->max_rows = m->batch > m->prefill_block ? m->batch : m->prefill_block;
    e->pool = mcpu_pool_create(threads > 0 ? threads : online_cores());
    if (!e->pool || !pack_weights(e) || !model_quant_scratch(e)) {
        mcpu_destroy(e);
        return NULL;
    }

    const size_t R = (size_t)e->max_rows, Q = (size_t)m->chunk_size, N = (size_t)m->d_state,
                 P = (size_t)m->head_dim;
    /* per thread, for a head's chunk (prefill.c): dt, cumsum, decays (3Q), M (Q×Q), Sᵀ (N×P), weighted B (Q×N) */
    e->scratch_floats = round_up(4 * Q + Q * Q + N * P + Q * N, 16); /* prefill.c's ssd_head_task */
    size_t cb = (size_t)m->n_groups * (size_t)m->prefill_block * Q;
    size_t sizes[] = {R * (size_t)m->d_model, R * (size_t)m->d_model, R * (size_t)e->d_in_proj,
                      R * (size_t)e->conv_dim, R * (size_t)m->d_inner, cb,
                      (size_t)mcpu_pool_threads(e->pool) * e->scratch_floats,
                      m->batch > 1 ? (size_t)m->batch * (size_t)m->vocab : 0};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += round_up(sizes[i], 16);
    e->arena = aligned_alloc(64, total * sizeof(float));
    if (!e->arena) {
        mcpu_destroy(e);
        return NULL;
    }
    memset(e->arena, 0, total * sizeof(float));
    float **slots[] = {&e->residual, &e->hidden, &e->zxbcdt, &e->xbc, &e->y, &e->cb, &e->thread_scratch,
                       &e->subset_logits};
    float *cursor = e->arena;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = cursor;
        cursor += round_up(sizes[i], 16);
    }
    return e;
}

void mcpu_destroy(mcpu_engine *e) {
    if (!e) return;
    mcpu_pool_destroy(e->pool);
    mcpu_free_huge(e->packed, e->packed_bytes);
    free(e->in_proj);
    free(e->out_proj);
    free(e->arena);
    free(e->qprep);
    free(e);
}

/* ---- matrix × rows, split over the pool by ranges of panels ------------------------------------ */

typedef struct {
    mcpu_engine *e;
    const mcpu_packed *W;
    const float *x;
    float *y;
    int nb, ldx, ldy, accumulate, panels_per_task;
} matmul_job;

static void matmul_task(void *ctx, int task, int thread) {
    matmul_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_packed *W = j->W;
    int p0 = task * j->panels_per_task, p1 = p0 + j->panels_per_task;
    if (p1 > W->panels) p1 = W->panels;
    if (!mcpu_is_quant(W->dtype)) {
        e->ops->gemm_panels(W, p0, p1, j->x, j->ldx, j->nb, j->y, j->ldy, j->accumulate);
    } else {
        e->ops->qgemm_panels(W, p0, p1, j->x, j->ldx, e->qprep, e->qprep_stride, j->nb, j->y, j->ldy,
                             j->accumulate);
    }
}

/* The least bytes of quantized panels a decode task streams (see mcpu_matmul). */
#define QDIRECT_TASK_BYTES ((size_t)512 << 10)

void mcpu_matmul(mcpu_engine *e, const mcpu_packed *W, const float *x, int ldx, int nb, float *y, int ldy,
                 int accumulate) {
    /* 32 tasks per thread balance the load, even with a thread preempted. With many tokens a task's
     * panels are also capped at ~256 KiB, so they stay in L2 while every tile of tokens passes over
     * them. */
    int quant = mcpu_is_quant(W->dtype);
    if (quant && nb > MCPU_QDIRECT_MAX) {
        /* Prefill with quantized weights: MCPU_QDIRECT_MAX tokens at a time through the integer kernels.
         * Each pass streams the matrix again, but the products dominate: the integer kernels do 2-3 times
         * the multiply-adds per instruction of the float32 kernels that dequantized panels used to feed
         * (780m prefill: q8 121 → 155, q4 124 → 203 tok/s, f16 126). Every token also gets the bits its
         * decode step would. */
        for (int b0 = 0; b0 < nb; b0 += MCPU_QDIRECT_MAX) {
            int n = nb - b0 < MCPU_QDIRECT_MAX ? nb - b0 : MCPU_QDIRECT_MAX;
            mcpu_matmul(e, W, x + (size_t)b0 * ldx, ldx, n, y + (size_t)b0 * ldy, ldy, accumulate);
        }
        return;
    }
    int threads = mcpu_pool_threads(e->pool);
    int per = (W->panels + threads * 32 - 1) / (threads * 32);
    if (quant) { /* nb <= MCPU_QDIRECT_MAX here */
        /* Few, long contiguous ranges: a quantized panel is 4-8 KiB, so 32 tasks per thread would hand a
         * thread 14-27 KiB of in_proj or out_proj at a time, alternating with the other threads, and the
         * hardware prefetcher would restart its stream every few microseconds. Measured on the 2-core
         * EPYC at 130m: 224 → 408 tok/s (q4), 188 → 262 (q8). Float panels are 2-4 times longer and
         * keep the finer split (longer ranges measured slower there). Results do not depend on the
         * split: every panel is computed alone. */
        size_t bytes = (size_t)W->panels * W->panel_bytes;
        size_t k = bytes / ((size_t)threads * QDIRECT_TASK_BYTES);
        if (k < 1) k = 1;
        if (k > 32) k = 32;
        per = (int)((W->panels + (size_t)threads * k - 1) / ((size_t)threads * k));
        /* each token's activations prepared once, for every panel */
        for (int b = 0; b < nb; b++)
            e->ops->quant_prep(x + (size_t)b * ldx, W->cols, W->group_size, W->dtype,
                               (char *)e->qprep + (size_t)b * e->qprep_stride);
    } else if (nb > 6) {
        int cap = (int)((256u << 10) / W->panel_bytes);
        if (per > cap) per = cap;
    }
    if (per < 1) per = 1;
    matmul_job j = {e, W, x, y, nb, ldx, ldy, accumulate, per};
    mcpu_pool_run(e->pool, matmul_task, &j, (W->panels + per - 1) / per);
}

/* ---- per-row work: norms ------------------------------------------------------------------------ */

/* Rows [0, n) of a norm, in tasks of rows_per_task rows. */
typedef struct {
    mcpu_engine *e;
    const float *w;      /* rmsnorm_task: the norm's weight */
    const mcpu_layer *L; /* gated_norm_task: the layer whose gnorm applies */
    int n, rows_per_task;
} rows_job;

static void rmsnorm(const mcpu_ops *ops, float *out, const float *x, const float *w, int n, float eps) {
    float scale = 1.0f / sqrtf(ops->dot(x, x, n) / (float)n + eps);
    ops->scale_mul(out, x, scale, w, n);
}

static int task_rows(const rows_job *j, int task, int *r1) {
    int r0 = task * j->rows_per_task;
    *r1 = r0 + j->rows_per_task < j->n ? r0 + j->rows_per_task : j->n;
    return r0;
}

/* hidden = rmsnorm(residual) * w */
static void rmsnorm_task(void *ctx, int task, int thread) {
    (void)thread;
    rows_job *j = ctx;
    const mcpu_model *m = j->e->m;
    int r1, r0 = task_rows(j, task, &r1);
    for (int r = r0; r < r1; r++) {
        size_t at = (size_t)r * m->d_model;
        rmsnorm(j->e->ops, j->e->hidden + at, j->e->residual + at, j->w, m->d_model, m->eps);
    }
}

/* y = rmsnorm_per_group(y * silu(z)) * gnorm, over groups of d_inner / n_groups channels */
static void gated_norm_task(void *ctx, int task, int thread) {
    (void)thread;
    rows_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    int gs = m->d_inner / m->n_groups, r1, r0 = task_rows(j, task, &r1);
    for (int r = r0; r < r1; r++) {
        float *y = e->y + (size_t)r * m->d_inner, *z = e->zxbcdt + (size_t)r * e->d_in_proj;
        e->ops->silu_inplace(z, m->d_inner);
        for (int i = 0; i < m->d_inner; i++) y[i] *= z[i];
        for (int g = 0; g < m->n_groups; g++) rmsnorm(e->ops, y + g * gs, y + g * gs, j->L->gnorm + g * gs, gs, m->eps);
    }
}

/* A few rows are cheaper on this thread than a round trip through the pool. */
static void run_rows(mcpu_engine *e, mcpu_task_fn task, rows_job *j) {
    int threads = mcpu_pool_threads(e->pool);
    if (j->n < 2 * threads) {
        j->rows_per_task = j->n;
        task(j, 0, 0);
        return;
    }
    j->rows_per_task = (j->n + threads * 4 - 1) / (threads * 4);
    mcpu_pool_run(e->pool, task, j, (j->n + j->rows_per_task - 1) / j->rows_per_task);
}

void mcpu_rmsnorm_rows(mcpu_engine *e, const float *w, int n) {
    rows_job j = {e, w, NULL, n, 0};
    run_rows(e, rmsnorm_task, &j);
}

void mcpu_gated_norm_rows(mcpu_engine *e, const mcpu_layer *L, int n) {
    rows_job j = {e, NULL, L, n, 0};
    run_rows(e, gated_norm_task, &j);
}

/* ---- causal depthwise conv ---------------------------------------------------------------------- */

typedef struct {
    mcpu_engine *e;
    const mcpu_layer *L;
    int layer, n, seq, channels_per_task, blocks;
} conv_job;

/* Channels [c0, c1) of rows [r0, r0 + n), consecutive tokens of the sequence whose state is cs. */
static void conv_channels(mcpu_engine *e, const mcpu_layer *L, float *cs, int r0, int n, int c0, int c1) {
    const mcpu_model *m = e->m;
    const float *in = e->zxbcdt + (size_t)r0 * e->d_in_proj + m->d_inner + c0; /* xBC columns of in_proj */
    e->ops->conv_silu(in, e->d_in_proj, e->xbc + (size_t)r0 * e->conv_dim + c0, e->conv_dim, n,
                      cs + (size_t)c0 * m->d_conv, L->conv_w + (size_t)c0 * m->d_conv, L->conv_b + c0, c1 - c0,
                      m->d_conv);
}

static void conv_task(void *ctx, int task, int thread) {
    (void)thread;
    conv_job *j = ctx;
    int block = task % j->blocks, item = task / j->blocks;
    int c0 = block * j->channels_per_task, c1 = c0 + j->channels_per_task;
    if (c1 > j->e->conv_dim) c1 = j->e->conv_dim;
    if (j->seq < 0) /* decode: row `item` advances the state of its sequence */
        conv_channels(j->e, j->L, mcpu_conv_state(j->e, mcpu_row_seq(j->e, item), j->layer), item, 1, c0, c1);
    else
        conv_channels(j->e, j->L, mcpu_conv_state(j->e, j->seq, j->layer), 0, j->n, c0, c1);
}

void mcpu_conv_rows(mcpu_engine *e, const mcpu_layer *L, int layer, int n, int seq) {
    int per = 256; /* a multiple of 8: silu runs on whole vectors */
    if (seq < 0) {
        /* decode: a row is a few microseconds of work, so only as many tasks as keep every thread
         * busy (2 per thread; one per sequence from batch 2 × threads on): each task costs a claim
         * and a completion on the pool's shared counters. At batch 4 on two cores, 28 tasks of 256
         * channels took 0.4–0.6 ms per step, 4 tasks take 0.3–0.36 ms. The blocks stay multiples of
         * 8 channels: the same vectors, the same bits. */
        int blocks = (2 * mcpu_pool_threads(e->pool) + n - 1) / n;
        per = ((e->conv_dim + blocks - 1) / blocks + 7) / 8 * 8;
    }
    conv_job j = {e, L, layer, n, seq, per, (e->conv_dim + per - 1) / per};
    mcpu_pool_run(e->pool, conv_task, &j, j.blocks * (seq < 0 ? n : 1));
}

/* ---- decode: one token per sequence ------------------------------------------------------------- */

typedef struct {
    mcpu_engine *e;
    const mcpu_layer *L;
    int layer, parts; /* parts: tasks per sequence, each a run of consecutive heads */
} layer_job;

/* Task (row, part): one step of the recurrence of heads [h0, h1) on the conv outputs of activation row
 * `row`, which advances the state of sequence mcpu_row_seq(row). */
static void step_heads_task(void *ctx, int task, int thread) {
    (void)thread;
    layer_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    const mcpu_layer *L = j->L;
    int row = task / j->parts, part = task % j->parts, seq = mcpu_row_seq(e, row);
    int h0 = part * m->n_heads / j->parts, h1 = (part + 1) * m->n_heads / j->parts;
    const float *xbc = e->xbc + (size_t)row * e->conv_dim;
    for (int h = h0; h < h1; h++) {
        int P = m->head_dim, N = m->d_state, g = h / (m->n_heads / m->n_groups);
        float dt = mcpu_head_dt(m, L, h, e->zxbcdt[(size_t)row * e->d_in_proj + m->d_inner + e->conv_dim + h]);
        float *state = mcpu_ssm_state(e, seq, j->layer) + (size_t)h * P * N;
        e->ops->ssm_step_head(state, P, N, xbc + h * P, xbc + m->d_inner + g * N,
                              xbc + m->d_inner + (m->n_groups + g) * N, dt, expf(dt * L->A[h]), L->D[h],
                              e->y + (size_t)row * m->d_inner + h * P);
    }
}

/* One token for each of B activation rows (row b advances sequence mcpu_row_seq(b)); the logits of row b
 * go to logits[b * vocab]. */
static void decode_rows(mcpu_engine *e, const int32_t *tokens, int B, float *logits) {
    const mcpu_model *m = e->m;
    const int Dm = m->d_model;
    for (int b = 0; b < B; b++) mcpu_embed(e, tokens[b], e->residual + (size_t)b * Dm);
    for (int l = 0; l < m->n_layer; l++) {
        const mcpu_layer *L = &m->layers[l];
        mcpu_rmsnorm_rows(e, L->norm, B);
        mcpu_matmul(e, &e->in_proj[l], e->hidden, Dm, B, e->zxbcdt, e->d_in_proj, 0);
        mcpu_conv_rows(e, L, l, B, -1);
        /* The SSM step streams each sequence's state (786 KB a layer for 130m) once: a task takes a
         * run of consecutive heads, one contiguous stretch of state, and there are only as many tasks
         * as keep every thread busy (2 per thread). With one task per head (96 at batch 4), task
         * claims and a new 32 KB stream per head cost 5–13% of this memory-bound phase at batch 4
         * (3.3–3.9 ms per step on two cores). Results are the same, head by head. */
        int parts = (2 * mcpu_pool_threads(e->pool) + B - 1) / B;
        if (parts > m->n_heads) parts = m->n_heads;
        layer_job j = {e, L, l, parts};
        mcpu_pool_run(e->pool, step_heads_task, &j, B * parts);
        mcpu_gated_norm_rows(e, L, B);
        mcpu_matmul(e, &e->out_proj[l], e->y, m->d_inner, B, e->residual, Dm, 1);
    }
    mcpu_rmsnorm_rows(e, m->norm_f, B);
    mcpu_matmul(e, &e->lm_head, e->hidden, Dm, B, logits, m->vocab, 0);
}

void mcpu_step(mcpu_engine *e, const int32_t *tokens) { decode_rows(e, tokens, e->m->batch, e->m->logits); }

/* Rows are computed compactly (row i for seqs[i]); only the listed sequences' state is read or written.
 * Each row's arithmetic is the same as in a full step (the matrix kernels' sums do not depend on the
 * number of rows), so the results are bit-identical to mcpu_step's for those sequences. */
void mcpu_step_seqs(mcpu_engine *e, const int32_t *tokens, const int32_t *seqs, int32_t n) {
    const mcpu_model *m = e->m;
    int run = 1; /* seqs[0], seqs[0] + 1, ...: the logits rows can be written in place */
    for (int i = 1; i < n && run; i++) run = seqs[i] == seqs[0] + i;
    e->row_seq = seqs;
    decode_rows(e, tokens, n, run ? m->logits + (size_t)seqs[0] * m->vocab : e->subset_logits);
    e->row_seq = NULL;
    if (!run)
        for (int i = 0; i < n; i++)
            memcpy(m->logits + (size_t)seqs[i] * m->vocab, e->subset_logits + (size_t)i * m->vocab,
                   (size_t)m->vocab * sizeof(float));
}

/* ---- testing hooks (mamba_cpu.h) ---------------------------------------------------------------- */

int32_t mcpu_test_matmul(const mcpu_matrix *W, const float *x, int32_t nb, float *y, int32_t accumulate,
                         int32_t threads, int32_t kernels) {
    if (!matrix_ok(W) || nb < 1) return -1;
    mcpu_engine e = {0};
    e.ops = mcpu_ops_pick(kernels);
    e.pool = mcpu_pool_create(threads > 0 ? threads : 1);
    size_t bytes = mcpu_packed_bytes(W);
    char *packed = mcpu_alloc_huge(bytes), *cursor = packed;
    int ok = 0;
    if (e.pool && packed) {
        e.lm_head = pack(&e, W, &cursor);
        const mcpu_packed *Ws[] = {&e.lm_head};
        if (quant_scratch(&e, Ws, 1)) {
            mcpu_matmul(&e, &e.lm_head, x, W->cols, nb, y, W->rows, accumulate);
            ok = 1;
        }
    }
    free(e.qprep);
    mcpu_free_huge(packed, bytes);
    if (e.pool) mcpu_pool_destroy(e.pool);
    return ok ? 0 : -1;
}

int32_t mcpu_test_rows(const mcpu_matrix *W, const int32_t *rows, int32_t n, float *out, int32_t packed_form,
                       int32_t kernels) {
    const mcpu_ops *ops = mcpu_ops_pick(kernels);
    if (!matrix_ok(W)) return -1;
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= W->rows) return -1;
    if (!packed_form) {
        for (int i = 0; i < n; i++) ops->row_to_f32(W, rows[i], out + (size_t)i * W->cols);
        return 0;
    }
    size_t bytes = mcpu_packed_bytes(W);
    void *packed = mcpu_alloc_huge(bytes);
    if (!packed) return -1;
    mcpu_packed P = mcpu_packed_view(W, packed);
    mcpu_pack_panels(W, packed, 0, P.panels);
    for (int i = 0; i < n; i++) ops->packed_row_to_f32(&P, rows[i], out + (size_t)i * W->cols);
    mcpu_free_huge(packed, bytes);
    return 0;
}
