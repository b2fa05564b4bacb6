// Memory stays flat over long generations: nothing is allocated per decode step.
import assert from "node:assert/strict";
import { FIXTURES, load } from "./helpers.ts";

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
  assert.ok(grown < 1 << 20, `resident memory grew by ${(grown / 1024).toFixed(0)} KiB`);
});
