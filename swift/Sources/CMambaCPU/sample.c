/*
 * Sampling a token from a logits row: the algorithm of src/sampling.ts's Sampler, step for step, so that
 * one seed gives the same tokens from either.
 *
 *   row     = logits, or a copy with the repetition penalty applied (v / penalty if v > 0, else v · penalty)
 *   greedy  when temperature <= 0 or top_k == 1: the argmax (lowest id among equal maxima)
 *   weights w = exp((v - max) / temperature) in float64, 0 for NaN
 *   top-k   the k best by a bounded min-heap (heap order is the candidate order)
 *   top-p   the 64 best first (a confident model's nucleus is small), else every token; then a weighted
 *           quickselect keeps the shortest prefix in logit order whose mass reaches top_p · total
 *   min-p   keeps w >= min_p (weights are relative to the best token's, which is 1)
 *   draw    u · total with u from xoshiro128** (53 bits), walked in candidate order
 *
 * The candidate order decides which token a draw lands on, so the heap and the partition steps here
 * move entries exactly as the TypeScript code does. The candidates carry their logit and weight beside
 * their id (parallel arrays permuted together), so the partitions read memory in order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "mcpu_sample.h"
#include "ops.h"

struct sample_kernels {
    float (*row_max)(const float *x, int n);
    double (*exp_weights)(const float *x, int n, double max, double inv_t, double *w);
    int (*first_above)(const float *x, int from, int n, float t);
    double (*sum)(const double *w, int n);
    int (*skip_blocks)(const double *w, int n, double *r);
    void (*classify)(const float *x, int n, float pivot, uint8_t *out);
};

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define SK_SUFFIX _avx2
#include "sample_kernels.inc"
#undef SK_SUFFIX
#pragma clang attribute pop
#endif
#define SK_SUFFIX _generic
#include "sample_kernels.inc"
#undef SK_SUFFIX

/* The same kernel set as the matrix code (MAMBA_CPU_KERNELS=generic forces the portable one). */
static const struct sample_kernels *kernels(void) {
#if defined(__x86_64__)
    const mcpu_ops *best = mcpu_ops_best();
    /* every x86-64 set but the generic one has AVX2, FMA and F16C */
    if (best && best != mcpu_ops_generic()) return &sample_kernels_avx2;
#endif
    return &sample_kernels_generic;
}

struct mcpu_sample_scratch {
    int capacity;
    const struct sample_kernels *k;
    float *work;      /* (capacity) the penalised row */
    double *weight;   /* (capacity) weight of every token (full-vocabulary paths) */
    int32_t *idx;     /* (capacity) candidate ids */
    float *cv;        /* (capacity) candidate logits, beside idx */
    double *cw;       /* (capacity) candidate weights, beside idx */
    uint8_t *cls;     /* (capacity) nucleus: each candidate's side of the pivot */
    int32_t *order;   /* (capacity) nucleus: where each candidate comes from */
    int32_t *tmp_idx; /* (capacity) nucleus: candidates being gathered */
    float *tmp_cv;
    double *tmp_cw;
};

mcpu_sample_scratch *mcpu_sample_scratch_create(int32_t capacity) {
    if (capacity < 1) return NULL;
    mcpu_sample_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t n = (size_t)capacity + 8;
    s->capacity = capacity;
    s->k = kernels();
    /* zeroed: the loops read a few entries past what they use (padding), never garbage */
    s->work = calloc(n, sizeof(float));
    s->weight = calloc(n, sizeof(double));
    s->idx = calloc(n, sizeof(int32_t));
    s->cv = calloc(n, sizeof(float));
    s->cw = calloc(n, sizeof(double));
    s->cls = calloc(n, 1);
    s->order = calloc(n, sizeof(int32_t));
    s->tmp_idx = calloc(n, sizeof(int32_t));
    s->tmp_cv = calloc(n, sizeof(float));
    s->tmp_cw = calloc(n, sizeof(double));
    if (!s->work || !s->weight || !s->idx || !s->cv || !s->cw || !s->cls || !s->order || !s->tmp_idx ||
        !s->tmp_cv || !s->tmp_cw) {
        mcpu_sample_scratch_destroy(s);
        return NULL;
    }
    return s;
}

void mcpu_sample_scratch_destroy(mcpu_sample_scratch *s) {
    if (!s) return;
    free(s->work);
    free(s->weight);
    free(s->idx);
    free(s->cv);
    free(s->cw);
    free(s->cls);
    free(s->order);
    free(s->tmp_idx);
    free(s->tmp_cv);
    free(s->tmp_cw);
    free(s);
}

/* ---- xoshiro128** ------------------------------------------------------------------------------ */

static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static uint32_t next_u32(uint32_t s[4]) {
    uint32_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
}

/* Uniform in [0, 1) with 53 random bits: 27 from one draw, 26 from the next. */
static double next_double(uint32_t s[4]) {
    uint32_t a = next_u32(s) >> 5, b = next_u32(s) >> 6;
    return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

/* ---- ranking ------------------------------------------------------------------------------------ */

/* Index of the largest entry (lowest index among equal maxima; NaN ignored; 0 when none is a number). */
static int argmax(const float *row, int n) {
    float best = -INFINITY;
    int at = 0, found = 0;
    for (int i = 0; i < n; i++) {
        float v = row[i];
        if (v > best || (!found && v == -INFINITY)) {
            best = v;
            at = i;
            found = 1;
        }
    }
    return at;
}

/* a ranks above b: larger value, or equal value and lower index. */
static inline int better(const float *row, int a, int b) {
    float va = row[a], vb = row[b];
    return va > vb || (va == vb && a < b);
}

static void sift_up(const float *row, int32_t *heap, int i, int item) {
    while (i > 0) {
        int p = (i - 1) >> 1;
        if (!better(row, heap[p], item)) break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i] = item;
}

static void sift_down(const float *row, int32_t *heap, int i, int size, int item) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && better(row, heap[c], heap[c + 1])) c++;
        if (!better(row, item, heap[c])) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = item;
}

/* The indices of the n largest entries of row[0..V) in out[0..n), in heap order (a min-heap by rank);
 * NaN entries only when fewer than n others exist. Returns min(n, V). Later entries enter only when
 * strictly larger than the root, so the vector scan may skip every run of entries that are not. */
static int select_top(const struct sample_kernels *k, const float *row, int V, int n, int32_t *out) {
    if (n > V) n = V;
    int size = 0, i = 0;
    for (; i < V && size < n; i++)
        if (row[i] == row[i]) sift_up(row, out, size++, i);
    for (int j = 0; j < V && size < n; j++)
        if (row[j] != row[j]) out[size++] = j;
    if (size < n) return size;
    float root = row[out[0]];
    while (i < V) {
        if (root == root) {
            i = k->first_above(row, i, V, root);
            if (i >= V) break;
        } else if (row[i] != row[i]) { /* a NaN root gives way to any number */
            i++;
            continue;
        }
        sift_down(row, out, 0, n, i);
        root = row[out[0]];
        i++;
    }
    return n;
}

/* ---- top-p -------------------------------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Candidates [lo, hi) become those at positions order[lo ..< hi). */
static void gather(mcpu_sample_scratch *s, int lo, int hi) {
    const int32_t *order = s->order + lo;
    const int n = hi - lo;
    for (int k = 0; k < n; k++) {
        const int j = order[k];
        s->tmp_idx[k] = s->idx[j];
        s->tmp_cv[k] = s->cv[j];
        s->tmp_cw[k] = s->cw[j];
    }
    memcpy(s->idx + lo, s->tmp_idx, (size_t)n * sizeof *s->idx);
    memcpy(s->cv + lo, s->tmp_cv, (size_t)n * sizeof *s->cv);
    memcpy(s->cw + lo, s->tmp_cw, (size_t)n * sizeof *s->cw);
}

/* Reorders candidates [0, n) (positive finite weights) so that [0, m) is the nucleus: the shortest
 * prefix in order of decreasing logit (ties: lower id) whose weight reaches target (a token is kept
 * while the mass before it is below the target); returns m. Weighted quickselect with median-of-three
 * pivots and three-way partitions that leave the entries in the order src/sampling.ts's nucleus()
 * leaves them, because the draw walks the candidates in that order.
 *
 * TS's partition scans i from lo with lt <= i < gt: an entry larger than the pivot is swapped to lt,
 * an equal one stays, a smaller one is swapped with the entry at gt - 1, which is examined next. So the
 * entries are examined in an order that takes the next one from the front after a larger or equal
 * entry and from the back after a smaller one; the larger ones end at lo, lo + 1, … and the smaller
 * ones at hi - 1, hi - 2, … in the order examined (the equal ones' order never matters: they are
 * sorted by id before use). Here that order is computed from one class byte per entry, where the next
 * entry's class is loaded before the current one's decides which it is (the scan with swaps waits on
 * a store every step), then the entries are gathered into place. */
static int nucleus(mcpu_sample_scratch *s, int n, double target) {
    int32_t *idx = s->idx, *order = s->order;
    float *cv = s->cv;
    double *cw = s->cw;
    uint8_t *cls = s->cls;
    int lo = 0, hi = n;
    double acc = 0;
    while (hi - lo > 24) {
        float a = cv[lo], b = cv[(lo + hi) >> 1], c = cv[hi - 1];
        float pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        s->k->classify(cv + lo, hi - lo, pivot, cls + lo); /* 1: larger, 2: smaller, 0: equal */
        cls[hi] = 0;
        /* order[lo ..< lo + ng): the larger entries as examined; order[hi - nl ..< hi): the smaller
         * ones, the first examined last */
        int i = lo, gt = hi, p = lo, ng = 0, nl = 0, cur = cls[lo];
        /* Two entries per turn while two are left: the classes of both possible next entries, and of
         * both possible entries after those, are loaded before either comparison is known. */
        while (gt - i >= 2) {
            const int f1 = cls[i + 1], f2 = cls[i + 2], b1 = cls[gt - 1], b2 = cls[gt - 2];
            const int l1 = cur & 1, s1 = cur >> 1;
            order[lo + ng] = p;
            order[hi - 1 - nl] = p;
            ng += l1;
            nl += s1;
            gt -= s1;
            i += 1 - s1;
            p = s1 ? gt : i;
            cur = s1 ? b1 : f1;
            const int l2 = cur & 1, s2 = cur >> 1;
            order[lo + ng] = p;
            order[hi - 1 - nl] = p;
            ng += l2;
            nl += s2;
            gt -= s2;
            i += 1 - s2;
            p = s2 ? gt : i;
            cur = s2 ? (s1 ? b2 : b1) : (s1 ? f1 : f2);
        }
        while (i < gt) {
            const int back = cls[gt - 1], front = cls[i + 1];
            const int larger = cur & 1, smaller = cur >> 1;
            order[lo + ng] = p;
            order[hi - 1 - nl] = p;
            ng += larger;
            nl += smaller;
            gt -= smaller;
            i += 1 - smaller;
            p = smaller ? gt : i;
            cur = smaller ? back : front;
        }
        const int lt = lo + ng;
        double greater = 0; /* in the order TS adds them (a separate loop: in the scan it slows it) */
        for (int j = lo; j < lt; j++) greater += cw[order[j]];
        /* the equal entries in between (the scan's stray stores there are overwritten); few, so the
         * classes are tested 8 at a time */
        const uint64_t ONES = 0x0101010101010101ull; /* a class byte is 0, 1 or 2 */
        for (int j = lo, e = lt; j < hi; j++) {
            uint64_t eight;
            if (j + 8 <= hi && (memcpy(&eight, cls + j, 8), ((eight | eight >> 1) & ONES) == ONES)) {
                j += 7;
                continue;
            }
            if (cls[j] == 0) order[e++] = j;
        }
        gather(s, lo, hi);
        if (acc + greater >= target) {
            hi = lt; /* the cut falls inside the larger values */
            continue;
        }
        acc += greater;
        /* equal values: lower id first; equal logits have equal weights: only the ids move */
        qsort(idx + lt, (size_t)(gt - lt), sizeof(int32_t), cmp_id);
        for (int j = lt; j < gt; j++) {
            acc += cw[j];
            if (acc >= target) return j + 1;
        }
        lo = gt;
    }
    /* few left: insertion sort by rank, then take while below the target */
    for (int j = lo + 1; j < hi; j++) {
        int32_t id = idx[j];
        float v = cv[j];
        double w = cw[j];
        int k = j;
        while (k > lo && (v > cv[k - 1] || (v == cv[k - 1] && id < idx[k - 1]))) {
            idx[k] = idx[k - 1];
            cv[k] = cv[k - 1];
            cw[k] = cw[k - 1];
            k--;
        }
        idx[k] = id;
        cv[k] = v;
        cw[k] = w;
    }
    for (int j = lo; j < hi; j++) {
        acc += cw[j];
        if (acc >= target) return j + 1;
    }
    return hi > 1 ? hi : 1; /* rounding: the whole range */
}

/* ---- candidates and the draw --------------------------------------------------------------------- */

#define NUCLEUS_PROBE 64

/* Fills the candidates (idx, cv, cw) with the kept tokens and returns how many; 0 when every token is
 * kept (weights in s->weight, total in *total); -1 when nothing can be sampled (greedy fallback). */
static int candidates(mcpu_sample_scratch *s, const float *row, int V, const mcpu_sampling *p, double *total_out) {
    const struct sample_kernels *k = s->k;
    double *weight = s->weight, *cw = s->cw;
    int32_t *idx = s->idx;
    float *cv = s->cv;
    const double inv_t = 1.0 / p->temperature;
    const float maxf = k->row_max(row, V);
    if (!isfinite(maxf)) return -1;
    const double max = maxf;

    int n = 0;
    double total = 0;
    if (p->top_k > 0 && p->top_k < V) {
        int kk = select_top(k, row, V, p->top_k, idx);
        /* weights of the k candidates in heap order, through the vector exp for the same bits */
        for (int j = 0; j < kk; j++) cv[j] = row[idx[j]];
        k->exp_weights(cv, kk, max, inv_t, cw);
        for (int j = 0; j < kk; j++) {
            double w = cw[j];
            if (w > 0) {
                total += w;
                idx[n] = idx[j];
                cv[n] = cv[j];
                cw[n] = w;
                n++;
            }
        }
    } else {
        total = k->exp_weights(row, V, max, inv_t, weight);
        if (p->top_p >= 1 && p->min_p <= 0) {
            *total_out = total;
            return 0;
        }
        if (p->top_p < 1) {
            int kk = select_top(k, row, V, NUCLEUS_PROBE, idx);
            double mass = 0;
            for (int j = 0; j < kk; j++) {
                int i = idx[j];
                if (weight[i] > 0) {
                    mass += weight[i];
                    idx[n] = i;
                    cv[n] = row[i];
                    cw[n] = weight[i];
                    n++;
                }
            }
            if (mass < p->top_p * total) n = 0;
        }
        if (n == 0) {
            for (int i = 0; i < V; i++) {
                /* branch-free: most weights are positive */
                idx[n] = i;
                cv[n] = row[i];
                cw[n] = weight[i];
                n += weight[i] > 0;
            }
        }
    }
    if (p->top_p < 1) n = nucleus(s, n, p->top_p * total);
    if (p->min_p > 0) {
        int m = 0;
        for (int j = 0; j < n; j++)
            if (cw[j] >= p->min_p) {
                idx[m] = idx[j];
                cv[m] = cv[j];
                cw[m] = cw[j];
                m++;
            }
        n = m;
    }
    *total_out = total;
    return n;
}

static int draw(mcpu_sample_scratch *s, int count, double total, uint32_t rng[4], int V) {
    const struct sample_kernels *k = s->k;
    if (count == 0) {
        const double *w = s->weight;
        double r = next_double(rng) * total;
        for (int i = k->skip_blocks(w, V, &r); i < V; i++) {
            if (w[i] > 0) {
                if (r < w[i]) return i;
                r -= w[i];
            }
        }
        for (int i = V - 1; i > 0; i--) /* rounding left r >= 0 past the end: the last candidate */
            if (w[i] > 0) return i;
        return 0;
    }
    const double *w = s->cw;
    double r = next_double(rng) * k->sum(w, count);
    for (int j = k->skip_blocks(w, count, &r); j < count; j++) {
        if (r < w[j]) return s->idx[j];
        r -= w[j];
    }
    return s->idx[count - 1];
}

int32_t mcpu_sample(mcpu_sample_scratch *s, const float *logits, mcpu_sampling *p, const int32_t *penalized,
                    int32_t n_penalized) {
    const int V = p->vocab;
    const float *row = logits;
    if (p->repetition_penalty != 1 && n_penalized > 0) {
        float *work = s->work;
        memcpy(work, logits, (size_t)V * sizeof(float));
        for (int32_t j = 0; j < n_penalized; j++) {
            int32_t id = penalized[j];
            if (id < 0 || id >= V) continue;
            double v = work[id];
            work[id] = (float)(v > 0 ? v / p->repetition_penalty : v * p->repetition_penalty);
        }
        row = work;
    }
    if (p->temperature <= 0 || p->top_k == 1) return argmax(row, V);
    double total = 0;
    int count = candidates(s, row, V, p, &total);
    if (count < 0) return argmax(row, V);
    return draw(s, count, total, p->rng_state, V);
}

typedef struct {
    mcpu_sample_scratch *const *scratch;
    mcpu_sample_job *jobs;
} sample_rows_ctx;

static void sample_task(void *ctx, int task, int thread) {
    sample_rows_ctx *r = ctx;
    mcpu_sample_job *j = &r->jobs[task];
    j->token = mcpu_sample(r->scratch[thread], j->row, j->params, j->penalized, j->n_penalized);
}

void mcpu_sample_rows(mcpu_engine *e, mcpu_sample_scratch *const *scratch, mcpu_sample_job *jobs, int32_t n) {
    sample_rows_ctx r = {scratch, jobs};
    mcpu_pool_run(e->pool, sample_task, &r, n);
}
