/**
 * Autotune the Metal kernels for this machine's GPU and a model shape; writes the winning
 * parameters into configs/metal_tune.json, keyed by GPU name, model shape and batch size. The decode
 * kernels' parallelism (rows per simdgroup and K slices of the matvecs, blocks per head of the SSM block)
 * is tuned one parameter at a time by ms/token, then the prefill matmul tile by tokens/s. The engine
 * picks the matching entry when it loads (see src/engine.ts, swift/Sources/MambaMetal/MetalTuning.swift).
 *
 *   deno task tune [--model DIR] [--batch N] [--steps N] [--prompt N] [--out FILE]
 *
 * On Linux this runs against MetalCompat (the CPU execution of Metal), which proves the plumbing but
 * whose timings mean nothing for a GPU.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MambaEngine, type MetalTuningParams } from "../mod.ts";

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    model: { type: "string", default: new URL("../models/demo", import.meta.url).pathname },
    batch: { type: "string", default: "1" },
    steps: { type: "string", default: "32" },
    prompt: { type: "string", default: "256" },
    out: { type: "string", default: new URL("../configs/metal_tune.json", import.meta.url).pathname },
  },
});
const batch = Number(args.batch), steps = Number(args.steps), promptTokens = Number(args.prompt);

interface Measurement {
  params: Required<MetalTuningParams>;
  decodeMsPerToken: number;
  prefillTokPerS: number;
}

function measure(params: Required<MetalTuningParams>): Measurement & { gpu: string; shape: string } {
  using engine = MambaEngine.loadSync(args.model!, {
    backend: "metal",
    batchSize: batch,
    tuning: params,
    tuneFile: false,
  });
  const info = engine.info;
  const tokens = Array.from({ length: batch }, (_, i) => (i * 7 + 1) % engine.vocabSize);
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 31 + 5) % engine.vocabSize);
  engine.step(tokens); // warm-up: first use of every pipeline
  engine.prefill(prompt.slice(0, 8));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) engine.step(tokens);
  const decodeMsPerToken = (performance.now() - t0) / steps;
  engine.reset();
  const t1 = performance.now();
  engine.prefill(prompt);
  const prefillTokPerS = promptTokens / ((performance.now() - t1) / 1000);
  return {
    params,
    decodeMsPerToken,
    prefillTokPerS,
    gpu: String(info.gpu),
    shape: String(info.tuneShape),
  };
}

// The defaults (the engine's parameters with no table), then one parameter at a time with the others at
// their best so far: the decode kernels' parallelism by ms/token, then the prefill tile by tokens/s.
const defaults = (() => {
  using engine = MambaEngine.loadSync(args.model!, { backend: "metal", batchSize: batch, tuneFile: false });
  return engine.info.tuning as Required<MetalTuningParams>;
})();
const DECODE: [keyof MetalTuningParams, number[]][] = [
  ["matvecRowsPerSimdgroup", [1, 2, 4]],
  ["matvecSplitK", [1, 2, 4]],
  ["lmHeadRowsPerSimdgroup", [1, 2, 4]],
  ["lmHeadSplitK", [1, 2, 4]],
  ["outProjRowsPerSimdgroup", [1, 2, 4]],
  ["outProjSplitK", [1, 2, 4]],
  ["ssmSplit", [1, 2, 4, 8]],
];
const measured = new Map<string, ReturnType<typeof measure>>();
function measureOnce(params: Required<MetalTuningParams>) {
  const key = JSON.stringify(params);
  if (!measured.has(key)) measured.set(key, measure(params));
  return measured.get(key)!;
}
let best = { ...defaults };
for (const [key, values] of DECODE) {
  const tried = values.map((v) => {
    const r = measureOnce({ ...best, [key]: v });
    console.error(`${key} ${v}: ${r.decodeMsPerToken.toFixed(3)} ms/token`);
    return r;
  });
  best = tried.reduce((a, b) => a.decodeMsPerToken <= b.decodeMsPerToken ? a : b).params;
}
const tiles: ReturnType<typeof measure>[] = [];
for (const tile of [16, 32]) {
  const r = measureOnce({ ...best, matmulTile: tile });
  tiles.push(r);
  console.error(`matmulTile ${tile}: prefill ${r.prefillTokPerS.toFixed(1)} tokens/s`);
}
const winner = tiles.reduce((a, b) => a.prefillTokPerS >= b.prefillTokPerS ? a : b);

interface Entry {
  gpu: string;
  shape: string;
  batch: number;
  params: MetalTuningParams;
  measured?: unknown;
}
let table: { schema: string; entries: Entry[] } = { schema: "mamba-metal-tune/1", entries: [] };
try {
  table = JSON.parse(Deno.readTextFileSync(args.out!));
} catch (e) {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}
table.entries = table.entries.filter((e) =>
  !(e.gpu === winner.gpu && e.shape === winner.shape && e.batch === batch)
);
table.entries.push({
  gpu: winner.gpu,
  shape: winner.shape,
  batch,
  params: winner.params,
  measured: {
    decodeMsPerToken: Number(winner.decodeMsPerToken.toFixed(4)),
    prefillTokPerS: Number(winner.prefillTokPerS.toFixed(1)),
    date: new Date().toISOString().slice(0, 10),
    note: Deno.build.os === "darwin"
      ? ""
      : "MetalCompat (CPU execution of Metal): plumbing only, not GPU timings",
  },
});
Deno.writeTextFileSync(args.out!, JSON.stringify(table, null, 2) + "\n");
console.log(`${winner.gpu} ${winner.shape} batch ${batch}: ${JSON.stringify(winner.params)} → ${args.out}`);
