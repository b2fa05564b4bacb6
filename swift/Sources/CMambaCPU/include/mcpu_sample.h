/*
 * mcpu_sample.h: token sampling on a logits row, the native twin of src/sampling.ts's Sampler.
 *
 * Same processing order (repetition penalty → temperature → top-k → top-p → min-p → draw), same
 * xoshiro128** generator and the same candidate order at every step, so a seed gives the same tokens
 * as the TypeScript Sampler. Weights are float64 as there; exp and the sums are vectorised, so they can
 * differ from V8's in the last bit, which changes a token only when a draw lands within ~1e-15 of a
 * boundary between two tokens.
 */
#ifndef MCPU_SAMPLE_H
#define MCPU_SAMPLE_H

#include <stdint.h>

#include "mamba_cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The parameters of one sequence's sampler: mamba.h's mamba_sampling field for field (Swift passes one as the
 * other; tests/abi.test.ts checks the two declarations agree). */
typedef struct {
    double temperature;        /* <= 0: greedy */
    double top_p;              /* (0, 1]; 1: off */
    double min_p;              /* [0, 1]; 0: off */
    double repetition_penalty; /* > 0; 1: off */
    int32_t top_k;             /* >= 0; 0: off; 1: greedy */
    int32_t vocab;             /* entries of the row that may be sampled (a prefix of the row) */
    uint32_t rng_state[4];     /* xoshiro128** state, advanced by every draw */
} mcpu_sampling;

/* Scratch for rows of up to `capacity` entries: a penalised copy of the row, float64 weights and the
 * candidate arrays. One per thread that samples. */
typedef struct mcpu_sample_scratch mcpu_sample_scratch;

mcpu_sample_scratch *mcpu_sample_scratch_create(int32_t capacity);
void mcpu_sample_scratch_destroy(mcpu_sample_scratch *scratch);

/* One token from row[0 .. p->vocab) (p->vocab <= capacity). `penalized` lists the ids the repetition
 * penalty applies to, each once (ids outside [0, vocab) are ignored). Advances p->rng_state when it draws. */
int32_t mcpu_sample(mcpu_sample_scratch *scratch, const float *row, mcpu_sampling *p, const int32_t *penalized,
                    int32_t n_penalized);

/* One row to sample: mcpu_sample(scratch, row, params, penalized, n_penalized) into token. */
typedef struct {
    const float *row;
    mcpu_sampling *params;
    const int32_t *penalized;
    int32_t n_penalized;
    int32_t token; /* out */
} mcpu_sample_job;

/* jobs[0..n) on the CPU engine's thread pool, one row per task; pool thread t uses scratch[t]
 * (mcpu_threads(engine) scratches). The rows are independent, so the tokens are those of
 * mcpu_sample one job after another. */
void mcpu_sample_rows(mcpu_engine *engine, mcpu_sample_scratch *const *scratch, mcpu_sample_job *jobs, int32_t n);

#ifdef __cplusplus
}
#endif
#endif
