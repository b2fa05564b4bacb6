/*
 * native_step_bench: the C ABI timed from C, the baseline for the FFI overhead of Deno's calls.
 *
 *   native_step_bench MODEL_DIR [OPTIONS_JSON] [STEPS] [PREFILL_TOKENS] [RUNS]
 *
 * Prints one JSON line: ns per empty call (mamba_abi_version), ns per mamba_step (best of RUNS runs,
 * default 5, of STEPS steps, after 10 × STEPS steps of warm-up), and, when PREFILL_TOKENS > 0, ns per
 * prefill of that many tokens (best of 3); on Linux also the resident set (KiB) before and after
 * mamba_engine_create, and after the steps.
 *
 * Build (tools/bench_report.ts does this):
 *   clang -O2 -I swift/include tools/native_step_bench.c -L swift/.build/release -lMambaMetal \
 *         -Wl,-rpath,swift/.build/release -o native_step_bench
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mamba.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* VmRSS of this process in KiB (Linux), else -1. */
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

static int fail(const char *what) {
    fprintf(stderr, "native_step_bench: %s: %s\n", what, mamba_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [OPTIONS_JSON] [STEPS] [PREFILL_TOKENS] [RUNS]\n", argv[0]);
        return 2;
    }
    const char *options = argc > 2 ? argv[2] : NULL;
    int steps = argc > 3 ? atoi(argv[3]) : 1000;
    int prefill = argc > 4 ? atoi(argv[4]) : 0;
    int runs = argc > 5 ? atoi(argv[5]) : 5;
    if (steps < 1) steps = 1;
    if (runs < 1) runs = 1;

    /* volatile sink: the empty calls cannot be folded away */
    volatile uint32_t sink = 0;
    double best_empty = 1e30;
    for (int run = 0; run < 5; run++) {
        double t0 = now_ns();
        for (int i = 0; i < 1000000; i++) sink += mamba_abi_version();
        double t = (now_ns() - t0) / 1e6;
        if (t < best_empty) best_empty = t;
    }

    mamba_engine *e = NULL;
    long rss_before = rss_kib();
    if (mamba_engine_create(argv[1], options, &e) != MAMBA_OK) return fail("mamba_engine_create");
    long rss_created = rss_kib();
    int batch = 1;
    {
        /* batchSize from the info JSON, without a JSON parser: the key is unique */
        const char *info = mamba_engine_info(e);
        const char *k = info ? strstr(info, "\"batchSize\":") : NULL;
        if (k) batch = atoi(k + 12);
    }
    int32_t *tokens = calloc((size_t)batch, sizeof(int32_t));
    for (int i = 0; i < 10 * steps; i++) {
        for (int b = 0; b < batch; b++) tokens[b] = (i * 31 + b * 7) % 100;
        if (mamba_step(e, tokens, batch) != MAMBA_OK) return fail("mamba_step");
    }
    double best_step = 1e30;
    for (int run = 0; run < runs; run++) {
        double t0 = now_ns();
        for (int i = 0; i < steps; i++) {
            tokens[0] = (i * 31) % 100;
            if (mamba_step(e, tokens, batch) != MAMBA_OK) return fail("mamba_step");
        }
        double t = (now_ns() - t0) / steps;
        if (t < best_step) best_step = t;
    }

    double best_prefill = 0;
    if (prefill > 0) {
        int32_t *prompt = malloc((size_t)prefill * sizeof(int32_t));
        for (int i = 0; i < prefill; i++) prompt[i] = (i * 131 + 7) % 100;
        best_prefill = 1e30;
        for (int run = 0; run < 3; run++) {
            mamba_reset(e, 0);
            double t0 = now_ns();
            if (mamba_prefill(e, prompt, prefill, 0) != MAMBA_OK) return fail("mamba_prefill");
            double t = now_ns() - t0;
            if (t < best_prefill) best_prefill = t;
        }
        free(prompt);
    }
    printf("{\"emptyCallNs\": %.2f, \"stepNs\": %.1f, \"prefillNs\": %.0f, \"batch\": %d, \"rssBeforeKiB\": %ld, "
           "\"rssCreatedKiB\": %ld, \"rssAfterKiB\": %ld, \"sink\": %u}\n",
           best_empty, best_step, best_prefill, batch, rss_before, rss_created, rss_kib(), (unsigned)sink);
    free(tokens);
    mamba_engine_free(e);
    return 0;
}
