/**
 * Prepares a GPU proxy run (docs/gpu-proxy.md): traces the sessions below under MetalCompat with their
 * CPU-backend references, builds every kernel specialization they use to sm_90 cubins with nvcc, and lays
 * everything the device needs into two folders, one device call each (64 MiB with the checkout):
 *
 *   .gpu/         traces/NAME/{trace.jsonl.gz, session.json, reference.json, metalcompat.json}
 *                 blobs/ (shared fills)  build/{kernels.json, *.cubin, cuda/…}
 *                 replay.py  bench_weights.c  libbench_weights.so  device_run.sh     (parity, timings)
 *   .gpu-checks/  the same for the fixtures and 130m-f16-b1-short, whose build also has the planted-bug
 *                 variants and the SIMD-uniformity check cubins                        (sanitizers)
 *
 *   deno run -A tools/gpu/prepare.ts [--out .gpu] [--only NAME,…] [--skip-build]
 *
 * Fixture sessions run the kernels under MetalCompat (their metalcompat.json is the 1e-5 reference);
 * benchmark-shape sessions are traced dry (the plan only) and compared with the CPU backend.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { traceSession } from "./trace.ts";
import { buildCuda } from "./build.ts";
import { writeOddFixture } from "./odd_fixture.ts";
import { type BenchDType, type BenchShape, ensureBenchModel } from "../make_bench_models.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

interface Session {
  name: string;
  model: () => Promise<string>;
  batch: number;
  prompts: number[];
  steps?: number;
  recorded?: boolean;
  dry: boolean;
  /** Metal kernel parameters for this session only (else the defaults, or --tuning). */
  tuning?: Record<string, number>;
}

/** The H200's best tuning of the 130m f16 decode step at batch 8 (docs/gpu-proxy.md, "Batch 8 under 400
 * µs"): what `replay.py sweep` composed from tools/gpu/sweep.ts's candidates; lm_head 4 rows × the whole K
 * per simdgroup, in_proj 4 × 2 slices, out_proj 2 × 4, 2 SSM blocks per head. */
export const TUNED_B8 = {
  matvecRowsPerSimdgroup: 4,
  matvecSplitK: 2,
  lmHeadRowsPerSimdgroup: 4,
  lmHeadSplitK: 1,
  outProjRowsPerSimdgroup: 2,
  outProjSplitK: 4,
  ssmSplit: 2,
};

const fixture = (name: string) => () => Promise.resolve(join(ROOT, "tests/fixtures", name));
const odd = (f16: boolean) => async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "gpu-odd-" }), f16 ? "odd-f16" : "odd-f32");
  await writeOddFixture(dir, 12, f16);
  return dir;
};
const bench = (shape: BenchShape, dtype: BenchDType) => () => ensureBenchModel(shape, dtype);

/** The sessions of a full run: odd fixtures executed under MetalCompat, bench shapes traced dry. */
export const SESSIONS: Session[] = [
  { name: "fx-g2-f32-b2", model: fixture("tiny-g2"), batch: 2, prompts: [37, 5], dry: false },
  { name: "fx-f16-b2", model: fixture("tiny-f16"), batch: 2, prompts: [37, 16], dry: false },
  { name: "fx-odd-f32-b2", model: odd(false), batch: 2, prompts: [37, 5], dry: false },
  { name: "fx-odd-f16-b1-rec", model: odd(true), batch: 1, prompts: [53], recorded: true, dry: false },
  {
    name: "fx-g1-b4-rec",
    model: fixture("tiny-g1"),
    batch: 4,
    prompts: [40, 1, 17, 16],
    recorded: true,
    dry: false,
  },
  // The batch-8 tuning's layouts (4 rows per simdgroup, lm_head over all of K) on a fixture, executed, so
  // that parity with MetalCompat and the sanitizers cover them too.
  {
    name: "fx-g1-b4-tuned",
    model: fixture("tiny-g1"),
    batch: 4,
    prompts: [40, 1, 17, 16],
    dry: false,
    tuning: TUNED_B8,
  },
  // Quantized weights (issue 13): codes, scales and biases travel as bytes; the reference is the CPU
  // backend's quantized kernels.
  { name: "fx-mlx-q4-g32-b2", model: fixture("mlx-q4-g32"), batch: 2, prompts: [37, 5], dry: false },
  { name: "fx-mlx-q8-g32-bf16-b1", model: fixture("mlx-q8-g32-bf16"), batch: 1, prompts: [40], dry: false },
  {
    name: "fx-gguf-q8_0-b3-rec",
    model: fixture("gguf/tiny-g1.q8_0.gguf"),
    batch: 3,
    prompts: [40, 1, 17],
    recorded: true,
    dry: false,
  },
  { name: "130m-f16-b1", model: bench("130m", "f16"), batch: 1, prompts: [512], dry: true },
  { name: "130m-f16-b4", model: bench("130m", "f16"), batch: 4, prompts: [300, 37, 256, 1], dry: true },
  { name: "130m-f32-b1", model: bench("130m", "f32"), batch: 1, prompts: [512], dry: true },
  { name: "130m-f32-b4", model: bench("130m", "f32"), batch: 4, prompts: [300, 37, 256, 1], dry: true },
  { name: "130m-f16-b1-short", model: bench("130m", "f16"), batch: 1, prompts: [37], steps: 2, dry: true },
  {
    name: "130m-f16-b1-rec",
    model: bench("130m", "f16"),
    batch: 1,
    prompts: [300],
    recorded: true,
    dry: true,
  },
  { name: "130m-f16-b8", model: bench("130m", "f16"), batch: 8, prompts: [64], steps: 4, dry: true },
  {
    name: "130m-f16-b8-tuned",
    model: bench("130m", "f16"),
    batch: 8,
    prompts: [64],
    steps: 4,
    dry: true,
    tuning: TUNED_B8,
  },
  { name: "780m-f16-b1", model: bench("780m", "f16"), batch: 1, prompts: [512], dry: true },
  { name: "780m-f16-b4", model: bench("780m", "f16"), batch: 4, prompts: [300, 37, 256, 1], dry: true },
  { name: "780m-f32-b1", model: bench("780m", "f32"), batch: 1, prompts: [512], dry: true },
  { name: "780m-f32-b4", model: bench("780m", "f32"), batch: 4, prompts: [300, 37, 256, 1], dry: true },
];

async function copyDir(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst, { recursive: true });
  for await (const e of Deno.readDir(src)) {
    if (e.isDirectory) await copyDir(join(src, e.name), join(dst, e.name));
    else if (e.isFile) await Deno.copyFile(join(src, e.name), join(dst, e.name));
  }
}

/** Copies a trace gzipped, moving fills of more than 4 KiB into blobs/CRC-LENGTH.bin, shared by every
 * trace of the same model (the small vectors of a bench model are the same at every batch and dtype). */
export async function packTrace(src: string, dst: string, blobs: string): Promise<void> {
  await Deno.mkdir(blobs, { recursive: true });
  const lines: string[] = [];
  for (const line of (await Deno.readTextFile(src)).split("\n")) {
    if (!line.includes('"ev":"fill"') || !line.includes('"bytes"')) {
      lines.push(line);
      continue;
    }
    const e = JSON.parse(line);
    if (e.length <= 4096) {
      lines.push(line);
      continue;
    }
    const name = `${e.crc32.toString(16).padStart(8, "0")}-${e.length}.bin`;
    const bytes = Uint8Array.from(atob(e.bytes), (c) => c.charCodeAt(0));
    try {
      await Deno.stat(join(blobs, name));
    } catch {
      await Deno.writeFile(join(blobs, name), bytes);
    }
    delete e.bytes;
    e.blob = name;
    lines.push(JSON.stringify(e));
  }
  const data = new TextEncoder().encode(lines.join("\n"));
  const gz = new Response(new Blob([data]).stream().pipeThrough(new CompressionStream("gzip")));
  await Deno.writeFile(dst, new Uint8Array(await gz.arrayBuffer()));
}

/** Results whose prefill logits are whole rows, sampled as trace.ts now samples them. */
function strided(r: { prefill: { stride?: number; logits: string }[] }) {
  for (const p of r.prefill) {
    if (p.stride !== undefined) continue;
    const bytes = Uint8Array.from(atob(p.logits), (c) => c.charCodeAt(0));
    const row = new Float32Array(bytes.buffer);
    p.stride = row.length > 4096 ? 7 : 1;
    const kept = row.filter((_, i) => i % p.stride! === 0);
    const u = new Uint8Array(kept.buffer);
    let bin = "";
    for (let i = 0; i < u.length; i += 0x8000) bin += String.fromCharCode(...u.subarray(i, i + 0x8000));
    p.logits = btoa(bin);
  }
  return r;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: join(ROOT, ".gpu") },
      only: { type: "string" },
      "skip-build": { type: "boolean", default: false },
      "skip-traces": { type: "boolean", default: false },
      "repack": { type: "boolean", default: false },
      // Metal kernel parameters for every session (configs/metal_tune.json's params), e.g. the winners of
      // a sweep (tools/gpu/sweep.ts); CPU references already in OUT-work are kept.
      tuning: { type: "string" },
    },
  });
  const tuning = values.tuning ? JSON.parse(values.tuning) : undefined;
  const out = values.out!;
  const traces = join(out, "traces");
  // Uncompressed traces and CPU references, beside OUT rather than in it, so that OUT travels as it is.
  const work = `${out.replace(/\/$/, "")}-work`;
  await Deno.mkdir(traces, { recursive: true });
  const only = values.only?.split(",");
  if (!values["skip-traces"]) {
    for (const s of SESSIONS.filter((x) => !only || only.includes(x.name))) {
      const t0 = performance.now();
      const dir = join(work, s.name);
      await traceSession({
        model: await s.model(),
        out: dir,
        batch: s.batch,
        prompts: s.prompts,
        steps: s.steps ?? 16,
        dtype: "auto",
        recorded: s.recorded === true,
        dry: s.dry,
        inline: s.dry ? undefined : 1 << 30,
        tuning: s.tuning ?? tuning,
        keepReference: tuning !== undefined,
      });
      const dst = join(traces, s.name);
      await Deno.mkdir(dst, { recursive: true });
      await packTrace(join(dir, "trace.jsonl"), join(dst, "trace.jsonl.gz"), join(out, "blobs"));
      for (const f of ["session.json", "reference.json", "metalcompat.json"]) {
        try {
          await Deno.copyFile(join(dir, f), join(dst, f));
        } catch { /* metalcompat.json: not for dry traces */ }
      }
      console.error(`traced ${s.name} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  if (values.repack) {
    // Rebuild traces/ from OUT-work (the uncompressed traces), e.g. after changing how traces are packed.
    for await (const e of Deno.readDir(work)) {
      if (!e.isDirectory || (only && !only.includes(e.name))) continue;
      const dst = join(traces, e.name);
      await Deno.mkdir(dst, { recursive: true });
      await packTrace(join(work, e.name, "trace.jsonl"), join(dst, "trace.jsonl.gz"), join(out, "blobs"));
      for (const f of ["session.json", "reference.json", "metalcompat.json"]) {
        let text: string;
        try {
          text = await Deno.readTextFile(join(work, e.name, f));
        } catch {
          continue;
        }
        await Deno.writeTextFile(
          join(dst, f),
          f === "session.json" ? text : JSON.stringify(strided(JSON.parse(text))),
        );
      }
      console.error(`repacked ${e.name}`);
    }
  }
  // Two folders, each within a device call's 64 MiB: OUT (every trace, the plain cubins: parity and timings)
  // and OUT-checks (the fixtures and the short 130m session, with the SIMD-check and planted-bug cubins: the
  // sanitizers), since the check builds of every session's specializations no longer fit beside the traces.
  const checks = `${out.replace(/\/$/, "")}-checks`;
  const checked = (name: string) => name.startsWith("fx-") || name === "130m-f16-b1-short";
  if (!values["skip-build"]) {
    await buildCuda({ out: join(out, "build"), traces: [work] });
    await Deno.remove(join(checks, "traces"), { recursive: true }).catch(() => {});
    await Deno.mkdir(join(checks, "traces"), { recursive: true });
    for await (const e of Deno.readDir(traces)) {
      if (e.isDirectory && checked(e.name)) {
        await copyDir(join(traces, e.name), join(checks, "traces", e.name));
      }
    }
    await copyDir(join(out, "blobs"), join(checks, "blobs"));
    // The packed traces keep every pipeline event, which is all the build reads from them.
    await buildCuda({
      out: join(checks, "build"),
      traces: [join(checks, "traces")],
      planted: true,
      simdCheck: true,
    });
  }
  for (const dir of [out, checks]) {
    try {
      await Deno.stat(dir);
    } catch {
      continue;
    }
    for (const f of ["replay.py", "replay_selftest.py", "bench_weights.c", "device_run.sh"]) {
      await Deno.copyFile(join(ROOT, "tools/gpu", f), join(dir, f));
    }
  }
  const cc = await new Deno.Command("cc", {
    args: [
      "-O2",
      "-shared",
      "-fPIC",
      "-ffp-contract=off",
      "-o",
      join(out, "libbench_weights.so"),
      join(ROOT, "tools/gpu/bench_weights.c"),
      "-lm",
    ],
  }).output();
  if (!cc.success) throw new Error("cc bench_weights.c failed");
  await Deno.copyFile(join(out, "libbench_weights.so"), join(checks, "libbench_weights.so")).catch(() => {});
  console.error(`ready: ${out} (carry it to the device; see docs/gpu-proxy.md)`);
}
