// Sampling cost per token on a 50288-entry logits row (GPT-NeoX vocabulary padded as in Mamba2
// checkpoints), by the TypeScript Sampler and by the library (the same algorithm and tokens; the
// native rows live in the 130m bench model's logits buffer). The logits are synthetic but shaped like a
// language model's: a broad, roughly normal bulk and a few much larger values.
import { Sampler, type SamplingOptions, Xoshiro128 } from "../src/sampling.ts";
import { benchEngine } from "./models.ts";

const V = 50288;

function lmLikeLogits(seed: number, spread: number): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const u = rng.nextFloat() + rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 2; // ≈ normal, sd 0.58
    out[i] = u * spread + (rng.nextFloat() < 0.001 ? 3 * spread : 0);
  }
  return out;
}

const peaked = lmLikeLogits(1, 5); // confident next-token distribution
const flat = lmLikeLogits(2, 0.5); // uncertain: the top-p nucleus holds a large part of the vocabulary
const history = Array.from({ length: 1024 }, (_, i) => (i * 7919) % V);

const cases: [string, SamplingOptions, Float32Array, number[] | undefined][] = [
  ["greedy", { temperature: 0 }, peaked, undefined],
  ["temperature 0.8", { temperature: 0.8 }, peaked, undefined],
  ["top-k 40", { topK: 40 }, peaked, undefined],
  ["top-p 0.95", { topP: 0.95 }, peaked, undefined],
  ["top-k 40 + top-p 0.95", { topK: 40, topP: 0.95 }, peaked, undefined],
  ["min-p 0.05", { minP: 0.05 }, peaked, undefined],
  ["top-p 0.95, flat distribution", { topP: 0.95 }, flat, undefined],
  [
    "top-k 50 + top-p 0.9 + penalty 1.1 (1024 seen)",
    { topK: 50, topP: 0.9, repetitionPenalty: 1.1 },
    peaked,
    history,
  ],
];

for (const [name, options, logits, previous] of cases) {
  const sampler = new Sampler(V, { seed: 1, ...options });
  Deno.bench({
    name: `sample: ${name}`,
    group: "sampling",
    baseline: name === "greedy",
    fn() {
      sampler.sample(logits, previous);
    },
  });
  Deno.bench({
    name: `native sample: ${name}`,
    group: "native sampling",
    baseline: name === "greedy",
    async fn(b) {
      const engine = await benchEngine("130m", "f16", 1);
      engine.row(0).set(logits);
      // a fresh history each time: the native sampler adds every sampled id to it
      engine.setSampler(0, { seed: 1, ...options }, previous ?? []);
      b.start();
      engine.sample(0);
      b.end();
    },
  });
}
