/*
 * Decode's SSM state, written back lazily.
 *
 * A decode step must read every head's state S (head_dim × d_state floats; 19.6 MB per sequence for
 * mamba2-130m) to compute y = S·C, and writing S back every step doubles that traffic. Instead each
 * head keeps S as of some earlier step plus the rank-1 updates of the steps since: u_i = dt_i x_i,
 * B_i, and the cumulative decay L_i = sum_{j <= i} dt_j A. After step t
 *
 *   S_t = exp(L_t) S + sum_i exp(L_t - L_i) u_i ⊗ B_i
 *   y_t = exp(L_t) (S · C_t) + sum_i exp(L_t - L_i) (B_i · C_t) u_i + D x_t
 *
 * so a step reads S and writes only u_t (head_dim floats). Every MCPU_DEFER steps, and before anything
 * else looks at the state (saving it, prefill), the updates are folded into S. This is prefill.c's
 * chunked scan with the chunk growing one token at a time.
 */
#include <string.h>

#include "engine.h"

static float *defer_u(const mcpu_engine *e, int seq, int layer, int h) {
    const mcpu_model *m = e->m;
    return e->defer_u + (((size_t)seq * m->n_layer + layer) * m->n_heads + h) * MCPU_DEFER * m->head_dim;
}

static float *defer_b(const mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    return e->defer_b + ((size_t)seq * m->n_layer + layer) * MCPU_DEFER * m->n_groups * m->d_state;
}

static float *defer_l(const mcpu_engine *e, int seq, int layer, int h) {
    const mcpu_model *m = e->m;
    return e->defer_l + (((size_t)seq * m->n_layer + layer) * m->n_heads + h) * MCPU_DEFER;
}

/* S = exp(L[n-1]) S + sum_{i<n} exp(L[n-1] - L[i]) u_i ⊗ B_i for one head (u is scaled in place). */
static void fold(const mcpu_engine *e, int seq, int layer, int h, int n) {
    const mcpu_model *m = e->m;
    const int P = m->head_dim, N = m->d_state, G = m->n_groups, g = h / (m->n_heads / G);
    float *S = mcpu_ssm_state(e, seq, layer) + (size_t)h * P * N, *U = defer_u(e, seq, layer, h);
    const float *L = defer_l(e, seq, layer, h);
    float w[MCPU_DEFER + 1];
    for (int i = 0; i < n; i++) w[i] = L[n - 1] - L[i];
    w[n] = L[n - 1];
    e->ops->exp_inplace(w, n + 1);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < P; p++) U[i * P + p] *= w[i];
    for (size_t k = 0; k < (size_t)P * N; k++) S[k] *= w[n];
    /* S (P, N) += Uᵀ (P, n) · B (n, N) */
    e->ops->gemm(P, N, n, U, 1, P, defer_b(e, seq, layer) + g * N, (ptrdiff_t)G * N, S, N, 1, 0);
}

void mcpu_defer_record_b(mcpu_engine *e, int seq, int layer) {
    const mcpu_model *m = e->m;
    const size_t GN = (size_t)m->n_groups * m->d_state;
    int i = e->deferred[(size_t)seq * m->n_layer + layer];
    memcpy(defer_b(e, seq, layer) + i * GN, e->xbc + (size_t)seq * e->conv_dim + m->d_inner, GN * sizeof(float));
}

void mcpu_defer_step_head(mcpu_engine *e, const mcpu_layer *Lw, int seq, int layer, int h) {
    const mcpu_model *m = e->m;
    const mcpu_ops *ops = e->ops;
    const int P = m->head_dim, N = m->d_state, G = m->n_groups, g = h / (m->n_heads / G);
    const int i = e->deferred[(size_t)seq * m->n_layer + layer]; /* this step's slot */
    const float *xbc = e->xbc + (size_t)seq * e->conv_dim;
    const float *x = xbc + h * P, *C = xbc + m->d_inner + (G + g) * N;
    float *y = e->y + (size_t)seq * m->d_inner + h * P;
    const float *S = mcpu_ssm_state(e, seq, layer) + (size_t)h * P * N;
    float *U = defer_u(e, seq, layer, h), *L = defer_l(e, seq, layer, h);

    float dt = mcpu_head_dt(m, Lw, h, e->zxbcdt[(size_t)seq * e->d_in_proj + m->d_inner + e->conv_dim + h]);
    L[i] = (i > 0 ? L[i - 1] : 0.0f) + dt * Lw->A[h];
    for (int p = 0; p < P; p++) U[i * P + p] = dt * x[p];

    if (i + 1 == MCPU_DEFER) { /* the slots are full: fold them in, then read the new state */
        fold(e, seq, layer, h, i + 1);
        for (int p = 0; p < P; p++) y[p] = ops->dot(S + (size_t)p * N, C, N) + Lw->D[h] * x[p];
        return;
    }
    float c[MCPU_DEFER + 1];
    for (int k = 0; k <= i; k++) c[k] = L[i] - L[k];
    c[i + 1] = L[i];
    ops->exp_inplace(c, i + 2);
    const float *B = defer_b(e, seq, layer) + g * N;
    for (int k = 0; k <= i; k++) c[k] *= ops->dot(B + (size_t)k * G * N, C, N);
    for (int p = 0; p < P; p++) y[p] = c[i + 1] * ops->dot(S + (size_t)p * N, C, N) + Lw->D[h] * x[p];
    for (int k = 0; k <= i; k++)
        for (int p = 0; p < P; p++) y[p] += c[k] * U[k * P + p];
}

void mcpu_defer_advance(mcpu_engine *e, int seq, int layer) {
    int *n = &e->deferred[(size_t)seq * e->m->n_layer + layer];
    *n = *n + 1 == MCPU_DEFER ? 0 : *n + 1;
}

typedef struct {
    mcpu_engine *e;
    int seq;
} sync_job;

static void sync_task(void *ctx, int task, int thread) {
    (void)thread;
    sync_job *j = ctx;
    const mcpu_model *m = j->e->m;
    int layer = task / m->n_heads, h = task % m->n_heads;
    int n = j->e->deferred[(size_t)j->seq * m->n_layer + layer];
    if (n > 0) fold(j->e, j->seq, layer, h, n);
}

void mcpu_sync_state(mcpu_engine *e, int32_t seq) {
    const mcpu_model *m = e->m;
    int *n = e->deferred + (size_t)seq * m->n_layer, any = 0;
    for (int l = 0; l < m->n_layer; l++) any |= n[l];
    if (!any) return;
    sync_job j = {e, seq};
    mcpu_pool_run(e->pool, sync_task, &j, m->n_layer * m->n_heads);
    memset(n, 0, (size_t)m->n_layer * sizeof(int));
}

void mcpu_state_replaced(mcpu_engine *e, int32_t seq) {
    const mcpu_model *m = e->m;
    if (seq < 0) memset(e->deferred, 0, (size_t)m->batch * m->n_layer * sizeof(int));
    else memset(e->deferred + (size_t)seq * m->n_layer, 0, (size_t)m->n_layer * sizeof(int));
}
