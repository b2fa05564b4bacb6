/**
 * Records a session of the Metal backend under MetalCompat as a trace for the GPU proxy, and the
 * results it must reproduce: each sequence's prefill, then `steps` decode steps of the whole batch.
 *
 *   deno run -A tools/gpu/trace.ts --model DIR --out DIR [--batch 4] [--prompts 300,37,256,1]
 *     [--steps 16] [--dtype f16] [--recorded] [--dry] [--inline BYTES] [--tuning '{"matvecRowsPerSimdgroup":4}']
 *
 * Writes into --out:
 *   trace.jsonl     what the backend encoded (MetalCompat's trace, docs/gpu-proxy.md)
 *   session.json    the session's operations and the command buffers each took
 *   reference.json  the CPU backend's results for the same session (logits after each prefill, after
 *                   the last step, and the final state as strided samples plus per-layer norms)
 *   metalcompat.json the same results from MetalCompat itself (not with --dry, which skips execution)
 *
 * --dry records without running the kernels (enough for the 780m shapes); --inline makes every load-time
 * write travel as bytes up to that size (default 64 KiB: larger checkpoint tensors are rebuilt on the
 * device from the seed of tools/make_bench_models.ts).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { MambaEngine, type WeightDType } from "../../mod.ts";

/** The session's token ids: deterministic, below `vocab`. */
export function promptTokens(seq: number, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13 + 101 * seq) % Math.min(vocab, 50000));
}

export function stepTokens(step: number, batch: number, vocab: number): Int32Array {
  return Int32Array.from({ length: batch }, (_, b) => (step * 31 + b * 17 + 5) % Math.min(vocab, 50000));
}

interface SessionSpec {
  model: string;
  batch: number;
  prompts: number[];
  steps: number;
  dtype: WeightDType;
  recorded: boolean;
  /** Metal kernel parameters (configs/metal_tune.json's params), e.g. {"matvecRowsPerSimdgroup": 4}. */
  tuning?: Record<string, number>;
}

/** Results of a session, small enough to travel: base64 little-endian f32 arrays. */
export interface SessionResults {
  backend: string;
  vocab: number;
  batch: number;
  /** Logits after each prefill, every `stride`-th of them (the rows are large; the final ones are whole). */
  prefill: { seq: number; tokens: number; stride: number; logits: string }[];
  final: { logits: string };
  state: {
    seq: number;
    floats: number;
    stride: number;
    samples: string;
    convFloats: number;
    layers: number;
    convNorms: number[];
    ssmNorms: number[];
  }[];
}

function b64(a: Float32Array): string {
  const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let s = "";
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Strided samples of a sequence's saved state, and per-layer L2 norms of its conv and SSM parts. */
function stateSummary(engine: MambaEngine, seq: number): SessionResults["state"][number] {
  const bytes = engine.saveState(seq);
  const floats = new Float32Array(bytes.buffer, bytes.byteOffset + 24, (bytes.byteLength - 24) / 4);
  const c = engine.config;
  const convDim = c.dInner + 2 * c.nGroups * c.dState;
  const convFloats = c.nLayer * convDim * c.dConv;
  const ssmPerLayer = c.nHeads * c.headDim * c.dState, convPerLayer = convDim * c.dConv;
  const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  const convNorms = [], ssmNorms = [];
  for (let l = 0; l < c.nLayer; l++) {
    convNorms.push(norm(floats.subarray(l * convPerLayer, (l + 1) * convPerLayer)));
    ssmNorms.push(norm(floats.subarray(convFloats + l * ssmPerLayer, convFloats + (l + 1) * ssmPerLayer)));
  }
  const stride = Math.max(1, Math.ceil(floats.length / 32768)) | 1;
  const samples = new Float32Array(Math.ceil(floats.length / stride));
  for (let i = 0; i < samples.length; i++) samples[i] = floats[i * stride];
  return {
    seq,
    floats: floats.length,
    stride,
    samples: b64(samples),
    convFloats,
    layers: c.nLayer,
    convNorms,
    ssmNorms,
  };
}

/** Runs the session on one backend; returns its results and the command buffers each operation took. */
async function runSession(spec: SessionSpec, backend: "metal" | "cpu") {
  using engine = await MambaEngine.load(spec.model, {
    backend,
    batchSize: spec.batch,
    dtype: spec.dtype,
    recorded: spec.recorded,
    tuneFile: false,
    ...(spec.tuning && backend === "metal" ? { tuning: spec.tuning } : {}),
    threads: 0,
  });
  const vocab = engine.vocabSize;
  const ops: { op: string; seq?: number; tokens?: number; cb: [number, number] }[] = [];
  const counted = (op: string, f: () => void, extra: Record<string, number> = {}) => {
    const before = engine.gpuCounters().commandBuffers;
    f();
    ops.push({ op, ...extra, cb: [before, engine.gpuCounters().commandBuffers] });
  };
  const results: SessionResults = {
    backend: engine.device,
    vocab,
    batch: spec.batch,
    prefill: [],
    final: { logits: "" },
    state: [],
  };
  for (let seq = 0; seq < spec.batch; seq++) {
    const n = spec.prompts[seq % spec.prompts.length];
    let row = new Float32Array();
    counted("prefill", () => {
      row = engine.prefill(promptTokens(seq, n, vocab), seq).slice();
    }, { seq, tokens: n });
    const stride = row.length > 4096 ? 7 : 1;
    results.prefill.push({ seq, tokens: n, stride, logits: b64(row.filter((_, i) => i % stride === 0)) });
  }
  let logits = new Float32Array();
  for (let s = 0; s < spec.steps; s++) {
    counted("step", () => {
      logits = engine.step(stepTokens(s, spec.batch, vocab)).slice();
    });
  }
  results.final.logits = b64(logits);
  for (let seq = 0; seq < spec.batch; seq++) results.state.push(stateSummary(engine, seq));
  return { results, ops, info: { device: engine.device, config: engine.config, vocab } };
}

async function child(spec: SessionSpec, backend: "metal" | "cpu", out: string, dry: boolean) {
  const { results, ops, info } = await runSession(spec, backend);
  if (backend === "metal") {
    await Deno.writeTextFile(
      join(out, "session.json"),
      JSON.stringify({ ...spec, model: spec.model.split("/").slice(-1)[0], ops, info }, null, 1) + "\n",
    );
    if (!dry) await Deno.writeTextFile(join(out, "metalcompat.json"), JSON.stringify(results) + "\n");
  } else {
    await Deno.writeTextFile(join(out, "reference.json"), JSON.stringify(results) + "\n");
  }
}

/** Records one session: the Metal backend traced (a child process), then the CPU backend's reference.
 * `keepReference`: an existing reference.json in `out` is kept (the CPU backend's results do not depend
 * on the Metal tuning, so retracing a session with other kernel parameters need not recompute them);
 * `metalOnly`: no reference at all (timing candidates, tools/gpu/sweep.ts). */
export async function traceSession(
  spec: SessionSpec & {
    out: string;
    dry: boolean;
    inline?: number;
    keepReference?: boolean;
    metalOnly?: boolean;
  },
): Promise<void> {
  await Deno.mkdir(spec.out, { recursive: true });
  const self = new URL(import.meta.url).pathname;
  const common = [
    "--model",
    spec.model,
    "--out",
    spec.out,
    "--batch",
    String(spec.batch),
    "--prompts",
    spec.prompts.join(","),
    "--steps",
    String(spec.steps),
    "--dtype",
    spec.dtype,
    ...(spec.recorded ? ["--recorded"] : []),
    ...(spec.dry ? ["--dry"] : []),
    ...(spec.tuning ? ["--tuning", JSON.stringify(spec.tuning)] : []),
  ];
  let haveReference = false;
  try {
    haveReference = spec.metalOnly === true ||
      spec.keepReference === true && (await Deno.stat(join(spec.out, "reference.json"))).isFile;
  } catch { /* none yet */ }
  for (const backend of haveReference ? ["metal"] as const : ["metal", "cpu"] as const) {
    const env: Record<string, string> = {};
    if (backend === "metal") {
      env.METALCOMPAT_TRACE = join(spec.out, "trace.jsonl");
      if (spec.dry) env.METALCOMPAT_TRACE_DRY = "1";
      if (spec.inline !== undefined) env.METALCOMPAT_TRACE_INLINE = String(spec.inline);
    }
    const p = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", self, "--child", backend, ...common],
      env,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!p.success) throw new Error(`tracing ${spec.out}: the ${backend} run failed`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      batch: { type: "string", default: "1" },
      prompts: { type: "string", default: "37" },
      steps: { type: "string", default: "16" },
      dtype: { type: "string", default: "auto" },
      recorded: { type: "boolean", default: false },
      dry: { type: "boolean", default: false },
      inline: { type: "string" },
      tuning: { type: "string" },
      child: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || !values.model || !values.out) {
    console.log(
      "deno run -A tools/gpu/trace.ts --model DIR --out DIR [--batch N] [--prompts a,b,…] [--steps N] [--dtype D] [--recorded] [--dry] [--inline BYTES]",
    );
    Deno.exit(values.help ? 0 : 2);
  }
  const spec: SessionSpec = {
    model: values.model,
    batch: Number(values.batch),
    prompts: values.prompts!.split(",").map(Number),
    steps: Number(values.steps),
    dtype: values.dtype as WeightDType,
    recorded: values.recorded!,
    tuning: values.tuning ? JSON.parse(values.tuning) : undefined,
  };
  if (values.child) await child(spec, values.child as "metal" | "cpu", values.out, values.dry!);
  else {
    await traceSession({
      ...spec,
      out: values.out,
      dry: values.dry!,
      inline: values.inline ? Number(values.inline) : undefined,
    });
  }
}
