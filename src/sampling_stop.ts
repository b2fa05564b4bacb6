/**
 * Stop conditions for generation loops: EOS token ids and stop strings (see {@link StopChecker} and
 * {@link checkStopStrings}). Re-exported by `sampling.ts`.
 *
 * @module
 */

/**
 * Result of {@link checkStopStrings}.
 *
 * @example
 * ```ts
 * const check: StopStringCheck = checkStopStrings("Yes.\n\nNo", ["\n\n"]);
 * console.log(check.index); // 4
 * ```
 */
export interface StopStringCheck {
  /** Index in the text of the earliest stop string, or -1 when none occurs. */
  index: number;
  /** The stop string found at `index` (the longest one if several start there), or null. */
  stopString: string | null;
  /**
   * How many characters at the end of the text must be held back because they could be the beginning
   * of a stop string (0 when a stop string was found).
   */
  holdBack: number;
  /**
   * How much of the text can be shown: up to the stop string when one was found, otherwise
   * `text.length - holdBack`.
   */
  safeLength: number;
}

/**
 * Looks for stop strings in the text decoded so far.
 *
 * @example
 * ```ts
 * checkStopStrings("Hello\n\nBye", ["\n\n"]); // { index: 5, stopString: "\n\n", holdBack: 0, safeLength: 5 }
 * checkStopStrings("Hello\n", ["\n\n"]);      // { index: -1, stopString: null, holdBack: 1, safeLength: 5 }
 * ```
 */
export function checkStopStrings(text: string, stopStrings: readonly string[]): StopStringCheck {
  let index = -1;
  let found: string | null = null;
  for (const stop of stopStrings) {
    if (stop.length === 0) continue;
    const at = text.indexOf(stop);
    if (at < 0) continue;
    if (index < 0 || at < index || (at === index && stop.length > found!.length)) {
      index = at;
      found = stop;
    }
  }
  if (index >= 0) return { index, stopString: found, holdBack: 0, safeLength: index };
  const holdBack = partialStopSuffix(text, stopStrings);
  return { index: -1, stopString: null, holdBack, safeLength: text.length - holdBack };
}

/** Longest suffix of `text` that is a proper prefix of one of the stop strings. */
function partialStopSuffix(text: string, stopStrings: readonly string[]): number {
  let best = 0;
  for (const stop of stopStrings) {
    for (let k = Math.min(stop.length - 1, text.length); k > best; k--) {
      let match = true;
      const base = text.length - k;
      for (let j = 0; j < k; j++) {
        if (text.charCodeAt(base + j) !== stop.charCodeAt(j)) {
          match = false;
          break;
        }
      }
      if (match) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/**
 * Options of {@link StopChecker}.
 *
 * @example
 * ```ts
 * const stop = new StopChecker({ eosTokenIds: [0], stopStrings: ["\n\n"] } satisfies StopCheckerOptions);
 * ```
 */
export interface StopCheckerOptions {
  /** Token ids that end generation (e.g. `<|endoftext|>` = 0 for GPT-NeoX). */
  eosTokenIds?: Iterable<number>;
  /** Strings that end generation; the text from the stop string on is not emitted. */
  stopStrings?: readonly string[];
}

/**
 * Incremental stop detection for a generation loop: feed each sampled id with its decoded text piece,
 * emit what it returns. Text that might be the start of a stop string is held back until it is known
 * not to be; the stop string itself and anything after it are never returned. Within one pushed piece
 * the earliest-starting stop string wins; so when one stop string contains another (e.g. "c" and
 * "abcd"), which one fires can depend on how the text was split into pieces.
 *
 * @example
 * ```ts
 * const stop = new StopChecker({ eosTokenIds: [0], stopStrings: ["\n\n"] });
 * const stream = tokenizer.decodeStream();
 * while (!stop.stopped) {
 *   const id = sampler.sample(nextLogits(), history);
 *   history.push(id);
 *   write(stop.push(id, stream.push(id)));
 * }
 * write(stop.flush());
 * ```
 */
export class StopChecker {
  private readonly eos: Set<number>;
  private readonly stops: readonly string[];
  private held = "";
  private why: "eos" | "stop_string" | null = null;
  private matched: string | null = null;

  /**
   * Creates a checker.
   *
   * @param options EOS ids and stop strings
   */
  constructor(options: StopCheckerOptions = {}) {
    this.eos = new Set(options.eosTokenIds ?? []);
    this.stops = (options.stopStrings ?? []).filter((s) => s.length > 0);
  }

  /** Whether generation should end. */
  get stopped(): boolean {
    return this.why !== null;
  }

  /** Why generation ended: an EOS id, a stop string, or null while running. */
  get reason(): "eos" | "stop_string" | null {
    return this.why;
  }

  /** The stop string that ended generation, if any. */
  get stopString(): string | null {
    return this.matched;
  }

  /** Whether `id` is one of the EOS ids. */
  isEos(id: number): boolean {
    return this.eos.has(id);
  }

  /**
   * Feeds a sampled id and its decoded piece; returns the text that can be shown now. An EOS id stops
   * (its piece is dropped) and releases the held-back text.
   */
  push(id: number, piece: string): string {
    if (this.why !== null) return "";
    if (this.eos.has(id)) {
      this.why = "eos";
      return this.flush();
    }
    return this.pushText(piece);
  }

  /** Feeds decoded text without an id (no EOS check); returns the text that can be shown now. */
  pushText(piece: string): string {
    if (this.why !== null) return "";
    const text = this.held + piece;
    if (this.stops.length === 0) {
      this.held = "";
      return text;
    }
    const check = checkStopStrings(text, this.stops);
    if (check.index >= 0) {
      this.why = "stop_string";
      this.matched = check.stopString;
      this.held = "";
      return text.slice(0, check.index);
    }
    this.held = text.slice(check.safeLength);
    return text.slice(0, check.safeLength);
  }

  /** Returns (and clears) the held-back text: call when generation ends for another reason. */
  flush(): string {
    const out = this.held;
    this.held = "";
    return out;
  }
}
