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
 * Everything is float32; weights are converted from their stored dtype in registers.
 */
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "mamba_cpu.h"
#include "ops.h"
#include "pool.h"

struct mcpu_engine {
    const mcpu_model *m;
    const mcpu_ops *ops;
    mcpu_pool *pool;
    int conv_dim, d_in_proj, max_rows; /* max_rows: rows of activations in flight (batch or prefill block) */
    float *residual;                   /* (max_rows, d_model) */
    float *hidden;                     /* (max_rows, d_model)   normalised residual */
    float *zxbcdt;                     /* (max_rows, d_in_proj) in_proj output */
    float *xbc;                        /* (max_rows, conv_dim)  conv output, prefill only */
    float *y;                          /* (max_rows, d_inner)   SSM output */
    float *thread_scratch;             /* per thread: scratch_floats */
    size_t scratch_floats;
};

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

const char *mcpu_isa(void) { return mcpu_ops_best()->name; }

mcpu_engine *mcpu_create(const mcpu_model *m, int32_t threads) {
    mcpu_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->m = m;
    e->ops = mcpu_ops_best();
    e->conv_dim = m->d_inner + 2 * m->n_groups * m->d_state;
    e->d_in_proj = 2 * m->d_inner + 2 * m->n_groups * m->d_state + m->n_heads;
    e->max_rows = m->batch > m->prefill_block ? m->batch : m->prefill_block;
    if (threads <= 0) {
        long n = 1;
#ifdef _SC_NPROCESSORS_ONLN
        n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
        threads = n > 0 ? (int32_t)n : 1;
    }
    e->pool = mcpu_pool_create(threads);
    size_t R = (size_t)e->max_rows;
    int widest = m->d_model > m->d_inner ? m->d_model : m->d_inner;
    /* matvec conversion rows (4 * widest) + B and C of one group + one head's x */
    e->scratch_floats = round_up(4 * (size_t)widest + 2 * (size_t)m->d_state + (size_t)m->head_dim, 16);
    size_t total = R * ((size_t)m->d_model * 2 + (size_t)e->d_in_proj + (size_t)e->conv_dim + (size_t)m->d_inner) +
                   (size_t)(e->pool ? mcpu_pool_threads(e->pool) : 1) * e->scratch_floats;
    float *mem = e->pool ? aligned_alloc(64, round_up(total * sizeof(float), 64)) : NULL;
    if (!mem) {
        mcpu_pool_destroy(e->pool);
        free(e);
        return NULL;
    }
    memset(mem, 0, total * sizeof(float));
    e->residual = mem;
    e->hidden = e->residual + R * (size_t)m->d_model;
    e->zxbcdt = e->hidden + R * (size_t)m->d_model;
    e->xbc = e->zxbcdt + R * (size_t)e->d_in_proj;
    e->y = e->xbc + R * (size_t)e->conv_dim;
    e->thread_scratch = e->y + R * (size_t)m->d_inner;
    return e;
}

void mcpu_destroy(mcpu_engine *e) {
    if (!e) return;
    mcpu_pool_destroy(e->pool);
    free(e->residual);
    free(e);
}

int32_t mcpu_threads(const mcpu_engine *e) { return mcpu_pool_threads(e->pool); }

/* ---- small helpers ------------------------------------------------------------------------- */

static inline float silu(float x) { return x / (1.0f + expf(-x)); }
static inline float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static float *scratch_of(mcpu_engine *e, int thread) { return e->thread_scratch + (size_t)thread * e->scratch_floats; }

static void rmsnorm(const mcpu_ops *ops, float *out, const float *x, const float *w, int n, float eps) {
    float scale = 1.0f / sqrtf(ops->sum_squares(x, n) / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* y = y * silu(z), then RMSNorm over each group of d_inner / n_groups channels. */
static void gated_rmsnorm(const mcpu_ops *ops, const mcpu_model *m, float *y, const float *z, const float *w) {
    for (int i = 0; i < m->d_inner; i++) y[i] *= silu(z[i]);
    int gs = m->d_inner / m->n_groups;
    for (int g = 0; g < m->n_groups; g++) rmsnorm(ops, y + g * gs, y + g * gs, w + g * gs, gs, m->eps);
}

static void embed(const mcpu_engine *e, int32_t token, float *out) { e->ops->row_to_f32(&e->m->embedding, token, out); }

/* ---- matrix × rows, split over the pool by blocks of output rows ----------------------------- */

typedef struct {
    mcpu_engine *e;
    const mcpu_matrix *W;
    const float *x;
    float *y;
    int nb, ldx, ldy, accumulate, rows_per_task;
} matvec_job;

static void matvec_task(void *ctx, int task, int thread) {
    matvec_job *j = ctx;
    int r0 = task * j->rows_per_task;
    int r1 = r0 + j->rows_per_task;
    if (r1 > j->W->rows) r1 = j->W->rows;
    j->e->ops->matvec(j->W, r0, r1, j->x, j->ldx, j->nb, j->y, j->ldy, j->accumulate, scratch_of(j->e, thread));
}

/* y[b, :] (= or +=) W · x[b, :] for b < nb */
static void matmul(mcpu_engine *e, const mcpu_matrix *W, const float *x, int ldx, int nb, float *y, int ldy,
                   int accumulate) {
    /* Enough tasks to balance the threads, each a multiple of the 4-row kernel. */
    int tasks_wanted = mcpu_pool_threads(e->pool) * 8;
    int rows = (W->rows + tasks_wanted - 1) / tasks_wanted;
    rows = rows < 16 ? 16 : (rows + 3) / 4 * 4;
    matvec_job j = {e, W, x, y, nb, ldx, ldy, accumulate, rows};
    mcpu_pool_run(e->pool, matvec_task, &j, (W->rows + rows - 1) / rows);
}

/* ---- decode: one token per sequence ------------------------------------------------------------ */

typedef struct {
    mcpu_engine *e;
    const mcpu_layer *L;
    int layer;
} layer_job;

static float *conv_state_of(const mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    return m->conv_state + ((size_t)seq * m->n_layer + layer) * (size_t)e->conv_dim * m->d_conv;
}

static float *ssm_state_of(const mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    return m->ssm_state + ((size_t)seq * m->n_layer + layer) * (size_t)m->n_heads * m->head_dim * m->d_state;
}

/* Conv output of channel c for a new input `in`, from the d_conv - 1 newest stored inputs. */
static inline float conv_channel(const mcpu_engine *e, const mcpu_layer *L, const float *cs, int c, float in) {
    int K = e->m->d_conv;
    const float *w = L->conv_w + (size_t)c * K;
    const float *s = cs + (size_t)c * K;
    float acc = L->conv_b[c] + w[K - 1] * in;
    for (int k = 0; k < K - 1; k++) acc += w[k] * s[k + 1];
    return silu(acc);
}

static inline void conv_push(const mcpu_engine *e, float *cs, int c, float in) {
    int K = e->m->d_conv;
    float *s = cs + (size_t)c * K;
    memmove(s, s + 1, (size_t)(K - 1) * sizeof(float));
    s[K - 1] = in;
}

/* One SSM head update: state (head_dim, d_state) advances by one token with inputs x, B, C. */
static void ssm_head_update(const mcpu_model *m, float *state, const float *x, const float *B, const float *C,
                            float dt, float dA, float D, float *y) {
    int N = m->d_state;
    for (int p = 0; p < m->head_dim; p++) {
        float *s = state + (size_t)p * N;
        float xdt = x[p] * dt, acc = 0.0f;
        for (int n = 0; n < N; n++) {
            s[n] = s[n] * dA + xdt * B[n];
            acc += s[n] * C[n];
        }
        y[p] = acc + D * x[p];
    }
}

static inline float head_dt(const mcpu_model *m, const mcpu_layer *L, int h, float raw) {
    float dt = softplus(raw + L->dt_bias[h]);
    return fminf(fmaxf(dt, m->dt_min), m->dt_max);
}

/* Task (sequence, head): conv of the head's x channels (state advanced) and of its group's B and C
 * (state left for step_finish, since other heads of the group still read it), then the SSM update. */
static void step_head_task(void *ctx, int task, int thread) {
    layer_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    const mcpu_layer *L = j->L;
    int seq = task / m->n_heads, h = task % m->n_heads;
    int P = m->head_dim, N = m->d_state;
    int g = h / (m->n_heads / m->n_groups);
    const float *zx = e->zxbcdt + (size_t)seq * e->d_in_proj;
    const float *xbc_in = zx + m->d_inner;
    float *cs = conv_state_of(e, seq, j->layer);
    float *scratch = scratch_of(e, thread);
    float *Bv = scratch, *Cv = scratch + N, *x = scratch + 2 * N;

    for (int p = 0; p < P; p++) {
        int c = h * P + p;
        x[p] = conv_channel(e, L, cs, c, xbc_in[c]);
        conv_push(e, cs, c, xbc_in[c]);
    }
    int cB = m->d_inner + g * N, cC = m->d_inner + m->n_groups * N + g * N;
    for (int n = 0; n < N; n++) {
        Bv[n] = conv_channel(e, L, cs, cB + n, xbc_in[cB + n]);
        Cv[n] = conv_channel(e, L, cs, cC + n, xbc_in[cC + n]);
    }
    float dt = head_dt(m, L, h, zx[m->d_inner + e->conv_dim + h]);
    float *state = ssm_state_of(e, seq, j->layer) + (size_t)h * P * N;
    ssm_head_update(m, state, x, Bv, Cv, dt, expf(dt * L->A[h]), L->D[h], e->y + (size_t)seq * m->d_inner + h * P);
}

void mcpu_step(mcpu_engine *e, const int32_t *tokens) {
    const mcpu_model *m = e->m;
    const int B = m->batch, Dm = m->d_model;
    for (int b = 0; b < B; b++) embed(e, tokens[b], e->residual + (size_t)b * Dm);
    for (int l = 0; l < m->n_layer; l++) {
        const mcpu_layer *L = &m->layers[l];
        for (int b = 0; b < B; b++)
            rmsnorm(e->ops, e->hidden + (size_t)b * Dm, e->residual + (size_t)b * Dm, L->norm, Dm, m->eps);
        matmul(e, &L->in_proj, e->hidden, Dm, B, e->zxbcdt, e->d_in_proj, 0);
        layer_job j = {e, L, l};
        mcpu_pool_run(e->pool, step_head_task, &j, B * m->n_heads);
        for (int b = 0; b < B; b++) {
            float *cs = conv_state_of(e, b, l);
            const float *zx = e->zxbcdt + (size_t)b * e->d_in_proj;
            for (int c = m->d_inner; c < e->conv_dim; c++) conv_push(e, cs, c, zx[m->d_inner + c]);
            gated_rmsnorm(e->ops, m, e->y + (size_t)b * m->d_inner, zx, L->gnorm);
        }
        matmul(e, &L->out_proj, e->y, m->d_inner, B, e->residual, Dm, 1);
    }
    for (int b = 0; b < B; b++)
        rmsnorm(e->ops, e->hidden + (size_t)b * Dm, e->residual + (size_t)b * Dm, m->norm_f, Dm, m->eps);
    matmul(e, &m->lm_head, e->hidden, Dm, B, m->logits, m->vocab, 0);
}

/* ---- prefill: a block of T tokens of one sequence ---------------------------------------------- */

typedef struct {
    mcpu_engine *e;
    const mcpu_layer *L;
    int layer, seq, T, channels_per_task;
} block_job;

/* Causal conv over the block for a range of channels, continuing from (and advancing) conv_state. */
static void prefill_conv_task(void *ctx, int task, int thread) {
    (void)thread;
    block_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    float *cs = conv_state_of(e, j->seq, j->layer);
    int c0 = task * j->channels_per_task, c1 = c0 + j->channels_per_task;
    if (c1 > e->conv_dim) c1 = e->conv_dim;
    for (int c = c0; c < c1; c++) {
        for (int t = 0; t < j->T; t++) {
            float in = e->zxbcdt[(size_t)t * e->d_in_proj + m->d_inner + c];
            e->xbc[(size_t)t * e->conv_dim + c] = conv_channel(e, j->L, cs, c, in);
            conv_push(e, cs, c, in);
        }
    }
}

/* Sequential scan of one head over the block (the chunked algorithm is the faster alternative). */
static void prefill_scan_task(void *ctx, int h, int thread) {
    (void)thread;
    block_job *j = ctx;
    mcpu_engine *e = j->e;
    const mcpu_model *m = e->m;
    const mcpu_layer *L = j->L;
    int P = m->head_dim, N = m->d_state;
    int g = h / (m->n_heads / m->n_groups);
    float *state = ssm_state_of(e, j->seq, j->layer) + (size_t)h * P * N;
    for (int t = 0; t < j->T; t++) {
        const float *xbc = e->xbc + (size_t)t * e->conv_dim;
        float dt = head_dt(m, L, h, e->zxbcdt[(size_t)t * e->d_in_proj + m->d_inner + e->conv_dim + h]);
        ssm_head_update(m, state, xbc + h * P, xbc + m->d_inner + g * N, xbc + m->d_inner + (m->n_groups + g) * N, dt,
                        expf(dt * L->A[h]), L->D[h], e->y + (size_t)t * m->d_inner + h * P);
    }
}

static void prefill_block(mcpu_engine *e, const int32_t *tokens, int T, int seq) {
    const mcpu_model *m = e->m;
    const int Dm = m->d_model;
    for (int t = 0; t < T; t++) embed(e, tokens[t], e->residual + (size_t)t * Dm);
    for (int l = 0; l < m->n_layer; l++) {
        const mcpu_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++)
            rmsnorm(e->ops, e->hidden + (size_t)t * Dm, e->residual + (size_t)t * Dm, L->norm, Dm, m->eps);
        matmul(e, &L->in_proj, e->hidden, Dm, T, e->zxbcdt, e->d_in_proj, 0);
        int per = (e->conv_dim + 63) / 64;
        block_job j = {e, L, l, seq, T, per};
        mcpu_pool_run(e->pool, prefill_conv_task, &j, (e->conv_dim + per - 1) / per);
        mcpu_pool_run(e->pool, prefill_scan_task, &j, m->n_heads);
        for (int t = 0; t < T; t++)
            gated_rmsnorm(e->ops, m, e->y + (size_t)t * m->d_inner, e->zxbcdt + (size_t)t * e->d_in_proj, L->gnorm);
        matmul(e, &L->out_proj, e->y, m->d_inner, T, e->residual, Dm, 1);
    }
}

void mcpu_prefill(mcpu_engine *e, const int32_t *tokens, int32_t n, int32_t seq) {
    const mcpu_model *m = e->m;
    int T = 0;
    for (int32_t done = 0; done < n; done += T) {
        T = n - done < m->prefill_block ? n - done : m->prefill_block;
        prefill_block(e, tokens + done, T, seq);
    }
    const float *last = e->residual + (size_t)(T - 1) * m->d_model;
    rmsnorm(e->ops, e->hidden, last, m->norm_f, m->d_model, m->eps);
    matmul(e, &m->lm_head, e->hidden, m->d_model, 1, m->logits + (size_t)seq * m->vocab, m->vocab, 0);
}

/* ---- bandwidth probe ------------------------------------------------------------------------------ */

typedef struct {
    mcpu_engine *e;
    const char *p;
    int64_t part;
    double sums[256];
} bw_job;

static void bw_task(void *ctx, int task, int thread) {
    (void)thread;
    bw_job *j = ctx;
    j->sums[task] = j->e->ops->sum_bytes(j->p + (size_t)task * j->part, j->part);
}


double mcpu_read_bandwidth_pass(mcpu_engine *e, const void *buffer, int64_t bytes, double *checksum) {
    int n = mcpu_pool_threads(e->pool);
    if (n > 256) n = 256;
    bw_job j = {.e = e, .p = buffer, .part = bytes / n / 128 * 128};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    mcpu_pool_run(e->pool, bw_task, &j, n);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = 0;
    for (int i = 0; i < n; i++) s += j.sums[i];
    if (checksum) *checksum = s;
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
}
