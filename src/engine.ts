/**
 * `MambaEngine`: a loaded Mamba2 model with a batch of sequences, driven through the native library.
 *
 * @module
 */
import { check, lastError, type OpenedLibrary, openLibrary } from "../ffi/library.ts";
import { ensureLibrary } from "../ffi/build.ts";
import { MambaError, MambaStatus } from "./errors.ts";

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
 * Options for {@linkcode MambaEngine.load}.
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
  /** Rows of W per simdgroup in the decode matvec (1…4). */
  matvecRowsPerSimdgroup?: number;
  /** Output tile side of the prefill matmul (16 or 32). */
  matmulTile?: number;
}

/**
 * The model's shape.
 *
 * @example
 * ```ts
 * const engine = await MambaEngine.load("models/demo");
 * const c: ModelConfig = engine.config;
 * console.log(`${c.nLayer} layers, ${c.nHeads} heads of ${c.headDim}`);
 * ```
 */
export interface ModelConfig {
  /** Width of the residual stream. */
  dModel: number;
  /** Number of Mamba2 blocks. */
  nLayer: number;
  /** SSM state size per head channel. */
  dState: number;
  /** Channels per head. */
  headDim: number;
  /** Number of SSM heads. */
  nHeads: number;
  /** Groups sharing B and C (and normalised together in the gated RMSNorm). */
  nGroups: number;
  /** Causal convolution width. */
  dConv: number;
  /** dInner / dModel. */
  expand: number;
  /** expand × dModel. */
  dInner: number;
  /** Rows of the embedding matrix. */
  vocabSize: number;
  /** RMSNorm epsilon. */
  eps: number;
  /** Chunk length of the chunked (SSD) prefill. */
  chunkSize: number;
  /** Whether lm_head is the embedding matrix. */
  tieEmbeddings: boolean;
  /** Lower clamp of dt. */
  timeStepMin: number;
  /** Upper clamp of dt (`Infinity` for none). */
  timeStepMax: number;
}

/**
 * Cumulative GPU counters (all zero on the CPU backend).
 *
 * @example
 * ```ts
 * const engine = await MambaEngine.load("models/demo", { backend: "metal" });
 * const before: GpuCounters = engine.gpuCounters();
 * engine.step([1]);
 * console.log(engine.gpuCounters().dispatches - before.dispatches);
 * ```
 */
export interface GpuCounters {
  /** Command buffers committed. */
  commandBuffers: number;
  /** Compute command encoders created. */
  computeEncoders: number;
  /** Kernel dispatches encoded. */
  dispatches: number;
  /** Buffers allocated (standalone or from a heap). */
  bufferAllocations: number;
  /** Heaps allocated. */
  heapAllocations: number;
  /** Bytes allocated in buffers and heaps. */
  allocatedBytes: number;
}

interface EngineInfo {
  backend: string;
  device: string;
  dtype: string;
  batchSize: number;
  vocabSize: number;
  stateBytes: number;
  threads: number;
  weightBytesPerToken: number;
  stateBytesPerToken: number;
  version: string;
  config: Omit<ModelConfig, "timeStepMax"> & { timeStepMax: number | "Infinity" };
}

// Frees engines that were garbage-collected without close(). The target is the logits buffer, not
// the engine: a logits view kept after the engine is dropped must not outlive the native memory.
const finalizer = new FinalizationRegistry<{ lib: OpenedLibrary; handle: Deno.PointerValue }>(
  ({ lib, handle }) => {
    lib.symbols.mamba_engine_free(handle);
  },
);

const DEFAULT_TUNE_FILE = new URL("../configs/metal_tune.json", import.meta.url);

/** A tuning table and the file or URL it came from (native errors about it name that). */
interface TuneTable {
  table: unknown;
  source: string;
}

function parseTuneTable(text: string, where: string): TuneTable {
  try {
    return { table: JSON.parse(text), source: where };
  } catch (e) {
    throw new MambaError(MambaStatus.FORMAT, `${where}: ${(e as Error).message}`);
  }
}

function tuneSource(url: string | URL): string {
  return url instanceof URL && url.protocol === "file:" ? url.pathname : String(url);
}

function readTuneTableSync(file: string | URL | false | undefined): TuneTable | undefined {
  if (file === false) return undefined;
  const url = file === undefined ? DEFAULT_TUNE_FILE : file;
  if (url instanceof URL && url.protocol !== "file:") return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync(url);
  } catch (e) {
    // The package's own table is optional (and unreadable without --allow-read on the module).
    if (file === undefined && (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotCapable)) {
      return undefined;
    }
    throw new MambaError(MambaStatus.IO, `tuning table ${tuneSource(url)}: ${(e as Error).message}`);
  }
  return parseTuneTable(text, tuneSource(url));
}

async function readTuneTable(file: string | URL | false | undefined): Promise<TuneTable | undefined> {
  const url = file === undefined ? DEFAULT_TUNE_FILE : file;
  if (url instanceof URL && url.protocol !== "file:") {
    const response = await fetch(url).catch(() => undefined);
    if (!response?.ok) {
      await response?.body?.cancel();
      if (file === undefined) return undefined;
      throw new MambaError(MambaStatus.IO, `cannot fetch ${url.href}`);
    }
    return parseTuneTable(await response.text(), url.href);
  }
  return readTuneTableSync(file);
}

function encodeCString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * A Mamba2 model loaded into the native engine, with `batchSize` independent sequences.
 *
 * Logits are a zero-copy view over native memory: {@linkcode MambaEngine.logits} is created once
 * and rewritten in place by every {@linkcode MambaEngine.step} and {@linkcode MambaEngine.prefill}.
 * Copy them if you need them after the next call.
 *
 * @example
 * ```ts
 * import { MambaEngine } from "./mod.ts";
 * using engine = await MambaEngine.load("models/demo", { backend: "cpu" });
 * const row = engine.prefill([1, 2, 3]);      // logits after the last prompt token
 * let next = row.indexOf(Math.max(...row));
 * for (let i = 0; i < 8; i++) {
 *   const logits = engine.step([next]);
 *   next = logits.indexOf(Math.max(...logits));
 * }
 * ```
 */
export class MambaEngine implements Disposable {
  /** The model's shape. */
  readonly config: ModelConfig;
  /** Rows of the embedding matrix: logits per sequence. */
  readonly vocabSize: number;
  /** Number of sequences. */
  readonly batchSize: number;
  /** `"cpu"` or `"metal"`. */
  readonly backend: string;
  /** Device description (instruction set and threads, or GPU name). */
  readonly device: string;
  /** dtype of the large weight matrices (`"f32"`, `"f16"`, `"bf16"`, `"q8"`, `"q4"` or `"mixed"`). */
  readonly dtype: string;
  /** Threads the CPU backend uses. */
  readonly threads: number;
  /** Bytes of weights read per decode step. */
  readonly weightBytesPerToken: number;
  /** Bytes of state read and written per decode step (whole batch). */
  readonly stateBytesPerToken: number;
  /** Path of the native library in use. */
  readonly libraryPath: string;
  /** float32 logits `[batchSize * vocabSize]` over the native buffer (zero-copy, rewritten per call). */
  readonly logits: Float32Array;
  /** Everything the native engine reports about itself (backend-specific fields such as `gpu`, `tuning`). */
  readonly info: Readonly<Record<string, unknown>>;

  #lib: OpenedLibrary;
  #handle: Deno.PointerValue;
  #closed = false;
  #logitsBuffer: ArrayBuffer;
  #rows: Float32Array[];
  #stepTokens: Int32Array<ArrayBuffer>;
  #countersOut = new BigUint64Array(6);

  private constructor(lib: OpenedLibrary, handle: Deno.PointerValue) {
    this.#lib = lib;
    this.#handle = handle;
    const infoPtr = lib.symbols.mamba_engine_info(handle);
    if (!infoPtr) throw new MambaError(MambaStatus.INTERNAL, lastError(lib));
    const info = JSON.parse(Deno.UnsafePointerView.getCString(infoPtr)) as EngineInfo;
    this.info = info as unknown as Record<string, unknown>;
    this.config = {
      ...info.config,
      timeStepMax: info.config.timeStepMax === "Infinity" ? Infinity : info.config.timeStepMax,
    };
    this.vocabSize = info.vocabSize;
    this.batchSize = info.batchSize;
    this.backend = info.backend;
    this.device = info.device;
    this.dtype = info.dtype;
    this.threads = info.threads;
    this.weightBytesPerToken = info.weightBytesPerToken;
    this.stateBytesPerToken = info.stateBytesPerToken;
    this.libraryPath = lib.path;
    const logitsPtr = lib.symbols.mamba_engine_logits(handle);
    if (!logitsPtr) throw new MambaError(MambaStatus.INTERNAL, lastError(lib));
    this.#logitsBuffer = Deno.UnsafePointerView.getArrayBuffer(
      logitsPtr,
      this.batchSize * this.vocabSize * 4,
    );
    this.logits = new Float32Array(this.#logitsBuffer);
    this.#rows = Array.from(
      { length: this.batchSize },
      (_, s) => this.logits.subarray(s * this.vocabSize, (s + 1) * this.vocabSize),
    );
    this.#stepTokens = new Int32Array(this.batchSize);
    finalizer.register(this.#logitsBuffer, { lib, handle }, this);
  }

  /**
   * Loads the model in `modelDir` (config.json plus model.safetensors, sharded safetensors,
   * MLX-quantized safetensors or pytorch_model.bin), or a GGUF file of llama.cpp's mamba2 architecture.
   * `engine.info.matrices` says what each large matrix was stored as and what the backends read.
   *
   * @example
   * ```ts
   * import { MambaEngine } from "./mod.ts";
   * const engine = await MambaEngine.load("models/demo", { batchSize: 2, dtype: "f16" });
   * console.log(engine.config.nLayer, engine.vocabSize);
   * engine.close();
   * ```
   */
  static async load(modelDir: string, options: LoadOptions = {}): Promise<MambaEngine> {
    const libraryPath = await ensureLibrary({
      libraryPath: options.libraryPath,
      progress: options.onProgress,
    });
    const tuneTable = await readTuneTable(options.tuneFile);
    return MambaEngine.#create(modelDir, { ...options, libraryPath }, tuneTable);
  }

  /**
   * Synchronous {@linkcode MambaEngine.load}; it never builds the library, so the library must exist
   * (see {@linkcode LoadOptions.libraryPath}).
   */
  static loadSync(modelDir: string, options: LoadOptions = {}): MambaEngine {
    return MambaEngine.#create(modelDir, options, readTuneTableSync(options.tuneFile));
  }

  static #create(modelDir: string, options: LoadOptions, tune: TuneTable | undefined): MambaEngine {
    const lib = openLibrary(options.libraryPath);
    const { libraryPath: _, onProgress: __, tuneFile: ___, ...rest } = options;
    const native = tune === undefined
      ? rest
      : { ...rest, tuneTable: tune.table, tuneTableSource: tune.source };
    const out = new BigUint64Array(1);
    const status = lib.symbols.mamba_engine_create(
      encodeCString(modelDir),
      encodeCString(JSON.stringify(native)),
      new Uint8Array(out.buffer),
    );
    check(lib, status);
    return new MambaEngine(lib, Deno.UnsafePointer.create(out[0]));
  }

  #live(): Deno.PointerValue {
    if (this.#closed) throw new MambaError(MambaStatus.CLOSED, "engine is closed");
    return this.#handle;
  }

  /** The zero-copy logits row of sequence `seq`. */
  row(seq = 0): Float32Array {
    this.#live();
    this.#checkSeq(seq);
    return this.#rows[seq];
  }

  #checkSeq(seq: number): void {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.batchSize) {
      throw new MambaError(
        MambaStatus.ARGUMENT,
        `sequence index ${seq} is out of range [0, ${this.batchSize})`,
      );
    }
  }

  /**
   * Feeds `tokens` to sequence `seq`, continuing from its current state, and returns the zero-copy
   * logits row of `seq` after the last token.
   */
  prefill(tokens: ArrayLike<number>, seq = 0): Float32Array {
    const handle = this.#live();
    this.#checkSeq(seq);
    const ids = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    check(
      this.#lib,
      this.#lib.symbols.mamba_prefill(handle, ids as Int32Array<ArrayBuffer>, ids.length, seq),
    );
    return this.#rows[seq];
  }

  /**
   * Advances every sequence by one token (`tokens.length === batchSize`; a single number when
   * batchSize is 1) and returns {@linkcode MambaEngine.logits}, rewritten in place.
   */
  step(tokens: ArrayLike<number> | number): Float32Array {
    const handle = this.#live();
    const buf = this.#stepTokens;
    if (typeof tokens === "number") {
      if (this.batchSize !== 1) {
        throw new MambaError(
          MambaStatus.ARGUMENT,
          `step takes one token per sequence: got 1, batch size is ${this.batchSize}`,
        );
      }
      buf[0] = tokens;
    } else {
      if (tokens.length !== this.batchSize) {
        throw new MambaError(
          MambaStatus.ARGUMENT,
          `step takes one token per sequence: got ${tokens.length}, batch size is ${this.batchSize}`,
        );
      }
      for (let i = 0; i < buf.length; i++) {
        const t = tokens[i];
        if (!Number.isInteger(t)) {
          throw new MambaError(MambaStatus.TOKEN, `token id ${t} at position ${i} is not an integer`);
        }
        buf[i] = t;
      }
    }
    check(this.#lib, this.#lib.symbols.mamba_step(handle, buf, buf.length));
    return this.logits;
  }

  /** Zeroes the state of sequence `seq`, or of all sequences when omitted. */
  reset(seq?: number): void {
    const handle = this.#live();
    if (seq !== undefined) this.#checkSeq(seq);
    check(this.#lib, this.#lib.symbols.mamba_reset(handle, seq ?? -1));
  }

  /** A copy of sequence `seq`'s conv and SSM state (for prompt caching). */
  saveState(seq = 0): Uint8Array {
    const handle = this.#live();
    this.#checkSeq(seq);
    const size = Number(this.#lib.symbols.mamba_state_size(handle));
    const out = new Uint8Array(size);
    check(this.#lib, this.#lib.symbols.mamba_state_save(handle, seq, out, BigInt(size)));
    return out;
  }

  /** Restores sequence `seq` from bytes returned by {@linkcode MambaEngine.saveState} of the same model. */
  loadState(bytes: Uint8Array, seq = 0): void {
    const handle = this.#live();
    this.#checkSeq(seq);
    check(
      this.#lib,
      this.#lib.symbols.mamba_state_load(
        handle,
        seq,
        bytes as Uint8Array<ArrayBuffer>,
        BigInt(bytes.byteLength),
      ),
    );
  }

  /** Cumulative GPU counters (zeros on the CPU backend). */
  gpuCounters(): GpuCounters {
    const handle = this.#live();
    const out = this.#countersOut;
    check(this.#lib, this.#lib.symbols.mamba_gpu_counters(handle, new Uint8Array(out.buffer), out.length));
    return {
      commandBuffers: Number(out[0]),
      computeEncoders: Number(out[1]),
      dispatches: Number(out[2]),
      bufferAllocations: Number(out[3]),
      heapAllocations: Number(out[4]),
      allocatedBytes: Number(out[5]),
    };
  }

  /** Whether {@linkcode MambaEngine.close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Frees the native engine. Idempotent. Afterwards every call throws, and the logits views are
   * detached (length 0) so they can no longer reach freed memory.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    // Detach the external buffer before its memory goes away: views over it become empty.
    this.#logitsBuffer.transfer(0);
    this.#lib.symbols.mamba_engine_free(this.#handle);
  }

  /** Same as {@linkcode MambaEngine.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
