// Workers that load the library and end: their handle closes, but the library (Swift metadata, MetalCompat's
// helper threads) must stay mapped, or the next load, or the helpers, crash the process.
import assert from "node:assert/strict";

async function runInWorker(backend: "cpu" | "metal"): Promise<boolean> {
  const worker = new Worker(new URL("./workers/engine_worker.ts", import.meta.url).href, { type: "module" });
  try {
    const done = new Promise<boolean>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(e.error ?? new Error(e.message));
    });
    worker.postMessage({ backend });
    return await done;
  } finally {
    worker.terminate();
  }
}

Deno.test("workers that load the library one after another, then end, leave the process working", async () => {
  for (const backend of ["metal", "cpu", "metal"] as const) {
    assert.equal(await runInWorker(backend), true, backend);
    await new Promise((r) => setTimeout(r, 50)); // let the ended worker's isolate go
  }
});
