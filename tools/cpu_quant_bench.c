/*
 * cpu_quant_bench: decode and prefill speed of the CPU compute core (CMambaCPU) with float16, 8-bit and
 * 4-bit weights, on synthetic models of the mamba2-130m / mamba2-780m shapes built in memory (random
 * codes, scales and weights: speed depends only on shapes and formats), against the read bandwidth
 * measured in the same run.
 *
 *   cpu_quant_bench [--shape 130m|780m] [--dtypes f16,q8,q4] [--group 64] [--scales f16|f32] [--batch 1]
 *                   [--rounds 9] [--seconds 0.3] [--threads 0] [--prefill 512] [--memory]
 *
 * Every dtype's engine is created first; then each round times every engine in turn (after a bandwidth
 * probe each), so the ratios compare figures taken minutes, not hours, apart on a shared machine. For
 * each dtype it prints the best and the median round, the median of the per-round ratios to f16, the
 * bytes a step reads (the packed matrices as streamed, codes + scales + biases, plus each sequence's
 * conv and SSM state once and the small per-layer vectors), GB/s at the best round and the roofline:
 * that over the highest probe of the dtype's rounds. --memory instead creates one engine per dtype in a
 * fresh process and reports the resident set against the engine's own bytes.
 *
 * Build (tools/bench_report.ts builds it the same way):
 *   clang -O2 -I swift/Sources/CMambaCPU/include tools/cpu_quant_bench.c -L swift/.build/release \
 *         -lMambaMetal -Wl,-rpath,swift/.build/release -lm -o cpu_quant_bench
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mamba_cpu.h"

#define MAX_DTYPES 4

typedef struct {
    const char *name;
    int dtype, group, scale_dtype; /* MCPU_F16, or MCPU_Q8 / MCPU_Q4 with group and scale dtype */
} format;

typedef struct {
    int d_model, n_layer, vocab, d_state, head_dim;
} shape;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static inline uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() >> 40) / 16777216.0f; }

static uint16_t half_bits(float f) {
    _Float16 h = (_Float16)f;
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "cpu_quant_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* A (rows, cols) matrix in `f` with weights of magnitude about `scale`; its buffers are appended to
 * owned[] so they can be freed once the engine has packed them. */
static mcpu_matrix make_matrix(const format *f, int rows, int cols, float scale, void **owned, int *n_owned) {
    mcpu_matrix m = {0};
    m.dtype = f->dtype;
    m.rows = rows;
    m.cols = cols;
    size_t n = (size_t)rows * (size_t)cols;
    if (f->dtype == MCPU_F16) {
        uint16_t *w = xmalloc(n * 2);
        /* random halves of magnitude [scale/4, scale): sign, 2 exponents, random mantissa */
        int e0 = (int)floorf(log2f(scale)) + 15;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rnd();
            w[i] = (uint16_t)(((r >> 20) & 1) << 15 | (uint64_t)(e0 - 1 - (int)((r >> 21) & 1)) << 10 | (r & 0x3FF));
        }
        m.data = w;
        owned[(*n_owned)++] = w;
        return m;
    }
    int bits = f->dtype == MCPU_Q8 ? 8 : 4, G = f->group, levels = (1 << bits) - 1;
    size_t bytes = n * (size_t)bits / 8, groups = n / (size_t)G, ss = f->scale_dtype == MCPU_F16 ? 2 : 4;
    uint8_t *q = xmalloc(bytes);
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(q + i, &r, 8);
    }
    char *s = xmalloc(groups * ss), *b = xmalloc(groups * ss);
    for (size_t g = 0; g < groups; g++) {
        float sc = uniform(0.5f, 1.0f) * 2 * scale / (float)levels, bi = -sc * (float)levels / 2;
        if (ss == 2) {
            uint16_t hs = half_bits(sc), hb = half_bits(bi);
            memcpy(s + 2 * g, &hs, 2);
            memcpy(b + 2 * g, &hb, 2);
        } else {
            memcpy(s + 4 * g, &sc, 4);
            memcpy(b + 4 * g, &bi, 4);
        }
    }
    m.data = q;
    m.group_size = G;
    m.scale_dtype = f->scale_dtype;
    m.scales = s;
    m.biases = b;
    owned[(*n_owned)++] = q;
    owned[(*n_owned)++] = s;
    owned[(*n_owned)++] = b;
    return m;
}

static float *fill(size_t n, float lo, float hi) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

typedef struct {
    format f;
    mcpu_model model;
    mcpu_layer *layers;
    mcpu_engine *engine;
    double bytes_per_step, packed_bytes, state_bytes;
    double step_s[64], probe[64], prefill_s;
    int32_t *tokens;
    int steps_per_turn, counter;
} bench;

/* The model descriptor and engine of one dtype: weights shaped like a trained model's (unit norms,
 * A in [-16, -1], dt in [0.001, 0.1], small projections), so activations stay finite over long runs. */
static void build(bench *B, const shape *s, int batch, int threads) {
    const int D = s->d_model, Di = 2 * D, N = s->d_state, H = Di / s->head_dim, K = 4;
    const int conv_dim = Di + 2 * N, d_in_proj = 2 * Di + 2 * N + H;
    const int vocab = (s->vocab + 15) / 16 * 16;
    void *owned[8 * 64 + 8];
    int n_owned = 0;
    mcpu_model *m = &B->model;
    memset(m, 0, sizeof *m);
    *m = (mcpu_model){.d_model = D, .n_layer = s->n_layer, .d_inner = Di, .d_state = N, .d_conv = K, .n_heads = H,
                      .head_dim = s->head_dim, .n_groups = 1, .vocab = vocab, .batch = batch, .chunk_size = 256,
                      .prefill_block = 256, .eps = 1e-5f, .dt_min = 0.0f, .dt_max = INFINITY};
    B->layers = xmalloc((size_t)s->n_layer * sizeof(mcpu_layer));
    double small = 0;
    for (int l = 0; l < s->n_layer; l++) {
        mcpu_layer *L = &B->layers[l];
        L->norm = fill((size_t)D, 1, 1);
        L->in_proj = make_matrix(&B->f, d_in_proj, D, 0.5f / sqrtf((float)D), owned + 0, &n_owned);
        L->conv_w = fill((size_t)conv_dim * K, -0.5f, 0.5f);
        L->conv_b = fill((size_t)conv_dim, 0, 0);
        float *dt_bias = xmalloc((size_t)H * 4), *A = xmalloc((size_t)H * 4);
        for (int h = 0; h < H; h++) {
            float dt = expf(uniform(logf(0.001f), logf(0.1f)));
            dt_bias[h] = logf(expm1f(dt));
            A[h] = -uniform(1, 16);
        }
        L->dt_bias = dt_bias;
        L->A = A;
        L->D = fill((size_t)H, 1, 1);
        L->gnorm = fill((size_t)Di, 1, 1);
        L->out_proj = make_matrix(&B->f, D, Di, 0.5f / sqrtf((float)Di), owned + 0, &n_owned);
        small += 4.0 * (D + conv_dim * (K + 1) + 3 * H + Di);
        /* free as we go below: the sources are not read once packed (mamba_cpu.h) */
        if (n_owned > 8 * 64) abort();
    }
    m->embedding = make_matrix(&B->f, vocab, D, 1.0f, owned, &n_owned);
    m->lm_head = m->embedding; /* tied, as in the released checkpoints */
    m->norm_f = fill((size_t)D, 1, 1);
    m->layers = B->layers;
    size_t conv = (size_t)batch * s->n_layer * conv_dim * K, ssm = (size_t)batch * s->n_layer * H * s->head_dim * N;
    m->conv_state = calloc(conv, 4);
    m->ssm_state = calloc(ssm, 4);
    m->logits = calloc((size_t)batch * vocab, 4);
    B->engine = mcpu_create(m, threads);
    if (!B->engine) {
        fprintf(stderr, "cpu_quant_bench: mcpu_create failed\n");
        exit(1);
    }
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    /* bytes a step reads: every packed matrix once (whole panels), the state once, small vectors */
    double packed = 0;
    const mcpu_matrix *mats[] = {&B->layers[0].in_proj, &B->layers[0].out_proj, &m->lm_head};
    for (int i = 0; i < 3; i++) {
        const mcpu_matrix *W = mats[i];
        double panels = (W->rows + 15) / 16, per_panel;
        if (W->dtype == MCPU_F16) per_panel = 16.0 * W->cols * 2;
        else
            per_panel = (double)(W->cols / W->group_size) *
                        (16.0 * W->group_size * (W->dtype == MCPU_Q8 ? 1 : 0.5) + 32.0 * (W->scale_dtype == MCPU_F16 ? 2 : 4));
        packed += panels * per_panel * (i < 2 ? s->n_layer : 1);
    }
    B->packed_bytes = packed;
    B->state_bytes = 4.0 * (double)(conv + ssm);
    B->bytes_per_step = packed + B->state_bytes + small;
    B->tokens = calloc((size_t)batch, sizeof(int32_t));
}

static void steps(bench *B, int n) {
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < B->model.batch; b++) B->tokens[b] = (int32_t)((B->counter * 7919 + b * 131 + 17) % 50000);
        B->counter++;
        mcpu_step(B->engine, B->tokens);
    }
}

static void reset_state(bench *B) {
    const mcpu_model *m = &B->model;
    int conv_dim = m->d_inner + 2 * m->n_groups * m->d_state;
    memset(m->conv_state, 0, (size_t)m->batch * m->n_layer * conv_dim * m->d_conv * 4);
    memset(m->ssm_state, 0, (size_t)m->batch * m->n_layer * m->n_heads * m->head_dim * m->d_state * 4);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(const double *v, int n) {
    double t[64];
    memcpy(t, v, (size_t)n * sizeof(double));
    qsort(t, (size_t)n, sizeof(double), cmp);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    fclose(f);
    return kib;
}

static int parse_format(const char *name, int group, int scale_dtype, format *f) {
    f->name = name;
    f->group = group;
    f->scale_dtype = scale_dtype;
    if (strcmp(name, "f16") == 0) f->dtype = MCPU_F16, f->group = 0;
    else if (strcmp(name, "q8") == 0) f->dtype = MCPU_Q8;
    else if (strcmp(name, "q4") == 0) f->dtype = MCPU_Q4;
    else return 0;
    return 1;
}

int main(int argc, char **argv) {
    shape s130 = {768, 24, 50277, 128, 64}, s780 = {1536, 48, 50277, 128, 64}, sh = s130;
    const char *shape_name = "130m";
    char dtypes_arg[64] = "f16,q8,q4";
    int group = 64, scale_dtype = MCPU_F16, batch = 1, rounds = 9, threads = 0, prompt = 512, memory = 0;
    double seconds = 0.3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--memory") == 0) {
            memory = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "cpu_quant_bench: %s needs a value (see the comment at the top of the source)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--shape") == 0) {
            shape_name = v;
            if (strcmp(v, "780m") == 0) sh = s780;
            else if (strcmp(v, "130m") != 0) return fprintf(stderr, "unknown shape %s\n", v), 2;
        } else if (strcmp(a, "--dtypes") == 0) snprintf(dtypes_arg, sizeof dtypes_arg, "%s", v);
        else if (strcmp(a, "--group") == 0) group = atoi(v);
        else if (strcmp(a, "--scales") == 0) scale_dtype = strcmp(v, "f32") == 0 ? MCPU_F32 : MCPU_F16;
        else if (strcmp(a, "--batch") == 0) batch = atoi(v);
        else if (strcmp(a, "--rounds") == 0) rounds = atoi(v);
        else if (strcmp(a, "--seconds") == 0) seconds = atof(v);
        else if (strcmp(a, "--threads") == 0) threads = atoi(v);
        else if (strcmp(a, "--prefill") == 0) prompt = atoi(v);
        else return fprintf(stderr, "cpu_quant_bench: unknown option %s\n", a), 2;
    }
    if (rounds < 1) rounds = 1;
    if (rounds > 64) rounds = 64;
    bench benches[MAX_DTYPES];
    int n = 0;
    for (char *tok = strtok(dtypes_arg, ","); tok && n < MAX_DTYPES; tok = strtok(NULL, ",")) {
        if (!parse_format(tok, group, scale_dtype, &benches[n].f))
            return fprintf(stderr, "cpu_quant_bench: unknown dtype %s (f16, q8, q4)\n", tok), 2;
        n++;
    }

    if (memory) {
        /* one engine, sources freed once packed: resident set against what the engine must hold */
        bench *B = &benches[0];
        long before = rss_kib();
        build(B, &sh, batch, threads);
        steps(B, 3);
        mcpu_prefill(B->engine, B->tokens, 1, 0);
        long after = rss_kib();
        printf("{\"shape\": \"%s\", \"dtype\": \"%s\", \"group\": %d, \"rssBeforeMiB\": %.1f, \"rssAfterMiB\": %.1f, "
               "\"packedWeightsMiB\": %.1f, \"stateMiB\": %.1f}\n",
               shape_name, B->f.name, B->f.group, before / 1024.0, after / 1024.0, B->packed_bytes / 1048576.0,
               B->state_bytes / 1048576.0);
        return 0;
    }

    for (int i = 0; i < n; i++) {
        fprintf(stderr, "building %s %s …\n", shape_name, benches[i].f.name);
        build(&benches[i], &sh, batch, threads);
        memset(benches[i].step_s, 0, sizeof benches[i].step_s);
        benches[i].prefill_s = 1e30;
        benches[i].counter = 0;
        /* warm up and size a turn to about `seconds` */
        steps(&benches[i], 3);
        double t0 = now();
        steps(&benches[i], 3);
        double per = (now() - t0) / 3;
        benches[i].steps_per_turn = per > 0 ? (int)(seconds / per) + 3 : 10;
    }
    int32_t *prompt_tokens = xmalloc((size_t)(prompt > 0 ? prompt : 1) * sizeof(int32_t));
    for (int i = 0; i < prompt; i++) prompt_tokens[i] = (int32_t)((i * 7919 + 13) % 50000);

    fprintf(stderr, "kernels %s, %d threads, batch %d; %d rounds\n", mcpu_isa(), mcpu_threads(benches[0].engine),
            batch, rounds);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            bench *B = &benches[i];
            B->probe[r] = mcpu_read_bandwidth((int64_t)512 << 20, 5, threads);
            double t0 = now();
            steps(B, B->steps_per_turn);
            B->step_s[r] = (now() - t0) / B->steps_per_turn;
            if (prompt > 0 && r < 4) {
                reset_state(B);
                t0 = now();
                mcpu_prefill(B->engine, prompt_tokens, prompt, 0);
                double t = now() - t0;
                if (t < B->prefill_s) B->prefill_s = t;
                reset_state(B);
            }
        }
        fprintf(stderr, "  round %d:", r + 1);
        for (int i = 0; i < n; i++) fprintf(stderr, " %s %.1f tok/s", benches[i].f.name, batch / benches[i].step_s[r]);
        fprintf(stderr, " (probe %.1f GB/s)\n", benches[0].probe[r]);
    }

    printf("%s, batch %d, %s, %d threads, %d rounds (q: group %d, %s scales)\n", shape_name, batch, mcpu_isa(),
           mcpu_threads(benches[0].engine), rounds, group, scale_dtype == MCPU_F16 ? "f16" : "f32");
    printf("| dtype | tok/s best | tok/s median | × f16 (median of rounds) | MB/token | GB/s | probe GB/s | roofline | prefill tok/s |\n");
    printf("|-------|-----------:|-------------:|-------------------------:|---------:|-----:|-----------:|---------:|--------------:|\n");
    for (int i = 0; i < n; i++) {
        bench *B = &benches[i];
        double best = 1e30, probe = 0, ratios[64];
        for (int r = 0; r < rounds; r++) {
            if (B->step_s[r] < best) best = B->step_s[r];
            if (B->probe[r] > probe) probe = B->probe[r];
            ratios[r] = benches[0].step_s[r] / B->step_s[r];
        }
        double gbs = B->bytes_per_step / best / 1e9;
        printf("| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f | %.0f%% | %.0f |\n", B->f.name, batch / best,
               batch / median(B->step_s, rounds), median(ratios, rounds), B->bytes_per_step / batch / 1e6, gbs, probe,
               100 * gbs / probe, prompt > 0 ? prompt / B->prefill_s : 0.0);
    }
    for (int i = 0; i < n; i++) mcpu_destroy(benches[i].engine);
    return 0;
}
