/**
 * Continuous batching over one engine: each of its `batchSize` sequences is a slot. A job waits in a
 * bounded queue, takes the lowest free slot (starting from the longest usable cached prefix of its
 * prompt), has its prompt prefilled one block per step, then samples and steps with every other
 * decoding slot, one native call each per step, until it finishes and frees the slot.
 *
 * One step of the loop: drop aborted jobs, admit queued ones, prefill one block of the
 * longest-waiting prefilling slot, then sample every decoding slot and step the ones that continue
 * (only those: idle and prefilling slots cost no state traffic), then let the event loop run (I/O,
 * new requests, disconnects). So a new prompt delays running streams by at most one block per token.
 *
 * Blocks end at multiples of the block size counted from the prompt's start, so a prompt is split the
 * same way whatever else runs, and every split falls on a chunk boundary, where split prefills equal a
 * whole one bit for bit: a response does not depend on the other requests, nor on the cache.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { MambaEngine } from "../engine.ts";
import { ApiError } from "./errors.ts";
import type { CompletionJob } from "./job.ts";
import type { StateCache } from "./state_cache.ts";

/**
 * Options of a {@linkcode Scheduler}.
 *
 * @example
 * ```ts
 * const options: SchedulerOptions = { maxQueue: 64, prefillBlock: 256, cache: new StateCache(1 << 30, 256), vocabLimit: 50277 };
 * ```
 */
export interface SchedulerOptions {
  /** Jobs that may wait for a slot beyond the free ones; more are refused with 429. */
  maxQueue: number;
  /** Prompt tokens per prefill step (rounded up to a multiple of the model's chunk size). */
  prefillBlock: number;
  /** Prompt states to reuse, or null. */
  cache: StateCache | null;
  /** Sample only ids below this (the tokenizer's vocabulary). */
  vocabLimit: number;
}

/** A job in a slot: how much of its prompt is in the state, and whether it is decoding. */
interface Slot {
  readonly job: CompletionJob;
  readonly seq: number;
  /** Admission order: the longest-waiting prompt is prefilled first. */
  readonly admitted: number;
  /** Prompt tokens in the state. */
  pos: number;
  decoding: boolean;
}

/**
 * Runs jobs on an engine's sequences.
 *
 * @example
 * ```ts
 * const scheduler = new Scheduler(engine, { maxQueue: 64, prefillBlock: 256, cache: null, vocabLimit: tokenizer.vocabSize });
 * scheduler.submit(job); // runs in the background; the job's sink receives its output
 * ```
 */
export class Scheduler {
  /** The engine whose sequences are the slots. */
  readonly engine: MambaEngine;
  /** Prompt tokens per prefill step. */
  readonly prefillBlock: number;
  readonly #options: SchedulerOptions;
  readonly #slots: (Slot | null)[];
  readonly #queue: CompletionJob[] = [];
  #admissions = 0;
  #steps = 0;
  #wake: (() => void) | null = null;
  #closed = false;
  #seconds = 0; // a moving average of how long a job holds a slot, for Retry-After
  readonly #started = new Map<CompletionJob, number>();
  readonly #stepSeqs: Int32Array[]; // [n]: a view of n sequences (made once: a step allocates nothing)
  readonly #stepTokens: Int32Array[];
  readonly #decodeSeqs: Int32Array[];
  readonly #decodeSlots: Slot[] = [];

  /** A scheduler over `engine` (its batch size is the number of slots). */
  constructor(engine: MambaEngine, options: SchedulerOptions) {
    this.engine = engine;
    const chunk = engine.config.chunkSize;
    this.prefillBlock = Math.max(chunk, Math.ceil(options.prefillBlock / chunk) * chunk);
    this.#options = options;
    this.#slots = new Array(engine.batchSize).fill(null);
    const views = () => {
      const buffer = new Int32Array(engine.batchSize);
      return Array.from({ length: engine.batchSize + 1 }, (_, n) => buffer.subarray(0, n));
    };
    this.#stepSeqs = views();
    this.#stepTokens = views();
    this.#decodeSeqs = views();
    void this.#loop();
  }

  /** Slots holding a job. */
  get busy(): number {
    return this.#slots.filter((s) => s !== null).length;
  }

  /** Loop iterations that did work (a prefill block and/or a decode step). */
  get steps(): number {
    return this.#steps;
  }

  /** Jobs waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Seconds a refused client should wait: the queue ahead of it, served `batchSize` at a time. */
  retryAfter(): number {
    const perJob = this.#seconds || 1;
    return Math.max(1, Math.ceil(((this.#queue.length + 1) * perJob) / this.#slots.length));
  }

  /** Queues a job; an {@linkcode ApiError} 429 when the queue is full, 503 after {@linkcode Scheduler.close}. */
  submit(job: CompletionJob): void {
    if (this.#closed) {
      throw new ApiError(503, "the server is shutting down", {
        code: "shutting_down",
        headers: { "retry-after": "5" },
      });
    }
    if (job.maxTokens === 0) return job.finish("length");
    const free = this.#slots.length - this.busy;
    if (this.#queue.length >= this.#options.maxQueue + free) {
      throw new ApiError(429, `the server is busy: ${this.#queue.length} requests are waiting; retry later`, {
        type: "rate_limit_error",
        code: "queue_full",
        headers: { "retry-after": String(this.retryAfter()) },
      });
    }
    this.#queue.push(job);
    this.#wake?.();
  }

  /** Stops taking jobs; queued and running ones end with 503. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const error = new ApiError(503, "the server is shutting down", { code: "shutting_down" });
    for (const job of this.#queue.splice(0)) job.fail(error);
    for (const [i, slot] of this.#slots.entries()) {
      if (slot) {
        slot.job.fail(error);
        this.#slots[i] = null;
      }
    }
    this.#wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      this.#dropAborted();
      this.#admit();
      const prefilled = this.#prefillBlock();
      const decoded = this.#decodeStep();
      if (prefilled || decoded) this.#steps++;
      if (!prefilled && !decoded && this.#queue.length === 0) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = null;
      } else {
        // A macrotask, so that HTTP reads and writes happen between steps (setTimeout(0) waits ≥ 1 ms).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  #free(slot: Slot): void {
    this.#slots[slot.seq] = null;
    const t0 = this.#started.get(slot.job);
    this.#started.delete(slot.job);
    if (t0 !== undefined) {
      const s = (performance.now() - t0) / 1000;
      this.#seconds = this.#seconds ? 0.9 * this.#seconds + 0.1 * s : s;
    }
  }

  /** A client that went away frees its slot here, before the next step. */
  #dropAborted(): void {
    for (const slot of this.#slots) if (slot?.job.done) this.#free(slot);
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i].done) this.#queue.splice(i, 1);
  }

  #admit(): void {
    const { engine } = this;
    const cache = this.#options.cache;
    for (let seq = 0; seq < this.#slots.length && this.#queue.length > 0; seq++) {
      if (this.#slots[seq]) continue;
      const job = this.#queue.shift()!;
      const ids = job.promptIds;
      try {
        const hit = cache?.lookup(ids);
        if (hit) {
          engine.loadState(hit.state, seq);
          if (hit.tokens.length === ids.length) engine.row(seq).set(hit.logits);
        } else {
          engine.reset(seq);
        }
        job.cachedTokens = hit?.tokens.length ?? 0;
        engine.setSampler(seq, job.sampling, ids, this.#options.vocabLimit);
      } catch (e) {
        job.fail(e as Error);
        continue;
      }
      this.#started.set(job, performance.now());
      this.#slots[seq] = {
        job,
        seq,
        admitted: this.#admissions++,
        pos: job.cachedTokens,
        decoding: job.cachedTokens === ids.length,
      };
    }
  }

  /**
   * One block of the longest-waiting prompt. Blocks end at multiples of prefillBlock, and, with a cache,
   * also at the prompt's last chunk boundary, whose state is kept (a longer prompt can continue from it)
   * as is the whole prompt's, with its logits row.
   */
  #prefillBlock(): boolean {
    let slot: Slot | null = null;
    for (const s of this.#slots) if (s && !s.decoding && (!slot || s.admitted < slot.admitted)) slot = s;
    if (!slot) return false;
    const { engine } = this;
    const cache = this.#options.cache;
    const ids = slot.job.promptIds, L = ids.length, B = this.prefillBlock;
    const aligned = Math.floor(L / engine.config.chunkSize) * engine.config.chunkSize;
    let end = Math.min(L, (Math.floor(slot.pos / B) + 1) * B);
    if (cache && slot.pos < aligned && aligned < end) end = aligned;
    try {
      engine.prefill(ids.subarray(slot.pos, end), slot.seq);
      slot.pos = end;
      const prefix = ids.subarray(0, end);
      if (cache && (end === L || end === aligned) && !cache.has(prefix)) {
        const state = engine.saveState(slot.seq, cache.spare(engine.stateBytes));
        cache.store(prefix, state, engine.row(slot.seq).slice());
      }
    } catch (e) {
      slot.job.fail(e as Error);
      this.#free(slot);
      return true;
    }
    if (end === L) slot.decoding = true;
    return true;
  }

  /** Samples every decoding slot (one call), hands out the tokens, steps those that go on (one call). */
  #decodeStep(): boolean {
    const slots = this.#decodeSlots;
    slots.length = 0;
    for (const s of this.#slots) if (s?.decoding) slots.push(s);
    if (slots.length === 0) return false;
    const { engine } = this;
    const seqs = this.#decodeSeqs[slots.length], stepSeqs = this.#stepSeqs, stepTokens = this.#stepTokens;
    for (let i = 0; i < slots.length; i++) seqs[i] = slots[i].seq;
    let n = 0;
    try {
      const tokens = engine.sampleSeqs(seqs);
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[i], id = tokens[i];
        if (slot.job.accept(id)) {
          this.#free(slot);
        } else {
          stepSeqs[slots.length][n] = slot.seq;
          stepTokens[slots.length][n] = id;
          n++;
        }
      }
      if (n > 0) engine.stepSeqs(stepTokens[n], stepSeqs[n]);
    } catch (e) {
      for (const slot of slots) {
        if (this.#slots[slot.seq] === slot) {
          slot.job.fail(e as Error);
          this.#free(slot);
        }
      }
    }
    return true;
  }
}
