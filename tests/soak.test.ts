// Short versions of the soak runs (tools/soak.ts; `deno task soak` runs the long ones): a decode run
// whose memory stays flat and whose replay by a fresh engine is bitwise equal, and four engines stepping
// in four Workers at once, with states handed between two of them, each equal to its replay alone.
import assert from "node:assert/strict";
import { MemorySampler, soakDecode, soakWorkers } from "../tools/soak.ts";
import { FIXTURES } from "./helpers.ts";

/**
 * Resident-memory growth allowed in this short run (none measurable under AddressSanitizer's quarantine).
 * `deno test` runs without `--v8-flags=--expose-gc`, so no collection precedes a sample and V8's heap can
 * hold about a megabyte more garbage at one sample than at another (a fresh-clone CI run on the loaded
 * machine measured 1040 KiB). The 1 MB criterion belongs to `deno task soak decode`, which collects before
 * every sample; this test still catches a per-step leak of more than ~800 bytes.
 */
const RSS_LIMIT = Deno.env.get("MAMBA_SANITIZER") ? Infinity : 4 * 2 ** 20;

Deno.test("memory sampler: anonymous memory on Linux, follows an allocation; total RSS elsewhere", () => {
  using fallback = new MemorySampler("/nonexistent/status");
  assert.equal(fallback.source, "rss");
  assert.ok(fallback.read() > 0);
  if (Deno.build.os !== "linux") return;
  using memory = new MemorySampler();
  assert.equal(memory.source, "RssAnon");
  const before = memory.read();
  const block = new Uint8Array(64 * 2 ** 20).fill(1); // touched, so resident
  const after = memory.read();
  assert.ok(after - before >= 60 * 2 ** 20, `RssAnon grew by ${after - before} bytes for a 64 MiB block`);
  assert.equal(block[block.length - 1], 1);
});

Deno.test("decode soak: 5,000 steps, resident memory flat, a fresh engine's replay bitwise equal", () => {
  // 3000 warm-up steps: resident memory settles (JIT, V8 heap size) within the first ~2500
  const r = soakDecode(FIXTURES + "tiny-g1", { backend: "cpu", threads: 2 }, 5000, 3000);
  if (Deno.build.os === "linux") assert.equal(r.memory, "RssAnon");
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
