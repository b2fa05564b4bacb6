/**
 * Prompt states kept for reuse: a Mamba2 sequence's whole context is its fixed-size state, so a prompt
 * that extends a cached one can start from that state and prefill only the rest.
 *
 * Exactness decides what can be reused. A prompt prefilled in one call and the same prompt prefilled
 * in two calls give the same bits only when the split falls on a multiple of the model's chunk size
 * (the chunked scan groups tokens by chunk; measured on both backends). So entries are kept at
 * chunk-aligned lengths, and at the whole prompt's length together with its last logits row: a hit is
 * either an aligned prefix (continue prefilling from there) or the whole prompt (sample at once), and
 * either gives exactly the response the uncached request would.
 *
 * @module
 */

/**
 * A cached prompt prefix: the state after its tokens and the logits row of its last token.
 *
 * @example
 * ```ts
 * const hit: CacheEntry | undefined = cache.lookup(promptIds);
 * if (hit) engine.loadState(hit.state, seq);
 * ```
 */
export interface CacheEntry {
  /** The prefix. */
  readonly tokens: Int32Array;
  /** `MambaEngine.saveState` after the prefix. */
  readonly state: Uint8Array;
  /** The logits row after the prefix's last token. */
  readonly logits: Float32Array;
}

/** Mixes a token into a 32-bit hash (two independent ones make a 64-bit key). */
function mix(h: number, id: number, k: number): number {
  h = Math.imul(h ^ id, k);
  return (h ^ (h >>> 15)) | 0;
}

/**
 * An LRU of {@linkcode CacheEntry} bounded in bytes.
 *
 * @example
 * ```ts
 * const cache = new StateCache(1 << 30, engine.config.chunkSize);
 * cache.store(ids, engine.saveState(seq), engine.row(seq).slice());
 * cache.lookup(ids)?.tokens.length; // ids.length
 * ```
 */
export class StateCache {
  /** Most bytes kept (states, logits rows and token ids). */
  readonly maxBytes: number;
  /** Prefix lengths that are multiples of this can be continued exactly. */
  readonly align: number;
  #entries = new Map<string, CacheEntry>(); // in LRU order, least recent first
  #spare: Uint8Array[] = []; // state buffers of evicted entries, for the next ones
  #bytes = 0;
  #hits = 0;
  #lookups = 0;

  /** A cache of at most `maxBytes`; `align` is the model's chunk size. */
  constructor(maxBytes: number, align: number) {
    if (!(maxBytes >= 0) || !Number.isInteger(align) || align < 1) {
      throw new RangeError(`StateCache: maxBytes must be ≥ 0 and align ≥ 1, got ${maxBytes}, ${align}`);
    }
    this.maxBytes = maxBytes;
    this.align = align;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Lookups and hits so far. */
  get stats(): { lookups: number; hits: number } {
    return { lookups: this.#lookups, hits: this.#hits };
  }

  static #key(tokens: ArrayLike<number>): string {
    let h1 = 0x811c9dc5, h2 = 0x2545f491;
    for (let i = 0; i < tokens.length; i++) {
      h1 = mix(h1, tokens[i], 0x01000193);
      h2 = mix(h2, tokens[i], 0x5bd1e995);
    }
    return StateCache.#keyOf(tokens.length, h1, h2);
  }

  static #keyOf(length: number, h1: number, h2: number): string {
    return `${length}:${h1}:${h2}`;
  }

  /** Whether the prefix `tokens` is held (then storing it again would store the same bits). */
  has(tokens: ArrayLike<number>): boolean {
    const entry = this.#entries.get(StateCache.#key(tokens));
    return entry !== undefined && entry.tokens.length === tokens.length &&
      StateCache.#isPrefix(entry.tokens, tokens);
  }

  /**
   * A state buffer of `bytes` bytes left by an evicted entry, to save the next state into (allocating
   * and zeroing tens of megabytes per prompt shows), or undefined.
   */
  spare(bytes: number): Uint8Array | undefined {
    const i = this.#spare.findIndex((b) => b.byteLength === bytes);
    return i < 0 ? undefined : this.#spare.splice(i, 1)[0];
  }

  /**
   * The longest entry `prompt` can use: the whole prompt, or the longest aligned proper prefix. The
   * entry becomes the most recently used.
   */
  lookup(prompt: ArrayLike<number>): CacheEntry | undefined {
    this.#lookups++;
    if (this.#entries.size === 0) return undefined;
    const keys: string[] = []; // candidate keys, shortest first
    let h1 = 0x811c9dc5, h2 = 0x2545f491;
    for (let i = 0; i < prompt.length; i++) {
      h1 = mix(h1, prompt[i], 0x01000193);
      h2 = mix(h2, prompt[i], 0x5bd1e995);
      const n = i + 1;
      if (n % this.align === 0 || n === prompt.length) keys.push(StateCache.#keyOf(n, h1, h2));
    }
    for (let k = keys.length - 1; k >= 0; k--) {
      const entry = this.#entries.get(keys[k]);
      if (!entry || !StateCache.#isPrefix(entry.tokens, prompt)) continue;
      this.#entries.delete(keys[k]);
      this.#entries.set(keys[k], entry);
      this.#hits++;
      return entry;
    }
    return undefined;
  }

  static #isPrefix(prefix: Int32Array, of: ArrayLike<number>): boolean {
    if (prefix.length > of.length) return false;
    for (let i = 0; i < prefix.length; i++) if (prefix[i] !== of[i]) return false;
    return true;
  }

  /**
   * Keeps `state` and `logits` for the prefix `tokens` (copied), evicting the least recently used
   * entries beyond `maxBytes`. An entry larger than the whole cache is not kept.
   */
  store(tokens: ArrayLike<number>, state: Uint8Array, logits: Float32Array): void {
    const key = StateCache.#key(tokens);
    const old = this.#entries.get(key);
    if (old) this.#evict(key, old);
    const entry: CacheEntry = { tokens: Int32Array.from(tokens), state, logits };
    const size = StateCache.#size(entry);
    if (size > this.maxBytes) return;
    this.#entries.set(key, entry);
    this.#bytes += size;
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#evict(k, e);
    }
  }

  #evict(key: string, e: CacheEntry): void {
    this.#entries.delete(key);
    this.#bytes -= StateCache.#size(e);
    if (this.#spare.length < 2) this.#spare.push(e.state);
  }

  static #size(e: CacheEntry): number {
    return e.tokens.byteLength + e.state.byteLength + e.logits.byteLength;
  }
}
