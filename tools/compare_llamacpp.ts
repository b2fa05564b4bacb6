/**
 * `deno task compare:llamacpp`: this engine next to llama.cpp on the same files, in one run.
 *
 *   deno task compare:llamacpp [--] [--threads 2,1] [--rounds 5] [--reps 2] [--n-gen 128] [--omp-passive]
 *                              [--out bench/results/llamacpp.json] [--no-speed] [--no-logits]
 *
 * What it does, from nothing but the network access pip needs once:
 *   1. builds llama.cpp from the llama-cpp-python sdist (tools/llamacpp.ts: CPU, -O3, -march=native,
 *      into ~/.cache/llamacpp), makes the synthetic 130m-shape model (tools/make_bench_models.ts, f16),
 *      converts it with llama.cpp's convert_hf_to_gguf.py (F16) and quantizes that with llama-quantize
 *      to Q8_0, Q4_0 (its tied embedding becomes Q6_K) and Q4_K_M (Q4_K matrices, Q6_K embedding);
 *   2. logits: for a 32-token prompt, llama.cpp's logits after every token (tools/llamacpp_logits.c,
 *      libllama) against this engine's on the same GGUF file, next to how far llama.cpp's own quantized
 *      logits are from its F16 ones (the size of the weight quantization's effect);
 *   3. decode speed: `llama-bench -p 0 -n 128 -t T` (batch 1: one token per decode, from an empty
 *      state) on each GGUF file, and this engine doing the same (reset, 128 steps on random ids, T
 *      threads) on the same GGUF files and on the safetensors model as f16, q8 and q4 (group 64,
 *      quantized at load), alternating file by file within each round, `--rounds` rounds. Ratios are
 *      taken within a round (the machine may be shared) and their median reported. Each `--threads`
 *      count (default: all cores, then 1) is a block of rounds of its own. `--omp-passive` runs llama-bench
 *      with OMP_WAIT_POLICY=PASSIVE: ggml's OpenMP build meets at a barrier after every graph node, and GNU
 *      OpenMP's default waiting spins before it sleeps, so on a shared machine the thread still running
 *      spins away its time slice while its partner waits for a CPU (measured here: 1.6 tok/s at 2 threads,
 *      106 with passive waiting, 171 at 1 thread). On a quiet machine leave it off, as users run it.
 * Prints a table; writes everything (samples, load average, CPU pressure, versions) to `--out`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MambaEngine } from "../mod.ts";
import { ensureBenchModel } from "./make_bench_models.ts";
import {
  ensureGGUF,
  ensureLlamaCpp,
  LLAMA_CPP_PYTHON_VERSION,
  llamaBench,
  type LlamaBenchResult,
  type LlamaCpp,
  llamaCppLogits,
  llamaCppMatmuls,
  llamaCppVersion,
  reference,
} from "./llamacpp.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const GGUF_TYPES = ["F16", "Q8_0", "Q4_0", "Q4_K_M"] as const;
type GGUFType = typeof GGUF_TYPES[number];
/** This engine's format next to each llama.cpp type in the speed table (same model, its own format). */
const NATIVE: Record<GGUFType, { dtype: "auto" | "q8" | "q4"; label: string } | null> = {
  F16: { dtype: "auto", label: "f16 safetensors" },
  Q8_0: { dtype: "q8", label: "q8 g64 (quantized at load)" },
  Q4_0: { dtype: "q4", label: "q4 g64 (quantized at load)" },
  Q4_K_M: null,
};
const PROMPT_TOKENS = 32;

function cpuPressure(): number | null {
  try {
    const m = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---- logits ---------------------------------------------------------------------------------------

/** How far `a` is from `ref` over every position: worst and RMS difference relative to ref's scale. */
export interface Agreement {
  /** max |a − ref| / max |ref| */
  maxRel: number;
  /** rms(a − ref) / rms(ref) */
  rmsRel: number;
  /** positions whose arg-max is the same */
  top1Same: number;
  positions: number;
}

/** Compares two (positions × vocab) logit matrices. */
export function agreement(a: Float32Array, ref: Float32Array, vocab: number): Agreement {
  if (a.length !== ref.length) throw new Error(`logits of ${a.length} and ${ref.length} values`);
  let maxD = 0, maxR = 0, sD = 0, sR = 0, top1Same = 0;
  const positions = ref.length / vocab;
  for (let p = 0; p < positions; p++) {
    let ia = 0, ir = 0;
    for (let v = 0; v < vocab; v++) {
      const i = p * vocab + v;
      const d = a[i] - ref[i];
      maxD = Math.max(maxD, Math.abs(d));
      maxR = Math.max(maxR, Math.abs(ref[i]));
      sD += d * d;
      sR += ref[i] * ref[i];
      if (a[i] > a[p * vocab + ia]) ia = v;
      if (ref[i] > ref[p * vocab + ir]) ir = v;
    }
    if (ia === ir) top1Same++;
  }
  return { maxRel: maxD / maxR, rmsRel: Math.sqrt(sD / sR), top1Same, positions };
}

/** This engine's logits after every token of `ids`, stepping from an empty state. */
function engineLogits(engine: MambaEngine, ids: Int32Array): Float32Array {
  const V = engine.vocabSize;
  const out = new Float32Array(ids.length * V);
  engine.reset();
  for (let i = 0; i < ids.length; i++) out.set(engine.step(ids[i]).subarray(0, V), i * V);
  engine.reset();
  return out;
}

/** One GGUF file's logits check. */
export interface LogitsCheck {
  type: GGUFType;
  file: string;
  /** What this engine made of each distinct stored type (`engine.info.matrices`). */
  matrices: {
    stored: string;
    dtype: string;
    groupSize: number | null;
    scaleDType: string | null;
    count: number;
  }[];
  /** This engine against the file's model in float64 (weights dequantized by gguf-py). */
  engineVsExact: Agreement;
  /** This engine against llama.cpp on the same file. */
  engineVsLlamaCpp: Agreement;
  /** llama.cpp against the file's model in float64. */
  llamaCppVsExact: Agreement;
  /** The float64 model with ggml's activation rounding against the exact one: what that rounding does. */
  roundedVsExact: Agreement;
  /** llama.cpp's layer-0 and lm_head products against the dequantized weights times its rounded inputs. */
  matmuls: Record<string, { type: string; vsRounded: number; vsExact: number }>;
  /** llama.cpp on this file against llama.cpp on the F16 file: the effect of quantizing the weights. */
  llamaCppVsF16: Agreement;
  pass: boolean;
}

/**
 * Tolerances. llama.cpp's CPU matrix products round their input vector to the weights' `vec_dot_type`
 * first (f16 for F16 weights, Q8_0 blocks of 32 for Q8_0/Q4_0, Q8_K blocks of 256 for K-quants); this
 * engine keeps float32 (its integer kernels use ≥ 23-bit fixed point). So:
 *   - this engine must compute the file's model: within 1e-4 · max|logit| of the float64 reference on
 *     gguf-py's dequantization (llama.cpp's Python port of ggml's), as every fixture test requires;
 *   - llama.cpp's own products must be that rounding and nothing else: each dumped product within 1e-5
 *     of the dequantized weights times its rounded input (else the reference, not the engine, is wrong);
 *   - then this engine and llama.cpp may differ by what the rounding does to the whole model, which the
 *     float64 model with the rounding emulated measures independently of both: the RMS difference
 *     within 1.5×, the worst within 2× of the emulated effect.
 */
const TOLERANCE = {
  engineVsExactMax: 1e-4,
  matmulVsRounded: 1e-5,
  rmsOfRoundingEffect: 1.5,
  maxOfRoundingEffect: 2,
};

async function checkLogits(
  d: LlamaCpp,
  files: Record<GGUFType, string>,
  threads: number,
): Promise<LogitsCheck[]> {
  let seed = 12345;
  const ids = Int32Array.from(
    { length: PROMPT_TOKENS },
    () => (seed = (seed * 1103515245 + 12345) % 2147483648) % 50277,
  );
  const llama: Partial<Record<GGUFType, Float32Array>> = {};
  for (const t of GGUF_TYPES) llama[t] = await llamaCppLogits(d, files[t], ids, threads);
  const checks: LogitsCheck[] = [];
  for (const t of GGUF_TYPES) {
    console.error(`  logits: ${t} …`);
    const dir = await Deno.makeTempDir({ prefix: "llamacpp-matmuls-" });
    let ref;
    try {
      await llamaCppMatmuls(d, files[t], ids, threads, dir);
      ref = await reference(d, files[t], ids, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    using engine = MambaEngine.loadSync(files[t], { backend: "cpu", threads });
    const V = engine.vocabSize;
    if (llama[t]!.length !== ids.length * V) {
      throw new Error(
        `llama.cpp returned ${llama[t]!.length / ids.length} logits per token, this engine ${V}`,
      );
    }
    const ours = engineLogits(engine, ids);
    const byStored = new Map<string, LogitsCheck["matrices"][number]>();
    for (const m of engine.info.matrices as Record<string, unknown>[]) {
      const key = String(m.stored);
      const e = byStored.get(key);
      if (e) e.count++;
      else {
        byStored.set(key, {
          stored: key,
          dtype: String(m.dtype),
          groupSize: (m.groupSize as number | undefined) ?? null,
          scaleDType: (m.scaleDType as string | undefined) ?? null,
          count: 1,
        });
      }
    }
    const c: LogitsCheck = {
      type: t,
      file: files[t],
      matrices: [...byStored.values()],
      engineVsExact: agreement(ours, ref.exact, V),
      engineVsLlamaCpp: agreement(ours, llama[t]!, V),
      llamaCppVsExact: agreement(llama[t]!, ref.exact, V),
      roundedVsExact: agreement(ref.rounded, ref.exact, V),
      matmuls: ref.matmuls,
      llamaCppVsF16: agreement(llama[t]!, llama.F16!, V),
      pass: false,
    };
    c.pass = c.engineVsExact.maxRel <= TOLERANCE.engineVsExactMax &&
      Object.values(c.matmuls).every((m) => m.vsRounded <= TOLERANCE.matmulVsRounded) &&
      c.engineVsLlamaCpp.rmsRel <= TOLERANCE.rmsOfRoundingEffect * c.roundedVsExact.rmsRel &&
      c.engineVsLlamaCpp.maxRel <= TOLERANCE.maxOfRoundingEffect * c.roundedVsExact.maxRel;
    checks.push(c);
  }
  return checks;
}

// ---- speed ----------------------------------------------------------------------------------------

/** One timed run: tokens/s of `nGen` decode steps from an empty state. */
interface Sample {
  round: number;
  engine: "llama.cpp" | "mamba-metal";
  format: string;
  file: string;
  tokPerS: number[];
  loadAverage: number;
  cpuPressure: number | null;
}

/** This engine as llama-bench's tg test: reset, then `nGen` steps on random ids; tok/s per repetition. */
function engineDecode(engine: MambaEngine, nGen: number, reps: number, rng: () => number): number[] {
  const out: number[] = [];
  for (let r = 0; r < reps; r++) {
    engine.reset();
    const t0 = performance.now();
    for (let i = 0; i < nGen; i++) engine.step(rng() % engine.vocabSize);
    out.push(nGen / ((performance.now() - t0) / 1000));
  }
  return out;
}

interface SpeedRow {
  format: string;
  llamaCppFile: string;
  llamaCppTokPerS: number;
  engineSameFileTokPerS: number;
  /** median over rounds of (this engine ÷ llama.cpp), same file */
  ratioSameFile: number;
  native: string | null;
  engineNativeTokPerS: number | null;
  ratioNative: number | null;
  engineBytesPerToken: Record<string, number>;
}

async function measureSpeed(
  d: LlamaCpp,
  files: Record<GGUFType, string>,
  benchDir: string,
  args: { threads: number; rounds: number; reps: number; nGen: number; ompPassive: boolean },
): Promise<{ samples: Sample[]; rows: SpeedRow[]; llamaBench: LlamaBenchResult[] }> {
  const engines = new Map<string, MambaEngine>();
  const bytes: Record<string, number> = {};
  for (const t of GGUF_TYPES) {
    const e = MambaEngine.loadSync(files[t], { backend: "cpu", threads: args.threads });
    engines.set(`gguf:${t}`, e);
    bytes[`gguf:${t}`] = e.weightBytesPerToken + e.stateBytesPerToken / 2;
    const n = NATIVE[t];
    if (n) {
      const en = MambaEngine.loadSync(benchDir, {
        backend: "cpu",
        threads: args.threads,
        ...(n.dtype === "auto" ? {} : { dtype: n.dtype, groupSize: 64 }),
      });
      engines.set(`native:${t}`, en);
      bytes[`native:${t}`] = en.weightBytesPerToken + en.stateBytesPerToken / 2;
    }
  }
  let seed = 99;
  const rng = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
  for (const e of engines.values()) engineDecode(e, 8, 1, rng); // first touches
  const samples: Sample[] = [];
  const benches: LlamaBenchResult[] = [];
  try {
    for (let round = 0; round < args.rounds; round++) {
      for (const t of GGUF_TYPES) {
        const meta = () => ({ round, loadAverage: Deno.loadavg()[0], cpuPressure: cpuPressure() });
        const m0 = meta();
        const env = args.ompPassive ? { OMP_WAIT_POLICY: "PASSIVE" } : undefined;
        const lb = await llamaBench(d, files[t], args.threads, args.nGen, args.reps, env);
        benches.push(lb);
        samples.push({ ...m0, engine: "llama.cpp", format: t, file: files[t], tokPerS: lb.samples_ts });
        const m1 = meta();
        const same = engineDecode(engines.get(`gguf:${t}`)!, args.nGen, args.reps, rng);
        samples.push({ ...m1, engine: "mamba-metal", format: `gguf:${t}`, file: files[t], tokPerS: same });
        const native = engines.get(`native:${t}`);
        if (native) {
          const m2 = meta();
          const tok = engineDecode(native, args.nGen, args.reps, rng);
          samples.push({ ...m2, engine: "mamba-metal", format: `native:${t}`, file: benchDir, tokPerS: tok });
        }
        console.error(
          `  round ${round + 1}/${args.rounds} ${t}: llama.cpp ${
            median(lb.samples_ts).toFixed(1)
          }, this engine ` +
            `${median(same).toFixed(1)} (same file)${
              native ? `, ${median(samples.at(-1)!.tokPerS).toFixed(1)} (${NATIVE[t]!.label})` : ""
            } tok/s; load ${m0.loadAverage.toFixed(1)}`,
        );
      }
    }
  } finally {
    for (const e of engines.values()) e.close();
  }
  const rows: SpeedRow[] = GGUF_TYPES.map((t) => {
    const of = (format: string, engine: string) =>
      samples.filter((s) => s.format === format && s.engine === engine);
    const ref = of(t, "llama.cpp"),
      same = of(`gguf:${t}`, "mamba-metal"),
      nat = of(`native:${t}`, "mamba-metal");
    const perRound = (xs: Sample[]) => xs.map((s) => median(s.tokPerS));
    const ratio = (xs: Sample[]) => median(perRound(xs).map((v, i) => v / perRound(ref)[i]));
    return {
      format: t,
      llamaCppFile: files[t],
      llamaCppTokPerS: median(ref.flatMap((s) => s.tokPerS)),
      engineSameFileTokPerS: median(same.flatMap((s) => s.tokPerS)),
      ratioSameFile: ratio(same),
      native: NATIVE[t]?.label ?? null,
      engineNativeTokPerS: nat.length ? median(nat.flatMap((s) => s.tokPerS)) : null,
      ratioNative: nat.length ? ratio(nat) : null,
      engineBytesPerToken: Object.fromEntries(
        Object.entries(bytes).filter(([k]) => k === `gguf:${t}` || k === `native:${t}`),
      ),
    };
  });
  return { samples, rows, llamaBench: benches };
}

function machine(): Record<string, unknown> {
  let cpu = "unknown";
  try {
    cpu = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    deno: Deno.version.deno,
  };
}

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

async function main(): Promise<void> {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  const { values: a } = parseArgs({
    args: argv,
    options: {
      threads: { type: "string" },
      rounds: { type: "string" },
      reps: { type: "string" },
      "n-gen": { type: "string" },
      out: { type: "string" },
      "no-speed": { type: "boolean" },
      "no-logits": { type: "boolean" },
      "omp-passive": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (a.help) {
    console.log(
      "Usage: deno task compare:llamacpp [--] [--threads 2,1] [--rounds 5] [--reps 2] [--n-gen 128] [--omp-passive]\n" +
        "                                  [--out bench/results/llamacpp.json] [--no-speed] [--no-logits]",
    );
    return;
  }
  const threadCounts = [
    ...new Set((a.threads ?? `${navigator.hardwareConcurrency},1`).split(",").map(Number)),
  ];
  if (threadCounts.some((t) => !(Number.isInteger(t) && t > 0))) {
    throw new Error(`bad --threads ${a.threads}`);
  }
  const args = {
    threads: threadCounts[0],
    rounds: Number(a.rounds ?? 5),
    reps: Number(a.reps ?? 2),
    nGen: Number(a["n-gen"] ?? 128),
    ompPassive: a["omp-passive"] ?? false,
  };
  const out = a.out ?? `${ROOT}bench/results/llamacpp.json`;
  const loadBefore = Deno.loadavg();
  const d = await ensureLlamaCpp();
  const benchDir = await ensureBenchModel("130m", "f16");
  const files = await ensureGGUF(d, benchDir, "mamba2-130m-bench", [...GGUF_TYPES]) as Record<
    GGUFType,
    string
  >;
  const version = await llamaCppVersion(d);
  console.error(
    `llama.cpp ${version}; threads ${threadCounts.join(", ")}; load average ${loadBefore[0].toFixed(2)}`,
  );

  const logits = a["no-logits"] ? null : await checkLogits(d, files, args.threads);
  if (logits) {
    const e = (x: number) => x.toExponential(1);
    console.log(table(
      [
        "file",
        "this engine reads",
        "engine vs exact (max)",
        "llama.cpp products vs rounded",
        "rounding effect (rms/max)",
        "llama.cpp vs exact",
        "engine vs llama.cpp",
        "top-1",
        "Q vs F16 (llama.cpp)",
        "ok",
      ],
      logits.map((c) => [
        c.type,
        c.matrices.map((m) => `${m.stored}→${m.dtype}${m.groupSize ? ` g${m.groupSize}` : ""}`).join(", "),
        e(c.engineVsExact.maxRel),
        e(Math.max(...Object.values(c.matmuls).map((m) => m.vsRounded))),
        `${e(c.roundedVsExact.rmsRel)} / ${e(c.roundedVsExact.maxRel)}`,
        `${e(c.llamaCppVsExact.rmsRel)} / ${e(c.llamaCppVsExact.maxRel)}`,
        `${e(c.engineVsLlamaCpp.rmsRel)} / ${e(c.engineVsLlamaCpp.maxRel)}`,
        `${c.engineVsLlamaCpp.top1Same}/${c.engineVsLlamaCpp.positions}`,
        c.type === "F16" ? "" : e(c.llamaCppVsF16.rmsRel),
        c.pass ? "yes" : "NO",
      ]),
    ));
  }
  const speed = [];
  for (const threads of a["no-speed"] ? [] : threadCounts) {
    const date = new Date().toISOString(), loadAverage = Deno.loadavg();
    console.error(`decode speed, ${threads} thread${threads > 1 ? "s" : ""}:`);
    const block = {
      threads,
      date,
      loadAverage,
      ...await measureSpeed(d, files, benchDir, { ...args, threads }),
    };
    speed.push(block);
    console.log(`\n${threads} thread${threads > 1 ? "s" : ""}:`);
    console.log(table(
      [
        "format",
        "llama.cpp tok/s",
        "this engine, same file",
        "× llama.cpp",
        "this engine, own format",
        "× llama.cpp",
      ],
      block.rows.map((r) => [
        r.format,
        r.llamaCppTokPerS.toFixed(1),
        r.engineSameFileTokPerS.toFixed(1),
        r.ratioSameFile.toFixed(2),
        r.native ? `${r.engineNativeTokPerS!.toFixed(1)} (${r.native})` : "",
        r.ratioNative === null ? "" : r.ratioNative.toFixed(2),
      ]),
    ));
  }
  const report = {
    date: new Date().toISOString(),
    preliminary: loadBefore[0] > 0.5
      ? `load average ${loadBefore[0].toFixed(2)} before the run: the machine was shared; compare ratios only`
      : null,
    machine: machine(),
    loadAverageBefore: loadBefore,
    loadAverageAfter: Deno.loadavg(),
    llamaCpp: {
      version,
      sdist: `llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} (PyPI), vendor/llama.cpp`,
      build: "cmake Release (-O3), GGML_NATIVE=ON (-march=native), CPU only, shared libraries",
      bench: `${
        args.ompPassive ? "OMP_WAIT_POLICY=PASSIVE " : ""
      }llama-bench -p 0 -n ${args.nGen} -t T -r ${args.reps} -o json`,
    },
    model: {
      source: benchDir,
      what: "synthetic mamba2-130m shape (tools/make_bench_models.ts), f16 matrices, f32 vectors",
      gguf: files,
    },
    settings: { ...args, threads: threadCounts },
    logits,
    logitsTolerance: TOLERANCE,
    speed,
  };
  await Deno.mkdir(out.slice(0, out.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(out, JSON.stringify(report, null, 2) + "\n");
  console.error(`wrote ${out}`);
  if (logits && logits.some((c) => !c.pass)) {
    console.error("logits check FAILED for " + logits.filter((c) => !c.pass).map((c) => c.type).join(", "));
    Deno.exitCode = 1;
  }
}

if (import.meta.main) await main();
