// Short versions of the soak runs (tools/soak.ts; `deno task soak` runs the long ones): a decode run
// whose memory stays flat and whose replay by a fresh engine is bitwise equal, and four engines stepping
// in four Workers at once, with states handed between two of them, each equal to its replay alone.
import assert from "node:assert/strict";
import { soakDecode, soakWorkers } from "../tools/soak.ts";
import { FIXTURES } from "./helpers.ts";

/** Resident-memory growth allowed (none measurable under AddressSanitizer's quarantine). */
const RSS_LIMIT = Deno.env.get("MAMBA_SANITIZER") ? Infinity : 2 ** 20;

Deno.test("decode soak: 5,000 steps, resident memory flat, a fresh engine's replay bitwise equal", () => {
  // 3000 warm-up steps: resident memory settles (JIT, V8 heap size) within the first ~2500
  const r = soakDecode(FIXTURES + "tiny-g1", { backend: "cpu", threads: 2 }, 5000, 3000);
  assert.equal(r.firstMismatch, -1, `replay differs at step ${r.firstMismatch}`);
  assert.ok(r.rssGrowth < RSS_LIMIT, `resident memory grew by ${(r.rssGrowth / 1024).toFixed(0)} KiB`);
});

Deno.test("workers soak: 4 engines in 4 Workers for 4 s, states handed over, each equal to its replay", async () => {
  const r = await soakWorkers(FIXTURES + "tiny-g1", 4);
  for (const [i, w] of r.workers.entries()) {
    assert.ok(w.steps > 0, `worker ${i} took no step`);
    assert.equal(
      w.firstMismatch,
      -1,
      `worker ${i} (${JSON.stringify(w.options)}) differs at step ${w.firstMismatch}`,
    );
  }
  assert.ok(r.workers[1].handovers > 0, "no state was handed over");
});
