// Stepping only some sequences (mamba_step_seqs): the listed sequences get exactly the bits a full step
// gives them, every other sequence's state and logits row stay untouched, on both backends; on Metal it
// is one command buffer per step with the dispatches the subset encoding states.
import assert from "node:assert/strict";
import { type MambaEngine, MambaError } from "../mod.ts";
import { FIXTURES, load, ROOT } from "./helpers.ts";

const DEMO = `${ROOT}models/demo`;

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** Different states in every sequence, then a full step and each subset from the same states. */
function checkSubsets(engine: MambaEngine, subsets: number[][]): void {
  const B = engine.batchSize, V = engine.vocabSize;
  for (let s = 0; s < B; s++) engine.prefill([s + 1, 17 * s + 3, 99, 5 + s, 40 + s].map((t) => t % V), s);
  const before = Array.from({ length: B }, (_, s) => engine.saveState(s));
  const tokens = Array.from({ length: B }, (_, s) => (11 + 13 * s) % V);
  const full = engine.step(tokens).slice();
  const after = Array.from({ length: B }, (_, s) => engine.saveState(s));
  for (const seqs of subsets) {
    before.forEach((state, s) => engine.loadState(state, s));
    engine.logits.fill(-7.5);
    engine.stepSeqs(seqs.map((s) => tokens[s]), seqs);
    for (let s = 0; s < B; s++) {
      const row = engine.logits.subarray(s * V, (s + 1) * V);
      if (seqs.includes(s)) {
        assert.ok(same(row, full.subarray(s * V, (s + 1) * V)), `[${seqs}]: sequence ${s}'s logits differ`);
        assert.ok(same(engine.saveState(s), after[s]), `[${seqs}]: sequence ${s}'s state differs`);
      } else {
        assert.ok(row.every((v) => v === -7.5), `[${seqs}]: idle sequence ${s}'s logits were written`);
        assert.ok(same(engine.saveState(s), before[s]), `[${seqs}]: idle sequence ${s}'s state changed`);
      }
    }
  }
}

const SUBSETS = [[0, 2, 3], [3, 1], [1, 2], [2], [0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0]];

Deno.test("cpu: stepping some sequences gives the full step's bits and leaves the others alone", () => {
  using engine = load(DEMO, { backend: "cpu", batchSize: 4 });
  checkSubsets(engine, SUBSETS);
});

Deno.test("cpu, quantized: MLX q4 and load-time q8 matrices give the full step's bits too", () => {
  const cases = [["mlx-q4-g32", {}, "q4"], ["tiny-g2", { dtype: "q8", groupSize: 32 }, "q8"]] as const;
  for (const [fixture, options, dtype] of cases) {
    using engine = load(`${FIXTURES}${fixture}`, { backend: "cpu", batchSize: 4, ...options });
    assert.equal(engine.dtype, dtype);
    checkSubsets(engine, SUBSETS);
  }
});

Deno.test("cpu, quantized: a batch larger than the direct kernels' 8 tokens is invariant too", () => {
  // A full step of 10 sequences and a step of 3 or 9 of them take the same integer kernels per token.
  using engine = load(`${FIXTURES}mlx-q8-g32-bf16`, { backend: "cpu", batchSize: 10 });
  checkSubsets(engine, [[0, 5, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9], [7]]);
  using one = load(`${FIXTURES}mlx-q8-g32-bf16`, { backend: "cpu", batchSize: 1 });
  engine.reset();
  engine.prefill([1, 2, 3], 6);
  one.prefill([1, 2, 3]);
  const tokens = Array.from({ length: 10 }, (_, s) => 4 + s);
  for (let t = 0; t < 3; t++) {
    engine.step(tokens);
    one.step(tokens[6]);
  }
  assert.ok(same(engine.row(6), one.row(0)), "sequence 6 of a batch of 10 differs from a batch of 1");
});

Deno.test("cpu: a generation on one sequence equals the same generation with the others stepped too", () => {
  using a = load(`${FIXTURES}tiny-g2`, { backend: "cpu", batchSize: 3 });
  using b = load(`${FIXTURES}tiny-g2`, { backend: "cpu", batchSize: 1 });
  a.prefill([1, 2, 3], 1);
  b.prefill([1, 2, 3], 0);
  for (let t = 0; t < 20; t++) {
    a.stepSeqs([t + 4], [1]);
    b.step(t + 4);
  }
  assert.ok(same(a.row(1), b.row(0)));
});

Deno.test("stepSeqs rejects bad input and changes nothing", () => {
  using engine = load(DEMO, { backend: "cpu", batchSize: 3 });
  engine.prefill([1, 2, 3], 0);
  const state = engine.saveState(0), logits = engine.logits.slice();
  const refuse = (tokens: number[], seqs: number[], pattern: RegExp) =>
    assert.throws(
      () => engine.stepSeqs(tokens, seqs),
      (e) => e instanceof MambaError && pattern.test(e.message),
    );
  refuse([1, 2], [0, 0], /listed twice/);
  refuse([1], [3], /sequence index 3 at position 0 is out of range \[0, 3\)/);
  refuse([1, 99999], [0, 1], /token id 99999 at position 1 is out of range/);
  refuse([1, 2], [0], /one token per listed sequence/);
  refuse([1, 2, 3, 4], [0, 1, 2, 0], /one token per listed sequence/);
  assert.ok(same(engine.saveState(0), state) && same(engine.logits, logits), "a refused call changed state");
  engine.stepSeqs([], []); // nothing to do
  assert.ok(same(engine.saveState(0), state));
});

Deno.test("metal (recorded full steps): subsets encode directly and give the same bits", () => {
  using engine = load(`${FIXTURES}tiny-g2`, { backend: "metal", batchSize: 4, recorded: true });
  checkSubsets(engine, [[0, 2, 3], [1], [0, 1, 2, 3]]);
});

Deno.test("metal: stepping some sequences gives the full step's bits in one command buffer", () => {
  using engine = load(`${FIXTURES}tiny-g2`, { backend: "metal", batchSize: 4 });
  checkSubsets(engine, SUBSETS);
  // [0, 2, 3] is two runs of consecutive sequences: per run an embedding, an SSM block per layer and an
  // lm_head; the projections once.
  const c0 = engine.gpuCounters();
  engine.stepSeqs([5, 6, 7], [0, 2, 3]);
  const c1 = engine.gpuCounters();
  const L = engine.config.nLayer, runs = 2;
  assert.equal(c1.commandBuffers - c0.commandBuffers, 1);
  assert.equal(c1.dispatches - c0.dispatches, runs + L * (2 + runs) + runs);
  assert.equal(c1.bufferAllocations - c0.bufferAllocations, 0);
});

Deno.test("metal, quantized: subsets of MLX q4 and q8 checkpoints give the full step's bits", () => {
  for (const fixture of ["mlx-q4-g32", "mlx-q8-g32-bf16"]) {
    using engine = load(`${FIXTURES}${fixture}`, { backend: "metal", batchSize: 4 });
    assert.match(engine.dtype, /q4|q8/);
    checkSubsets(engine, [[0, 2, 3], [3, 1], [2], [1, 3, 0]]);
  }
});
