/*
 * The large tensors of tools/make_bench_models.ts, bit for bit, for the GPU proxy's device side (which has
 * no Deno): the device rebuilds a benchmark model's heap from this seed instead of receiving gigabytes.
 * Same generator (splitmix32-seeded xoshiro128+ per tensor, seeded by FNV-1a of the tensor's name), same
 * double-precision arithmetic in the same order, rounded to float32 as Float32Array stores round.
 * Build: cc -O2 -shared -fPIC -ffp-contract=off -o libbench_weights.so bench_weights.c -lm
 * (no contraction into FMAs: JavaScript rounds every operation).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    uint32_t s[4];
} rng;

static void rng_seed(rng *r, uint32_t seed) {
    uint32_t z = seed;
    for (int i = 0; i < 4; i++) {
        z += 0x9e3779b9u;
        uint32_t t = z;
        t = (t ^ (t >> 16)) * 0x85ebca6bu;
        t = (t ^ (t >> 13)) * 0xc2b2ae35u;
        r->s[i] = t ^ (t >> 16);
    }
}

static double rng_next(rng *r) {
    uint32_t *s = r->s;
    uint32_t res = s[0] + s[3];
    uint32_t t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >> 21);
    return (double)res / 4294967296.0;
}

static uint32_t hash_name(const char *name) {
    uint32_t h = 0x811c9dc5u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x01000193u;
    return h;
}

typedef struct {
    int d_model, n_layer, vocab, d_state, head_dim;
} shape;

static int shape_of(const char *name, shape *s) {
    if (strcmp(name, "130m") == 0) *s = (shape){768, 24, 50277, 128, 64};
    else if (strcmp(name, "780m") == 0) *s = (shape){1536, 48, 50277, 128, 64};
    else return -1;
    return 0;
}

static void uniform(float *out, int64_t n, double lo, double hi, rng *r) {
    for (int64_t i = 0; i < n; i++) {
        double u = rng_next(r);
        out[i] = (float)(lo + (hi - lo) * u);
    }
}

static void normal(float *out, int64_t n, double std, rng *r) {
    double k = std * sqrt(3.0);
    for (int64_t i = 0; i < n; i++) {
        double a = rng_next(r), b = rng_next(r), c = rng_next(r), d = rng_next(r);
        out[i] = (float)((a + b + c + d - 2.0) * k);
    }
}

/* Fills out[0..n) with the tensor `name` of bench shape `shape_name` ("130m" or "780m") as float32.
 * Returns 0, -1 for an unknown shape or tensor, -2 when n is not the tensor's element count. Only the
 * matrices (embedding, in_proj, out_proj) are provided: the small vectors travel in the trace. */
int bench_fill(const char *shape_name, const char *name, float *out, int64_t n) {
    shape s;
    if (shape_of(shape_name, &s) != 0) return -1;
    const int vocab_rows = (s.vocab + 15) / 16 * 16, d_inner = 2 * s.d_model, n_heads = d_inner / s.head_dim;
    const int d_in_proj = 2 * d_inner + 2 * s.d_state + n_heads;
    rng r;
    rng_seed(&r, hash_name(name));
    int layer = -1, used = 0;
    char rest[128] = {0};
    if (strcmp(name, "backbone.embedding.weight") == 0) {
        if (n != (int64_t)vocab_rows * s.d_model) return -2;
        normal(out, n, 0.02, &r);
        return 0;
    }
    if (sscanf(name, "backbone.layers.%d.%127s%n", &layer, rest, &used) != 2 || layer < 0 || layer >= s.n_layer) return -1;
    if (strcmp(rest, "mixer.in_proj.weight") == 0) {
        if (n != (int64_t)d_in_proj * s.d_model) return -2;
        uniform(out, n, -1.0 / sqrt((double)s.d_model), 1.0 / sqrt((double)s.d_model), &r);
        return 0;
    }
    if (strcmp(rest, "mixer.out_proj.weight") == 0) {
        if (n != (int64_t)s.d_model * d_inner) return -2;
        double a = sqrt((double)d_inner * (double)s.n_layer);
        uniform(out, n, -1.0 / a, 1.0 / a, &r);
        return 0;
    }
    return -1;
}
