// The Metal backend (on Linux: the same Swift backend and .metal kernels run through MetalCompat)
// against the float64 references and the CPU backend, and its per-token GPU work counters.
import assert from "node:assert/strict";
import { type Fixture, FIXTURES, load, loadFixture, maxAbsDiff, refRow, teacherForce } from "./helpers.ts";

/** max|Δ| ≤ tol · max|ref|: 1e-4 with f32 weights, 2e-3 with 16-bit weights. */
function tolerance(f: Fixture): number {
  return (f.dtype === "f32" ? 1e-4 : 2e-3) * f.maxAbsLogit;
}

for (const name of ["tiny-g1", "tiny-g2", "tiny-f16", "tiny-bf16-sharded"]) {
  for (const batchSize of [1, 3]) {
    Deno.test(`metal ${name}, batch ${batchSize}: prefill + 64 steps match the reference and the CPU backend`, () => {
      const f = loadFixture(name);
      const seq = batchSize - 1;
      using metal = load(f.dir, { backend: "metal", batchSize });
      using cpu = load(f.dir, { backend: "cpu", batchSize });
      assert.equal(metal.backend, "metal");
      const cpuRows: Float32Array[] = [];
      teacherForce(cpu, f, (_, row) => cpuRows.push(row.slice()), seq);
      let vsRef = 0, vsCpu = 0, i = 0;
      teacherForce(metal, f, (pos, row) => {
        vsRef = Math.max(vsRef, maxAbsDiff(row, refRow(f, pos)));
        vsCpu = Math.max(vsCpu, maxAbsDiff(row, cpuRows[i++]));
      }, seq);
      assert.ok(vsRef <= tolerance(f), `vs reference: ${vsRef} > ${tolerance(f)}`);
      assert.ok(vsCpu <= tolerance(f), `vs cpu: ${vsCpu} > ${tolerance(f)}`);
    });
  }
}

Deno.test("metal: state saved on the GPU loads into the CPU backend and back", () => {
  const f = loadFixture("tiny-g2");
  using metal = load(f.dir, { backend: "metal" });
  using cpu = load(f.dir, { backend: "cpu" });
  metal.prefill(f.tokens.slice(0, 23));
  cpu.loadState(metal.saveState());
  const a = metal.step(f.tokens[23]).slice(), b = cpu.step(f.tokens[23]).slice();
  assert.ok(maxAbsDiff(a, b) <= tolerance(f));
  metal.loadState(cpu.saveState());
  assert.ok(maxAbsDiff(metal.step(f.tokens[24]), cpu.step(f.tokens[24])) <= tolerance(f));
});

Deno.test("metal counters: one command buffer per step, nothing allocated, ≤ 3 dispatches per layer + 3", () => {
  using engine = load(FIXTURES + "tiny-g1", { backend: "metal", batchSize: 2 });
  const nLayer = engine.config.nLayer;
  engine.step([1, 2]); // warm-up
  const before = engine.gpuCounters();
  const steps = 5;
  for (let i = 0; i < steps; i++) engine.step([3 + i, 4]);
  const after = engine.gpuCounters();
  assert.equal(after.commandBuffers - before.commandBuffers, steps, "command buffers per step");
  assert.equal(after.computeEncoders - before.computeEncoders, steps, "compute encoders per step");
  assert.equal(after.bufferAllocations, before.bufferAllocations, "buffers allocated while stepping");
  assert.equal(after.heapAllocations, before.heapAllocations, "heaps allocated while stepping");
  assert.equal(after.allocatedBytes, before.allocatedBytes, "bytes allocated while stepping");
  const perStep = (after.dispatches - before.dispatches) / steps;
  console.log(`dispatches per decode step: ${perStep} for ${nLayer} layers (budget ${3 * nLayer + 3})`);
  assert.ok(perStep <= 3 * nLayer + 3, `${perStep} dispatches per step`);
  assert.ok(before.heapAllocations >= 1 && before.allocatedBytes > 0);
});

Deno.test("metal recorded: replaying an indirect command buffer gives the same logits as encoding", () => {
  const f = loadFixture("tiny-g2");
  for (const batchSize of [1, 3]) {
    using plain = load(f.dir, { backend: "metal", batchSize });
    using recorded = load(f.dir, { backend: "metal", batchSize, recorded: true });
    assert.equal(recorded.info.recorded, true);
    const seq = batchSize - 1;
    plain.prefill(f.tokens.slice(0, f.promptLength), seq);
    recorded.prefill(f.tokens.slice(0, f.promptLength), seq);
    for (let t = f.promptLength; t < f.promptLength + 16; t++) {
      const tokens = Array.from({ length: batchSize }, (_, i) => (i === seq ? f.tokens[t] : (t + i) % 50));
      assert.deepEqual(recorded.step(tokens).slice(), plain.step(tokens).slice(), `step ${t}`);
    }
    const before = recorded.gpuCounters();
    recorded.step(Array(batchSize).fill(1));
    const after = recorded.gpuCounters();
    assert.equal(after.commandBuffers - before.commandBuffers, 1);
    assert.equal(after.bufferAllocations, before.bufferAllocations);
  }
});
