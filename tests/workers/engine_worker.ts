/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
// Loads an engine, runs a prompt, closes it and reports; the worker then ends (tests/workers.test.ts).
import { MambaEngine } from "../../mod.ts";
import { FIXTURES } from "../helpers.ts";

self.onmessage = (e: MessageEvent<{ backend: "cpu" | "metal" }>) => {
  using engine = MambaEngine.loadSync(FIXTURES + "tiny-g1", { backend: e.data.backend });
  const row = engine.prefill([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  self.postMessage(row.every(Number.isFinite));
};
