/**
 * Byte-level BPE internals of the {@link Tokenizer} (see `tokenizer.ts`): the GPT-2 byte ↔ unicode
 * alphabet, the pre-tokenization pattern, and the BPE merge loop with its word cache.
 *
 * @module
 */

import { TokenizerError } from "./tokenizer_json.ts";

/**
 * The GPT-2 byte-level alphabet: `BYTE_TO_CHAR[b]` is the printable character that stands for byte `b`
 * in byte-level BPE vocabularies (printable Latin-1 bytes map to themselves, the others to U+0100…).
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
})();

/** Inverse of {@link BYTE_TO_CHAR}: UTF-16 code of an alphabet character → byte (or -1). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(512).fill(-1);
  for (let b = 0; b < 256; b++) table[BYTE_TO_CHAR[b].charCodeAt(0)] = b;
  return table;
})();

/**
 * The GPT-2 pre-tokenization pattern used by the `ByteLevel` pre-tokenizer. `\s` is spelled
 * `\p{White_Space}` because the Rust library's regex engine uses the Unicode White_Space property
 * (U+0085 is whitespace, U+FEFF is not), unlike JavaScript's `\s`.
 */
export const GPT2_SPLIT_PATTERN: RegExp =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

const NO_RANK = 0x7fffffff;
/** Words longer than this (in bytes) are merged with a heap instead of repeated linear scans. */
const HEAP_THRESHOLD = 96;
/** Pieces longer than this (UTF-16 units) are not cached. */
const CACHE_MAX_PIECE = 256;
const CACHE_CAPACITY = 65536;

/** Options of {@link BpeModel}, read from the `model` object of a `tokenizer.json`. */
export interface BpeModelOptions {
  /** Token string → id. */
  vocab: Record<string, number>;
  /** Merges in priority order, as `"a b"` strings or `[a, b]` pairs. */
  merges: readonly (string | readonly [string, string])[];
  /** Unknown-token string, or null (unknown symbols are then dropped, as the Rust library does). */
  unkToken?: string | null;
  /** Merge consecutive unknown symbols into one unknown token. */
  fuseUnk?: boolean;
  /** Emit a word's vocabulary entry directly when the whole word is in the vocabulary. */
  ignoreMerges?: boolean;
}

/**
 * Open-addressing hash table of merge pairs `(left id, right id) → rank`, in typed arrays.
 */
class PairTable {
  private readonly mask: number;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly rank: Int32Array;

  constructor(count: number) {
    let cap = 16;
    while (cap < count * 2) cap *= 2;
    this.mask = cap - 1;
    this.left = new Int32Array(cap).fill(-1);
    this.right = new Int32Array(cap);
    this.rank = new Int32Array(cap);
  }

  private slot(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0 & this.mask;
  }

  /** Inserts or overwrites (a later duplicate merge wins, as in the Rust library's map). */
  set(a: number, b: number, rank: number): void {
    let i = this.slot(a, b);
    while (this.left[i] !== -1 && (this.left[i] !== a || this.right[i] !== b)) i = (i + 1) & this.mask;
    this.left[i] = a;
    this.right[i] = b;
    this.rank[i] = rank;
  }

  get(a: number, b: number): number {
    let i = this.slot(a, b);
    for (;;) {
      const l = this.left[i];
      if (l === -1) return NO_RANK;
      if (l === a && this.right[i] === b) return this.rank[i];
      i = (i + 1) & this.mask;
    }
  }
}

/**
 * A byte-level BPE model: turns one pre-token (a piece of text) into token ids by merging the ids of its
 * UTF-8 bytes by merge rank, lowest rank first (leftmost on ties), exactly as the Rust `tokenizers`
 * BPE does without dropout.
 */
export class BpeModel {
  /** Token string → id of the model vocabulary (added tokens excluded). */
  readonly vocab: ReadonlyMap<string, number>;
  private readonly pairs: PairTable;
  private readonly mergeResult: Int32Array;
  /** Vocabulary id of each byte's alphabet character, or -1 when the vocabulary lacks it. */
  private readonly byteId: Int32Array = new Int32Array(256);
  private readonly unkId: number;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly cache = new Map<string, number[]>();
  private sym: Int32Array = new Int32Array(1024);
  private ranks: Int32Array = new Int32Array(1024);

  constructor(options: BpeModelOptions) {
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(options.vocab)) vocab.set(token, id);
    this.vocab = vocab;
    const merges = options.merges;
    this.pairs = new PairTable(merges.length);
    this.mergeResult = new Int32Array(merges.length);
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      let a: string, b: string;
      if (typeof m === "string") {
        const space = m.indexOf(" ");
        if (space < 0 || m.indexOf(" ", space + 1) >= 0) {
          throw new TokenizerError(`tokenizer: invalid merge "${m}" (expected "a b")`);
        }
        a = m.slice(0, space);
        b = m.slice(space + 1);
      } else {
        [a, b] = m;
      }
      const ia = vocab.get(a), ib = vocab.get(b), ir = vocab.get(a + b);
      if (ia === undefined || ib === undefined) {
        throw new TokenizerError(`tokenizer: merge "${a} ${b}" uses a token missing from the vocabulary`);
      }
      if (ir === undefined) {
        throw new TokenizerError(`tokenizer: merge result "${a}${b}" is missing from the vocabulary`);
      }
      this.pairs.set(ia, ib, r);
      this.mergeResult[r] = ir;
    }
    for (let b = 0; b < 256; b++) this.byteId[b] = vocab.get(BYTE_TO_CHAR[b]) ?? -1;
    const unk = options.unkToken ?? null;
    this.unkId = unk === null ? -1 : (vocab.get(unk) ?? -1);
    if (unk !== null && this.unkId < 0) {
      throw new TokenizerError(`tokenizer: unk_token "${unk}" is not in the vocabulary`);
    }
    this.fuseUnk = options.fuseUnk ?? false;
    this.ignoreMerges = options.ignoreMerges ?? false;
  }

  /** Encodes one pre-token and appends its ids to `out`. */
  encodePiece(piece: string, out: number[]): void {
    const cached = this.cache.get(piece);
    if (cached !== undefined) {
      for (let i = 0; i < cached.length; i++) out.push(cached[i]);
      return;
    }
    const ids = this.encodeUncached(piece);
    if (piece.length <= CACHE_MAX_PIECE) {
      if (this.cache.size >= CACHE_CAPACITY) this.cache.clear();
      this.cache.set(piece, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private encodeUncached(piece: string): number[] {
    if (this.ignoreMerges) {
      const id = this.vocab.get(byteLevelString(piece));
      if (id !== undefined) return [id];
    }
    const n = this.bytesToSymbols(piece);
    const count = n > HEAP_THRESHOLD ? this.mergeHeap(n) : this.mergeLinear(n);
    return Array.from(this.sym.subarray(0, count));
  }

  /** UTF-8 encodes `piece` into `this.sym` as byte-token ids; returns the symbol count. */
  private bytesToSymbols(piece: string): number {
    if (this.sym.length < piece.length * 3) {
      this.sym = new Int32Array(piece.length * 3);
      this.ranks = new Int32Array(piece.length * 3);
    }
    const sym = this.sym;
    let n = 0;
    let lastUnk = false;
    const push = (byte: number): void => {
      const id = this.byteId[byte];
      if (id >= 0) {
        sym[n++] = id;
        lastUnk = false;
      } else if (this.unkId >= 0) {
        if (!(this.fuseUnk && lastUnk)) sym[n++] = this.unkId;
        lastUnk = true;
      } // else: dropped, as the Rust library does without an unk token
    };
    for (let i = 0; i < piece.length; i++) {
      let c = piece.charCodeAt(i);
      if (c < 0x80) {
        push(c);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < piece.length ? piece.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
          i++;
        } else {
          c = 0xfffd; // lone surrogate: encoded as U+FFFD, like TextEncoder
        }
      }
      if (c < 0x800) {
        push(0xc0 | (c >> 6));
        push(0x80 | (c & 63));
      } else if (c < 0x10000) {
        push(0xe0 | (c >> 12));
        push(0x80 | ((c >> 6) & 63));
        push(0x80 | (c & 63));
      } else {
        push(0xf0 | (c >> 18));
        push(0x80 | ((c >> 12) & 63));
        push(0x80 | ((c >> 6) & 63));
        push(0x80 | (c & 63));
      }
    }
    return n;
  }

  /** Short words: keep the rank of every adjacent pair, merge the lowest (leftmost on ties). */
  private mergeLinear(n: number): number {
    const sym = this.sym, ranks = this.ranks, pairs = this.pairs;
    for (let i = 0; i + 1 < n; i++) ranks[i] = pairs.get(sym[i], sym[i + 1]);
    while (n > 1) {
      let best = NO_RANK, at = -1;
      for (let i = 0; i + 1 < n; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          at = i;
        }
      }
      if (at < 0) break;
      sym[at] = this.mergeResult[best];
      sym.copyWithin(at + 1, at + 2, n);
      ranks.copyWithin(at + 1, at + 2, n);
      n--;
      ranks[at] = at + 1 < n ? pairs.get(sym[at], sym[at + 1]) : NO_RANK;
      if (at > 0) ranks[at - 1] = pairs.get(sym[at - 1], sym[at]);
    }
    return n;
  }

  /** Long words: linked list of symbols and a binary min-heap of (rank, position) candidates. */
  private mergeHeap(n: number): number {
    const sym = this.sym, pairs = this.pairs;
    const next = new Int32Array(n), prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const alive = new Uint8Array(n).fill(1);
    const heap: number[] = [];
    // key = rank * 2^32 + position: exact in a float64 and ordered by rank, then position
    const pushPair = (pos: number): void => {
      const nx = next[pos];
      if (nx < 0) return;
      const r = pairs.get(sym[pos], sym[nx]);
      if (r === NO_RANK) return;
      heapPush(heap, r * 4294967296 + pos);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);
    while (heap.length > 0) {
      const key = heapPop(heap);
      const pos = key % 4294967296;
      const rank = (key - pos) / 4294967296;
      if (!alive[pos]) continue;
      const nx = next[pos];
      if (nx < 0 || pairs.get(sym[pos], sym[nx]) !== rank) continue; // stale entry
      sym[pos] = this.mergeResult[rank];
      alive[nx] = 0;
      next[pos] = next[nx];
      if (next[nx] >= 0) prev[next[nx]] = pos;
      if (prev[pos] >= 0) pushPair(prev[pos]);
      pushPair(pos);
    }
    let count = 0;
    for (let i = 0; i >= 0 && i < n; i = next[i]) sym[count++] = sym[i];
    return count;
  }
}

/** The byte-level alphabet spelling of `text`'s UTF-8 bytes. */
export function byteLevelString(text: string): string {
  let s = "";
  for (const b of new TextEncoder().encode(text)) s += BYTE_TO_CHAR[b];
  return s;
}

function heapPush(heap: number[], key: number): void {
  let i = heap.length;
  heap.push(key);
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (heap[p] <= key) break;
    heap[i] = heap[p];
    i = p;
  }
  heap[i] = key;
}

function heapPop(heap: number[]): number {
  const top = heap[0];
  const last = heap.pop()!;
  const n = heap.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && heap[c + 1] < heap[c]) c++;
      if (heap[c] >= last) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = last;
  }
  return top;
}
