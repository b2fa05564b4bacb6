// Memory stays flat over long generations: nothing is allocated per decode step.
import assert from "node:assert/strict";
import { FIXTURES, load } from "./helpers.ts";

// Under AddressSanitizer (deno task sanitize deno) freed memory waits in a quarantine, so resident
// memory is no measure there; the steps still run.
const RSS_LIMIT = Deno.env.get("MAMBA_SANITIZER") ? Infinity : 1 << 20;

Deno.test("10,000 decode steps: resident memory grows by less than 1 MB after warm-up", () => {
  using engine = load(FIXTURES + "tiny-g1", { batchSize: 2 });
  const tokens = new Int32Array(2);
  let next = 1;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      tokens[0] = next;
      tokens[1] = (next * 7) % engine.vocabSize;
      const logits = engine.step(tokens);
      next = (next + (logits[3] > 0 ? 5 : 11)) % engine.vocabSize;
    }
  };
  run(1000);
  const before = Deno.memoryUsage().rss;
  run(10_000);
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < RSS_LIMIT, `resident memory grew by ${(grown / 1024).toFixed(0)} KiB`);
});

Deno.test("metal (MetalCompat here): 600 steps after warm-up allocate nothing and keep memory flat", () => {
  // Fewer steps than above: MetalCompat runs each dispatch on CPU fibers (several ms per step here).
  for (const recorded of [false, true]) {
    using engine = load(FIXTURES + "tiny-g1", { backend: "metal", batchSize: 2, recorded });
    const tokens = new Int32Array(2);
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        tokens[0] = i % engine.vocabSize;
        tokens[1] = (i * 7) % engine.vocabSize;
        engine.step(tokens);
      }
    };
    run(200);
    const counters = engine.gpuCounters();
    const before = Deno.memoryUsage().rss;
    run(600);
    const grown = Deno.memoryUsage().rss - before;
    const after = engine.gpuCounters();
    assert.equal(after.bufferAllocations, counters.bufferAllocations);
    assert.equal(after.allocatedBytes, counters.allocatedBytes);
    assert.equal(after.commandBuffers - counters.commandBuffers, 600);
    assert.ok(
      grown < RSS_LIMIT,
      `recorded ${recorded}: resident memory grew by ${(grown / 1024).toFixed(0)} KiB`,
    );
  }
});

Deno.test("serving steps (native sampling, subset steps): 10,000 after warm-up keep memory flat", () => {
  using engine = load(FIXTURES + "tiny-g1", { batchSize: 3 });
  for (let s = 0; s < 3; s++) {
    engine.prefill([s + 1, 2, 3], s);
    engine.setSampler(s, { temperature: 0.9, topP: 0.9, repetitionPenalty: 1.1, seed: s }, [s + 1, 2, 3]);
  }
  const seqs = [Int32Array.of(0, 2), Int32Array.of(1), Int32Array.of(0, 1, 2)];
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const which = seqs[i % 3];
      engine.stepSeqs(engine.sampleSeqs(which), which);
    }
  };
  // Warm-up long enough for V8 to have compiled the loop and both calls (code space grows till then).
  run(5000);
  const before = Deno.memoryUsage().rss;
  run(10_000);
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < 1 << 20, `resident memory grew by ${(grown / 1024).toFixed(0)} KiB`);
});
