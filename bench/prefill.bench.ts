// Prefill of a 512-token prompt by the chunked (SSD) scan, against feeding the same tokens one by one
// (512 decode steps), on the synthetic models of bench/models.ts.
import { benchEngine, benchMatrix, benchPrompt } from "./models.ts";

const PROMPT = benchPrompt(512);

for (const { shape, dtype } of benchMatrix()) {
  Deno.bench({
    name: `prefill 512 tokens ${shape} ${dtype}`,
    group: `prefill ${shape} ${dtype}`,
    baseline: true,
    n: 3,
    warmup: 1,
    async fn(b) {
      const engine = await benchEngine(shape, dtype, 1);
      engine.reset();
      b.start();
      engine.prefill(PROMPT);
      b.end();
    },
  });
  // token by token costs 512 decode steps: measured on the small shape only, to keep the suite short
  if (shape !== "130m") continue;
  Deno.bench({
    name: `512 tokens one by one ${shape} ${dtype}`,
    group: `prefill ${shape} ${dtype}`,
    n: 2,
    warmup: 1,
    async fn(b) {
      const engine = await benchEngine(shape, dtype, 1);
      engine.reset();
      b.start();
      for (let i = 0; i < PROMPT.length; i++) engine.step(PROMPT[i]);
      b.end();
    },
  });
}
