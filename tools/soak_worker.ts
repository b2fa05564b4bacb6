/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * One engine of the Workers soak (tools/soak.ts): steps its own token stream for a while, folding every
 * logits row into a running hash; the producer posts its state every `every` steps, and a Worker whose
 * engine has a second sequence loads each state it is sent into that sequence before its next step.
 *
 * @module
 */
import { type LoadOptions, MambaEngine } from "../mod.ts";
import { hashRow, nextToken } from "./soak.ts";

/** What a Worker runs. */
export interface WorkerJob {
  model: string;
  options: LoadOptions;
  /** Selects the token stream. */
  stream: number;
  seconds: number;
  /** Posts its state every `every` steps. */
  producer: boolean;
  every: number;
  /** The producer stops handing over once it has sent this many bytes of states. */
  maxHandoverBytes: number;
}

/** What a Worker did, for the replay. */
export interface WorkerReport {
  steps: number;
  /** The running hash after the last step. */
  hash: number;
  /** The running hash every 1000 steps, to find where a replay departs. */
  checkpoints: { step: number; hash: number }[];
  /** Hand-overs loaded into sequence 1: the producer's step, and this Worker's step it preceded. */
  loads: { handover: number; beforeStep: number }[];
}

const pending: { step: number; bytes: Uint8Array }[] = [];

self.onmessage = async (e: MessageEvent) => {
  const m = e.data;
  if (m.kind === "state") {
    pending.push({ step: m.step, bytes: m.bytes });
    return;
  }
  const job: WorkerJob = m.job;
  using engine = MambaEngine.loadSync(job.model, job.options);
  const report: WorkerReport = { steps: 0, hash: 0x811c9dc5, checkpoints: [], loads: [] };
  const tokens = new Array(engine.batchSize).fill(0);
  let row = engine.prefill([1, 2, 3]);
  let sentBytes = 0;
  const end = performance.now() + job.seconds * 1000;
  for (let t = 0; performance.now() < end; t++) {
    // let messages in (states from the producer) every few steps
    if (t % 8 === 0) await new Promise((r) => setTimeout(r, 0));
    let branch = false;
    if (engine.batchSize > 1 && pending.length > 0) {
      const s = pending.shift()!;
      engine.loadState(s.bytes, 1);
      report.loads.push({ handover: s.step, beforeStep: t });
      branch = true;
    }
    tokens[0] = nextToken(row, t, job.stream, engine.vocabSize);
    if (engine.batchSize > 1) tokens[1] = branch ? 7 : 0;
    engine.step(tokens);
    row = engine.row(0);
    report.hash = hashRow(row, report.hash);
    if (branch) report.hash = hashRow(engine.row(1), report.hash);
    report.steps = t + 1;
    if (job.producer && (t + 1) % job.every === 0 && sentBytes < job.maxHandoverBytes) {
      const bytes = engine.saveState(0);
      sentBytes += bytes.length;
      self.postMessage({ kind: "state", step: t + 1, bytes }, [bytes.buffer as ArrayBuffer]);
    }
    if ((t + 1) % 1000 === 0) report.checkpoints.push({ step: t + 1, hash: report.hash });
  }
  self.postMessage({ kind: "done", report });
};
