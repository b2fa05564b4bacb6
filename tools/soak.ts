/**
 * Long runs: memory stays flat and results stay exact over many decode steps, and engines in several
 * Workers at once compute what each computes alone.
 *
 *   deno task soak                        # both, long: 100,000 steps of mamba2-130m's shape, then 4
 *                                         # Workers for 10 minutes (a few hours in all on 2 cores)
 *   deno task soak decode --steps 20000   # one of them, shorter
 *   deno task soak workers --seconds 60 --model tests/fixtures/tiny-g1
 *   deno task soak decode --pause-while /tmp/QUIET  # sleeps, engine kept, while the file exists
 *
 * decode: one engine steps `steps` tokens, each chosen from the previous logits, after a warm-up
 * (10,000 steps by default: the V8 heap and malloc settle within about that);
 * anonymous resident memory (RssAnon; the lowest sample of the last 1000 steps against that of the first
 * 1000 after the warm-up, the engine still open) may grow by less than 1 MB; then a fresh engine replays
 * the same tokens and every logits row must be bitwise equal (compared by hash). Anonymous memory, not
 * total RSS: file-backed pages (the mapped weights, the Deno binary) come and go with the page cache, and
 * memory pressure elsewhere on the machine once evicted 57 MB of them in the middle of a run. Where
 * /proc/self/status is missing (not Linux), total RSS is used and the output says so. With
 * `--v8-flags=--expose-gc` (as `deno task soak` runs) a full collection precedes every sample, so garbage
 * not yet collected cannot be mistaken for growth.
 *
 * workers: four engines (CPU with 1 and 2 threads, Metal through MetalCompat plain and recorded) step
 * in four Workers at once for `seconds`; the first saves its state every few steps and the second
 * loads each one into a second sequence between its own steps. Afterwards each Worker's run is
 * replayed here, alone and in the same order (hand-overs included), and must give bitwise equal logits.
 * tests/soak.test.ts runs short versions of both.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadOptions, MambaEngine } from "../mod.ts";
import { ensureBenchModel } from "./make_bench_models.ts";
import type { WorkerJob, WorkerReport } from "./soak_worker.ts";
import { fileExists } from "../ffi/host.ts";

let lastRow: Float32Array | undefined;
let lastWords: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

/**
 * Reads the process's anonymous resident memory (`RssAnon` in /proc/self/status) without allocating:
 * one open file, re-read from its start into a fixed buffer and parsed in place, so sampling every few
 * steps adds no garbage to what it measures. Where the file or the field is missing (not Linux), it
 * reads total RSS instead (`source` says which).
 */
export class MemorySampler implements Disposable {
  /** What {@linkcode MemorySampler.read} returns: anonymous resident bytes, or total resident bytes. */
  readonly source: "RssAnon" | "rss";
  #file?: Deno.FsFile;
  #buf = new Uint8Array(8192);
  static #key = new TextEncoder().encode("RssAnon:");

  constructor(path = "/proc/self/status") {
    try {
      this.#file = Deno.openSync(path, { read: true });
      if (this.#anon() < 0) throw new Error("no RssAnon field");
      this.source = "RssAnon";
    } catch {
      this.#file?.close();
      this.#file = undefined;
      this.source = "rss";
    }
  }

  /** Bytes resident now (see {@linkcode MemorySampler.source}). */
  read(): number {
    return this.#file ? this.#anon() : Deno.memoryUsage().rss;
  }

  /** RssAnon in bytes, or -1 where the field is missing. */
  #anon(): number {
    const file = this.#file!, buf = this.#buf, key = MemorySampler.#key;
    file.seekSync(0, Deno.SeekMode.Start);
    let n = 0;
    // (the file is read whole in one call; a view is made only if it ever is not)
    for (
      let got;
      n < buf.length && (got = file.readSync(n === 0 ? buf : buf.subarray(n))) !== null && got > 0;
    ) {
      n += got;
    }
    for (let i = 0; i + key.length <= n; i++) {
      let k = 0;
      while (k < key.length && buf[i + k] === key[k]) k++;
      if (k < key.length) continue;
      let j = i + k, kb = 0;
      while (j < n && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
      while (j < n && buf[j] >= 0x30 && buf[j] <= 0x39) kb = kb * 10 + buf[j++] - 0x30;
      return kb * 1024;
    }
    return -1;
  }

  [Symbol.dispose](): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** A full collection where the runtime offers one (`--v8-flags=--expose-gc`); nothing otherwise. */
const collect: () => void = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** FNV-1a over the bits of a logits row, folded into a running hash. */
export function hashRow(row: Float32Array, h = 0x811c9dc5): number {
  // The engine hands back the same logits view every step: reuse its word view (no garbage per step,
  // which would show up in the resident-memory measurement as heap growth).
  if (row !== lastRow) {
    lastRow = row;
    lastWords = new Uint32Array(row.buffer, row.byteOffset, row.length);
  }
  const words = lastWords;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 16777619);
  return h >>> 0;
}

/** The argmax of a row (first of ties), used to choose the next token from the logits. */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** The token after step `t` of a stream: depends on the logits, so they are read every step. */
export function nextToken(row: Float32Array, t: number, stream: number, vocab: number): number {
  return (argmax(row) + t * (stream + 1)) % vocab;
}

export interface DecodeSoakResult {
  steps: number;
  warmup: number;
  /** What was measured: anonymous resident memory (Linux), or total RSS where that is unavailable. */
  memory: "RssAnon" | "rss";
  rssBefore: number;
  rssAfter: number;
  /** Bytes of `memory` gained between the end of the warm-up and the last step. */
  rssGrowth: number;
  msPerStep: number;
  /** First step whose replayed logits differ, or -1. */
  firstMismatch: number;
}

/** The decode soak (see the module documentation). */
export function soakDecode(
  model: string,
  options: LoadOptions,
  steps: number,
  warmup = 10_000,
  progress?: (line: string) => void,
  pause?: () => number,
): DecodeSoakResult {
  // Written here, before anything is measured: a fresh typed array's pages become resident only as they
  // are first written, so filling them step by step read as 8 bytes of growth per step (0.8 MB over
  // 100,000 steps, the whole "creep" earlier runs saw).
  const tokens = new Int32Array(warmup + steps).fill(-1);
  const hashes = new Uint32Array(warmup + steps).fill(0xffffffff);
  // Memory is the lowest sample (every 10 steps) of a window after the warm-up and of the last window:
  // garbage not yet collected raises single samples by a megabyte or so, a leak raises the floor.
  const window = Math.max(10, Math.min(1000, Math.floor(steps / 4)));
  using memory = new MemorySampler();
  const sample = () => {
    collect();
    return memory.read();
  };
  let rssBefore = Infinity, rssAfter = Infinity, paused = 0;
  const started = performance.now();
  let measured = started;
  {
    using engine = MambaEngine.loadSync(model, options);
    let row = engine.prefill([1, 2, 3]);
    for (let t = 0; t < warmup + steps; t++) {
      if (t === warmup) measured = performance.now();
      if (t % 10 === 0 && t >= warmup && t < warmup + window) rssBefore = Math.min(rssBefore, sample());
      if (t % 10 === 0 && t >= warmup + steps - window) rssAfter = Math.min(rssAfter, sample());
      tokens[t] = nextToken(row, t, 0, engine.vocabSize);
      row = engine.step(tokens[t]);
      hashes[t] = hashRow(row);
      if (progress && (t + 1) % 10_000 === 0) {
        progress(`decode: ${t + 1} steps, ${memory.source} ${(memory.read() / 2 ** 20).toFixed(2)} MiB`);
      }
      if (pause && (t + 1) % 1000 === 0) {
        const ms = pause();
        if (t >= warmup) paused += ms;
      }
    }
    // (both read while the engine lives: memory a leak ties to the engine is freed with it)
  }
  // said now too: a long replay may not be waited for
  progress?.(
    `decode: ${memory.source} ${(rssBefore / 2 ** 20).toFixed(2)} → ${(rssAfter / 2 ** 20).toFixed(2)} MiB ` +
      `(${
        ((rssAfter - rssBefore) / 1024).toFixed(0)
      } KiB) from the first to the last ${window} steps after the warm-up`,
  );
  const msPerStep = (performance.now() - measured - paused) / steps;
  let firstMismatch = -1;
  {
    using fresh = MambaEngine.loadSync(model, options);
    fresh.prefill([1, 2, 3]);
    for (let t = 0; t < warmup + steps; t++) {
      if (hashRow(fresh.step(tokens[t])) !== hashes[t]) {
        firstMismatch = t;
        break;
      }
      if (progress && (t + 1) % 10_000 === 0) progress(`replay: ${t + 1} steps`);
      if (pause && (t + 1) % 1000 === 0) pause();
    }
  }
  return {
    steps,
    warmup,
    memory: memory.source,
    rssBefore,
    rssAfter,
    rssGrowth: rssAfter - rssBefore,
    msPerStep,
    firstMismatch,
  };
}

/** The engines of the Workers soak: a mix of backends and thread counts. */
export const WORKER_ENGINES: LoadOptions[] = [
  { backend: "cpu", threads: 1 },
  { backend: "cpu", threads: 2, batchSize: 2 }, // sequence 1 takes the states worker 0 hands over
  { backend: "metal" },
  { backend: "metal", recorded: true },
];

export interface WorkersSoakResult {
  seconds: number;
  /** Steps each Worker took, hand-overs each loaded, and whether its replay matched. */
  workers: { options: LoadOptions; steps: number; handovers: number; firstMismatch: number }[];
}

/** Replays one Worker's run alone, in the order it reported; returns the first step that differs, or -1. */
function replay(
  model: string,
  job: WorkerJob,
  report: WorkerReport,
  states: Map<number, Uint8Array>,
  wanted?: Set<number>,
): number {
  using engine = MambaEngine.loadSync(model, job.options);
  let row = engine.prefill([1, 2, 3]);
  let hash = 0x811c9dc5, next = 0;
  const tokens = new Array(engine.batchSize).fill(0);
  for (let t = 0; t < report.steps; t++) {
    let branch = false;
    if (next < report.loads.length && report.loads[next].beforeStep === t) {
      engine.loadState(states.get(report.loads[next].handover)!, 1);
      next++;
      branch = true;
    }
    tokens[0] = nextToken(row, t, job.stream, engine.vocabSize);
    if (engine.batchSize > 1) tokens[1] = branch ? 7 : 0;
    engine.step(tokens);
    row = engine.row(0);
    hash = hashRow(row, hash);
    if (branch) hash = hashRow(engine.row(1), hash);
    if (job.producer && (t + 1) % job.every === 0 && wanted?.has(t + 1)) {
      states.set(t + 1, engine.saveState(0));
    }
    const checkpoint = report.checkpoints.find((c) => c.step === t + 1);
    if (checkpoint && checkpoint.hash !== hash) return t;
  }
  return hash === report.hash ? -1 : report.steps;
}

/** The most state bytes the producer hands over in one run: the replay holds every handed state until the
 * consumer's replay has loaded it, so ten minutes at one state per 16 steps (13,000 states of the demo
 * model, ~1 MB each) once grew the soak to 24 GB and the OOM killer ended it. */
const MAX_HANDOVER_BYTES = 512 * 2 ** 20;

/** FNV-1a over bytes. */
function hashBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16777619);
  return h >>> 0;
}

/** The Workers soak (see the module documentation). */
export async function soakWorkers(
  model: string,
  seconds: number,
  progress?: (line: string) => void,
): Promise<WorkersSoakResult> {
  const jobs: WorkerJob[] = WORKER_ENGINES.map((options, i) => ({
    model,
    options,
    stream: i,
    seconds,
    producer: i === 0,
    every: 16,
    maxHandoverBytes: MAX_HANDOVER_BYTES,
  }));
  const workers = jobs.map(() =>
    new Worker(new URL("./soak_worker.ts", import.meta.url).href, { type: "module" })
  );
  const handed = new Map<number, number>(); // producer step → hash of the state bytes, as sent
  try {
    const reports = await Promise.all(workers.map((w, i) =>
      new Promise<WorkerReport>((resolve, reject) => {
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`worker ${i}: ${e.message}`));
        };
        w.onmessage = (e: MessageEvent) => {
          const m = e.data;
          if (m.kind === "state") {
            handed.set(m.step, hashBytes(m.bytes));
            workers[1].postMessage({ kind: "state", step: m.step, bytes: m.bytes });
          } else if (m.kind === "done") {
            progress?.(`worker ${i}: ${m.report.steps} steps, ${m.report.loads.length} states loaded`);
            resolve(m.report);
          }
        };
        w.postMessage({ kind: "start", job: jobs[i] });
      })
    ));
    // The replays: the producer first, whose replayed states must equal what it sent.
    const states = new Map<number, Uint8Array>();
    const result: WorkersSoakResult = { seconds, workers: [] };
    for (let i = 0; i < jobs.length; i++) {
      let mismatch = replay(model, jobs[i], reports[i], states, i === 0 ? new Set(handed.keys()) : undefined);
      if (i === 0) {
        for (const [step, hash] of handed) {
          const again = states.get(step);
          if (!again || hashBytes(again) !== hash) {
            mismatch = mismatch === -1 ? step : Math.min(mismatch, step);
          }
        }
      }
      progress?.(`replayed worker ${i}: ${mismatch === -1 ? "equal" : `differs at step ${mismatch}`}`);
      result.workers.push({
        options: jobs[i].options,
        steps: reports[i].steps,
        handovers: reports[i].loads.length,
        firstMismatch: mismatch,
      });
    }
    return result;
  } finally {
    for (const w of workers) w.terminate();
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      steps: { type: "string", default: "100000" },
      warmup: { type: "string", default: "10000" },
      seconds: { type: "string", default: "600" },
      model: { type: "string" },
      dtype: { type: "string", default: "f16" },
      threads: { type: "string", default: "0" },
      "pause-while": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task soak [decode|workers] [--steps N] [--warmup N] [--seconds S] [--model 130m|780m|DIR] [--dtype f16] " +
        "[--threads N] [--pause-while FILE]",
    );
    return 0;
  }
  const which = positionals.length > 0 ? positionals : ["decode", "workers"];
  const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  let ok = true;
  if (which.includes("decode")) {
    const m = values.model ?? "130m";
    const dir = m === "130m" || m === "780m" ? await ensureBenchModel(m, values.dtype as "f16") : m;
    // --threads 1 on a busy machine: a second pool thread mostly spins waiting for a core
    // --pause-while FILE: the decode soak sleeps (every 1000 steps, the engine kept) while FILE exists,
    // so a long run can make room for measurements on a shared machine without starting over
    const flag = values["pause-while"];
    const nap = new Int32Array(new SharedArrayBuffer(4));
    const pause = flag === undefined ? undefined : () => {
      // (a stat alone can take over a millisecond on a loaded machine: only a real pause is logged)
      if (!fileExists(flag)) return 0;
      const from = performance.now();
      while (fileExists(flag)) Atomics.wait(nap, 0, 0, 10_000);
      const ms = performance.now() - from;
      log(`decode: paused ${(ms / 1000).toFixed(0)} s while ${flag} existed`);
      return ms;
    };
    const r = soakDecode(
      dir,
      { backend: "cpu", threads: Number(values.threads) },
      Number(values.steps),
      Number(values.warmup),
      log,
      pause,
    );
    const what = r.memory === "RssAnon"
      ? "anonymous memory (RssAnon)"
      : "total RSS (no RssAnon in /proc/self/status here: file-backed pages included)";
    const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(2);
    console.log(
      `decode soak (${dir}): ${r.steps} steps after ${r.warmup} warm-up, ${
        r.msPerStep.toFixed(2)
      } ms/step, ` +
        `${what} ${mib(r.rssBefore)} → ${mib(r.rssAfter)} MiB (${(r.rssGrowth / 1024).toFixed(0)} KiB), ` +
        `replay ${r.firstMismatch === -1 ? "equal" : `differs at step ${r.firstMismatch}`}`,
    );
    ok &&= r.rssGrowth < 2 ** 20 && r.firstMismatch === -1;
  }
  if (which.includes("workers")) {
    const model = values.model && !/^\d+m$/.test(values.model)
      ? values.model
      : new URL("../models/demo", import.meta.url).pathname;
    const r = await soakWorkers(model, Number(values.seconds), log);
    for (const w of r.workers) {
      console.log(
        `worker ${JSON.stringify(w.options)}: ${w.steps} steps, ${w.handovers} states loaded, replay ` +
          (w.firstMismatch === -1 ? "equal" : `differs at step ${w.firstMismatch}`),
      );
      ok &&= w.firstMismatch === -1;
    }
  }
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
