/**
 * Token sampling on a row of logits: greedy, temperature, top-k, top-p (nucleus), min-p and
 * repetition penalty, driven by a small seeded PRNG, plus stop conditions (EOS ids and stop strings).
 *
 * The logits row (a `Float32Array` of `vocabSize` entries, typically a zero-copy view of memory owned
 * by native code) is only read, never written. {@link Sampler} allocates its scratch arrays once, in
 * its constructor: sampling a token allocates nothing.
 *
 * @module
 */

export {
  checkStopStrings,
  StopChecker,
  type StopCheckerOptions,
  type StopStringCheck,
} from "./sampling_stop.ts";

/**
 * xoshiro128** pseudo-random generator (32-bit state words), seeded from a number through splitmix32.
 * Deterministic: the same seed gives the same sequence on every platform.
 *
 * @example
 * ```ts
 * const rng = new Xoshiro128(42);
 * const u = rng.nextFloat(); // in [0, 1)
 * ```
 */
export class Xoshiro128 {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /**
   * Seeds a generator.
   *
   * @param seed any finite number (its integer part is used)
   */
  constructor(seed: number) {
    this.seed(seed);
  }

  /**
   * A generator with the given raw state (four 32-bit words, not all zero), e.g. to check the
   * implementation against the reference sequence of xoshiro128**.
   */
  static fromState(state: readonly [number, number, number, number]): Xoshiro128 {
    if (state.every((w) => (w | 0) === 0)) throw new RangeError("xoshiro128 state must not be all zero");
    const rng = new Xoshiro128(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = state.map((w) => w | 0);
    return rng;
  }

  /** Restarts the sequence from `seed`. */
  seed(seed: number): void {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
    seed = Math.trunc(seed);
    const lo = seed >>> 0; // ToUint32 of the integer: low 32 bits (two's complement for negatives)
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let state = lo ^ Math.imul(hi ^ 0x5bd1e995, 0x27d4eb2d);
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) | 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** The four 32-bit state words (unsigned), e.g. to hand the sequence to the native sampler. */
  state(): [number, number, number, number] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Next 32-bit unsigned integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r >>> 0;
  }

  /** Next float, uniform in [0, 1), with 53 random bits. */
  nextFloat(): number {
    const a = this.nextUint32() >>> 5, b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Options of {@link Sampler}. Every filter is off by default; the defaults sample from softmax(logits).
 *
 * @example
 * ```ts
 * const options: SamplingOptions = { temperature: 0.8, topP: 0.95, repetitionPenalty: 1.1, seed: 42 };
 * const sampler = new Sampler(engine.vocabSize, options);
 * ```
 */
export interface SamplingOptions {
  /** Softmax temperature; 0 (or below) means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 disables. Default 0. `topK: 1` is greedy. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches `topP`; 1 disables. Default 1. */
  topP?: number;
  /** Drop tokens whose probability is below `minP` times the top token's; 0 disables. Default 0. */
  minP?: number;
  /**
   * Penalty for tokens already seen (the `previous` ids passed to {@link Sampler.sample}): a positive
   * logit is divided by it, a negative one multiplied (CTRL / Hugging Face convention). 1 disables.
   * Default 1.
   */
  repetitionPenalty?: number;
  /** PRNG seed; the same seed, options and logits give the same tokens. Default: a random seed. */
  seed?: number;
}

/**
 * The resolved options of a {@link Sampler}.
 *
 * @example
 * ```ts
 * const resolved: ResolvedSamplingOptions = new Sampler(50288, { topK: 40 }).options;
 * console.log(resolved.temperature); // 1
 * ```
 */
export interface ResolvedSamplingOptions {
  /** See {@link SamplingOptions.temperature}. */
  temperature: number;
  /** See {@link SamplingOptions.topK}. */
  topK: number;
  /** See {@link SamplingOptions.topP}. */
  topP: number;
  /** See {@link SamplingOptions.minP}. */
  minP: number;
  /** See {@link SamplingOptions.repetitionPenalty}. */
  repetitionPenalty: number;
}

/**
 * Index of the largest logit (the lowest index among equal maxima; NaN entries are ignored).
 * Returns 0 when no entry is a number.
 *
 * @example
 * ```ts
 * const next = argmax(engine.step([token])); // greedy decoding
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = -Infinity, at = 0, found = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v > best || (!found && v === -Infinity)) {
      best = v;
      at = i;
      found = true;
    }
  }
  return at;
}

/**
 * Samples token ids from logits rows. Processing order (as in Hugging Face `transformers`):
 * repetition penalty → temperature → top-k → top-p → min-p → draw. Top-p is computed on the
 * distribution left by top-k; min-p is relative to the most likely token, so it does not depend on the
 * order. Ties between equal logits are broken by the lower token id.
 *
 * @example
 * ```ts
 * const sampler = new Sampler(50288, { temperature: 0.8, topP: 0.95, repetitionPenalty: 1.1, seed: 1 });
 * const history: number[] = [...promptIds];
 * const id = sampler.sample(logitsRow, history); // logitsRow: Float32Array(50288), left untouched
 * history.push(id);
 * ```
 */
export class Sampler {
  /** Length of the logits rows this sampler accepts. */
  readonly vocabSize: number;
  /** The generator behind the draws. */
  readonly rng: Xoshiro128;
  private opts: ResolvedSamplingOptions;
  /** Penalized logits (only written when a penalty applies). */
  private readonly work: Float32Array;
  /** exp((logit - max) / temperature) of each token, or of each candidate. */
  private readonly weight: Float64Array;
  /** Candidate token ids (selection heap, then the sorted prefix). */
  private readonly idx: Int32Array;
  /** Per-token stamps that de-duplicate the repetition history without clearing. */
  private readonly seen: Uint32Array;
  private stamp = 0;

  /**
   * Creates a sampler and its scratch arrays.
   *
   * @param vocabSize length of the logits rows (e.g. the model's padded vocabulary, 50288)
   * @param options sampling options (see {@link SamplingOptions})
   */
  constructor(vocabSize: number, options: SamplingOptions = {}) {
    if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
      throw new RangeError(`invalid vocabSize ${vocabSize}`);
    }
    this.vocabSize = vocabSize;
    this.opts = resolve(options);
    this.rng = new Xoshiro128(options.seed ?? Math.floor(Math.random() * 2 ** 52));
    this.work = new Float32Array(vocabSize);
    this.weight = new Float64Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
    this.seen = new Uint32Array(vocabSize);
  }

  /** The current options. */
  get options(): ResolvedSamplingOptions {
    return { ...this.opts };
  }

  /** Changes some options (the PRNG state is kept unless `seed` is given). */
  setOptions(options: SamplingOptions): void {
    this.opts = resolve({ ...this.opts, ...options });
    if (options.seed !== undefined) this.rng.seed(options.seed);
  }

  /**
   * Draws one token id.
   *
   * @param logits the row of logits (`vocabSize` entries); read only
   * @param previous token ids seen so far (prompt and generated), for the repetition penalty
   */
  sample(logits: Float32Array, previous?: ArrayLike<number>): number {
    const row = this.prepare(logits, previous);
    const { temperature, topK } = this.opts;
    if (temperature <= 0 || topK === 1) return argmax(row);
    const count = this.candidates(row);
    if (count < 0) return argmax(row); // no finite logit, or an infinite one: nothing to sample
    return this.draw(count);
  }

  /**
   * The distribution {@link Sampler.sample} draws from, after every filter: `out[i]` is the probability
   * of token i (0 for filtered tokens). For tests and diagnostics: allocates `out` when not given.
   */
  probabilities(logits: Float32Array, previous?: ArrayLike<number>, out?: Float64Array): Float64Array {
    const probs = out ?? new Float64Array(this.vocabSize);
    probs.fill(0);
    const row = this.prepare(logits, previous);
    if (this.opts.temperature <= 0 || this.opts.topK === 1) {
      probs[argmax(row)] = 1;
      return probs;
    }
    const count = this.candidates(row);
    if (count < 0) {
      probs[argmax(row)] = 1;
      return probs;
    }
    let total = 0;
    if (count === 0) {
      for (let i = 0; i < this.vocabSize; i++) total += this.weight[i];
      for (let i = 0; i < this.vocabSize; i++) probs[i] = this.weight[i] / total;
    } else {
      for (let j = 0; j < count; j++) total += this.weight[this.idx[j]];
      for (let j = 0; j < count; j++) probs[this.idx[j]] = this.weight[this.idx[j]] / total;
    }
    return probs;
  }

  /** Applies the repetition penalty into the scratch row when needed; returns the row to use. */
  private prepare(logits: Float32Array, previous: ArrayLike<number> | undefined): Float32Array {
    if (logits.length !== this.vocabSize) {
      throw new RangeError(`logits row has ${logits.length} entries, the sampler expects ${this.vocabSize}`);
    }
    const penalty = this.opts.repetitionPenalty;
    if (penalty === 1 || previous === undefined || previous.length === 0) return logits;
    const work = this.work, seen = this.seen;
    work.set(logits);
    if (++this.stamp === 0xffffffff) {
      seen.fill(0);
      this.stamp = 1;
    }
    const stamp = this.stamp;
    for (let i = 0; i < previous.length; i++) {
      const id = previous[i];
      if (!(id >= 0 && id < this.vocabSize) || seen[id] === stamp) continue;
      seen[id] = stamp;
      const v = work[id];
      work[id] = v > 0 ? v / penalty : v * penalty;
    }
    return work;
  }

  /**
   * Fills `weight` and `idx` with the kept tokens. Returns how many candidates `idx[0..n)` holds (in no
   * particular order), 0 when every token is kept (weights in `weight[i]` for all i), or -1 when nothing
   * can be sampled (greedy fallback).
   */
  private candidates(row: Float32Array): number {
    const V = this.vocabSize, weight = this.weight, idx = this.idx;
    const { temperature, topK, topP, minP } = this.opts;
    const invT = 1 / temperature;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
    if (!Number.isFinite(max)) return -1;

    let n = 0, total = 0;
    if (topK > 0 && topK < V) {
      const k = selectTop(row, V, topK, idx);
      for (let j = 0; j < k; j++) {
        const i = idx[j], v = row[i];
        const w = v === v ? Math.exp((v - max) * invT) : 0;
        if (w > 0) {
          weight[i] = w;
          total += w;
          idx[n++] = i;
        }
      }
    } else {
      for (let i = 0; i < V; i++) {
        const v = row[i];
        total += weight[i] = v === v ? Math.exp((v - max) * invT) : 0; // NaN: never sampled
      }
      if (topP >= 1 && minP <= 0) return 0;
      if (topP < 1) {
        // a confident model's nucleus is small: try the best 64 tokens before the whole vocabulary
        const k = selectTop(row, V, NUCLEUS_PROBE, idx);
        let mass = 0;
        for (let j = 0; j < k; j++) {
          const i = idx[j];
          if (weight[i] > 0) {
            mass += weight[i];
            idx[n++] = i;
          }
        }
        if (mass < topP * total) n = 0;
      }
      if (n === 0) { for (let i = 0; i < V; i++) if (weight[i] > 0) idx[n++] = i; }
    }
    if (topP < 1) n = nucleus(row, weight, idx, n, topP * total);
    if (minP > 0) {
      // weights are relative to the top token (weight 1), which always passes
      let m = 0;
      for (let j = 0; j < n; j++) if (weight[idx[j]] >= minP) idx[m++] = idx[j];
      n = m;
    }
    return n;
  }

  /** Draws from the candidates left by {@link Sampler.candidates}. */
  private draw(count: number): number {
    const weight = this.weight, idx = this.idx;
    if (count === 0) {
      let total = 0;
      for (let i = 0; i < this.vocabSize; i++) total += weight[i];
      let r = this.rng.nextFloat() * total, last = 0;
      for (let i = 0; i < this.vocabSize; i++) {
        const w = weight[i];
        if (w > 0) {
          if (r < w) return i;
          r -= w;
          last = i;
        }
      }
      return last; // rounding left r ≥ 0 past the end
    }
    let total = 0;
    for (let j = 0; j < count; j++) total += weight[idx[j]];
    let r = this.rng.nextFloat() * total;
    for (let j = 0; j < count; j++) {
      const w = weight[idx[j]];
      if (r < w) return idx[j];
      r -= w;
    }
    return idx[count - 1];
  }
}

/** How many of the best tokens the top-p search looks at before considering the whole vocabulary. */
const NUCLEUS_PROBE = 64;

/**
 * Fills in the defaults of sampling options and checks them (a `RangeError` names a bad one).
 *
 * @example
 * ```ts
 * resolveSamplingOptions({ topP: 0.9 }); // { temperature: 1, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1 }
 * ```
 */
export function resolveSamplingOptions(o: SamplingOptions): ResolvedSamplingOptions {
  return resolve(o);
}

function resolve(o: SamplingOptions): ResolvedSamplingOptions {
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  const minP = o.minP ?? 0;
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) {
    throw new RangeError(`invalid temperature ${temperature}`);
  }
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`invalid topK ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${topP}`);
  if (!(minP >= 0 && minP <= 1)) throw new RangeError(`minP must be in [0, 1], got ${minP}`);
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    throw new RangeError(`repetitionPenalty must be positive, got ${repetitionPenalty}`);
  }
  return { temperature, topK, topP, minP, repetitionPenalty };
}

/** `a` ranks above `b`: larger value, or equal value and lower index. */
function better(row: Float32Array, a: number, b: number): boolean {
  const va = row[a], vb = row[b];
  return va > vb || (va === vb && a < b);
}

/**
 * Writes the indices of the `n` largest entries of `row[0..V)` (ties: lower index) into `out[0..n)`, in
 * heap order, using a bounded min-heap. NaN entries are only taken when fewer than `n` others exist.
 * Returns min(n, V).
 */
function selectTop(row: Float32Array, V: number, n: number, out: Int32Array): number {
  n = Math.min(n, V);
  // fill with the first n non-NaN entries, then NaN ones if needed
  let size = 0, i = 0;
  for (; i < V && size < n; i++) if (row[i] === row[i]) siftUp(row, out, size++, i);
  for (let j = 0; j < V && size < n; j++) if (row[j] !== row[j]) out[size++] = j; // lowest ranks: leaves
  if (size < n) return size;
  // later entries enter only when strictly larger than the root (equal values lose on index)
  let rootValue = row[out[0]];
  for (; i < V; i++) {
    const v = row[i];
    if (v > rootValue || (rootValue !== rootValue && v === v)) {
      siftDown(row, out, 0, n, i);
      rootValue = row[out[0]];
    }
  }
  return n;
}

/** Min-heap by rank ("worst" at the root): insert `item` at slot `i` and move it up. */
function siftUp(row: Float32Array, heap: Int32Array, i: number, item: number): void {
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!better(row, heap[p], item)) break;
    heap[i] = heap[p];
    i = p;
  }
  heap[i] = item;
}

/** Places `item` at slot `i` of a heap of `size` entries and moves it down. */
function siftDown(row: Float32Array, heap: Int32Array, i: number, size: number, item: number): void {
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && better(row, heap[c], heap[c + 1])) c++;
    if (!better(row, item, heap[c])) break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = item;
}

/**
 * Top-p cut without sorting: reorders `idx[0..n)` (candidates with positive, finite weights) so that
 * `idx[0..m)` is the nucleus, and returns m. The nucleus is the shortest prefix, in the order of
 * decreasing logit (ties: lower id), whose weight reaches `target`: a token is kept while the mass
 * before it is below the target (the Hugging Face rule: drop where the ascending cumulative
 * probability is ≤ 1 − topP). Weighted quickselect, expected O(n).
 */
function nucleus(
  row: Float32Array,
  weight: Float64Array,
  idx: Int32Array,
  n: number,
  target: number,
): number {
  let lo = 0, hi = n, acc = 0;
  while (hi - lo > 24) {
    // median of three as the pivot value
    const a = row[idx[lo]], b = row[idx[(lo + hi) >> 1]], c = row[idx[hi - 1]];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
    // three-way partition: [lo, lt) > pivot, [lt, i) == pivot, [gt, hi) < pivot
    let lt = lo, i = lo, gt = hi, massGreater = 0;
    while (i < gt) {
      const id = idx[i], v = row[id];
      if (v > pivot) {
        idx[i++] = idx[lt];
        idx[lt++] = id;
        massGreater += weight[id];
      } else if (v < pivot) {
        idx[i] = idx[--gt];
        idx[gt] = id;
      } else {
        i++;
      }
    }
    if (acc + massGreater >= target) {
      hi = lt; // the cut falls inside the larger values
      continue;
    }
    acc += massGreater;
    sortRange(idx, lt, gt); // equal values: lower id first
    for (let j = lt; j < gt; j++) {
      acc += weight[idx[j]];
      if (acc >= target) return j + 1;
    }
    lo = gt;
  }
  // few left: insertion sort by rank, then take while below the target
  for (let j = lo + 1; j < hi; j++) {
    const id = idx[j];
    let k = j;
    while (k > lo && better(row, id, idx[k - 1])) {
      idx[k] = idx[k - 1];
      k--;
    }
    idx[k] = id;
  }
  for (let j = lo; j < hi; j++) {
    acc += weight[idx[j]];
    if (acc >= target) return j + 1;
  }
  return Math.max(hi, 1); // rounding: the whole range
}

/** Sorts `a[lo..hi)` ascending in place, without allocating (insertion sort when short, else heapsort). */
function sortRange(a: Int32Array, lo: number, hi: number): void {
  const n = hi - lo;
  if (n <= 32) {
    for (let j = lo + 1; j < hi; j++) {
      const v = a[j];
      let k = j;
      while (k > lo && a[k - 1] > v) {
        a[k] = a[k - 1];
        k--;
      }
      a[k] = v;
    }
    return;
  }
  for (let i = (n >> 1) - 1; i >= 0; i--) heapDown(a, lo, i, n);
  for (let end = n - 1; end > 0; end--) {
    const top = a[lo];
    a[lo] = a[lo + end];
    a[lo + end] = top;
    heapDown(a, lo, 0, end);
  }
}

/** Max-heap sift-down of slot `i` in the heap `a[lo..lo + size)`. */
function heapDown(a: Int32Array, lo: number, i: number, size: number): void {
  const v = a[lo + i];
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && a[lo + c + 1] > a[lo + c]) c++;
    if (a[lo + c] <= v) break;
    a[lo + i] = a[lo + c];
    i = c;
  }
  a[lo + i] = v;
}
