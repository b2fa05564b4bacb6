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
 */
#ifndef MAMBA_H
#define MAMBA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MAMBA_ABI_VERSION 1

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
/* Library version, e.g. "0.1.0" (static string). */
const char *mamba_version(void);
/* Message of the last failing call on this thread ("" if none). */
const char *mamba_last_error(void);

/*
 * Load the model in `model_dir` (config.json + model.safetensors, sharded safetensors with
 * model.safetensors.index.json, or pytorch_model.bin; MLX-quantized safetensors) or the GGUF file
 * `model_dir` names (llama.cpp's mamba2 architecture). `options_json` may be NULL or a JSON object:
 *   {"backend": "auto"|"cpu"|"metal", "batchSize": 1,
 *    "dtype": "auto"|"f32"|"f16"|"bf16"|"q8"|"q4" (q8/q4: quantize at load), "groupSize": 32|64|128,
 *    "threads": 0 (0 = all cores), "recorded": false (Metal: replay an indirect command buffer),
 *    "tuneTable": {contents of configs/metal_tune.json}, "tuning": {explicit Metal kernel parameters}}
 */
int32_t mamba_engine_create(const char *model_dir, const char *options_json, mamba_engine **out_engine);
/* Free the engine. Freeing NULL is a no-op; freeing twice returns MAMBA_ERR_CLOSED. */
int32_t mamba_engine_free(mamba_engine *engine);
/*
 * JSON describing the engine (owned by the engine, valid until it is freed):
 *   {"abiVersion", "version", "backend", "device", "dtype", "batchSize", "vocabSize", "stateBytes",
 *    "threads", "config": {"dModel", "nLayer", "dState", "headDim", "nHeads", "nGroups", "dConv",
 *    "expand", "dInner", "vocabSize", "eps", "chunkSize", "tieEmbeddings", "timeStepMin", "timeStepMax"},
 *    "matrices": [{"name", "stored" (what the file held, e.g. "F16", "Q4_K", "MLX q4 g64, f16 scales"),
 *                  "dtype" (what the backends read: f32|f16|bf16|q8|q4), "rows", "cols", "bytes",
 *                  "groupSize" and "scaleDType" (q8/q4 only)}]}
 * Returns NULL (and sets the last error) for a bad handle.
 */
const char *mamba_engine_info(mamba_engine *engine);
/* The logits buffer, float32 [batchSize * vocabSize], fixed for the engine's lifetime. */
float *mamba_engine_logits(mamba_engine *engine);

/* One decode step: tokens[n_tokens] with n_tokens == batchSize, one token per sequence.
 * Writes logits[seq * vocabSize ...] for every sequence. */
int32_t mamba_step(mamba_engine *engine, const int32_t *tokens, int32_t n_tokens);
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

/* Cumulative GPU counters, out[0..n): commandBuffers, computeEncoders, dispatches, bufferAllocations,
 * heapAllocations, allocatedBytes. Zeros for the CPU backend. On Linux the Metal backend reports
 * MetalCompat's process-wide counters. */
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
 * missing) in mlx-lm's layout: model.safetensors + config.json with "quantization". `options_json` may
 * be NULL or {"bits": 4|8 (default 4), "groupSize": 32|64|128 (default 64), "progress": false (lines on
 * stderr)}. Uses the same quantizer as "dtype": "q8"|"q4" at load, so loading the result gives the
 * same bytes. Does not copy the tokenizer.
 */
int32_t mamba_quantize(const char *src, const char *dst_dir, const char *options_json);

#ifdef __cplusplus
}
#endif
#endif /* MAMBA_H */
