/**
 * `deno task bench:report`: decode and prefill speed of the CPU backend on the synthetic mamba2-130m
 * and mamba2-780m models (tools/make_bench_models.ts), against this machine's read bandwidth measured
 * in the same run, plus the cost of a call through Deno's FFI compared with the same call from C.
 *
 * Prints a table and writes `bench/results/latest.json`: machine, FFI figures, and one row per
 * shape × dtype × batch with `model`, `dtype`, `batch`, `backend`, `decodeTokPerS`, `msPerToken`,
 * `prefillTokPerS`, `bytesPerToken`, `readBandwidthGBs`, `rooflineFraction` (and more).
 *
 * Definitions
 *   - A decode step reads every weight matrix once and each sequence's conv and SSM state once (and
 *     writes the state back, not counted): `bytesPerStep`. `bytesPerToken` = bytesPerStep / batch.
 *   - Timing: the engines of every batch size are loaded together and timed in turns, 12 rounds of
 *     ~0.3 s (130m) or ~0.6 s (780m) each; the best turn is kept (the machine may be shared), the median
 *     too. `readBandwidthGBs` is mamba_read_bandwidth (the best of 5 passes in which all cores sum
 *     disjoint parts of a 512 MiB buffer with vector loads), probed before every turn of the row: the
 *     highest of those probes, so the roofline is never the flattering one. `loadAverage` and
 *     `cpuPressure` are the ones measured before the best turn.
 *   - `rooflineFraction` = bytesPerStep / (time per step) / readBandwidthGBs.
 *   - `prefillTokPerS`: one 512-token prompt from an empty state, best of 4 (one per round, on the
 *     batch-1 engine); batch rows share it (prefill feeds one sequence whatever the batch size).
 *     `prefillSpeedup` compares it with feeding the tokens one by one (decode steps at batch 1).
 *
 *   - `q8` and `q4` rows load the f16 model with `dtype: "q8" | "q4"` (quantized at load, group 64);
 *     `bytesPerStep` counts what the engine reports it streams (codes, scales and biases).
 *   - `loadResidentBytes`: how much the process's resident set grew while that engine was created
 *     (weights in their in-memory form, state, activations; a mapped checkpoint must not stay resident
 *     next to the packed copy).
 *
 *   - Load: the 1-minute load average and, on Linux, the CPU pressure (share of time some runnable
 *     task waited for a CPU over the last 10 s, /proc/pressure/cpu) are recorded with every row. With
 *     --wait-quiet each round first waits (up to 15 minutes) until that pressure is below 2%.
 *
 * Options: --shapes=130m,780m --dtypes=f32,f16,bf16[,q8,q4] --batches=1,4 --threads=N --out=PATH --no-ffi
 *          --wait-quiet
 *
 * @module
 */
import { MambaEngine, type WeightDType } from "../mod.ts";
import { openLibrary } from "../ffi/library.ts";
import {
  BENCH_FORMATS,
  type BenchFormat,
  type BenchShape,
  benchSource,
  ensureBenchModel,
} from "./make_bench_models.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PROMPT_TOKENS = 512;
const PROBE_BYTES = 512 * 1024 * 1024;
const PROBE_PASSES = 5;

/** One measured configuration. */
export interface ReportRow {
  model: BenchShape;
  dtype: BenchFormat;
  batch: number;
  backend: string;
  device: string;
  threads: number;
  decodeTokPerS: number;
  msPerToken: number;
  msPerStep: number;
  msPerStepMedian: number;
  prefillTokPerS: number;
  prefillSpeedup: number;
  bytesPerStep: number;
  bytesPerToken: number;
  achievedGBs: number;
  readBandwidthGBs: number;
  rooflineFraction: number;
  loadResidentBytes: number;
  loadAverage: number;
  cpuPressure: number | null;
}

/** FFI cost: the same calls timed from Deno and from C. */
export interface FfiReport {
  model: string;
  options: string;
  denoEmptyCallNs: number;
  nativeEmptyCallNs: number | null;
  denoStepNs: number;
  nativeStepNs: number | null;
  stepOverheadNs: number | null;
  note?: string;
}

function parseArgs(): {
  shapes: BenchShape[];
  dtypes: BenchFormat[];
  batches: number[];
  threads: number;
  out: string;
  ffi: boolean;
  waitQuiet: boolean;
} {
  const known = ["shapes", "dtypes", "batches", "threads", "out", "no-ffi", "wait-quiet"];
  const opts = new Map<string, string>();
  for (const a of Deno.args) {
    if (a === "--") continue;
    if (a === "--help" || a === "-h") {
      console.log(
        "Usage: deno task bench:report [--shapes=130m,780m] [--dtypes=f32,f16,bf16,q8,q4] [--batches=1,4]\n" +
          "                              [--threads=N] [--out=PATH] [--no-ffi] [--wait-quiet]\n" +
          "Writes a table to stdout and the rows to --out (default bench/results/latest.json).",
      );
      Deno.exit(0);
    }
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
    // An unknown option must not fall through to a full default run that overwrites the results.
    if (!m || !known.includes(m[1])) throw new Error(`unknown argument ${a} (see --help)`);
    opts.set(m[1], m[2] ?? "true");
  }
  const list = (k: string, d: string) => (opts.get(k) ?? d).split(",").map((s) => s.trim()).filter(Boolean);
  const dtypes = list("dtypes", "f32,f16,bf16");
  for (const d of dtypes) {
    if (!(BENCH_FORMATS as readonly string[]).includes(d)) {
      throw new Error(`unknown dtype ${d} (${BENCH_FORMATS.join(", ")})`);
    }
  }
  return {
    shapes: list("shapes", "130m,780m") as BenchShape[],
    dtypes: dtypes as BenchFormat[],
    batches: list("batches", "1,4").map(Number),
    threads: Number(opts.get("threads") ?? 0),
    out: opts.get("out") ?? `${ROOT}bench/results/latest.json`,
    ffi: opts.get("no-ffi") === undefined,
    waitQuiet: opts.get("wait-quiet") !== undefined,
  };
}

/** Percent of the last 10 s in which some runnable task waited for a CPU (Linux PSI), or null. */
function cpuPressure(): number | null {
  try {
    const m = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Waits until other work leaves the CPUs alone (pressure below 2%), for at most 15 minutes. */
async function waitQuiet(): Promise<void> {
  const deadline = Date.now() + 15 * 60_000;
  let p = cpuPressure();
  if (p === null || p < 2) return;
  console.error(`  waiting for a quiet machine (CPU pressure ${p.toFixed(1)}%) …`);
  while (p !== null && p >= 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5000));
    p = cpuPressure();
  }
}

function probeBandwidth(): number {
  const lib = openLibrary();
  const out = new Float64Array(1);
  const status = lib.symbols.mamba_read_bandwidth(
    BigInt(PROBE_BYTES),
    PROBE_PASSES,
    0,
    new Uint8Array(out.buffer),
  );
  if (status !== 0) throw new Error(`mamba_read_bandwidth failed with status ${status}`);
  return out[0];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** A timer for one engine's decode steps: each call runs about `seconds` of steps, returns s/step. */
function stepTimer(engine: MambaEngine, seconds: number): () => number {
  const tokens = new Int32Array(engine.batchSize);
  let i = 0;
  const step = () => {
    for (let b = 0; b < tokens.length; b++) tokens[b] = (i * 7919 + b * 131 + 17) % 50000;
    engine.step(tokens);
    i++;
  };
  let t = performance.now();
  for (let k = 0; k < 3; k++) step();
  const n = Math.max(3, Math.round(seconds / ((performance.now() - t) / 3 / 1000)));
  return () => {
    t = performance.now();
    for (let k = 0; k < n; k++) step();
    return (performance.now() - t) / 1000 / n;
  };
}

function timePrefill(engine: MambaEngine): number {
  const prompt = Int32Array.from({ length: PROMPT_TOKENS }, (_, i) => (i * 7919 + 13) % 50000);
  engine.reset();
  const t = performance.now();
  engine.prefill(prompt);
  const s = (performance.now() - t) / 1000;
  engine.reset();
  return s;
}

const ROUNDS = 12;
const PREFILL_ROUNDS = 4;

/**
 * One shape × dtype: an engine per batch size, all loaded at once and timed in turns, round after
 * round, each turn after a fresh bandwidth probe. The best turn of each engine is kept: a burst of
 * other work on the machine spoils a turn, not a row, and batch sizes are compared under the same
 * conditions. Prefill runs once per round (the first rounds) on the batch-1 engine.
 */
async function measureConfig(
  args: ReturnType<typeof parseArgs>,
  shape: BenchShape,
  dtype: BenchFormat,
): Promise<ReportRow[]> {
  const { stored, loadDType } = benchSource(dtype);
  const dir = await ensureBenchModel(shape, stored);
  const resident: number[] = [];
  const engines = args.batches.map((batchSize) => {
    const before = Deno.memoryUsage().rss;
    const engine = MambaEngine.loadSync(dir, {
      backend: "cpu",
      batchSize,
      threads: args.threads,
      ...(loadDType ? { dtype: loadDType as WeightDType } : {}),
    });
    resident.push(Deno.memoryUsage().rss - before);
    return engine;
  });
  try {
    const timers = engines.map((e) => stepTimer(e, shape === "130m" ? 0.3 : 0.6));
    const turns = engines.map(() => [] as { s: number; bw: number; load: number; pressure: number | null }[]);
    let prefill = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      if (args.waitQuiet) await waitQuiet();
      engines.forEach((_, k) => {
        const pressure = cpuPressure(), load = Deno.loadavg()[0], bw = probeBandwidth();
        turns[k].push({ s: timers[k](), bw, load, pressure });
      });
      if (r < PREFILL_ROUNDS) prefill = Math.min(prefill, timePrefill(engines[0]));
    }
    const prefillTokPerS = PROMPT_TOKENS / prefill;
    const bestOf = (ts: { s: number }[]) => Math.min(...ts.map((t) => t.s));
    const rows = engines.map((engine, k): ReportRow => {
      const best = turns[k].reduce((a, b) => (b.s < a.s ? b : a));
      const batch = engine.batchSize;
      const bytesPerStep = engine.weightBytesPerToken + engine.stateBytesPerToken / 2;
      const achieved = bytesPerStep / best.s / 1e9;
      const ceiling = Math.max(...turns[k].map((t) => t.bw));
      return {
        model: shape,
        dtype,
        batch,
        backend: engine.backend,
        device: engine.device,
        threads: engine.threads,
        decodeTokPerS: batch / best.s,
        msPerToken: best.s * 1000 / batch,
        msPerStep: best.s * 1000,
        msPerStepMedian: median(turns[k].map((t) => t.s)) * 1000,
        prefillTokPerS,
        // one by one = batch-1 decode steps; NaN when batch 1 was not measured
        prefillSpeedup: engines[0].batchSize === 1 ? prefillTokPerS * bestOf(turns[0]) : NaN,
        bytesPerStep,
        bytesPerToken: bytesPerStep / batch,
        achievedGBs: achieved,
        readBandwidthGBs: ceiling,
        rooflineFraction: achieved / ceiling,
        loadResidentBytes: resident[k],
        loadAverage: best.load,
        cpuPressure: best.pressure,
      };
    });
    for (const r of rows) {
      console.error(
        `  ${shape} ${dtype} batch ${r.batch}: ${r.decodeTokPerS.toFixed(1)} tok/s, ${
          r.achievedGBs.toFixed(1)
        } of ${r.readBandwidthGBs.toFixed(1)} GB/s, prefill ${prefillTokPerS.toFixed(0)} tok/s (load ${
          r.loadAverage.toFixed(2)
        }, CPU pressure ${r.cpuPressure ?? "n/a"}%)`,
      );
    }
    return rows;
  } finally {
    for (const e of engines) e.close();
  }
}

async function measureRows(args: ReturnType<typeof parseArgs>): Promise<ReportRow[]> {
  const rows: ReportRow[] = [];
  for (const shape of args.shapes) {
    for (const dtype of args.dtypes) rows.push(...await measureConfig(args, shape, dtype));
  }
  return rows;
}

/** Builds tools/native_step_bench.c against the library; null when no C compiler is found. */
async function buildNativeBench(): Promise<string | null> {
  const lib = openLibrary();
  const libDir = lib.path.slice(0, lib.path.lastIndexOf("/"));
  const out = await Deno.makeTempFile({ prefix: "native_step_bench-" });
  for (const cc of [Deno.env.get("CC"), "clang", "cc", "gcc"].filter(Boolean) as string[]) {
    try {
      const r = await new Deno.Command(cc, {
        args: [
          "-O2",
          "-I",
          `${ROOT}swift/include`,
          `${ROOT}tools/native_step_bench.c`,
          "-L",
          libDir,
          "-lMambaMetal",
          `-Wl,-rpath,${libDir}`,
          "-o",
          out,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (r.success) return out;
    } catch {
      // compiler not installed: try the next
    }
  }
  return null;
}

/**
 * The same calls from Deno and from C, on the tiny fixture with one thread (a step of a few
 * microseconds, no thread hand-off), in alternating rounds so both sides see the same machine; the
 * best of each is kept.
 */
async function measureFfi(waitForQuiet: boolean): Promise<FfiReport> {
  const model = `${ROOT}tests/fixtures/tiny-g1`;
  const options = { backend: "cpu" as const, threads: 1 };
  const lib = openLibrary();
  const exe = await buildNativeBench();
  const n = 2_000;
  let denoEmptyCallNs = Infinity,
    denoStepNs = Infinity,
    nativeEmptyCallNs = Infinity,
    nativeStepNs = Infinity;
  using engine = MambaEngine.loadSync(model, options);
  const tokens = new Int32Array(1);
  for (let i = 0; i < 10 * n; i++) engine.step(tokens);
  try {
    for (let round = 0; round < 8; round++) {
      if (waitForQuiet) await waitQuiet();
      for (let r = 0; r < 3; r++) {
        let t = performance.now();
        for (let i = 0; i < 200_000; i++) lib.symbols.mamba_abi_version();
        denoEmptyCallNs = Math.min(denoEmptyCallNs, (performance.now() - t) * 1e6 / 200_000);
        t = performance.now();
        for (let i = 0; i < n; i++) {
          tokens[0] = (i * 31) % 100;
          engine.step(tokens);
        }
        denoStepNs = Math.min(denoStepNs, (performance.now() - t) * 1e6 / n);
      }
      if (!exe) continue;
      const out = await new Deno.Command(exe, { args: [model, JSON.stringify(options), String(n), "0", "3"] })
        .output();
      if (!out.success) throw new Error(`native_step_bench failed: ${new TextDecoder().decode(out.stderr)}`);
      const native = JSON.parse(new TextDecoder().decode(out.stdout));
      nativeEmptyCallNs = Math.min(nativeEmptyCallNs, native.emptyCallNs);
      nativeStepNs = Math.min(nativeStepNs, native.stepNs);
    }
  } finally {
    if (exe) await Deno.remove(exe);
  }
  return {
    model: "tests/fixtures/tiny-g1",
    options: JSON.stringify(options),
    denoEmptyCallNs,
    nativeEmptyCallNs: exe ? nativeEmptyCallNs : null,
    denoStepNs,
    nativeStepNs: exe ? nativeStepNs : null,
    stepOverheadNs: exe ? denoStepNs - nativeStepNs : null,
    ...(exe ? {} : { note: "no C compiler found: native side not measured" }),
  };
}

function machine(): Record<string, unknown> {
  let cpu = "unknown";
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpu = /model name\s*:\s*(.*)/.exec(info)?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  const mem = Deno.systemMemoryInfo();
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(mem.total / 2 ** 30),
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    deno: Deno.version.deno,
  };
}

function formatTable(rows: ReportRow[]): string {
  const head = [
    "model",
    "dtype",
    "batch",
    "tok/s",
    "ms/token",
    "ms/step",
    "prefill tok/s",
    "prefill ×",
    "MB/token",
    "GB/s",
    "probe GB/s",
    "roofline",
    "resident MB",
  ];
  const body = rows.map((r) => [
    r.model,
    r.dtype,
    String(r.batch),
    r.decodeTokPerS.toFixed(1),
    r.msPerToken.toFixed(2),
    r.msPerStep.toFixed(2),
    r.prefillTokPerS.toFixed(0),
    r.prefillSpeedup.toFixed(1),
    (r.bytesPerToken / 1e6).toFixed(1),
    r.achievedGBs.toFixed(1),
    r.readBandwidthGBs.toFixed(1),
    `${(r.rooflineFraction * 100).toFixed(0)}%`,
    (r.loadResidentBytes / 1e6).toFixed(0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

if (import.meta.main) {
  const args = parseArgs();
  const loadBefore = Deno.loadavg();
  if (loadBefore[0] > 0.5) {
    console.error(
      `note: load average ${loadBefore[0].toFixed(2)}: other work is running, figures may be low`,
    );
  }
  const bwStart = probeBandwidth();
  console.error(`read bandwidth ${bwStart.toFixed(1)} GB/s; measuring …`);
  const rows = await measureRows(args);
  const ffi = args.ffi ? await measureFfi(args.waitQuiet) : null;
  const bwEnd = probeBandwidth();
  const report = {
    date: new Date().toISOString(),
    machine: machine(),
    loadAverageBefore: loadBefore,
    loadAverageAfter: Deno.loadavg(),
    readBandwidthGBs: { start: bwStart, end: bwEnd, bytes: PROBE_BYTES, passes: PROBE_PASSES },
    promptTokens: PROMPT_TOKENS,
    rows,
    ffi,
  };
  await Deno.mkdir(args.out.slice(0, args.out.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(args.out, JSON.stringify(report, null, 2) + "\n");
  console.log(formatTable(rows));
  console.log(
    `\nread bandwidth (best of ${PROBE_PASSES} passes over 512 MiB, all cores): ${
      bwStart.toFixed(1)
    } GB/s at start, ${bwEnd.toFixed(1)} at end; each row uses the best probe taken during its measurement`,
  );
  if (ffi) {
    const ns = (x: number | null) => (x === null ? "n/a" : `${x.toFixed(0)} ns`);
    console.log(
      `FFI (${ffi.model}, ${ffi.options}): empty call ${ffi.denoEmptyCallNs.toFixed(1)} ns from Deno, ${
        ffi.nativeEmptyCallNs === null ? "n/a" : ffi.nativeEmptyCallNs.toFixed(1) + " ns"
      } from C; step ${ns(ffi.denoStepNs)} from Deno, ${ns(ffi.nativeStepNs)} from C: overhead ${
        ns(ffi.stepOverheadNs)
      }`,
    );
  }
  console.log(
    `load average before ${loadBefore.map((x) => x.toFixed(2)).join(" ")}, after ${
      Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
    }; wrote ${args.out}`,
  );
}
