/**
 * Load test of the server on loopback: `deno task loadtest [-- options]`.
 *
 * Against the 130m bench model (f16, CPU; tools/make_bench_models.ts makes it in the cache) with
 * GPT-NeoX's tokenizer from ../shared/data (text prompts cut from Austen), or, where that is absent, a
 * synthetic tokenizer of the same size and token-id prompts:
 *
 *   1. concurrent: `clients` streaming clients each send `requests` requests one after another (mixed
 *      prompt lengths, three in four after a shared preamble as a system prompt would be, mixed
 *      max_tokens, temperature 0.8, top-p 0.95, a seed per request) to a server with `slots` slots:
 *      errors, aggregate completion tokens/s, time to first token and the time between streamed
 *      tokens;
 *   2. solo: a fresh server (empty state cache), one client sending the same requests one at a time:
 *      every response must equal its concurrent twin, and its tokens/s is one client's.
 *
 * Bounded: the request count is fixed and `--timeout` seconds end the run. Exit status 1 on any error
 * or mismatch, or when the concurrent tokens/s is below `--min-ratio` × one client's (2.5).
 *
 * Options: --clients 16 --requests 8 --slots 4 --threads N (the server's CPU threads; 0: all cores)
 *          --unique (no shared preambles: every prompt token is prefilled)
 *          --max-tokens 96,128,160,192 (the completion lengths, used in turn)
 *          --timeout 3600 --min-ratio 2.5 --out FILE
 *          --model DIR --tokenizer FILE (default: the bench model and GPT-NeoX's tokenizer)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Tokenizer, Xoshiro128 } from "../mod.ts";
import { NEOX_TOKENIZER, syntheticTokenizerJson } from "../bench/models.ts";
import { cacheRoot, ensureBenchModel } from "./make_bench_models.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const AUSTEN = new URL("../../shared/data/austen/", import.meta.url);
const PROMPT_TOKENS = [8, 24, 60, 120, 250];
// A little over 256 (mamba2's chunk): the cache then holds the preamble's state at 256 tokens whatever
// text follows it.
const PREAMBLE_TOKENS = 270;
const MAX_TOKENS = [96, 128, 160, 192];

interface Spec {
  client: number;
  index: number;
  body: Record<string, unknown>;
}

interface Outcome {
  ok: boolean;
  error?: string;
  text: string;
  tokens: number;
  ttftMs: number;
  /** Gaps between streamed chunks after the first, ms. */
  gapsMs: number[];
}

function cpuPressure(): number | null {
  try {
    const m = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/**
 * Prompts of mixed lengths (Austen passages of about n tokens, or n token ids). As in chat and agent
 * traffic, three requests in four start with one of two shared preambles of about 270 tokens (a system
 * prompt), which the state cache serves from its chunk boundary; the fourth is a prompt of its own.
 * `unique`: every prompt is its own (no preamble), so every prompt token is prefilled.
 */
async function makeSpecs(
  clients: number,
  requests: number,
  tokenizer: Tokenizer,
  text: boolean,
  unique: boolean,
  maxTokens: number[],
): Promise<Spec[]> {
  const rng = new Xoshiro128(2024);
  let corpus = "";
  if (text) {
    for await (const e of Deno.readDir(AUSTEN)) {
      if (e.name.endsWith(".txt")) corpus += await Deno.readTextFile(new URL(e.name, AUSTEN));
    }
  }
  /** About n tokens of text (ending on a word, so that what follows cannot merge into it), or n ids. */
  const passage = (n: number): string | number[] => {
    if (!text) return Array.from({ length: n }, () => 1 + Math.floor(rng.nextFloat() * 50000));
    const at = Math.floor(rng.nextFloat() * (corpus.length - 8 * n));
    const ids = tokenizer.encode(corpus.slice(at, at + 8 * n)).slice(1, n + 1);
    return tokenizer.decode(ids).trimEnd();
  };
  const join = (a: string | number[], b: string | number[]) =>
    typeof a === "string" ? `${a}\n\n${b}` : [...a, ...(b as number[])];
  const preambles = [passage(PREAMBLE_TOKENS), passage(PREAMBLE_TOKENS)];
  const specs: Spec[] = [];
  for (let c = 0; c < clients; c++) {
    for (let r = 0; r < requests; r++) {
      const n = PROMPT_TOKENS[(c + 3 * r) % PROMPT_TOKENS.length];
      const shared = !unique && (c + r) % 4 !== 0;
      const prompt = shared ? join(preambles[(c + r) % 2], passage(n)) : passage(n);
      specs.push({
        client: c,
        index: r,
        body: {
          model: "bench",
          prompt,
          max_tokens: maxTokens[(5 * c + r) % maxTokens.length],
          temperature: 0.8,
          top_p: 0.95,
          seed: 1000 * c + r,
          stream: true,
          stream_options: { include_usage: true },
        },
      });
    }
  }
  return specs;
}

/** One streamed completion, timed chunk by chunk. */
async function run(url: string, spec: Spec, signal: AbortSignal): Promise<Outcome> {
  const t0 = performance.now();
  const out: Outcome = { ok: false, text: "", tokens: 0, ttftMs: NaN, gapsMs: [] };
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(spec.body),
      signal,
    });
    if (r.status !== 200) {
      out.error = `HTTP ${r.status}: ${await r.text()}`;
      return out;
    }
    const decoder = new TextDecoder();
    let buffer = "", last = NaN, done = false;
    for await (const bytes of r.body!) {
      const now = performance.now();
      buffer += decoder.decode(bytes, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut).replace(/^data: /, "");
        buffer = buffer.slice(cut + 2);
        if (event === "[DONE]") {
          done = true;
          continue;
        }
        const chunk = JSON.parse(event);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) out.tokens = chunk.usage.completion_tokens;
        const piece = chunk.choices?.[0]?.text;
        if (piece) {
          if (Number.isNaN(out.ttftMs)) out.ttftMs = now - t0;
          else out.gapsMs.push(now - last);
          last = now;
          out.text += piece;
        }
      }
    }
    out.ok = done;
    if (!done) out.error = "the stream ended without [DONE]";
  } catch (e) {
    out.error = (e as Error).message;
  }
  return out;
}

/** Starts `deno task serve`'s script on a free port; resolves with its URL. */
async function startServer(model: string, tokenizer: string, slots: number, threads: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-no-legacy-abort",
      `${ROOT}examples/serve.ts`,
      "--model",
      model,
      "--tokenizer",
      tokenizer,
      "--model-id",
      "bench",
      "--slots",
      String(slots),
      "--backend",
      "cpu",
      "--port",
      "0",
      "--max-queue",
      "256",
      "--threads",
      String(threads),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on (\S+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the server exited before listening");
    seen += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const url = /listening on (\S+)/.exec(seen)![1];
  return {
    url,
    async stop() {
      child.kill("SIGINT");
      await child.status;
    },
  };
}

interface PhaseResult {
  outcomes: Outcome[];
  seconds: number;
  tokens: number;
  pressureBefore: number | null;
  pressureAfter: number | null;
}

async function phase(url: string, specs: Spec[], clients: number, signal: AbortSignal): Promise<PhaseResult> {
  const outcomes: Outcome[] = new Array(specs.length);
  const pressureBefore = cpuPressure();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = c; i < specs.length; i += clients) outcomes[i] = await run(url, specs[i], signal);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    outcomes,
    seconds,
    tokens: outcomes.reduce((s, o) => s + o.tokens, 0),
    pressureBefore,
    pressureAfter: cpuPressure(),
  };
}

function summary(p: PhaseResult) {
  const ok = p.outcomes.filter((o) => o.ok);
  const ttft = ok.map((o) => o.ttftMs);
  // Per request: the mean time between its streamed tokens (chunks read together show up as 0 gaps,
  // so single gaps say little), and its longest gap (a prefill block, or the client falling behind).
  const streaming = ok.filter((o) => o.gapsMs.length > 0);
  const mean = streaming.map((o) => o.gapsMs.reduce((a, b) => a + b, 0) / o.gapsMs.length);
  const longest = streaming.map((o) => Math.max(...o.gapsMs));
  return {
    requests: p.outcomes.length,
    errors: p.outcomes.length - ok.length,
    completionTokens: p.tokens,
    seconds: Number(p.seconds.toFixed(2)),
    tokensPerSecond: Number((p.tokens / p.seconds).toFixed(1)),
    ttftMs: { p50: Number(percentile(ttft, 50).toFixed(1)), p95: Number(percentile(ttft, 95).toFixed(1)) },
    interTokenMs: {
      p50: Number(percentile(mean, 50).toFixed(1)),
      p95: Number(percentile(mean, 95).toFixed(1)),
    },
    longestGapMs: {
      p50: Number(percentile(longest, 50).toFixed(1)),
      p95: Number(percentile(longest, 95).toFixed(1)),
    },
    cpuPressure: { before: p.pressureBefore, after: p.pressureAfter },
  };
}

const OPTIONS = {
  clients: { type: "string", default: "16" },
  requests: { type: "string", default: "8" },
  slots: { type: "string", default: "4" },
  timeout: { type: "string", default: "3600" },
  "min-ratio": { type: "string", default: "2.5" },
  out: { type: "string" },
  model: { type: "string" },
  tokenizer: { type: "string" },
  threads: { type: "string", default: "0" },
  unique: { type: "boolean", default: false },
  "max-tokens": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const HELP = `Usage: deno task loadtest [--] [options]

  --clients N          concurrent streaming clients (default 16)
  --requests N         requests per client, one after another (default 8)
  --slots N            the server's slots (default 4)
  --threads N          the server's CPU threads (default 0: one per core)
  --unique             no shared preambles: every prompt token is prefilled
  --max-tokens LIST    completion lengths, used in turn (default ${MAX_TOKENS.join(",")})
  --timeout S          seconds before the run is ended (default 3600)
  --min-ratio R        fail below R × one client's tokens/s (default 2.5)
  --out FILE           also write the report (JSON) to FILE
  --model DIR          default: the 130m f16 bench model (made in the cache)
  --tokenizer FILE     default: GPT-NeoX's from ../shared/data, else a synthetic one
  --help               this text
`;

async function main(): Promise<number> {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true });
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const clients = Number(values.clients), requests = Number(values.requests), slots = Number(values.slots);
  const minRatio = Number(values["min-ratio"]);
  const deadline = AbortSignal.timeout(Number(values.timeout) * 1000);

  const model = values.model ?? await ensureBenchModel("130m", "f16");
  let tokenizerPath = values.tokenizer, text = true;
  if (!tokenizerPath) {
    try {
      Deno.statSync(NEOX_TOKENIZER);
      Deno.statSync(AUSTEN);
      tokenizerPath = NEOX_TOKENIZER.pathname;
    } catch {
      tokenizerPath = `${cacheRoot()}/bench-models/synthetic-tokenizer.json`;
      await Deno.writeTextFile(tokenizerPath, JSON.stringify(syntheticTokenizerJson()));
      text = false;
      console.error("loadtest: GPT-NeoX's tokenizer or the Austen texts are absent: token-id prompts");
    }
  }
  const tokenizer = await Tokenizer.load(tokenizerPath);
  const unique = values.unique!;
  const maxTokens = values["max-tokens"] ? values["max-tokens"].split(",").map(Number) : MAX_TOKENS;
  if (maxTokens.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error("--max-tokens takes whole numbers ≥ 1");
  }
  const specs = await makeSpecs(clients, requests, tokenizer, text, unique, maxTokens);
  console.error(
    `loadtest: ${clients} clients × ${requests} requests, ${slots} slots, ${
      text ? "text" : "token-id"
    } prompts ` +
      `of ${PROMPT_TOKENS.join("/")} tokens${
        unique ? "" : ` (3 in 4 after a shared ${PREAMBLE_TOKENS}-token preamble)`
      }, ` +
      `max_tokens ${maxTokens.join("/")}`,
  );

  const threads = Number(values.threads);
  let server = await startServer(model, tokenizerPath, slots, threads);
  console.error("loadtest: concurrent phase …");
  const concurrent = await phase(server.url, specs, clients, deadline);
  await server.stop();
  server = await startServer(model, tokenizerPath, slots, threads);
  console.error("loadtest: solo phase (one client, fresh server) …");
  const solo = await phase(server.url, specs, 1, deadline);
  await server.stop();

  const mismatches = specs.filter((_, i) =>
    concurrent.outcomes[i].ok && solo.outcomes[i].ok &&
    concurrent.outcomes[i].text !== solo.outcomes[i].text
  ).length;
  const c = summary(concurrent), s = summary(solo);
  const ratio = c.tokensPerSecond / s.tokensPerSecond;
  const report = {
    date: new Date().toISOString(),
    machine: `${Deno.build.os}-${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs, load ${
      Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
    }`,
    model: model.split("/").pop(),
    prompts: (text ? `Austen text (${tokenizerPath.split("/").pop()})` : "token ids") +
      (unique ? ", all distinct" : `, 3 in 4 after one of 2 shared ${PREAMBLE_TOKENS}-token preambles`),
    clients,
    requests,
    slots,
    threads,
    concurrent: c,
    solo: s,
    aggregateOverOneClient: Number(ratio.toFixed(2)),
    mismatches,
  };
  console.log(JSON.stringify(report, null, 2));
  if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(report, null, 2) + "\n");
  const failures = [
    c.errors + s.errors > 0 &&
    `${c.errors + s.errors} errors (first: ${
      [...concurrent.outcomes, ...solo.outcomes].find((o) => !o.ok)?.error
    })`,
    mismatches > 0 && `${mismatches} responses differ from their solo run`,
    ratio < minRatio && `aggregate tokens/s is ${ratio.toFixed(2)}× one client's (goal ${minRatio}×)`,
  ].filter(Boolean);
  for (const f of failures) console.error(`loadtest: ${f}`);
  console.error(
    `loadtest: ${
      c.errors + s.errors
    } errors, ${mismatches} mismatches; ${c.tokensPerSecond} tok/s with ${clients} ` +
      `clients vs ${s.tokensPerSecond} tok/s for one (${
        ratio.toFixed(2)
      }×); TTFT p50/p95 ${c.ttftMs.p50}/${c.ttftMs.p95} ms, ` +
      `inter-token p50/p95 ${c.interTokenMs.p50}/${c.interTokenMs.p95} ms`,
  );
  return failures.length ? 1 : 0;
}

Deno.exit(await main());
