/**
 * One completion from admission to its last token: the prompt ids, the sampling options, and the
 * output side, which turns sampled ids into text pieces (stop strings held back and cut, EOS ids
 * ending it) exactly as `Generator` does, and hands them to a sink.
 *
 * @module
 */
import type { SamplingOptions } from "../sampling.ts";
import { StopChecker } from "../sampling.ts";
import type { StreamDecoder } from "../tokenizer.ts";

/**
 * Why a completion ended, in OpenAI's words.
 *
 * @example
 * ```ts
 * const reason: FinishReason = "length"; // max_tokens reached
 * ```
 */
export type FinishReason = "stop" | "length";

/**
 * Token counts of a finished completion, as OpenAI's `usage`.
 *
 * @example
 * ```ts
 * const usage: Usage = { prompt_tokens: 12, completion_tokens: 16, total_tokens: 28, prompt_tokens_details: { cached_tokens: 0 } };
 * ```
 */
export interface Usage {
  /** Tokens of the prompt. */
  prompt_tokens: number;
  /** Tokens sampled (an EOS that ended the completion included). */
  completion_tokens: number;
  /** The sum. */
  total_tokens: number;
  /** How much of the prompt came from the state cache. */
  prompt_tokens_details: { cached_tokens: number };
}

/**
 * Where a job's output goes.
 *
 * @example
 * ```ts
 * const sink: JobSink = { text: (t) => out.push(t), finish: (reason, usage) => done(reason, usage), fail: (e) => reject(e) };
 * ```
 */
export interface JobSink {
  /** A piece of text (never empty). */
  text(piece: string): void;
  /** The completion ended. */
  finish(reason: FinishReason, usage: Usage): void;
  /** The engine failed while running this job. */
  fail(error: Error): void;
}

/**
 * A completion's work and output state.
 *
 * @example
 * ```ts
 * const job = new CompletionJob(ids, 16, { temperature: 0 }, [], eosIds, tokenizer.decodeStream(), sink);
 * scheduler.submit(job);
 * ```
 */
export class CompletionJob {
  /** Prompt token ids. */
  readonly promptIds: Int32Array;
  /** Most tokens to sample. */
  readonly maxTokens: number;
  /** Sampling options (with the seed). */
  readonly sampling: SamplingOptions;
  /** Prompt tokens restored from the state cache (set at admission). */
  cachedTokens = 0;
  /** Tokens sampled so far. */
  generated = 0;
  #stop: StopChecker;
  #decoder: StreamDecoder;
  #sink: JobSink;
  #aborted = false;
  #done = false;

  /** A job for `promptIds` whose output goes to `sink`. */
  constructor(
    promptIds: ArrayLike<number>,
    maxTokens: number,
    sampling: SamplingOptions,
    stop: readonly string[],
    eosIds: readonly number[],
    decoder: StreamDecoder,
    sink: JobSink,
  ) {
    this.promptIds = Int32Array.from(promptIds);
    this.maxTokens = maxTokens;
    this.sampling = sampling;
    this.#stop = new StopChecker({ eosTokenIds: eosIds, stopStrings: stop });
    this.#decoder = decoder;
    this.#sink = sink;
  }

  /** Whether the client went away. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** Whether the job has finished (or failed, or was aborted). */
  get done(): boolean {
    return this.#done || this.#aborted;
  }

  /** The client went away: the scheduler drops the job at its next step. */
  abort(): void {
    this.#aborted = true;
  }

  /**
   * Takes a sampled id: emits the text it completes, and returns true when the job is finished (EOS, a
   * stop string, or max_tokens), after telling the sink.
   */
  accept(id: number): boolean {
    this.generated++;
    const stop = this.#stop;
    const text = stop.push(id, stop.isEos(id) ? "" : this.#decoder.push(id));
    if (text) this.#sink.text(text);
    if (stop.stopped) {
      this.finish("stop");
      return true;
    }
    if (this.generated >= this.maxTokens) {
      const tail = stop.pushText(this.#decoder.flush()) + stop.flush();
      if (tail) this.#sink.text(tail);
      this.finish(stop.stopped ? "stop" : "length");
      return true;
    }
    return false;
  }

  /** Ends the job (max_tokens 0 ends it before any token). */
  finish(reason: FinishReason): void {
    if (this.#done) return;
    this.#done = true;
    const prompt = this.promptIds.length;
    this.#sink.finish(reason, {
      prompt_tokens: prompt,
      completion_tokens: this.generated,
      total_tokens: prompt + this.generated,
      prompt_tokens_details: { cached_tokens: this.cachedTokens },
    });
  }

  /** Ends the job with an error. */
  fail(error: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#sink.fail(error);
  }
}
