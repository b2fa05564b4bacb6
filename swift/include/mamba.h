/*
 * mamba.h: the C ABI of libMambaMetal (Mamba2 inference engine).
 *
 * Conventions
 *   - Every call that can fail returns an int32_t status: MAMBA_OK (0) or one of MAMBA_ERR_*.
 *     After a failure, mamba_last_error() returns a UTF-8 message naming the problem (file, tensor,
 *     shape, token id, ...). The message is thread-local and stays valid until the next failing call
 *     on the same thread.
 *   - A failed call changes no engine state: the next good call behaves as if it never happened.
 *   - Engine handles are opaque. Passing a freed or unknown handle returns MAMBA_ERR_CLOSED; it never
 *     crashes. One engine must not be used from two threads at once; distinct engines are independent.
 *   - Hot calls (mamba_step, mamba_prefill) take only integers and pointers, so Deno can use its
 *     fast-call path.
 *   - The native side never aborts the host process: bad input is reported, not trapped.
 *
 * This header is the one statement of the ABI: Swift's copy of its constants and keys is generated
 * from it (tools/gen_abi.ts → swift/Sources/MambaMetal/Generated/ABI.swift), and tests/abi.test.ts
 * checks every other restatement (ffi/symbols.ts, ffi/errors.ts, src/) against it. Tools read the
 * #define, the enums, the structs (`typedef struct name { fixed-width fields } name;`, laid out with
 * natural alignment), the prototypes and the `@option`, `@tuning`, `@info` and `@config` lines below
 * (`@info[metal]`: present only with that backend); keep those forms.
 *
 * ABI versions: 1 first release; 2 adds mamba_step_seqs, mamba_sampling, mamba_sampler_set,
 * mamba_sample and mamba_sampler_rng.
 */
#ifndef MAMBA_H
#define MAMBA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MAMBA_ABI_VERSION 2

typedef struct mamba_engine mamba_engine;

enum mamba_status {
    MAMBA_OK = 0,
    MAMBA_ERR_ARGUMENT = 1,    /* bad argument: null pointer, sequence index, token count, options */
    MAMBA_ERR_IO = 2,          /* a file or directory is missing or unreadable */
    MAMBA_ERR_FORMAT = 3,      /* malformed config.json, safetensors, index or checkpoint */
    MAMBA_ERR_SHAPE = 4,       /* a tensor's shape or dtype disagrees with the config */
    MAMBA_ERR_TOKEN = 5,       /* token id < 0 or >= vocab size */
    MAMBA_ERR_STATE = 6,       /* state bytes do not belong to this model */
    MAMBA_ERR_BACKEND = 7,     /* backend unavailable (no Metal device) or a device failure */
    MAMBA_ERR_CLOSED = 8,      /* engine handle unknown or already freed */
    MAMBA_ERR_UNSUPPORTED = 9, /* a valid but unsupported model or option */
    MAMBA_ERR_INTERNAL = 10,   /* a bug: please report it */
};

/* Version of this ABI (MAMBA_ABI_VERSION of the library). Callers check it before anything else. */
uint32_t mamba_abi_version(void);
/* Library version, e.g. "0.2.0" (static string). */
const char *mamba_version(void);
/* Message of the last failing call on this thread ("" if none). */
const char *mamba_last_error(void);

/*
 * Load the model in `model_dir` (config.json + model.safetensors, sharded safetensors with
 * model.safetensors.index.json, or pytorch_model.bin; MLX-quantized safetensors) or the GGUF file
 * `model_dir` names (llama.cpp's mamba2 architecture). `options_json` may be NULL or a JSON object
 * with any of these keys (another key is MAMBA_ERR_ARGUMENT):
 * @option backend          "auto" (default: Metal where it is Apple's GPU, else the CPU) | "cpu" | "metal"
 * @option batchSize        independent sequences stepped together, 1 to 256 (default 1; Metal: up to 8)
 * @option dtype            dtype of the large matrices: "auto" (as stored, default) | "f32" | "f16" | "bf16"
 *                          | "q8" | "q4" (quantize at load, docs/quantization.md)
 * @option groupSize        q8/q4 at load: columns per scale/bias group, 32 | 64 | 128 (default 64)
 * @option threads          CPU threads, 0 to 1024 (default 0: one per core)
 * @option recorded         Metal: encode the decode step once into an indirect command buffer and replay
 *                          it every step (default false)
 * @option prefillMode      Metal: "chunked" (default: the chunked SSD prefill kernels) | "tokens" (token by
 *                          token through the decode kernels)
 * @option tuneTable        Metal: a tuning table (the contents of configs/metal_tune.json, written by
 *                          `deno task tune`); the entry for this GPU, model shape and nearest batch is used
 * @option tuneTableSource  the file or URL tuneTable came from, which its errors name (default
 *                          "metal_tune.json")
 * @option tuning           Metal: kernel parameters that override the table, an object with these keys:
 * @tuning matvecRowsPerSimdgroup  rows of W per simdgroup of the in_proj matvec, 1 to 4 (default 2)
 * @tuning matvecSplitK            simdgroups sharing each row of the in_proj matvec, each a slice of K: 1,
 *                                 2 or 4 (default 2)
 * @tuning lmHeadRowsPerSimdgroup  rows of W per simdgroup of the lm_head matvec, 1 to 4 (default 2)
 * @tuning lmHeadSplitK            simdgroups sharing each row of the lm_head matvec: 1, 2 or 4 (default 2)
 * @tuning outProjRowsPerSimdgroup rows of W per simdgroup of the out_proj matvec, 1 to 4 (default 1)
 * @tuning outProjSplitK           simdgroups sharing each row of the out_proj matvec: 1, 2 or 4 (default 4)
 * @tuning ssmSplit                threadgroups per head of the SSM decode block, each a block of the
 *                                 head's rows: 1, 2, 4 or 8 (default: the smallest giving n_heads · split
 *                                 · batch ≥ 80 threadgroups, at most 8)
 * @tuning matmulTile              output tile side of the prefill matmul, 16 or 32 (default 32)
 */
int32_t mamba_engine_create(const char *model_dir, const char *options_json, mamba_engine **out_engine);
/* Free the engine. Freeing NULL is a no-op; freeing twice returns MAMBA_ERR_CLOSED. */
int32_t mamba_engine_free(mamba_engine *engine);
/*
 * JSON describing the engine (owned by the engine, valid until it is freed); NULL (and the last error
 * set) for a bad handle. Its keys:
 * @info abiVersion           MAMBA_ABI_VERSION of the library
 * @info version              the library version, as mamba_version
 * @info backend              "cpu" or "metal"
 * @info device               the instruction set and threads, or the GPU, for reports
 * @info dtype                dtype of the large weight matrices: "f32", "f16", "bf16" or "mixed"
 * @info batchSize            sequences stepped together
 * @info vocabSize            logits per sequence (rows of the embedding)
 * @info stateBytes           bytes of one sequence's saved state, as mamba_state_size
 * @info threads              CPU threads the backend runs on
 * @info weightBytesPerToken  bytes of weights one decode step reads
 * @info stateBytesPerToken   bytes of state one decode step reads and writes (whole batch)
 * @info matrices             one object per large matrix: {"name", "stored" (what the file held, e.g.
 *                          "F16", "Q4_K", "MLX q4 g64, f16 scales"), "dtype" (what the backends read:
 *                          f32|f16|bf16|q8|q4), "rows", "cols", "bytes", "groupSize" and "scaleDType"
 *                          (q8/q4 only)}
 * @info[metal] gpu           the GPU's name
 * @info[metal] tuneShape     the model-shape key of tuning-table entries
 * @info[metal] recorded      whether decode replays an indirect command buffer
 * @info[metal] tuning        the kernel parameters in use (the @tuning keys of mamba_engine_create)
 * @info[metal] prefillMode   "chunked" or "tokens"
 * @info[metal] prefillBlock  prompt tokens per command buffer of the chunked prefill
 * @info config               the model's shape, an object with these keys:
 * @config dModel          width of the residual stream
 * @config nLayer          Mamba2 blocks
 * @config dState          SSM state size per head channel
 * @config headDim         channels per head
 * @config nHeads          SSM heads
 * @config nGroups         groups of heads sharing B and C
 * @config dConv           causal convolution width
 * @config expand          dInner / dModel
 * @config dInner          expand × dModel
 * @config vocabSize       rows of the embedding matrix
 * @config eps             RMSNorm epsilon
 * @config chunkSize       chunk length of the chunked (SSD) prefill
 * @config tieEmbeddings   whether lm_head is the embedding matrix
 * @config timeStepMin     lower clamp of dt
 * @config timeStepMax     upper clamp of dt (the string "Infinity" for none)
 */
const char *mamba_engine_info(mamba_engine *engine);
/* The logits buffer, float32 [batchSize * vocabSize], fixed for the engine's lifetime. */
float *mamba_engine_logits(mamba_engine *engine);

/* One decode step: tokens[n_tokens] with n_tokens == batchSize, one token per sequence.
 * Writes logits[seq * vocabSize ...] for every sequence. */
int32_t mamba_step(mamba_engine *engine, const int32_t *tokens, int32_t n_tokens);
/* One decode step for some sequences only: tokens[i] goes to sequence seqs[i], i < n (0 <= n <= batchSize,
 * distinct sequences; n == 0 does nothing). Writes the logits rows of those sequences; every other
 * sequence's state and logits row are left untouched, and no other sequence's state is read or written.
 * The listed sequences get bit-identical results to mamba_step with the same tokens. */
int32_t mamba_step_seqs(mamba_engine *engine, const int32_t *tokens, const int32_t *seqs, int32_t n);
/* Feed a prompt to sequence `seq`, continuing from its current state. Writes the logits row of
 * `seq` for the last token; other rows are untouched. */
int32_t mamba_prefill(mamba_engine *engine, const int32_t *tokens, int32_t n_tokens, int32_t seq);
/* Zero the conv and SSM state of sequence `seq`, or of every sequence when seq == -1. */
int32_t mamba_reset(mamba_engine *engine, int32_t seq);

/* Size in bytes of one sequence's saved state (header + conv_state + ssm_state of every layer). */
int64_t mamba_state_size(mamba_engine *engine);
/* Copy sequence `seq`'s state into out[size]; size must equal mamba_state_size. */
int32_t mamba_state_save(mamba_engine *engine, int32_t seq, uint8_t *out, int64_t size);
/* Replace sequence `seq`'s state with bytes from mamba_state_save of a model with the same shapes
 * and weights fingerprint. */
int32_t mamba_state_load(mamba_engine *engine, int32_t seq, const uint8_t *data, int64_t size);

/*
 * Sampling in the library, one call per step for all sequences. The algorithm is src/sampling.ts's
 * Sampler's: repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw with xoshiro128**, in
 * the same order over the same candidates, so a seed gives the same tokens (weights are float64; only
 * last-bit differences of exp and sums, which move a draw only within ~1e-15 of a token boundary).
 */
typedef struct mamba_sampling {
    double temperature;        /* >= 0; 0: greedy (argmax, lowest id on ties) */
    double top_p;              /* (0, 1]; 1: off */
    double min_p;              /* [0, 1]; 0: off */
    double repetition_penalty; /* > 0; 1: off. Positive logits of seen ids are divided, negative multiplied */
    int32_t top_k;             /* >= 0; 0: off; 1: greedy */
    int32_t vocab;             /* sample only ids < vocab (0: every row entry), e.g. the tokenizer's size */
    uint32_t rng_state[4];     /* xoshiro128** state words, not all zero (the TS Xoshiro128's state()) */
} mamba_sampling;              /* 56 bytes */

/* Set sequence `seq`'s sampler: a copy of `params` and the ids seen so far (history[n_history], e.g. the
 * prompt; ids outside [0, vocab) are ignored), which the repetition penalty applies to. */
int32_t mamba_sampler_set(mamba_engine *engine, int32_t seq, const mamba_sampling *params,
                          const int32_t *history, int32_t n_history);
/* For each i < n, out_tokens[i] = a token sampled from the logits row of sequence seqs[i] (distinct, each
 * with a sampler set), which advances that sampler's PRNG and joins its history. */
int32_t mamba_sample(mamba_engine *engine, const int32_t *seqs, int32_t n, int32_t *out_tokens);
/* The current xoshiro128** state of sequence `seq`'s sampler, out_state[4]. */
int32_t mamba_sampler_rng(mamba_engine *engine, int32_t seq, uint32_t *out_state);

/* Indices of mamba_gpu_counters' output. */
enum mamba_gpu_counter {
    MAMBA_COUNTER_COMMAND_BUFFERS = 0,    /* command buffers committed */
    MAMBA_COUNTER_COMPUTE_ENCODERS = 1,   /* compute command encoders created */
    MAMBA_COUNTER_DISPATCHES = 2,         /* kernel dispatches encoded */
    MAMBA_COUNTER_BUFFER_ALLOCATIONS = 3, /* buffers allocated (standalone or from a heap) */
    MAMBA_COUNTER_HEAP_ALLOCATIONS = 4,   /* heaps allocated */
    MAMBA_COUNTER_ALLOCATED_BYTES = 5,    /* bytes allocated in buffers and heaps */
    MAMBA_COUNTER_COUNT = 6,              /* how many counters there are */
};

/* Cumulative GPU counters, out[0..n) in enum mamba_gpu_counter order (n may be smaller or larger than
 * MAMBA_COUNTER_COUNT; only the first min(n, MAMBA_COUNTER_COUNT) are written). Zeros for the CPU
 * backend. On Linux the Metal backend reports MetalCompat's process-wide counters. */
int32_t mamba_gpu_counters(mamba_engine *engine, uint64_t *out, int32_t n);

/*
 * Memory read bandwidth of this machine in GB/s (1e9 bytes/s), for benchmark reports: the best of
 * `passes` passes in which `threads` threads (0 = one per core) each sum disjoint parts of a `bytes`-byte
 * buffer (written first, in the same kind of memory as the CPU backend's packed weights) with vector
 * loads. A decode step reads every weight once, so this is its ceiling. Takes about
 * passes × bytes / bandwidth seconds plus the time to fill the buffer.
 */
int32_t mamba_read_bandwidth(int64_t bytes, int32_t passes, int32_t threads, double *out_gbs);

/*
 * Quantize the checkpoint at `src` (anything mamba_engine_create reads) into `dst_dir` (created if
 * missing) in mlx-lm's layout: model.safetensors + config.json with "quantization". Uses the same
 * quantizer as "dtype": "q8"|"q4" at load, so loading the result gives the same bytes. Does not copy the
 * tokenizer. `options_json` may be NULL or a JSON object with any of these keys:
 * @quantize bits       4 | 8 (default 4)
 * @quantize groupSize  32 | 64 | 128 (default 64)
 * @quantize progress   true: a line on stderr per tensor (default false)
 */
int32_t mamba_quantize(const char *src, const char *dst_dir, const char *options_json);

#ifdef __cplusplus
}
#endif
#endif /* MAMBA_H */
