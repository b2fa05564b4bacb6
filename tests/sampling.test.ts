// Sampling: distributions of every filter against an independent sort-based reference, empirical
// frequencies against softmax, determinism, repetition penalty, stop strings.
import assert from "node:assert/strict";
import {
  argmax,
  checkStopStrings,
  Sampler,
  type SamplingOptions,
  StopChecker,
  Xoshiro128,
} from "../src/sampling.ts";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** Logits from a seeded generator (independent of the sampler's PRNG state). */
function randomLogits(n: number, seed: number, scale = 4): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // roughly normal (sum of uniforms), a few large ones like an LM's head
    const u = rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 1.5;
    out[i] = u * scale + (rng.nextFloat() < 0.002 ? 8 : 0);
  }
  return out;
}

/**
 * Reference distribution, written independently of src/sampling.ts: full sort by (logit desc, id asc),
 * then penalty → temperature → top-k → top-p → min-p as in Hugging Face transformers.
 */
function reference(logits: Float32Array, o: SamplingOptions, previous: number[] = []): Float64Array {
  const V = logits.length;
  const x = Float64Array.from(logits);
  const penalty = o.repetitionPenalty ?? 1;
  for (const id of new Set(previous)) {
    const v = Math.fround(logits[id]);
    x[id] = Math.fround(v > 0 ? v / penalty : v * penalty); // the sampler works in float32
  }
  const probs = new Float64Array(V);
  const t = o.temperature ?? 1;
  if (t === 0 || o.topK === 1) {
    let best = 0;
    for (let i = 1; i < V; i++) if (x[i] > x[best]) best = i;
    probs[best] = 1;
    return probs;
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  const max = x[order[0]];
  const w = order.map((i) => Math.exp((x[i] - max) / t));
  let keep = V;
  if (o.topK && o.topK < V) keep = o.topK;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    const mass = w.slice(0, keep).reduce((s, v) => s + v, 0);
    let acc = 0, j = 0;
    while (j < keep && acc < topP * mass) acc += w[j++];
    keep = j;
  }
  const minP = o.minP ?? 0;
  if (minP > 0) {
    let j = 0;
    while (j < keep && w[j] >= minP * w[0]) j++;
    keep = j;
  }
  let total = 0;
  for (let j = 0; j < keep; j++) total += w[j];
  for (let j = 0; j < keep; j++) probs[order[j]] = w[j] / total;
  return probs;
}

function assertSameDistribution(got: Float64Array, want: Float64Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if ((got[i] > 0) !== (want[i] > 0)) {
      assert.fail(`${what}: token ${i} kept=${got[i] > 0}, reference kept=${want[i] > 0}`);
    }
    assert.ok(
      Math.abs(got[i] - want[i]) <= 1e-9 + 1e-9 * want[i],
      `${what}: p[${i}] ${got[i]} vs ${want[i]}`,
    );
  }
}

/** Draws `n` tokens and checks the frequencies against `probs` (5 standard deviations + slack). */
function assertFrequencies(sampler: Sampler, logits: Float32Array, probs: Float64Array, n: number): void {
  const counts = new Float64Array(logits.length);
  for (let k = 0; k < n; k++) counts[sampler.sample(logits)]++;
  for (let i = 0; i < logits.length; i++) {
    const p = probs[i], f = counts[i] / n;
    if (p === 0) assert.equal(counts[i], 0, `token ${i} has probability 0 but was drawn ${counts[i]} times`);
    const tol = 5 * Math.sqrt(p * (1 - p) / n) + 2 / n;
    assert.ok(Math.abs(f - p) <= tol, `token ${i}: frequency ${f} vs probability ${p} (tol ${tol})`);
  }
}

const softmax = (x: ArrayLike<number>, t = 1): Float64Array => {
  const m = Math.max(...Array.from(x));
  const e = Float64Array.from(x, (v) => Math.exp((v - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

Deno.test("xoshiro128** matches a BigInt reference implementation of the published algorithm", () => {
  const M = 0xffffffffn;
  const rotl = (x: bigint, k: bigint): bigint => ((x << k) | (x >> (32n - k))) & M;
  let s = [1n, 2n, 3n, 4n];
  const rng = Xoshiro128.fromState([1, 2, 3, 4]);
  for (let i = 0; i < 1000; i++) {
    const result = (rotl((s[1] * 5n) & M, 7n) * 9n) & M;
    const t = (s[1] << 9n) & M;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11n);
    s = s.map((v) => v & M);
    assert.equal(rng.nextUint32(), Number(result), `output ${i}`);
  }
  assert.equal(Xoshiro128.fromState([1, 2, 3, 4]).nextUint32(), 11520); // first output of the reference
});

Deno.test("PRNG: seeded sequences repeat, differ between seeds, floats are uniform in [0, 1)", () => {
  const a = new Xoshiro128(42), b = new Xoshiro128(42), c = new Xoshiro128(43);
  const sa = Array.from({ length: 100 }, () => a.nextUint32());
  assert.deepEqual(sa, Array.from({ length: 100 }, () => b.nextUint32()));
  assert.notDeepEqual(sa, Array.from({ length: 100 }, () => c.nextUint32()));
  assert.notDeepEqual(new Xoshiro128(2 ** 40).nextUint32(), new Xoshiro128(0).nextUint32());
  const r = new Xoshiro128(7);
  let sum = 0, sumSq = 0;
  const n = 200_000;
  const bins = new Float64Array(10);
  for (let i = 0; i < n; i++) {
    const u = r.nextFloat();
    assert.ok(u >= 0 && u < 1);
    sum += u;
    sumSq += u * u;
    bins[Math.floor(u * 10)]++;
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.005);
  assert.ok(Math.abs(sumSq / n - 1 / 3) < 0.005);
  for (const count of bins) assert.ok(Math.abs(count / n - 0.1) < 0.004);
  r.seed(42);
  assert.equal(r.nextUint32(), new Xoshiro128(42).nextUint32());
  assert.throws(() => new Xoshiro128(NaN), RangeError);
});

// ---------------------------------------------------------------------------------------------
// greedy and temperature
// ---------------------------------------------------------------------------------------------

Deno.test("greedy: temperature 0 and topK 1 pick the argmax, lowest id on ties", () => {
  const logits = randomLogits(50288, 1);
  const best = argmax(logits);
  for (let i = 0; i < logits.length; i++) assert.ok(logits[i] <= logits[best]);
  assert.equal(new Sampler(logits.length, { temperature: 0 }).sample(logits), best);
  assert.equal(new Sampler(logits.length, { topK: 1, seed: 3 }).sample(logits), best);
  const tied = new Float32Array([1, 5, 2, 5, 5]);
  assert.equal(new Sampler(5, { temperature: 0 }).sample(tied), 1);
  assert.equal(argmax(new Float32Array([NaN, -Infinity, NaN])), 1);
});

Deno.test("temperature → 0 equals greedy", () => {
  for (let seed = 0; seed < 5; seed++) {
    const logits = randomLogits(50288, 100 + seed);
    const s = new Sampler(logits.length, { temperature: 1e-4, seed });
    for (let k = 0; k < 20; k++) assert.equal(s.sample(logits), argmax(logits));
  }
});

Deno.test("empirical frequencies match softmax probabilities (temperature 1, 0.7, 1.8)", () => {
  const logits = new Float32Array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 1.5, 0.2]);
  for (const temperature of [1, 0.7, 1.8]) {
    const s = new Sampler(logits.length, { temperature, seed: 11 });
    const p = softmax(logits, temperature);
    assertSameDistribution(s.probabilities(logits), p, `T=${temperature}`);
    assertFrequencies(s, logits, p, 100_000);
  }
});

// ---------------------------------------------------------------------------------------------
// top-k, top-p, min-p
// ---------------------------------------------------------------------------------------------

Deno.test("top-k never emits outside the k best, and samples the renormalized softmax", () => {
  const logits = randomLogits(50288, 5);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  for (const k of [2, 5, 40]) {
    const allowed = new Set(order.slice(0, k));
    const s = new Sampler(logits.length, { topK: k, seed: k });
    for (let i = 0; i < 3000; i++) {
      assert.ok(allowed.has(s.sample(logits)), `top-${k} emitted a token outside`);
    }
    assertSameDistribution(s.probabilities(logits), reference(logits, { topK: k }), `top-${k}`);
  }
  const small = new Float32Array([0.1, 3, 2, -1, 2.5, 0]);
  const s = new Sampler(6, { topK: 3, seed: 9 });
  assertFrequencies(s, small, reference(small, { topK: 3 }), 60_000);
});

Deno.test("top-p samples only from the nucleus", () => {
  // probabilities 0.5, 0.25, 0.125, ... : the 0.8 nucleus is the first 3 tokens (0.5+0.25 < 0.8 ≤ 0.875)
  const logits = Float32Array.from({ length: 10 }, (_, i) => -i * Math.LN2);
  const s = new Sampler(10, { topP: 0.8, seed: 2 });
  const p = s.probabilities(logits);
  assert.deepEqual(Array.from(p, (v) => v > 0), [
    true,
    true,
    true,
    false,
    false,
    false,
    false,
    false,
    false,
    false,
  ]);
  assertFrequencies(s, logits, reference(logits, { topP: 0.8 }), 60_000);
  // a nucleus boundary exactly on the mass: 0.75 = 0.5 + 0.25 keeps 2 tokens
  assert.equal(new Sampler(10, { topP: 0.75 }).probabilities(logits).filter((v) => v > 0).length, 2);
  // exact boundary and ties: equal logits (weights exactly 1), ties broken by the lower id
  for (const n of [4, 100]) {
    const flat = new Float32Array(n);
    const kept = Array.from(new Sampler(n, { topP: 0.5 }).probabilities(flat), (v) => v > 0);
    assert.deepEqual(kept, Array.from({ length: n }, (_, i) => i < n / 2), `${n} equal logits`);
  }
  // the top token alone when it already holds topP
  assert.equal(new Sampler(10, { topP: 0.3 }).probabilities(logits).filter((v) => v > 0).length, 1);
});

Deno.test("min-p keeps tokens with probability ≥ minP × the top probability", () => {
  const logits = new Float32Array([3, 2.9, 1, 0.5, -2, 2.0, 2.2]);
  const p = softmax(logits);
  const top = Math.max(...p);
  for (const minP of [0.05, 0.3, 0.5, 0.95]) {
    const s = new Sampler(logits.length, { minP, seed: 4 });
    const got = s.probabilities(logits);
    for (let i = 0; i < p.length; i++) {
      assert.equal(got[i] > 0, p[i] >= minP * top, `minP ${minP} token ${i}`);
    }
    assertSameDistribution(got, reference(logits, { minP }), `minP ${minP}`);
  }
  assertFrequencies(new Sampler(7, { minP: 0.3, seed: 5 }), logits, reference(logits, { minP: 0.3 }), 60_000);
});

Deno.test("combined filters on 50288 logits match the sort-based reference", () => {
  const configs: SamplingOptions[] = [
    {},
    { temperature: 0.7 },
    { topK: 50 },
    { topP: 0.9 },
    { topP: 0.5, temperature: 1.3 },
    { topK: 100, topP: 0.8 },
    { topK: 1000, topP: 0.95, minP: 0.01 },
    { minP: 0.1 },
    { topP: 0.99, minP: 0.001, temperature: 2 },
    { topK: 20000, topP: 0.999 },
  ];
  const scales = [0.2, 1, 4, 30]; // flat (nucleus of thousands of tokens) to peaked (a handful)
  for (let seed = 0; seed < scales.length; seed++) {
    const logits = randomLogits(50288, 1000 + seed, scales[seed]);
    const nucleus = new Sampler(logits.length, { topP: 0.9 }).probabilities(logits).filter((p) =>
      p > 0
    ).length;
    if (seed === 0) assert.ok(nucleus > 1000, `flat: nucleus of ${nucleus}`);
    if (seed === 3) assert.ok(nucleus < 64, `peaked: nucleus of ${nucleus}`);
    for (const o of configs) {
      const s = new Sampler(logits.length, o);
      assertSameDistribution(s.probabilities(logits), reference(logits, o), JSON.stringify(o));
    }
  }
});

Deno.test("ties, -Infinity and NaN logits", () => {
  const logits = new Float32Array([1, 1, 1, -Infinity, NaN, 1, 0]);
  for (const o of [{}, { topK: 2 }, { topP: 0.5 }, { minP: 0.5 }, { topK: 6 }]) {
    const s = new Sampler(logits.length, { seed: 1, ...o });
    const p = s.probabilities(logits);
    assert.equal(p[3], 0);
    assert.equal(p[4], 0);
    for (let k = 0; k < 500; k++) {
      const id = s.sample(logits);
      assert.ok(id !== 3 && id !== 4, JSON.stringify(o));
    }
  }
  // ties are broken by the lower id: top-2 of four equal logits keeps ids 0 and 1
  assert.deepEqual(Array.from(new Sampler(7, { topK: 2 }).probabilities(logits)), [0.5, 0.5, 0, 0, 0, 0, 0]);
  // nothing finite: greedy fallback
  assert.equal(new Sampler(3, { seed: 1 }).sample(new Float32Array([-Infinity, -Infinity, -Infinity])), 0);
  assert.equal(new Sampler(3, { seed: 1 }).sample(new Float32Array([0, Infinity, 1])), 1);
});

// ---------------------------------------------------------------------------------------------
// repetition penalty, determinism, the logits row is left alone
// ---------------------------------------------------------------------------------------------

Deno.test("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
  const logits = new Float32Array([2, 1, -1, 0.5, -0.5, 0]);
  const previous = [0, 2, 2, 5, 99, -1]; // duplicates count once; out-of-range ids are ignored
  const s = new Sampler(6, { repetitionPenalty: 2 });
  const expected = softmax([1, 1, -2, 0.5, -0.5, 0]);
  assertSameDistribution(s.probabilities(logits, previous), expected, "penalty 2");
  assertSameDistribution(
    s.probabilities(logits, previous),
    reference(logits, { repetitionPenalty: 2 }, [0, 2, 5]),
    "ref",
  );
  // greedy: token 0 (logit 2) wins until it has been seen; then 2 / 3 < 1 and token 1 wins
  const g = new Sampler(6, { temperature: 0, repetitionPenalty: 3 });
  assert.equal(g.sample(logits), 0);
  assert.equal(g.sample(logits, [0]), 1);
  // a penalty below 1 favours seen tokens: token 3's 0.5 becomes 2.5
  const enc = new Sampler(6, { temperature: 0, repetitionPenalty: 0.2 });
  assert.equal(enc.sample(logits, [3]), 3);
  // and a negative seen logit is pushed further down (−1 × 2 = −2): its probability drops
  const before = new Sampler(6).probabilities(logits)[2];
  assert.ok(s.probabilities(logits, [2])[2] < before);
});

Deno.test("the logits row is never modified", () => {
  const logits = randomLogits(50288, 77);
  const copy = logits.slice();
  const configs: SamplingOptions[] = [
    { temperature: 0, repetitionPenalty: 1.5 },
    { topK: 40, topP: 0.9, repetitionPenalty: 1.3 },
    { topP: 0.95, minP: 0.05, repetitionPenalty: 1.1 },
    { repetitionPenalty: 0.8 },
  ];
  const history = Array.from({ length: 500 }, (_, i) => (i * 7919) % 50288);
  for (const o of configs) {
    const s = new Sampler(logits.length, { seed: 1, ...o });
    for (let k = 0; k < 20; k++) s.sample(logits, history);
    s.probabilities(logits, history);
  }
  assert.deepEqual(logits, copy);
});

Deno.test("with a fixed seed, runs repeat exactly", () => {
  const logits = randomLogits(50288, 3);
  const o: SamplingOptions = {
    temperature: 0.9,
    topK: 200,
    topP: 0.95,
    minP: 0.02,
    repetitionPenalty: 1.2,
    seed: 1234,
  };
  const run = (): number[] => {
    const s = new Sampler(logits.length, o);
    const history: number[] = [];
    for (let k = 0; k < 300; k++) history.push(s.sample(logits, history));
    return history;
  };
  const a = run();
  assert.deepEqual(run(), a);
  assert.ok(new Set(a).size > 10, "the run should not be degenerate");
  const other = new Sampler(logits.length, { ...o, seed: 1235 });
  const b = Array.from({ length: 300 }, () => other.sample(logits));
  assert.notDeepEqual(b, a);
  // setOptions with a seed restarts the sequence
  const s = new Sampler(logits.length, o);
  const first = Array.from({ length: 50 }, () => s.sample(logits));
  s.setOptions({ seed: 1234 });
  assert.deepEqual(Array.from({ length: 50 }, () => s.sample(logits)), first);
  assert.equal(s.options.topK, 200);
});

Deno.test("invalid rows and options are rejected", () => {
  assert.throws(() => new Sampler(10).sample(new Float32Array(9)), RangeError);
  assert.throws(() => new Sampler(0), RangeError);
  assert.throws(() => new Sampler(10, { temperature: -1 }), RangeError);
  assert.throws(() => new Sampler(10, { topK: 1.5 }), RangeError);
  assert.throws(() => new Sampler(10, { topP: 0 }), RangeError);
  assert.throws(() => new Sampler(10, { topP: 1.5 }), RangeError);
  assert.throws(() => new Sampler(10, { minP: -0.1 }), RangeError);
  assert.throws(() => new Sampler(10, { repetitionPenalty: 0 }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// stop conditions
// ---------------------------------------------------------------------------------------------

Deno.test("checkStopStrings finds the earliest stop string and the text to hold back", () => {
  assert.deepEqual(checkStopStrings("Hello\n\nBye", ["\n\n"]), {
    index: 5,
    stopString: "\n\n",
    holdBack: 0,
    safeLength: 5,
  });
  assert.deepEqual(checkStopStrings("Hello\n", ["\n\n"]), {
    index: -1,
    stopString: null,
    holdBack: 1,
    safeLength: 5,
  });
  assert.deepEqual(checkStopStrings("Hello", ["\n\n"]), {
    index: -1,
    stopString: null,
    holdBack: 0,
    safeLength: 5,
  });
  // the longest partial match over all stop strings
  assert.equal(checkStopStrings("the end of", ["of the", "end of story", "x"]).holdBack, 6);
  assert.equal(checkStopStrings("abc", ["abcd"]).holdBack, 3);
  assert.equal(checkStopStrings("", ["abc"]).holdBack, 0);
  // earliest occurrence wins; at the same index, the longest
  assert.equal(checkStopStrings("xx STOP yy END", ["END", "STOP"]).stopString, "STOP");
  assert.equal(checkStopStrings("User: hi", ["User", "User:"]).stopString, "User:");
  // empty stop strings are ignored
  assert.equal(checkStopStrings("abc", [""]).index, -1);
});

Deno.test("StopChecker: streamed output equals the text before the first stop string", () => {
  const rng = new Xoshiro128(99);
  const alphabet = "ab\n c";
  const pick = (n: number): string =>
    Array.from({ length: n }, () => alphabet[rng.nextUint32() % 5]).join("");
  for (let trial = 0; trial < 500; trial++) {
    const text = pick(1 + (rng.nextUint32() % 60));
    // stop strings that are not substrings of one another (then chunking cannot change the result)
    const stops: string[] = [];
    for (let k = 0; k < 1 + (rng.nextUint32() % 3); k++) {
      const s = pick(2 + (rng.nextUint32() % 3));
      if (stops.every((t) => !t.includes(s) && !s.includes(t))) stops.push(s);
    }
    const first = Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0));
    const want = Number.isFinite(first) ? text.slice(0, first) : text;
    const checker = new StopChecker({ stopStrings: stops });
    let out = "", pos = 0;
    while (pos < text.length && !checker.stopped) {
      const len = 1 + (rng.nextUint32() % 4);
      const piece = text.slice(pos, pos + len);
      pos += len;
      const emitted = checker.pushText(piece);
      out += emitted;
      // what is emitted never contains the start of a possible stop string that is still pending
      assert.ok(want.startsWith(out), `${JSON.stringify(text)} ${JSON.stringify(stops)}`);
    }
    out += checker.flush();
    assert.equal(out, want, `${JSON.stringify(text)} stops ${JSON.stringify(stops)}`);
    assert.equal(checker.stopped, Number.isFinite(first));
    if (checker.stopped) assert.equal(checker.reason, "stop_string");
  }
});

Deno.test("StopChecker: EOS ids stop and release held-back text", () => {
  const c = new StopChecker({ eosTokenIds: [0, 7], stopStrings: ["\n\n"] });
  assert.equal(c.push(5, "Hello"), "Hello");
  assert.equal(c.push(6, "\n"), ""); // could be the start of "\n\n"
  assert.ok(!c.stopped);
  assert.ok(c.isEos(7));
  assert.equal(c.push(7, "<eos>"), "\n"); // EOS: the held newline is released, the EOS piece dropped
  assert.ok(c.stopped);
  assert.equal(c.reason, "eos");
  assert.equal(c.stopString, null);
  assert.equal(c.push(5, "more"), "");
  assert.equal(c.flush(), "");

  const d = new StopChecker({ stopStrings: ["###"] });
  assert.equal(d.push(1, "a#"), "a");
  assert.equal(d.push(2, "#"), "");
  assert.equal(d.push(3, "#tail"), "");
  assert.ok(d.stopped);
  assert.equal(d.reason, "stop_string");
  assert.equal(d.stopString, "###");

  const none = new StopChecker();
  assert.equal(none.push(0, "x"), "x");
  assert.ok(!none.stopped);
});
