// The Metal backend's chunked prefill (metal/matmul.metal, metal/ssd_prefill.metal) against the same
// backend fed token by token through the decode kernels, the float64 references, and its GPU work
// counters. On Linux this runs through MetalCompat.
import assert from "node:assert/strict";
import type { LoadOptions, MambaEngine } from "../mod.ts";
import { FIXTURES, load, loadFixture, maxAbsDiff, refRow } from "./helpers.ts";

/** The token-by-token prefill, kept for comparison (not part of the public options). */
const TOKENS_PATH: LoadOptions = { backend: "metal", prefillMode: "tokens" };

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** The saved state's floats (after the 24-byte header). */
function stateFloats(e: MambaEngine, seq = 0): Float32Array {
  const s = e.saveState(seq);
  return new Float32Array(s.buffer.slice(s.byteOffset + 24, s.byteOffset + s.byteLength));
}

for (const name of ["tiny-g1", "tiny-g2", "tiny-f16"]) {
  Deno.test(`metal prefill ${name}: chunked equals token by token for 1, Q−1, Q, Q+1 and 3Q+5 tokens`, () => {
    const f = loadFixture(name);
    using chunked = load(f.dir, { backend: "metal", batchSize: 2 });
    using tokens = load(f.dir, { ...TOKENS_PATH, batchSize: 2 });
    const Q = chunked.config.chunkSize;
    for (const n of [1, Q - 1, Q, Q + 1, 3 * Q + 5]) {
      for (const seq of [0, 1]) {
        chunked.reset();
        tokens.reset();
        const prompt = f.tokens.slice(0, n);
        const a = chunked.prefill(prompt, seq).slice(), b = tokens.prefill(prompt, seq).slice();
        const what = `${n} tokens, sequence ${seq}`;
        assert.ok(maxAbsDiff(a, b) <= 1e-4 * maxAbs(b), `${what}: logits differ by ${maxAbsDiff(a, b)}`);
        const sa = stateFloats(chunked, seq), sb = stateFloats(tokens, seq);
        assert.ok(maxAbsDiff(sa, sb) <= 1e-4 * maxAbs(sb), `${what}: state differs by ${maxAbsDiff(sa, sb)}`);
        // Decode continues from the handed-over conv ring and SSM state.
        for (let t = n; t < n + 4; t++) {
          const step = [f.tokens[t], f.tokens[t]];
          const da = chunked.step(step).slice(), db = tokens.step(step).slice();
          assert.ok(
            maxAbsDiff(da, db) <= 1e-4 * maxAbs(db),
            `${what}: step ${t} differs by ${maxAbsDiff(da, db)}`,
          );
        }
      }
    }
  });
}

Deno.test("metal prefill: split prefills equal one prefill, also with blocks shorter than d_conv", () => {
  const f = loadFixture("tiny-g2");
  using whole = load(f.dir, { backend: "metal" });
  using split = load(f.dir, { backend: "metal" });
  const want = whole.prefill(f.tokens.slice(0, 40)).slice();
  const wantState = stateFloats(whole);
  for (const parts of [[7, 20, 13], [2, 1, 3, 34], [16, 16, 8], [39, 1]]) {
    split.reset();
    let at = 0, row: Float32Array = new Float32Array();
    for (const n of parts) {
      row = split.prefill(f.tokens.slice(at, at + n));
      at += n;
    }
    assert.ok(maxAbsDiff(row, want) <= 1e-5 * maxAbs(want), `${parts}: logits ${maxAbsDiff(row, want)}`);
    const s = stateFloats(split);
    assert.ok(
      maxAbsDiff(s, wantState) <= 1e-5 * maxAbs(wantState),
      `${parts}: state ${maxAbsDiff(s, wantState)}`,
    );
  }
});

Deno.test("metal prefill continues a conversation: prefill, steps, prefill again match the reference", () => {
  for (const name of ["tiny-g1", "tiny-g2"]) {
    const f = loadFixture(name);
    using engine = load(f.dir, { backend: "metal", batchSize: 3 });
    const seq = 1;
    engine.prefill(f.tokens.slice(0, 20), seq);
    for (let t = 20; t < 25; t++) engine.step([0, f.tokens[t], 0]);
    const row = engine.prefill(f.tokens.slice(25, 40), seq);
    const d = maxAbsDiff(row, refRow(f, 39));
    assert.ok(d <= 1e-4 * f.maxAbsLogit, `${name}: ${d} vs the reference`);
  }
});

Deno.test("metal prefill counters: 512 tokens in ceil(512 / block) command buffers, 8 dispatches per layer + 1 per block", () => {
  using chunked = load(FIXTURES + "tiny-g1", { backend: "metal" });
  using tokens = load(FIXTURES + "tiny-g1", TOKENS_PATH);
  const n = 512, nLayer = chunked.config.nLayer, block = Number(chunked.info.prefillBlock);
  const prompt = Array.from({ length: n }, (_, i) => (i * 31 + 5) % chunked.vocabSize);
  const report: string[] = [];
  for (
    const [engine, perBlock, perToken] of [[chunked, 1 + 8 * nLayer, 0], [tokens, 0, 3 * nLayer + 1]] as const
  ) {
    const before = engine.gpuCounters();
    const t0 = performance.now();
    const row = engine.prefill(prompt).slice();
    const ms = performance.now() - t0;
    const after = engine.gpuCounters();
    const blocks = Math.ceil(n / block);
    const commandBuffers = after.commandBuffers - before.commandBuffers;
    const dispatches = after.dispatches - before.dispatches;
    assert.equal(commandBuffers, blocks, "one command buffer per block");
    assert.equal(after.computeEncoders - before.computeEncoders, blocks, "one encoder per block");
    assert.equal(dispatches, blocks * perBlock + n * perToken + 1, "dispatches (+1: the lm_head)");
    assert.equal(after.bufferAllocations, before.bufferAllocations, "buffers allocated while prefilling");
    assert.equal(after.allocatedBytes, before.allocatedBytes, "bytes allocated while prefilling");
    assert.ok(row.every(Number.isFinite));
    report.push(
      `${engine.info.prefillMode}: ${commandBuffers} command buffers, ${dispatches} dispatches, ${
        ms.toFixed(0)
      } ms (MetalCompat)`,
    );
  }
  console.log(`${n}-token prefill, ${nLayer} layers, block ${block}:\n  ${report.join("\n  ")}`);
});

Deno.test("metal prefill: the matmul tile (tuning.matmulTile 16 or 32) does not change the result", () => {
  const f = loadFixture("tiny-g2");
  const rows = [16, 32].map((matmulTile) => {
    using engine = load(f.dir, { backend: "metal", tuning: { matmulTile } });
    assert.equal(engine.info.tuning && (engine.info.tuning as { matmulTile: number }).matmulTile, matmulTile);
    return engine.prefill(f.tokens.slice(0, 40)).slice();
  });
  assert.ok(maxAbsDiff(rows[0], rows[1]) <= 1e-5 * maxAbs(rows[1]), `${maxAbsDiff(rows[0], rows[1])}`);
});
