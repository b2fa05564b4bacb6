// Decode steps on the synthetic mamba2-130m / -780m models (bench/models.ts): one token per sequence
// at batch 1 and 4. Memory bandwidth bounds a step (it reads every weight once), so batch 4 should cost
// little more than batch 1. `deno task bench:report` turns these into tokens/s and roofline fractions.
import { benchEngine, benchMatrix } from "./models.ts";

for (const { shape, dtype } of benchMatrix()) {
  for (const batch of [1, 4]) {
    const tokens = Int32Array.from({ length: batch }, (_, i) => 100 + i);
    Deno.bench({
      name: `decode step ${shape} ${dtype} batch ${batch}`,
      group: `decode ${shape} ${dtype}`,
      baseline: batch === 1,
      n: shape === "130m" ? 50 : 15,
      warmup: 3,
      async fn(b) {
        const engine = await benchEngine(shape, dtype, batch);
        b.start();
        engine.step(tokens);
        b.end();
        tokens[0] = (tokens[0] * 31 + 7) % 50000;
      },
    });
  }
}
