/**
 * What `MambaEngine.load` accepts, and the options JSON the native engine is given (`@option` in
 * swift/include/mamba.h; tests/abi.test.ts checks that the two agree).
 *
 * @module
 */
import type { TuneTable } from "./tune_table.ts";
/**
 * Which compute backend to use. `"auto"` picks Metal on a Mac with a GPU, else the CPU.
 *
 * @example
 * ```ts
 * const backend: BackendName = Deno.build.os === "darwin" ? "metal" : "cpu";
 * ```
 */
export type BackendName = "auto" | "cpu" | "metal";
/**
 * Weight dtype of the large matrices: `"auto"` keeps what the checkpoint stores; `"q8"` and `"q4"`
 * quantize float matrices at load with MLX's affine algorithm (groups of `groupSize` columns), the
 * same bytes `deno task quantize` writes; `"f32"`/`"f16"`/`"bf16"` convert (and dequantize quantized
 * checkpoints).
 *
 * @example
 * ```ts
 * const dtype: WeightDType = "f16"; // halve the bytes each decode step reads
 * ```
 */
export type WeightDType = "auto" | "f32" | "f16" | "bf16" | "q8" | "q4";

/**
 * Options for `MambaEngine.load`.
 *
 * @example
 * ```ts
 * const options: LoadOptions = { backend: "cpu", batchSize: 4, dtype: "f16", threads: 2 };
 * ```
 */
export interface LoadOptions {
  /** Compute backend (default `"auto"`). */
  backend?: BackendName;
  /** Number of independent sequences stepped together (default 1). */
  batchSize?: number;
  /** Weight dtype for the large matrices (default `"auto"`: as stored). */
  dtype?: WeightDType;
  /** Columns per quantization group for `dtype: "q8" | "q4"`: 32, 64 (default) or 128. */
  groupSize?: number;
  /** CPU threads; 0 or absent: one per core. */
  threads?: number;
  /** Path of libMambaMetal; otherwise `MAMBA_METAL_LIB` or the package's own build is used. */
  libraryPath?: string;
  /** Metal: encode the decode step once into an indirect command buffer and replay it. */
  recorded?: boolean;
  /**
   * Metal: the tuning table (configs/metal_tune.json format, written by `deno task tune`). Default: the
   * package's own configs/metal_tune.json when present; `false` ignores any table.
   */
  tuneFile?: string | URL | false;
  /** Metal: explicit kernel parameters, overriding the table (used by the tuner). */
  tuning?: MetalTuningParams;
  /**
   * Metal: how a prompt runs: `"chunked"` (default), the chunked (SSD) prefill kernels, or `"tokens"`, token
   * by token through the decode kernels (what tests compare the chunked prefill against).
   */
  prefillMode?: "chunked" | "tokens";
  /** Receives progress lines while the native library is fetched and built (first use only). */
  onProgress?: (line: string) => void;
}

/**
 * Metal kernel parameters (see configs/metal_tune.json).
 *
 * @example
 * ```ts
 * const tuning: MetalTuningParams = { matvecRowsPerSimdgroup: 4, matmulTile: 32 };
 * ```
 */
export interface MetalTuningParams {
  /** Rows of W per simdgroup in the in_proj matvec (1…4). */
  matvecRowsPerSimdgroup?: number;
  /** Simdgroups sharing each row of the in_proj matvec, each a slice of K (1, 2, 4). */
  matvecSplitK?: number;
  /** Rows of W per simdgroup in the lm_head matvec (1…4). */
  lmHeadRowsPerSimdgroup?: number;
  /** Simdgroups sharing each row of the lm_head matvec, each a slice of K (1, 2, 4). */
  lmHeadSplitK?: number;
  /** Rows of W per simdgroup in the out_proj matvec (1…4). */
  outProjRowsPerSimdgroup?: number;
  /** Simdgroups sharing each row of the out_proj matvec (1, 2, 4). */
  outProjSplitK?: number;
  /** Threadgroups per head of the SSM decode block, each a block of the head's rows (1, 2, 4, 8). */
  ssmSplit?: number;
  /** Output tile side of the prefill matmul (16 or 32). */
  matmulTile?: number;
}

/** Options that only the TypeScript side reads: they never reach the native engine. */
const TYPESCRIPT_ONLY = ["libraryPath", "onProgress", "tuneFile"] as const;

/**
 * The options JSON for mamba_engine_create: `options` without the TypeScript-only ones, plus the tuning
 * table `tuneFile` was read into.
 */
export function nativeOptions(options: LoadOptions, tune?: TuneTable): Record<string, unknown> {
  const native: Record<string, unknown> = { ...options };
  for (const key of TYPESCRIPT_ONLY) delete native[key];
  if (tune !== undefined) Object.assign(native, { tuneTable: tune.table, tuneTableSource: tune.source });
  return native;
}
