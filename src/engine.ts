/**
 * `MambaEngine`: a loaded Mamba2 model with a batch of sequences, driven through the native library.
 *
 * @module
 */
import { check, lastError, type OpenedLibrary, openLibrary } from "../ffi/library.ts";
import { GPU_COUNTERS, STRUCTS } from "../ffi/symbols.ts";
import { type LoadOptions, nativeOptions } from "./options.ts";
import { readTuneTable, readTuneTableSync, type TuneTable } from "./tune_table.ts";
import { ensureLibrary } from "../ffi/build.ts";
import { MambaError, MambaStatus } from "../ffi/errors.ts";
import { resolveSamplingOptions, type SamplingOptions, Xoshiro128 } from "./sampling.ts";

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

/** Where each field of `mamba_sampling` (swift/include/mamba.h) goes in the bytes handed to the library. */
const SAMPLING = STRUCTS.mamba_sampling;

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
  #stepSeqs: Int32Array<ArrayBuffer>;
  #sampled: Int32Array<ArrayBuffer>;
  #sampledViews: Int32Array[];
  #samplerParams = new DataView(new ArrayBuffer(SAMPLING.size));
  #rngOut = new Uint32Array(4);
  #countersOut = new BigUint64Array(GPU_COUNTERS.length);

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
    this.#stepSeqs = new Int32Array(this.batchSize);
    this.#sampled = new Int32Array(this.batchSize);
    // One view per length, made once: sampling a step allocates nothing.
    this.#sampledViews = Array.from({ length: this.batchSize + 1 }, (_, n) => this.#sampled.subarray(0, n));
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
    const out = new BigUint64Array(1);
    const status = lib.symbols.mamba_engine_create(
      encodeCString(modelDir),
      encodeCString(JSON.stringify(nativeOptions(options, tune))),
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
   * `t`, the token at `position`, as it will be stored in an Int32Array: a number that is not an integer,
   * or that int32 cannot hold, would be silently truncated or wrapped there, so it is a TOKEN error
   * (the native side checks the vocabulary range).
   */
  #tokenId(t: number, position: number): number {
    if (!Number.isInteger(t)) {
      throw new MambaError(MambaStatus.TOKEN, `token id ${t} at position ${position} is not an integer`);
    }
    if (t < -0x8000_0000 || t > 0x7fff_ffff) {
      throw new MambaError(
        MambaStatus.TOKEN,
        `token id ${t} at position ${position} is out of range [0, ${this.vocabSize})`,
      );
    }
    return t;
  }

  /**
   * Feeds `tokens` to sequence `seq`, continuing from its current state, and returns the zero-copy
   * logits row of `seq` after the last token.
   */
  prefill(tokens: ArrayLike<number>, seq = 0): Float32Array {
    const handle = this.#live();
    this.#checkSeq(seq);
    let ids: Int32Array;
    if (tokens instanceof Int32Array) ids = tokens;
    else {
      ids = new Int32Array(tokens.length);
      for (let i = 0; i < ids.length; i++) ids[i] = this.#tokenId(tokens[i], i);
    }
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
      buf[0] = this.#tokenId(tokens, 0);
    } else {
      if (tokens.length !== this.batchSize) {
        throw new MambaError(
          MambaStatus.ARGUMENT,
          `step takes one token per sequence: got ${tokens.length}, batch size is ${this.batchSize}`,
        );
      }
      for (let i = 0; i < buf.length; i++) buf[i] = this.#tokenId(tokens[i], i);
    }
    check(this.#lib, this.#lib.symbols.mamba_step(handle, buf, buf.length));
    return this.logits;
  }

  /**
   * Advances only the sequences `seqs` by one token each (`tokens[i]` for `seqs[i]`, distinct sequences)
   * and returns {@linkcode MambaEngine.logits}. Their logits rows are rewritten, bit-identical to what a
   * full {@linkcode MambaEngine.step} gives them; every other sequence's state and logits row is left
   * alone, and costs no state traffic.
   *
   * @example
   * ```ts
   * const engine = await MambaEngine.load("models/demo", { batchSize: 4 });
   * engine.stepSeqs([42, 7], [0, 2]); // sequences 1 and 3 stay where they are
   * ```
   */
  stepSeqs(tokens: ArrayLike<number>, seqs: ArrayLike<number>): Float32Array {
    const handle = this.#live();
    if (tokens.length !== seqs.length || seqs.length > this.batchSize) {
      throw new MambaError(
        MambaStatus.ARGUMENT,
        `stepSeqs takes one token per listed sequence: got ${tokens.length} tokens for ${seqs.length} ` +
          `sequences, batch size is ${this.batchSize}`,
      );
    }
    const tok = this.#stepTokens, sq = this.#stepSeqs;
    for (let i = 0; i < seqs.length; i++) {
      const t = tokens[i], s = seqs[i];
      if (!Number.isInteger(t)) {
        throw new MambaError(MambaStatus.TOKEN, `token id ${t} at position ${i} is not an integer`);
      }
      if (!Number.isInteger(s)) {
        throw new MambaError(MambaStatus.ARGUMENT, `sequence index ${s} at position ${i} is not an integer`);
      }
      tok[i] = t;
      sq[i] = s;
    }
    check(this.#lib, this.#lib.symbols.mamba_step_seqs(handle, tok, sq, seqs.length));
    return this.logits;
  }

  /**
   * Sets the native sampler of sequence `seq`: the same options, algorithm and PRNG as
   * {@linkcode Sampler}, so the same seed gives the same tokens. `history` (e.g. the prompt) seeds the
   * ids the repetition penalty applies to; every sampled id joins it. `vocabLimit` restricts sampling to
   * ids below it (default: the whole logits row).
   *
   * @example
   * ```ts
   * engine.setSampler(0, { temperature: 0.8, topP: 0.95, seed: 1 }, promptIds, tokenizer.vocabSize);
   * const next = engine.sample(0);
   * ```
   */
  setSampler(
    seq: number,
    options: SamplingOptions = {},
    history: ArrayLike<number> = [],
    vocabLimit = 0,
  ): void {
    const handle = this.#live();
    this.#checkSeq(seq);
    const o = resolveSamplingOptions(options);
    if (!Number.isInteger(vocabLimit) || vocabLimit < 0 || vocabLimit > this.vocabSize) {
      throw new RangeError(`vocabLimit must be an integer from 0 to ${this.vocabSize}, got ${vocabLimit}`);
    }
    const rng = new Xoshiro128(options.seed ?? Math.floor(Math.random() * 2 ** 52)).state();
    const p = this.#samplerParams;
    const at = SAMPLING.offsets;
    p.setFloat64(at.temperature, o.temperature, true);
    p.setFloat64(at.top_p, o.topP, true);
    p.setFloat64(at.min_p, o.minP, true);
    p.setFloat64(at.repetition_penalty, o.repetitionPenalty, true);
    p.setInt32(at.top_k, o.topK, true);
    p.setInt32(at.vocab, vocabLimit, true);
    for (let i = 0; i < 4; i++) p.setUint32(at.rng_state + 4 * i, rng[i], true);
    const ids = history instanceof Int32Array ? history : Int32Array.from(history);
    check(
      this.#lib,
      this.#lib.symbols.mamba_sampler_set(
        handle,
        seq,
        new Uint8Array(p.buffer),
        ids as Int32Array<ArrayBuffer>,
        ids.length,
      ),
    );
  }

  /** Samples the next token of sequence `seq` from its logits row (see {@linkcode MambaEngine.setSampler}). */
  sample(seq = 0): number {
    this.#checkSeq(seq);
    this.#stepSeqs[0] = seq;
    this.#sampleInto(1);
    return this.#sampled[0];
  }

  /**
   * Samples one token for each of `seqs` (distinct) in one native call. Returns a view of an internal
   * buffer, rewritten by the next call (the same view for the same count): `out[i]` is the token of
   * `seqs[i]`.
   *
   * @example
   * ```ts
   * const next = engine.sampleSeqs([0, 2]);
   * engine.stepSeqs(next, [0, 2]);
   * ```
   */
  sampleSeqs(seqs: ArrayLike<number>): Int32Array {
    if (seqs.length > this.batchSize) {
      throw new MambaError(MambaStatus.ARGUMENT, `${seqs.length} sequences, batch size is ${this.batchSize}`);
    }
    for (let i = 0; i < seqs.length; i++) {
      if (!Number.isInteger(seqs[i])) {
        throw new MambaError(MambaStatus.ARGUMENT, `sequence index ${seqs[i]} is not an integer`);
      }
      this.#stepSeqs[i] = seqs[i];
    }
    this.#sampleInto(seqs.length);
    return this.#sampledViews[seqs.length];
  }

  #sampleInto(n: number): void {
    const handle = this.#live();
    check(this.#lib, this.#lib.symbols.mamba_sample(handle, this.#stepSeqs, n, this.#sampled));
  }

  /** The xoshiro128** state of sequence `seq`'s native sampler (four unsigned 32-bit words). */
  samplerState(seq = 0): [number, number, number, number] {
    const handle = this.#live();
    this.#checkSeq(seq);
    check(this.#lib, this.#lib.symbols.mamba_sampler_rng(handle, seq, this.#rngOut));
    const s = this.#rngOut;
    return [s[0], s[1], s[2], s[3]];
  }

  /** Zeroes the state of sequence `seq`, or of all sequences when omitted. */
  reset(seq?: number): void {
    const handle = this.#live();
    if (seq !== undefined) this.#checkSeq(seq);
    check(this.#lib, this.#lib.symbols.mamba_reset(handle, seq ?? -1));
  }

  /**
   * A copy of sequence `seq`'s conv and SSM state (for prompt caching), written into `into` when given
   * (a buffer of {@linkcode MambaEngine.stateBytes} bytes, e.g. one to reuse), else into a new one.
   */
  saveState(seq = 0, into?: Uint8Array): Uint8Array {
    const handle = this.#live();
    this.#checkSeq(seq);
    const size = Number(this.#lib.symbols.mamba_state_size(handle));
    if (into && into.byteLength !== size) {
      throw new MambaError(
        MambaStatus.ARGUMENT,
        `saveState: the buffer has ${into.byteLength} bytes; this model's state needs ${size}`,
      );
    }
    const out = into ?? new Uint8Array(size);
    check(
      this.#lib,
      this.#lib.symbols.mamba_state_save(handle, seq, out as Uint8Array<ArrayBuffer>, BigInt(size)),
    );
    return out;
  }

  /** Bytes of one sequence's saved state ({@linkcode MambaEngine.saveState}). */
  get stateBytes(): number {
    return Number(this.#lib.symbols.mamba_state_size(this.#live()));
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
    const counters = {} as GpuCounters;
    GPU_COUNTERS.forEach((name, i) => counters[name] = Number(out[i]));
    return counters;
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
