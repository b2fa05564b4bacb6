/**
 * The C ABI of libMambaMetal (swift/include/mamba.h), one entry per function with its C prototype, and
 * the layout of the structs it passes. tests/abi.test.ts checks every entry, the prototypes, the struct
 * layouts and the constants here against the header.
 *
 * @module
 */

/** Foreign function table for `Deno.dlopen`. */
export const symbols = {
  // uint32_t mamba_abi_version(void);
  mamba_abi_version: { parameters: [], result: "u32" },
  // const char *mamba_version(void);
  mamba_version: { parameters: [], result: "pointer" },
  // const char *mamba_last_error(void);
  mamba_last_error: { parameters: [], result: "pointer" },
  // int32_t mamba_engine_create(const char *model_dir, const char *options_json, mamba_engine **out_engine);
  mamba_engine_create: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  // int32_t mamba_engine_free(mamba_engine *engine);
  mamba_engine_free: { parameters: ["pointer"], result: "i32" },
  // const char *mamba_engine_info(mamba_engine *engine);
  mamba_engine_info: { parameters: ["pointer"], result: "pointer" },
  // float *mamba_engine_logits(mamba_engine *engine);
  mamba_engine_logits: { parameters: ["pointer"], result: "pointer" },
  // int32_t mamba_step(mamba_engine *engine, const int32_t *tokens, int32_t n_tokens);
  mamba_step: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  // int32_t mamba_step_seqs(mamba_engine *engine, const int32_t *tokens, const int32_t *seqs, int32_t n);
  mamba_step_seqs: { parameters: ["pointer", "buffer", "buffer", "i32"], result: "i32" },
  // int32_t mamba_prefill(mamba_engine *engine, const int32_t *tokens, int32_t n_tokens, int32_t seq);
  mamba_prefill: { parameters: ["pointer", "buffer", "i32", "i32"], result: "i32" },
  // int32_t mamba_reset(mamba_engine *engine, int32_t seq);
  mamba_reset: { parameters: ["pointer", "i32"], result: "i32" },
  // int64_t mamba_state_size(mamba_engine *engine);
  mamba_state_size: { parameters: ["pointer"], result: "i64" },
  // int32_t mamba_state_save(mamba_engine *engine, int32_t seq, uint8_t *out, int64_t size);
  mamba_state_save: { parameters: ["pointer", "i32", "buffer", "i64"], result: "i32" },
  // int32_t mamba_state_load(mamba_engine *engine, int32_t seq, const uint8_t *data, int64_t size);
  mamba_state_load: { parameters: ["pointer", "i32", "buffer", "i64"], result: "i32" },
  // int32_t mamba_sampler_set(mamba_engine *engine, int32_t seq, const mamba_sampling *params, const int32_t *history, int32_t n_history);
  mamba_sampler_set: { parameters: ["pointer", "i32", "buffer", "buffer", "i32"], result: "i32" },
  // int32_t mamba_sample(mamba_engine *engine, const int32_t *seqs, int32_t n, int32_t *out_tokens);
  mamba_sample: { parameters: ["pointer", "buffer", "i32", "buffer"], result: "i32" },
  // int32_t mamba_sampler_rng(mamba_engine *engine, int32_t seq, uint32_t *out_state);
  mamba_sampler_rng: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  // int32_t mamba_gpu_counters(mamba_engine *engine, uint64_t *out, int32_t n);
  mamba_gpu_counters: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  // int32_t mamba_read_bandwidth(int64_t bytes, int32_t passes, int32_t threads, double *out_gbs);
  mamba_read_bandwidth: { parameters: ["i64", "i32", "i32", "buffer"], result: "i32" },
  // int32_t mamba_quantize(const char *src, const char *dst_dir, const char *options_json);
  mamba_quantize: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI version these bindings were written for (MAMBA_ABI_VERSION). */
export const ABI_VERSION = 2;

/** The order of mamba_gpu_counters' output (enum mamba_gpu_counter). */
export const GPU_COUNTERS = [
  "commandBuffers",
  "computeEncoders",
  "dispatches",
  "bufferAllocations",
  "heapAllocations",
  "allocatedBytes",
] as const;

/** A C struct as bytes: its size and each field's byte offset (an array field: its first element's). */
export interface StructLayout<F extends string> {
  /** sizeof, padding included. */
  size: number;
  /** offsetof of each field. */
  offsets: Record<F, number>;
}

/** The layout of each struct mamba.h defines (natural alignment, as every C compiler lays them out). */
export const STRUCTS: {
  mamba_sampling: StructLayout<
    "temperature" | "top_p" | "min_p" | "repetition_penalty" | "top_k" | "vocab" | "rng_state"
  >;
} = {
  mamba_sampling: {
    size: 56,
    offsets: {
      temperature: 0,
      top_p: 8,
      min_p: 16,
      repetition_penalty: 24,
      top_k: 32,
      vocab: 36,
      rng_state: 40,
    },
  },
};

/** The opened library's functions. */
export type MambaSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
