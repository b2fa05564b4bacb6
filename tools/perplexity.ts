/**
 * `deno task perplexity`: held-out perplexity of the bundled demo model (or any model with its
 * tokenizer) on the held-out Austen text its training used, for float and quantized weights.
 *
 *   deno task perplexity [--] [--model DIR|x.gguf]... [--dtype auto,q8,q4] [--group-size 32,64,128]
 *                        [--gguf F16,Q8_0,Q4_0] [--llamacpp] [--data-dir ../shared/data/austen]
 *                        [--tokenizer FILE] [--seq-len 512] [--batch 8] [--threads N] [--json FILE]
 *
 * The table in docs/quantization.md:
 *   deno task perplexity --dtype auto,q8,q4 --group-size 32,64,128 --gguf F16,Q8_0,Q4_0 --llamacpp \
 *                        --json bench/results/perplexity.json
 *
 * The split and the evaluation are tools/train_demo.py's, so that the demo's f16 weights reproduce
 * the held-out loss in models/README.md (4.3105 nats/token, 1.3856 bits/byte):
 *   - each novel (`*.txt` in --data-dir, sorted by name) is cleaned as tools/train_tokenizer.py's
 *     `clean_novel` does (hard-wrapped lines joined, `_` dropped, runs of spaces collapsed, paragraphs
 *     separated by a blank line), and the paragraphs from the first one starting beyond 95% of the
 *     novel's bytes on are held out (`load_corpus`);
 *   - the ids are `<|endoftext|>` (id 0) followed by each held-out novel's ids, novel after novel;
 *   - windows of seq-len + 1 ids start every seq-len ids (consecutive windows share one id), each from
 *     an empty state; every id after a window's first is predicted: n − 1 predictions in all. The loss
 *     is the mean of −log softmax(logits)[next id] in nats, and bits/byte divides the sum (in bits) by
 *     the held-out text's UTF-8 bytes.
 * The windows are fed token by token (decode steps), `--batch` windows side by side (one sequence
 * each; the CPU backend's results do not depend on the batch size), and the log-softmax is taken in
 * float64 here.
 *
 * Each `--model` is run with each `--dtype` (`auto` = as stored; `q8`/`q4` with each `--group-size`).
 * `--gguf` also converts each model directory with llama.cpp's own converter and llama-quantize
 * (tools/llamacpp.ts builds llama.cpp once into ~/.cache/llamacpp) and evaluates those files as stored;
 * `--llamacpp` adds llama.cpp's own loss on every GGUF file (tools/llamacpp_logits.c, same windows).
 * Prints a table; `--json` writes the rows. The text is never written anywhere (the ids go to a
 * temporary file for llama.cpp, removed afterwards).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { isGGUFFile, MambaEngine, Tokenizer, type WeightDType } from "../mod.ts";
import { ensureGGUF, ensureLlamaCpp, llamaCppHeldOutLoss, llamaCppVersion } from "./llamacpp.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** The special token that separates documents in the demo's training text (id 0). */
export const END_OF_TEXT = "<|endoftext|>";

/**
 * One novel as paragraphs, as tools/train_tokenizer.py's `clean_novel` makes them: line endings
 * normalised, `_` removed, blocks split at blank lines, each block's stripped non-empty lines joined
 * with one space, runs of spaces and tabs collapsed.
 */
export function cleanNovel(raw: string): string[] {
  const text = raw.replaceAll("\r\n", "\n").replaceAll("\r", "\n").replaceAll("_", "");
  const paragraphs: string[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
    const para = lines.join(" ").replace(/[ \t]+/g, " ").trim();
    if (para) paragraphs.push(para);
  }
  return paragraphs;
}

/** The held-out part of each novel, as `load_corpus` in tools/train_tokenizer.py splits it. */
export interface HeldOut {
  /** File names, sorted. */
  names: string[];
  /** One text per novel: its held-out paragraphs joined by blank lines, plus a final newline. */
  texts: string[];
  /** UTF-8 bytes of all texts. */
  bytes: number;
}

/** Reads `*.txt` in `dataDir` (sorted by name) and keeps the last `fraction` of each, by bytes. */
export function heldOutSplit(dataDir: string, fraction = 0.05): HeldOut {
  const names = [...Deno.readDirSync(dataDir)]
    .filter((e) => e.isFile && e.name.endsWith(".txt"))
    .map((e) => e.name)
    // Python's sorted() compares code points; so does this for the ASCII names used here.
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (names.length === 0) throw new Error(`no .txt files in ${dataDir}`);
  const enc = new TextEncoder();
  const texts: string[] = [];
  let bytes = 0;
  for (const name of names) {
    const paragraphs = cleanNovel(Deno.readTextFileSync(`${dataDir}/${name}`));
    const sizes = paragraphs.map((p) => enc.encode(p).length + 2);
    const total = sizes.reduce((a, b) => a + b, 0);
    // the first paragraph whose start lies at or beyond (1 − fraction) of the bytes
    let acc = 0, split = paragraphs.length;
    for (let i = 0; i < paragraphs.length; i++) {
      if (acc >= (1 - fraction) * total) {
        split = i;
        break;
      }
      acc += sizes[i];
    }
    const text = paragraphs.slice(split).join("\n\n") + "\n";
    texts.push(text);
    bytes += enc.encode(text).length;
  }
  return { names, texts, bytes };
}

/** `<|endoftext|>` then the novel's ids, for every novel: the id stream train_demo.py evaluates. */
export function heldOutIds(tokenizer: Tokenizer, texts: string[]): Int32Array {
  const eot = tokenizer.tokenToId(END_OF_TEXT);
  if (eot === undefined) throw new Error(`the tokenizer has no ${END_OF_TEXT} token`);
  const ids: number[] = [];
  for (const t of texts) {
    ids.push(eot);
    for (const id of tokenizer.encode(t)) ids.push(id);
  }
  return Int32Array.from(ids);
}

/** Sum of −log p (nats) over the predicted ids and their count. */
export interface HeldOutLoss {
  nats: number;
  count: number;
}

/** −log softmax(row)[target], in float64. */
export function negLogProb(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return Math.log(sum) + max - row[target];
}

/**
 * train_demo.py's `evaluate`: windows of `seqLen + 1` ids starting every `seqLen` ids, each from an
 * empty state, every id after a window's first predicted. `engine.batchSize` windows run side by side.
 */
export function heldOutLoss(engine: MambaEngine, ids: Int32Array, seqLen: number): HeldOutLoss {
  const starts: number[] = [];
  for (let s = 0; s < ids.length - 1; s += seqLen) starts.push(s);
  const batch = engine.batchSize;
  const tokens = new Int32Array(batch);
  let nats = 0, count = 0;
  for (let w = 0; w < starts.length; w += batch) {
    const windows = starts.slice(w, w + batch).map((s) =>
      ids.subarray(s, Math.min(s + seqLen + 1, ids.length))
    );
    engine.reset();
    const steps = Math.max(...windows.map((x) => x.length - 1));
    for (let t = 0; t < steps; t++) {
      // Slots whose window has ended (or that have none) step on id 0; their logits are not read.
      for (let b = 0; b < batch; b++) {
        tokens[b] = b < windows.length && t < windows[b].length - 1 ? windows[b][t] : 0;
      }
      engine.step(tokens);
      for (let b = 0; b < windows.length; b++) {
        if (t >= windows[b].length - 1) continue;
        nats += negLogProb(engine.row(b), windows[b][t + 1]);
        count++;
      }
    }
  }
  return { nats, count };
}

/** One evaluated configuration. */
export interface PerplexityRow {
  model: string;
  /** The load option (`auto` = as stored). */
  dtype: string;
  groupSize: number | null;
  /** What the engine reports its large matrices are (`f16`, `q8`, `q4`, `mixed`). */
  engineDType: string;
  /** What the file stored for its large matrices, from `engine.info.matrices` (distinct values). */
  stored: string;
  /** Bytes of weights a decode step reads. */
  weightBytes: number;
  natsPerToken: number;
  bitsPerByte: number;
  perplexity: number;
  /** Predictions (held-out ids after each window's first). */
  tokens: number;
  seconds: number;
  /** GGUF files with --llamacpp: llama.cpp's own loss on the same file and windows. */
  llamaCpp?: { natsPerToken: number; bitsPerByte: number; perplexity: number; seconds: number };
}

const HELP = `Usage: deno task perplexity [--] [options]

  --model PATH         model directory or .gguf file, repeatable (default: models/demo)
  --dtype LIST         load options to evaluate: auto (as stored), f32, f16, bf16, q8, q4 (default auto)
  --group-size LIST    group sizes for q8/q4 (default 64)
  --gguf TYPES         also make each model directory's GGUF files with llama.cpp's converter (F16) and
                       llama-quantize (Q8_0, Q4_0, …) and evaluate them as stored (tools/llamacpp.ts)
  --llamacpp           for every GGUF file, also llama.cpp's own loss on the same windows
  --data-dir DIR       the Austen novels (default ../shared/data/austen beside the checkout)
  --tokenizer FILE     default: DIR/tokenizer.json, or the GGUF file itself
  --seq-len N          window length (default 512, as tools/train_demo.py)
  --heldout-frac F     held-out fraction of each novel (default 0.05)
  --batch N            windows evaluated side by side (default 8)
  --threads N          CPU threads (default: all)
  --json FILE          write the rows
`;

function list(v: string | undefined, fallback: string): string[] {
  return (v ?? fallback).split(",").map((s) => s.trim()).filter(Boolean);
}

async function main(): Promise<void> {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  const { values: a } = parseArgs({
    args: argv,
    options: {
      model: { type: "string", multiple: true },
      dtype: { type: "string" },
      "group-size": { type: "string" },
      gguf: { type: "string" },
      llamacpp: { type: "boolean" },
      "data-dir": { type: "string" },
      tokenizer: { type: "string" },
      "seq-len": { type: "string" },
      "heldout-frac": { type: "string" },
      batch: { type: "string" },
      threads: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (a.help) {
    console.log(HELP);
    return;
  }
  const dtypes = list(a.dtype, "auto");
  for (const d of dtypes) {
    if (!["auto", "f32", "f16", "bf16", "q8", "q4"].includes(d)) throw new Error(`unknown --dtype ${d}`);
  }
  const groups = list(a["group-size"], "64").map(Number);
  for (const g of groups) {
    if (![32, 64, 128].includes(g)) throw new Error(`--group-size must be 32, 64 or 128`);
  }
  const seqLen = Number(a["seq-len"] ?? 512);
  const batch = Number(a.batch ?? 8);
  const threads = Number(a.threads ?? 0);
  const dataDir = a["data-dir"] ?? `${ROOT}../shared/data/austen`;
  const split = heldOutSplit(dataDir, Number(a["heldout-frac"] ?? 0.05));

  // What to evaluate: each --model with each --dtype, then the GGUF files made with --gguf, as stored.
  const isGGUF = async (path: string) => Deno.statSync(path).isFile && await isGGUFFile(path);
  const jobs: { model: string; tokenizer: string; dtypes: string[] }[] = [];
  const ggufJobs: typeof jobs = [];
  const llama = a.gguf !== undefined || a.llamacpp ? await ensureLlamaCpp() : null;
  for (const model of a.model ?? [`${ROOT}models/demo`]) {
    const gguf = await isGGUF(model);
    const tokenizer = a.tokenizer ?? (gguf ? model : `${model}/tokenizer.json`);
    jobs.push({ model, tokenizer, dtypes });
    if (a.gguf !== undefined && !gguf) {
      const name = model.replace(/\/+$/, "").split("/").pop()!;
      const files = await ensureGGUF(llama!, model, name, list(a.gguf, "F16"));
      for (const f of Object.values(files)) ggufJobs.push({ model: f, tokenizer: f, dtypes: ["auto"] });
    }
  }
  jobs.push(...ggufJobs);

  const rows: PerplexityRow[] = [];
  for (const job of jobs) {
    const ids = heldOutIds(await Tokenizer.load(job.tokenizer), split.texts);
    console.error(
      `${job.model}: held-out ${split.bytes} bytes, ${ids.length} tokens (${split.names.length} novels), ` +
        `windows of ${seqLen}`,
    );
    const configs = job.dtypes.flatMap((d) =>
      d === "q8" || d === "q4"
        ? groups.map((g) => ({ dtype: d, group: g as number | null }))
        : [{ dtype: d, group: null }]
    );
    for (const c of configs) {
      using engine = await MambaEngine.load(job.model, {
        backend: "cpu",
        batchSize: batch,
        threads,
        dtype: c.dtype as WeightDType,
        ...(c.group ? { groupSize: c.group } : {}),
      });
      const t0 = performance.now();
      const { nats, count } = heldOutLoss(engine, ids, seqLen);
      const matrices = (engine.info.matrices ?? []) as { stored?: string }[];
      const row: PerplexityRow = {
        model: job.model,
        dtype: c.dtype,
        groupSize: c.group,
        engineDType: engine.dtype,
        stored: [...new Set(matrices.map((m) => m.stored ?? "?"))].join("; "),
        weightBytes: engine.weightBytesPerToken,
        natsPerToken: nats / count,
        bitsPerByte: nats / Math.LN2 / split.bytes,
        perplexity: Math.exp(nats / count),
        tokens: count,
        seconds: (performance.now() - t0) / 1000,
      };
      console.error(
        `  ${c.dtype}${c.group ? ` g${c.group}` : ""}: ${row.natsPerToken.toFixed(6)} nats/token, ` +
          `${row.bitsPerByte.toFixed(6)} bits/byte, perplexity ${row.perplexity.toFixed(2)} ` +
          `(${count} predictions, ${row.seconds.toFixed(0)} s)`,
      );
      if (a.llamacpp && await isGGUF(job.model)) {
        const t1 = performance.now();
        const ref = await llamaCppHeldOutLoss(llama!, job.model, ids, seqLen, engine.threads);
        if (ref.count !== count) {
          throw new Error(`llama.cpp predicted ${ref.count} ids, this engine ${count}`);
        }
        row.llamaCpp = {
          natsPerToken: ref.nats / ref.count,
          bitsPerByte: ref.nats / Math.LN2 / split.bytes,
          perplexity: Math.exp(ref.nats / ref.count),
          seconds: (performance.now() - t1) / 1000,
        };
        console.error(`    llama.cpp on the same file: ${row.llamaCpp.natsPerToken.toFixed(6)} nats/token`);
      }
      rows.push(row);
    }
  }
  console.log(formatTable(rows));
  if (a.json) {
    const report = {
      date: new Date().toISOString(),
      heldOut: { novels: split.names, bytes: split.bytes, seqLen },
      ...(llama ? { llamaCpp: await llamaCppVersion(llama) } : {}),
      rows,
    };
    await Deno.writeTextFile(a.json, JSON.stringify(report, null, 2) + "\n");
    console.error(`wrote ${a.json}`);
  }
}

/** Markdown table; perplexity relative to the first float row. */
export function formatTable(rows: PerplexityRow[]): string {
  const base = rows.find((r) => r.engineDType === "f16" || r.engineDType === "f32") ?? rows[0];
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)}%`;
  const head = [
    "model",
    "dtype",
    "group",
    "stored",
    "MB",
    "nats/token",
    "bits/byte",
    "perplexity",
    "vs base",
  ];
  if (rows.some((r) => r.llamaCpp)) head.push("llama.cpp nats/token");
  const body = rows.map((r) => {
    const cells = [
      r.model.replace(ROOT, "").replace(/^.*\//, ""),
      r.engineDType,
      r.groupSize === null ? "" : String(r.groupSize),
      r.stored,
      (r.weightBytes / 1e6).toFixed(2),
      r.natsPerToken.toFixed(4),
      r.bitsPerByte.toFixed(4),
      r.perplexity.toFixed(2),
      pct(r.perplexity / base.perplexity - 1),
    ];
    if (head.length > cells.length) cells.push(r.llamaCpp ? r.llamaCpp.natsPerToken.toFixed(4) : "");
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

if (import.meta.main) await main();
