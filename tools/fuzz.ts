/**
 * Builds the libFuzzer driver (swift/Fuzz, optimised, with AddressSanitizer) and runs the fuzz targets of
 * swift/Sources/MambaMetal/FuzzTargets.swift, each from its seed folder tests/fuzz/corpus/<target>.
 *
 *   deno task fuzz                          # every target, 60 s each
 *   deno task fuzz json torch --seconds 600 # some targets, longer
 *   deno task fuzz --runs 1000000           # every target until a million inputs
 *   deno task fuzz --smoke                  # CI: 20 s per target
 *
 * The targets come from the driver itself (FuzzTargets.all), so a new target needs only its entry there
 * and a seed folder. Limits per input: 1 s (a hang), one allocation of at most --malloc-mb MiB (a loader
 * asking for more than a file of at most max_len bytes can justify), 2 GiB resident. What the fuzzer
 * finds lands in swift/.build-fuzz/artifacts/; fix the parser, then copy the input into the target's
 * seed folder as crash-<what> (Tests/MambaMetalTests/FuzzRegressionTests.swift replays every file
 * there). New coverage accumulates in swift/.build-fuzz/corpus/<target> between runs. A summary of each
 * run (executions, coverage, features) is appended to swift/.build-fuzz/results.jsonl.
 *
 * @module
 */
import { parseArgs } from "node:util";

const ROOT = new URL("..", import.meta.url).pathname;
const SCRATCH = `${ROOT}swift/.build-fuzz`;
const DRIVER = `${SCRATCH}/release/MambaFuzz`;

const USAGE =
  `usage: deno task fuzz [TARGET...] [--seconds N | --runs N | --smoke] [--timeout S] [--malloc-mb N] [--no-build]
  TARGET        targets to run (default: all; --list prints them)
  --seconds N   time per target (default 60)
  --runs N      inputs per target instead of a time (libFuzzer -runs); with --seconds, whichever
                comes first (a long campaign in pieces)
  --smoke       20 s per target (CI)
  --timeout S   an input running longer is a hang (default 1; wall-clock time, so raise it on a busy
                machine and replay the corpus with --replay afterwards)
  --replay      run every input of the grown corpus once, with --timeout, instead of fuzzing
  --malloc-mb N largest single allocation an input may cause, MiB (default 64)
  --no-build    use the driver as built
  --list        print the targets and exit`;

export interface FuzzResult {
  target: string;
  ok: boolean;
  runs: number;
  seconds: number;
  execPerSecond: number;
  cov: number;
  ft: number;
  corpus: number;
  peakRssMb: number;
  artifact?: string;
}

/** Builds the driver: the whole package with ASan, the Swift code also with libFuzzer's coverage. */
export async function buildDriver(): Promise<void> {
  const args = [
    "build",
    "--package-path",
    `${ROOT}swift`,
    "--scratch-path",
    SCRATCH,
    "-c",
    "release", // optimised (3× the inputs per second) but with Swift's overflow and bounds checks
    "--product",
    "MambaFuzz",
    "-Xswiftc",
    "-enable-testing", // the driver reaches the parsers through @testable import
    "-Xswiftc",
    "-sanitize=fuzzer,address",
    "-Xcc",
    "-fsanitize=address",
  ];
  const out = await new Deno.Command("swift", {
    args,
    env: { MAMBA_FUZZ: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  // gold warns about every ASan helper symbol SwiftPM asks it to export: noise.
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const lines = text.split("\n").filter((l) => l && !l.includes("Cannot export local symbol"));
  if (!out.success) {
    console.error(lines.join("\n"));
    throw new Error("fuzz: building the driver failed");
  }
  console.error(lines.at(-1));
}

/** The driver's targets: name → max_len. */
export async function listTargets(): Promise<Map<string, number>> {
  const out = await new Deno.Command(DRIVER, { env: { MAMBA_FUZZ_TARGET: "list" }, stdout: "piped" })
    .output();
  if (!out.success) throw new Error("fuzz: the driver cannot list its targets");
  const targets = new Map<string, number>();
  for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
    const [name, maxLen] = line.split(" ");
    targets.set(name, Number(maxLen));
  }
  return targets;
}

/** How long a target runs and what counts as a failure. */
export interface FuzzLimits {
  /** Time per target, or */
  seconds?: number;
  /** inputs per target. */
  runs?: number;
  /** An input running longer (wall clock) is a hang. */
  timeoutSeconds: number;
  /** An input may not cause a single allocation larger than this. */
  mallocMb: number;
  /** Run the grown corpus once instead of fuzzing. */
  replay?: boolean;
}

/** Runs one target; returns libFuzzer's final statistics. */
export async function runTarget(target: string, maxLen: number, limits: FuzzLimits): Promise<FuzzResult> {
  const work = `${SCRATCH}/corpus/${target}`, seeds = `${ROOT}tests/fuzz/corpus/${target}`;
  const artifacts = `${SCRATCH}/artifacts/`;
  Deno.mkdirSync(work, { recursive: true });
  Deno.mkdirSync(artifacts, { recursive: true });
  Deno.mkdirSync(`${SCRATCH}/logs`, { recursive: true });
  const args = [
    `-max_len=${maxLen}`,
    `-timeout=${limits.timeoutSeconds}`,
    "-rss_limit_mb=2048",
    `-malloc_limit_mb=${limits.mallocMb}`,
    "-use_value_profile=1",
    "-print_final_stats=1",
    `-artifact_prefix=${artifacts}${target}-`,
    // both given: whichever comes first (a campaign in pieces of bounded time)
    ...(limits.replay ? ["-runs=0"] : [
      ...(limits.runs !== undefined ? [`-runs=${limits.runs}`] : []),
      ...(limits.seconds !== undefined ? [`-max_total_time=${limits.seconds}`] : []),
    ]),
    work,
    seeds,
  ];
  const started = performance.now();
  // The log streams to a file: buffered here, it would grow this process, and a child starts with its
  // parent's peak resident size as its own (Linux keeps ru_maxrss across fork and exec), which
  // libFuzzer's -rss_limit_mb would then count against the target.
  const logPath = `${SCRATCH}/logs/${target}.log`;
  const child = new Deno.Command(DRIVER, {
    args,
    env: {
      MAMBA_FUZZ_TARGET: target,
      MAMBA_FUZZ_STATE_MODEL: `${ROOT}tests/fuzz/state-model`,
      // a smaller quarantine than ASan's 256 MiB: use-after-free stays detectable, resident memory lower
      ASAN_OPTIONS: "quarantine_size_mb=64",
      // libFuzzer reports crashes itself; Swift's backtracer would hold the crashed process for its own
      SWIFT_BACKTRACE: "enable=no",
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await child.stderr.pipeTo(
    (await Deno.open(logPath, { write: true, create: true, truncate: true })).writable,
  );
  const { success } = await child.status;
  const log = Deno.readTextFileSync(logPath);
  const stat = (key: string) => Number(log.match(new RegExp(`stat::${key}:\\s+(\\d+)`))?.[1] ?? NaN);
  // the last status line: "#N  DONE  cov: C ft: F corp: K/…"
  const status = [...log.matchAll(/#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/g)].at(-1);
  const artifact = log.match(/Test unit written to (\S+)/)?.[1];
  const runs = stat("number_of_executed_units");
  const seconds = (performance.now() - started) / 1000;
  return {
    target,
    ok: success && artifact === undefined,
    runs,
    seconds: Math.round(seconds),
    execPerSecond: Math.round(runs / seconds),
    cov: Number(status?.[2] ?? NaN),
    ft: Number(status?.[3] ?? NaN),
    corpus: Number(status?.[4] ?? NaN),
    peakRssMb: stat("peak_rss_mb"),
    artifact,
  };
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      seconds: { type: "string" },
      runs: { type: "string" },
      smoke: { type: "boolean" },
      "malloc-mb": { type: "string", default: "64" },
      timeout: { type: "string", default: "1" },
      replay: { type: "boolean" },
      "no-build": { type: "boolean" },
      list: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values["no-build"]) await buildDriver();
  const targets = await listTargets();
  if (values.list) {
    for (const [name, maxLen] of targets) console.log(`${name}\tmax_len ${maxLen}`);
    return 0;
  }
  for (const t of positionals) {
    if (!targets.has(t)) {
      throw new Error(`fuzz: no target "${t}" (targets: ${[...targets.keys()].join(", ")})`);
    }
  }
  const limits: FuzzLimits = {
    ...(values.runs !== undefined ? { runs: Number(values.runs) } : {}),
    ...(values.runs === undefined || values.seconds !== undefined
      ? { seconds: values.smoke ? 20 : Number(values.seconds ?? 60) }
      : {}),
    timeoutSeconds: Number(values.timeout),
    mallocMb: Number(values["malloc-mb"]),
    replay: values.replay,
  };
  const results: FuzzResult[] = [];
  for (const target of positionals.length > 0 ? positionals : [...targets.keys()]) {
    const r = await runTarget(target, targets.get(target)!, limits);
    results.push(r);
    console.log(
      `${r.ok ? "ok  " : "FAIL"} ${target.padEnd(12)} ${String(r.runs).padStart(10)} runs ` +
        `${String(r.execPerSecond).padStart(7)}/s  cov ${String(r.cov).padStart(5)}  ft ${
          String(r.ft).padStart(6)
        }  ` +
        `corpus ${String(r.corpus).padStart(5)}  rss ${r.peakRssMb} MB` +
        (r.artifact ? `  → ${r.artifact}` : ""),
    );
    if (!r.ok) {
      const log = Deno.readTextFileSync(`${SCRATCH}/logs/${target}.log`).split("\n");
      const first = log.findIndex((l) =>
        /ERROR|Fatal error|deadly signal|timeout|out-of-memory|malloc\(/.test(l)
      );
      console.error(log.slice(Math.max(0, first - 2), first + 40).join("\n"));
    }
  }
  Deno.writeTextFileSync(
    `${SCRATCH}/results.jsonl`,
    JSON.stringify({ date: new Date().toISOString(), limits, results }) + "\n",
    { append: true },
  );
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
