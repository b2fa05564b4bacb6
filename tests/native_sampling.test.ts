// Sampling in the library (mamba_sampler_set / mamba_sample) against the TypeScript Sampler, which the
// sampling suite checks against an independent sort-based reference: the same options and seed must
// give the same tokens and leave the same PRNG state, on every kind of row (flat, peaked, ties, NaN,
// ±Infinity), with and without the repetition penalty, through every filter combination.
import assert from "node:assert/strict";
import { MambaEngine, MambaError, Sampler, type SamplingOptions, Xoshiro128 } from "../mod.ts";
import { ROOT } from "./helpers.ts";

const DEMO = `${ROOT}models/demo`;

/** A seeded row: roughly normal with `scale`, a few large entries, and some exact ties. */
function row(V: number, seed: number, scale: number): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    out[i] = (rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 1.5) * scale +
      (rng.nextFloat() < 0.002 ? 3 * scale : 0);
  }
  for (let k = 0; k < 40; k++) out[Math.floor(rng.nextFloat() * V)] = out[7]; // ties with entry 7
  return out;
}

const OPTIONS: SamplingOptions[] = [
  {},
  { temperature: 0.8 },
  { temperature: 0.8, topP: 0.95 },
  { temperature: 1.3, topP: 0.5 },
  { topK: 40 },
  { topK: 40, topP: 0.9 },
  { topK: 3000, topP: 0.99, temperature: 1.7 },
  { minP: 0.05 },
  { topP: 0.7, minP: 0.1, repetitionPenalty: 1.3 },
  { temperature: 0.6, repetitionPenalty: 0.8 },
  { temperature: 0 },
  { topK: 1, repetitionPenalty: 1.2 },
];

/** Draws `n` tokens from `logits` with both samplers; returns how many differ. */
function compare(
  engine: MambaEngine,
  logits: Float32Array,
  options: SamplingOptions,
  history: number[],
  n: number,
  vocabLimit = 0,
): number {
  const V = vocabLimit || engine.vocabSize;
  const ts = new Sampler(V, options);
  engine.row(1).set(logits);
  engine.setSampler(1, options, history, vocabLimit);
  const seen = [...history];
  let differ = 0;
  for (let i = 0; i < n; i++) {
    const want = ts.sample(logits.subarray(0, V), seen);
    const got = engine.sampleSeqs([1])[0];
    seen.push(want);
    if (got !== want) differ++;
  }
  assert.deepEqual(engine.samplerState(1), ts.rng.state(), `PRNG state after ${JSON.stringify(options)}`);
  return differ;
}

Deno.test("native sampling gives the TypeScript Sampler's tokens for every filter on flat and peaked rows", () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
  const V = engine.vocabSize;
  let draws = 0;
  for (const [i, o] of OPTIONS.entries()) {
    for (const scale of [0.3, 2, 8]) {
      const logits = row(V, 100 * i + scale, scale);
      const history = Array.from({ length: 50 }, (_, k) => (k * 977 + i) % (V + 20)); // some out of range
      const differ = compare(engine, logits, { ...o, seed: 1000 * i + scale }, history, 150);
      assert.equal(differ, 0, `${JSON.stringify(o)} at scale ${scale}: ${differ} of 150 tokens differ`);
      draws += 150;
    }
  }
  assert.equal(draws, OPTIONS.length * 3 * 150);
});

Deno.test("native sampling: a vocabulary limit, NaN, ±Infinity and all-equal rows behave as in TypeScript", () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
  const V = engine.vocabSize;
  const base = row(V, 5, 2);
  assert.equal(compare(engine, base, { topP: 0.9, seed: 3 }, [], 100, 5000), 0, "vocabLimit 5000");
  const nan = base.slice();
  for (let i = 0; i < V; i += 3) nan[i] = NaN;
  for (const o of [{}, { topK: 20 }, { topP: 0.8 }, { minP: 0.2 }]) {
    assert.equal(compare(engine, nan, { ...o, seed: 4 }, [], 100), 0, `NaN rows, ${JSON.stringify(o)}`);
  }
  const flat = new Float32Array(V).fill(1.5);
  for (const o of [{}, { topK: 100 }, { topP: 0.3 }]) {
    assert.equal(
      compare(engine, flat, { ...o, seed: 5 }, [1, 2, 3], 100),
      0,
      `equal logits, ${JSON.stringify(o)}`,
    );
  }
  const inf = base.slice();
  inf[77] = Infinity;
  assert.equal(compare(engine, inf, { seed: 6 }, [], 10), 0, "+Infinity");
  const none = new Float32Array(V).fill(-Infinity);
  assert.equal(compare(engine, none, { seed: 7 }, [], 10), 0, "all -Infinity");
});

Deno.test("native sampling: one call samples several sequences; a failed call changes nothing", () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 3 });
  const V = engine.vocabSize;
  const rows = [row(V, 1, 2), row(V, 2, 2), row(V, 3, 2)];
  const samplers = rows.map((_, s) => new Sampler(V, { topP: 0.9, seed: s + 10 }));
  rows.forEach((r, s) => {
    engine.row(s).set(r);
    engine.setSampler(s, { topP: 0.9, seed: s + 10 });
  });
  const got = Array.from(engine.sampleSeqs([2, 0, 1]));
  assert.deepEqual(got, [
    samplers[2].sample(rows[2]),
    samplers[0].sample(rows[0]),
    samplers[1].sample(rows[1]),
  ]);

  const before = engine.samplerState(0);
  assert.throws(
    () => engine.sampleSeqs([0, 0]),
    (e) => e instanceof MambaError && /listed twice/.test(e.message),
  );
  assert.throws(() => engine.sampleSeqs([0, 5]), (e) => e instanceof MambaError && e.status === "ARGUMENT");
  assert.deepEqual(engine.samplerState(0), before, "a refused call advanced a PRNG");
  assert.throws(() => engine.setSampler(0, { topP: 0 }), RangeError);
  assert.throws(() => engine.setSampler(0, {}, [], V + 1), RangeError);

  using fresh = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
  assert.throws(
    () => fresh.sample(1),
    (e) => e instanceof MambaError && /sequence 1 has no sampler/.test(e.message),
  );
});
