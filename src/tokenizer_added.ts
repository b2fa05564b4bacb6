/**
 * Normalizers and added-token splitting of the {@link Tokenizer} (see `tokenizer.ts`), following the
 * semantics of the Rust `tokenizers` library.
 *
 * @module
 */

import { TokenizerError } from "./tokenizer_json.ts";

/**
 * A `normalizer` object of a `tokenizer.json` (only the types this module supports are listed).
 *
 * @example
 * ```ts
 * const normalizer: NormalizerJson = { type: "NFC" };
 * ```
 */
export type NormalizerJson =
  | { type: "NFC" | "NFD" | "NFKC" | "NFKD" | "Lowercase" }
  | { type: "Sequence"; normalizers: NormalizerJson[] };

/** A text → text normalization function. */
export type Normalize = (text: string) => string;

/** Builds the normalization function of a `normalizer` config (null → identity). */
export function buildNormalizer(config: NormalizerJson | null | undefined): Normalize | null {
  if (config === null || config === undefined) return null;
  switch (config.type) {
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD": {
      const form = config.type;
      return (s) => s.normalize(form);
    }
    case "Lowercase":
      return lowercase;
    case "Sequence": {
      const steps = config.normalizers.map(buildNormalizer).filter((f): f is Normalize => f !== null);
      return (s) => {
        for (const f of steps) s = f(s);
        return s;
      };
    }
    default:
      throw new TokenizerError(
        `tokenizer: unsupported normalizer type "${(config as { type: string }).type}"`,
      );
  }
}

/**
 * Lowercases code point by code point, as the Rust library does (so a final capital sigma becomes σ, not
 * the word-final ς that `String.prototype.toLowerCase` would produce).
 */
function lowercase(s: string): string {
  if (!s.includes("\u03a3")) return s.toLowerCase();
  let out = "";
  for (const ch of s) out += ch.toLowerCase();
  return out;
}

/**
 * An entry of `added_tokens` in a `tokenizer.json`.
 *
 * @example
 * ```ts
 * const token: AddedTokenJson = { id: 0, content: "<|endoftext|>", special: true, single_word: false, lstrip: false, rstrip: false, normalized: false };
 * ```
 */
export interface AddedTokenJson {
  /** Token id. */
  id: number;
  /** The literal text of the token. */
  content: string;
  /** Special tokens are skipped by `decode` by default. */
  special: boolean;
  /** Only match when not adjacent to a word character. */
  single_word?: boolean;
  /** Also take the whitespace on the left. */
  lstrip?: boolean;
  /** Also take the whitespace on the right. */
  rstrip?: boolean;
  /** Matched in the normalized text (true) or the raw text (false). */
  normalized?: boolean;
}

/** A piece of input: plain text to pre-tokenize, or an added token that is already an id. */
export type Segment = string | number;

const WHITESPACE = /\p{White_Space}/u;
/** Unicode `\w` (UTS #18), the word-character class the Rust library tests for `single_word`. */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

function escapeRegExp(s: string): string {
  return s.replace(/[\^$\\.*+?()[\]{}|/]/g, "\\$&");
}

/**
 * Splits text on one set of added tokens: leftmost-longest, non-overlapping matches, then the
 * `single_word`, `lstrip` and `rstrip` rules applied the way the Rust library does.
 */
export class AddedTokenSplitter {
  private readonly pattern: RegExp | null;
  private readonly byContent: Map<string, AddedTokenJson>;

  /** `contents[i]` is the string to match for `tokens[i]` (its normalized form where applicable). */
  constructor(tokens: readonly AddedTokenJson[], contents: readonly string[]) {
    this.byContent = new Map();
    tokens.forEach((t, i) => {
      if (contents[i].length > 0 && !this.byContent.has(contents[i])) this.byContent.set(contents[i], t);
    });
    const sorted = [...this.byContent.keys()].sort((a, b) => b.length - a.length);
    // An alternation sorted longest first finds, at the leftmost position, the longest token.
    this.pattern = sorted.length === 0 ? null : new RegExp(sorted.map(escapeRegExp).join("|"), "gu");
  }

  /** Whether there is nothing to match. */
  get empty(): boolean {
    return this.pattern === null;
  }

  /**
   * Appends to `out` the segments of `text`: strings for the text between tokens, ids for tokens.
   * Special tokens are left as text when `parseSpecial` is false.
   */
  split(text: string, parseSpecial: boolean, out: Segment[]): void {
    const re = this.pattern;
    if (re === null || text.length === 0) {
      if (text.length > 0) out.push(text);
      return;
    }
    re.lastIndex = 0;
    let offset = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const token = this.byContent.get(m[0])!;
      let start = m.index, stop = start + m[0].length;
      if (!parseSpecial && token.special) continue;
      if (token.single_word) {
        const startOk = start === 0 || !WORD_CHAR.test(lastChar(text, start));
        const stopOk = stop === text.length || !WORD_CHAR.test(firstChar(text, stop));
        if (!startOk || !stopOk) continue;
      }
      if (token.lstrip) {
        let s = start;
        while (s > 0) {
          const c = lastChar(text, s);
          if (!WHITESPACE.test(c)) break;
          s -= c.length;
        }
        start = Math.max(s, offset);
      }
      if (token.rstrip) {
        while (stop < text.length) {
          const c = firstChar(text, stop);
          if (!WHITESPACE.test(c)) break;
          stop += c.length;
        }
      }
      if (offset < start) out.push(text.slice(offset, start));
      out.push(token.id);
      offset = stop;
    }
    if (offset < text.length) out.push(text.slice(offset));
  }
}

function lastChar(s: string, end: number): string {
  const c = s.charCodeAt(end - 1);
  if (c >= 0xdc00 && c <= 0xdfff && end >= 2) {
    const h = s.charCodeAt(end - 2);
    if (h >= 0xd800 && h <= 0xdbff) return s.slice(end - 2, end);
  }
  return s[end - 1];
}

function firstChar(s: string, start: number): string {
  const cp = s.codePointAt(start)!;
  return cp > 0xffff ? s.slice(start, start + 2) : s[start];
}
