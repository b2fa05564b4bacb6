/**
 * The engine's backends at the real shapes of mamba2-130m against transformers' float64 logits, made by
 * `python3 tools/make_full_shape_reference.py` (too big for tests/fixtures). Prefills the 260-token
 * prompt (longer than one chunk of 256), then teacher-forces 8 steps, and prints max|Δ| / max|ref| per
 * backend, for the model with float32 weights and the one with float16 weights. Exits 1 when one exceeds the tests' tolerance (1e-4 with f32 weights, 2e-3 with
 * 16-bit weights).
 *
 *   deno run -A tools/check_full_shape.ts [--dir DIR] [--backends cpu,metal]
 *
 * On Linux the Metal backend runs through MetalCompat (CPU execution of Metal: correct, not fast; the
 * Metal rows take a few minutes here).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type BackendName, MambaEngine } from "../mod.ts";
import { maxAbsDiff } from "../tests/helpers.ts";

const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`;
const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    dir: { type: "string", default: `${cache}/mamba-metal/full-shape` },
    backends: { type: "string", default: "cpu,metal" },
  },
});

interface Reference {
  tokens: number[];
  promptLength: number;
  vocabRows: number;
  maxAbsLogit: number;
  dtype: string;
  source: string;
}

function readF32(path: string): Float32Array | undefined {
  try {
    const b = Deno.readFileSync(path);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Checks one model directory with every backend; true when all are within tolerance. */
function check(dir: string): boolean {
  const ref = JSON.parse(Deno.readTextFileSync(`${dir}/reference.json`)) as Reference;
  const logits = readF32(`${dir}/logits.f32`)!;
  // The independent float64 recurrence of tools/make_fixtures.py, kept beside transformers' logits.
  const recurrence = readF32(`${dir}/logits_recurrence.f32`);
  const rows = (all: Float32Array, pos: number) =>
    all.subarray(pos * ref.vocabRows, (pos + 1) * ref.vocabRows);
  const steps = ref.tokens.length - ref.promptLength;
  const tol = ref.dtype === "f32" ? 1e-4 : 2e-3;
  console.log(
    `${dir}: ${ref.dtype} weights; ${ref.source}; ${ref.promptLength}-token prompt + ${steps} steps`,
  );
  let ok = true;
  for (const backend of args.backends!.split(",") as BackendName[]) {
    using engine = MambaEngine.loadSync(dir, { backend });
    const t0 = performance.now();
    const first = engine.prefill(ref.tokens.slice(0, ref.promptLength));
    const t1 = performance.now();
    const prefillRel = maxAbsDiff(first, rows(logits, ref.promptLength - 1)) / ref.maxAbsLogit;
    let worst = 0, worstRecurrence = 0;
    for (let t = ref.promptLength - 1; t < ref.tokens.length; t++) {
      const out = t < ref.promptLength ? engine.logits : engine.step([ref.tokens[t]]);
      worst = Math.max(worst, maxAbsDiff(out, rows(logits, t)));
      if (recurrence) worstRecurrence = Math.max(worstRecurrence, maxAbsDiff(out, rows(recurrence, t)));
    }
    const t2 = performance.now();
    const rel = worst / ref.maxAbsLogit;
    console.log(
      `  ${engine.device}: max|Δ|/max|ref| after the prefill ${prefillRel.toExponential(2)}, ` +
        `over prefill and steps ${rel.toExponential(2)} (tolerance ${tol})` +
        (recurrence
          ? `; against the float64 recurrence ${(worstRecurrence / ref.maxAbsLogit).toExponential(2)}`
          : "") +
        ` [prefill ${((t1 - t0) / 1000).toFixed(1)} s, ${((t2 - t1) / steps).toFixed(0)} ms/step]`,
    );
    if (!(rel <= tol)) ok = false;
  }
  return ok;
}

let failed = false;
for (const dtype of ["f32", "f16"]) {
  if (!check(`${args.dir}/mamba2-130m-shape-${dtype}`)) failed = true;
}
if (failed) {
  console.error("FAILED: a backend exceeds its tolerance");
  Deno.exit(1);
}
