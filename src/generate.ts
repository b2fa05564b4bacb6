/**
 * Text generation: tokenize a prompt, prefill it, then sample and decode token by token, streaming
 * text pieces as they complete.
 *
 * @module
 */
import type { MambaEngine } from "./engine.ts";
import { type SamplingOptions, StopChecker } from "./sampling.ts";
import type { Tokenizer } from "./tokenizer.ts";

/**
 * Options of {@linkcode Generator.generate}: sampling, limits and stop conditions.
 *
 * @example
 * ```ts
 * const options: GenerateOptions = { maxTokens: 64, temperature: 0.7, stop: ["\n\n"], seed: 1 };
 * const gen = generator.generate("Emma", options);
 * ```
 */
export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** Strings that end generation; the text up to the first one is emitted. */
  stop?: readonly string[];
  /** Token ids that end generation (default: the tokenizer's `<|endoftext|>`, if it has one). */
  eosTokenIds?: readonly number[];
  /** Which sequence of the engine to use (default 0). */
  seq?: number;
  /** Continue from the sequence's current state instead of resetting it first (default false). */
  continueState?: boolean;
  /** Stops generation early. */
  signal?: AbortSignal;
}

/**
 * Why generation ended.
 *
 * @example
 * ```ts
 * const gen = generator.generate("Emma", { maxTokens: 16, stop: ["."] });
 * for await (const _ of gen);
 * const why: StopReason | undefined = gen.stats.stopReason; // "stop_string" or "max_tokens"
 * ```
 */
export type StopReason = "eos" | "stop_string" | "max_tokens" | "aborted";

/**
 * Timings and counts of one generation.
 *
 * @example
 * ```ts
 * const gen = generator.generate("Emma", { maxTokens: 16 });
 * for await (const _ of gen);
 * const stats: GenerationStats = gen.stats;
 * console.log(`${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`);
 * ```
 */
export interface GenerationStats {
  /** Tokens in the prompt. */
  promptTokens: number;
  /** Tokens sampled (including an EOS token that ended generation). */
  generatedTokens: number;
  /** Milliseconds spent in prefill. */
  prefillMs: number;
  /** Prompt tokens per second of prefill. */
  prefillTokensPerSecond: number;
  /** Milliseconds spent in decode steps and sampling. */
  decodeMs: number;
  /** Generated tokens per second (after the first, which prefill produced). */
  decodeTokensPerSecond: number;
  /** Milliseconds per generated token. */
  msPerToken: number;
  /** Why generation ended (undefined while running). */
  stopReason?: StopReason;
}

/**
 * One generation in progress: iterate it for text pieces; `stats` and `text` fill in as it runs.
 *
 * @example
 * ```ts
 * const gen: Generation = generator.generate("Emma", { maxTokens: 16 });
 * for await (const piece of gen) console.log(piece);
 * console.log(gen.tokens.length, gen.stats.stopReason);
 * ```
 */
export interface Generation extends AsyncIterable<string> {
  /** Counts and timings, updated as it runs. */
  readonly stats: GenerationStats;
  /** The generated token ids so far. */
  readonly tokens: readonly number[];
}

/**
 * Generates text with an engine and a tokenizer.
 *
 * @example
 * ```ts
 * import { Generator, MambaEngine, Tokenizer } from "./mod.ts";
 * using engine = await MambaEngine.load("models/demo");
 * const tokenizer = await Tokenizer.load("models/demo/tokenizer.json");
 * const gen = new Generator(engine, tokenizer).generate("It is a truth", { maxTokens: 32, temperature: 0 });
 * for await (const piece of gen) await Deno.stdout.write(new TextEncoder().encode(piece));
 * console.error(gen.stats.decodeTokensPerSecond);
 * ```
 */
export class Generator {
  /** The engine that computes logits. */
  readonly engine: MambaEngine;
  /** The tokenizer for prompts and output. */
  readonly tokenizer: Tokenizer;

  /** A generator over `engine` and `tokenizer`, which must belong to the same model. */
  constructor(engine: MambaEngine, tokenizer: Tokenizer) {
    this.engine = engine;
    this.tokenizer = tokenizer;
  }

  /** The tokenizer's end-of-text id, if it has one. */
  defaultEosIds(): number[] {
    const id = this.tokenizer.tokenToId("<|endoftext|>");
    return id === undefined ? [] : [id];
  }

  /**
   * The token ids generation starts from: `prompt` encoded (or as given). An empty prompt starts from
   * the end-of-text token, as Hugging Face and llama.cpp do; a `RangeError` when the tokenizer has none.
   */
  promptIds(prompt: string | readonly number[]): number[] {
    const ids = typeof prompt === "string" ? this.tokenizer.encode(prompt) : [...prompt];
    if (ids.length > 0) return ids;
    const eos = this.defaultEosIds();
    if (eos.length === 0) {
      throw new RangeError("the prompt is empty and the tokenizer has no <|endoftext|> token to start from");
    }
    return [eos[0]];
  }

  /**
   * Starts generating from `prompt` (text, or token ids; empty: from the end-of-text token). Nothing runs
   * until the result is iterated. Sampling runs in the native library (one call per token, the
   * TypeScript `Sampler`'s algorithm: the same seed gives the same tokens), and only sequence `seq` is
   * stepped.
   */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
    const stats: GenerationStats = {
      promptTokens: 0,
      generatedTokens: 0,
      prefillMs: 0,
      prefillTokensPerSecond: 0,
      decodeMs: 0,
      decodeTokensPerSecond: 0,
      msPerToken: 0,
    };
    const tokens: number[] = [];
    const run = this.#run.bind(this);
    return {
      stats,
      tokens,
      [Symbol.asyncIterator]: () => run(prompt, options, stats, tokens),
    };
  }

  async *#run(
    prompt: string | readonly number[],
    options: GenerateOptions,
    stats: GenerationStats,
    out: number[],
  ): AsyncGenerator<string> {
    const { engine, tokenizer } = this;
    const seq = options.seq ?? 0;
    const maxTokens = options.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) {
      throw new RangeError(`maxTokens must be ≥ 0, got ${maxTokens}`);
    }
    const ids = this.promptIds(prompt);
    // Sample only ids the tokenizer knows: checkpoints pad the vocabulary (50277 → 50288 rows).
    const usable = Math.min(engine.vocabSize, tokenizer.vocabSize);
    // The prompt seeds the ids the repetition penalty looks at; every sampled id joins them natively.
    engine.setSampler(seq, options, ids, usable);
    const stop = new StopChecker({
      eosTokenIds: options.eosTokenIds ?? this.defaultEosIds(),
      stopStrings: options.stop,
    });
    const stream = tokenizer.decodeStream();
    stats.promptTokens = ids.length;

    if (!options.continueState) engine.reset(seq);
    const t0 = performance.now();
    engine.prefill(ids, seq);
    stats.prefillMs = performance.now() - t0;
    stats.prefillTokensPerSecond = ids.length / Math.max(stats.prefillMs / 1000, 1e-9);

    const token = new Int32Array(1), seqs = Int32Array.of(seq);
    const t1 = performance.now();
    const finish = (reason: StopReason) => {
      stats.stopReason = reason;
      stats.decodeMs = performance.now() - t1;
      stats.msPerToken = stats.generatedTokens ? stats.decodeMs / stats.generatedTokens : 0;
      stats.decodeTokensPerSecond = stats.generatedTokens > 1
        ? (stats.generatedTokens - 1) / Math.max(stats.decodeMs / 1000, 1e-9)
        : 0;
    };
    for (let i = 0; i < maxTokens; i++) {
      if (options.signal?.aborted) {
        finish("aborted");
        return;
      }
      const id = engine.sample(seq);
      out.push(id);
      stats.generatedTokens++;
      const text = stop.push(id, stop.isEos(id) ? "" : stream.push(id));
      if (text) yield text;
      if (stop.stopped) {
        finish(stop.reason!);
        return;
      }
      if (i + 1 < maxTokens) {
        token[0] = id;
        engine.stepSeqs(token, seqs);
      }
      // Let the event loop run (stdout, signals) between tokens.
      if ((i & 7) === 7) await Promise.resolve();
    }
    const tail = stop.pushText(stream.flush()) + stop.flush();
    if (tail) yield tail;
    finish("max_tokens");
  }
}
