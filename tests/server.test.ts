// The OpenAI-compatible server on the demo model: responses equal Generator's for the same seed (alone,
// concurrently, streamed or not, from the state cache or not), errors in OpenAI's shape with the right
// statuses, the queue bound, and disconnects freeing their slot.
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import {
  Generator,
  type LoadOptions,
  MambaEngine,
  serve,
  type ServeOptions,
  Tokenizer,
  Xoshiro128,
} from "../mod.ts";
import { CompletionJob } from "../src/server/job.ts";
import { Scheduler } from "../src/server/scheduler.ts";
import { StateCache } from "../src/server/state_cache.ts";
import { ROOT } from "./helpers.ts";

const DEMO = `${ROOT}models/demo`;
const tokenizer = await Tokenizer.load(`${DEMO}/tokenizer.json`);

interface Running {
  url: string;
  engine: MambaEngine;
  [Symbol.asyncDispose](): Promise<void>;
}

async function start(slots: number, options: ServeOptions = {}, load: LoadOptions = {}): Promise<Running> {
  const engine = MambaEngine.loadSync(DEMO, { backend: "cpu", ...load, batchSize: slots });
  const { promise, resolve } = Promise.withResolvers<number>();
  const server = serve(engine, tokenizer, {
    port: 0,
    modelId: "demo",
    onListen: (a) => resolve(a.port),
    ...options,
  });
  const url = `http://127.0.0.1:${await promise}`;
  return {
    url,
    engine,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      engine.close();
    },
  };
}

/** What Generator gives for a request (batch 1, the whole prompt in one prefill). */
interface SamplingFields {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
}

async function expected(prompt: string | number[], options: SamplingFields, load: LoadOptions = {}) {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", ...load });
  const gen = new Generator(engine, tokenizer).generate(prompt, {
    maxTokens: options.max_tokens ?? 16,
    temperature: options.temperature ?? 1,
    topP: options.top_p ?? 1,
    topK: options.top_k ?? 0,
    minP: options.min_p ?? 0,
    repetitionPenalty: options.repetition_penalty ?? 1,
    seed: options.seed,
  });
  let text = "";
  for await (const piece of gen) text += piece;
  return {
    text,
    tokens: gen.tokens.length,
    finish: gen.stats.stopReason === "max_tokens" ? "length" : "stop",
  };
}

async function complete(url: string, body: Record<string, unknown>) {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

/** A streamed completion: the text of its chunks, the finish reason, the usage chunk, [DONE] seen. */
async function streamed(url: string, body: Record<string, unknown>) {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-type"), "text/event-stream");
  const events = (await r.text()).split("\n\n").filter((e) => e.length > 0);
  assert.equal(events.at(-1), "data: [DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, "")));
  const usage = chunks.at(-1).usage;
  const choices = chunks.slice(0, -1).map((c) => c.choices[0]);
  return {
    text: choices.map((c) => c.text).join(""),
    finish: choices.at(-1).finish_reason,
    usage,
    ids: new Set(chunks.map((c) => c.id)),
  };
}

function randomPrompt(n: number, seed: number): number[] {
  const rng = new Xoshiro128(seed);
  return Array.from({ length: n }, () => 1 + Math.floor(rng.nextFloat() * 8000));
}

Deno.test("server: a completion equals Generator's for the same seed, streamed or not", async () => {
  await using s = await start(2, { cacheBytes: 0 });
  const request = {
    prompt: "It is a truth universally acknowledged",
    max_tokens: 24,
    temperature: 0.9,
    top_p: 0.9,
    seed: 7,
  };
  const want = await expected(request.prompt, request);
  const whole = await complete(s.url, { model: "demo", ...request });
  assert.equal(whole.status, 200);
  assert.equal(whole.json.object, "text_completion");
  assert.match(whole.json.id, /^cmpl-/);
  assert.equal(whole.json.model, "demo");
  assert.deepEqual(whole.json.choices, [{
    text: want.text,
    index: 0,
    logprobs: null,
    finish_reason: "length",
  }]);
  const promptTokens = tokenizer.encode(request.prompt).length;
  assert.deepEqual(whole.json.usage, {
    prompt_tokens: promptTokens,
    completion_tokens: 24,
    total_tokens: promptTokens + 24,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  const stream = await streamed(s.url, request);
  assert.equal(stream.text, want.text);
  assert.equal(stream.finish, "length");
  assert.equal(stream.usage.completion_tokens, 24);
  assert.equal(stream.ids.size, 1);
  // stop strings and token-id prompts
  const stop = await complete(s.url, { ...request, stop: [want.text.slice(5, 9)] });
  assert.equal(stop.json.choices[0].text, want.text.slice(0, want.text.indexOf(want.text.slice(5, 9))));
  assert.equal(stop.json.choices[0].finish_reason, "stop");
  const ids = await complete(s.url, { ...request, prompt: tokenizer.encode(request.prompt) });
  assert.equal(ids.json.choices[0].text, want.text);
  // an empty prompt starts from the end-of-text token, as Generator does
  const empty = await complete(s.url, { ...request, prompt: "" });
  assert.equal(empty.json.choices[0].text, (await expected("", request)).text);
  assert.equal(empty.json.usage.prompt_tokens, 1);
});

Deno.test("server: concurrent requests, more than the slots, each equal their solo run", async () => {
  // Prompt blocks of one chunk (64 tokens) interleave with decode steps; prompts up to 700 tokens.
  await using s = await start(3, { prefillBlock: 64, cacheBytes: 0 });
  const requests = [5, 700, 64, 130, 1, 300, 65, 257].map((n, i) => ({
    prompt: randomPrompt(n, i),
    max_tokens: 8 + 5 * i,
    temperature: 0.7 + 0.1 * (i % 3),
    top_p: i % 2 ? 0.9 : 1,
    top_k: i % 3 === 2 ? 50 : 0,
    repetition_penalty: i % 4 === 3 ? 1.2 : 1,
    seed: 100 + i,
  }));
  const results = await Promise.all(requests.map((r, i) => i % 2 ? streamed(s.url, r) : complete(s.url, r)));
  for (const [i, r] of requests.entries()) {
    const want = await expected(r.prompt, r);
    const got = results[i];
    const text = "json" in got ? got.json.choices[0].text : got.text;
    assert.equal(text, want.text, `request ${i} (${r.prompt.length} prompt tokens)`);
  }
});

Deno.test("server: with q8 weights (quantized at load), concurrent requests equal their solo runs", async () => {
  const q8: LoadOptions = { dtype: "q8", groupSize: 64 };
  await using s = await start(3, { prefillBlock: 64, cacheBytes: 0 }, q8);
  assert.equal(s.engine.dtype, "q8");
  const requests = [40, 130, 3, 70].map((n, i) => ({
    prompt: randomPrompt(n, 20 + i),
    max_tokens: 10 + 4 * i,
    temperature: 0.8,
    top_p: 0.95,
    seed: 200 + i,
  }));
  const results = await Promise.all(requests.map((r, i) => i % 2 ? streamed(s.url, r) : complete(s.url, r)));
  for (const [i, r] of requests.entries()) {
    const got = results[i];
    const text = "json" in got ? got.json.choices[0].text : got.text;
    assert.equal(
      text,
      (await expected(r.prompt, r, q8)).text,
      `request ${i} (${r.prompt.length} prompt tokens)`,
    );
  }
});

Deno.test("server: the state cache gives the uncached response and says how much it reused", async () => {
  await using s = await start(2, { prefillBlock: 64 });
  const base = randomPrompt(150, 42); // chunks of 64: the state at 128 is kept beside the whole prompt's
  const options = { max_tokens: 12, temperature: 0.8, top_p: 0.95, seed: 3 };
  const check = async (prompt: number[], cached: number) => {
    const r = await complete(s.url, { prompt, ...options });
    assert.equal(r.json.usage.prompt_tokens_details.cached_tokens, cached, `${prompt.length} tokens`);
    assert.equal(r.json.choices[0].text, (await expected(prompt, options)).text, `${prompt.length} tokens`);
  };
  await check(base, 0);
  await check(base, 150); // the whole prompt: state and logits row, nothing prefilled
  await check([...base, ...randomPrompt(50, 43)], 128); // extends it: continues from the last chunk boundary
  await check(base.slice(0, 128), 128);
  await check(base.slice(0, 100), 0); // not a chunk boundary of anything kept
  const health = await (await fetch(`${s.url}/health`)).json();
  assert.ok(health.cache.hits >= 3 && health.cache.bytes > 0, JSON.stringify(health));
});

Deno.test("StateCache: longest usable prefix, LRU eviction within the byte bound", () => {
  const state = (n: number) => new Uint8Array(n);
  const logits = new Float32Array(4);
  const cache = new StateCache(3 * (1000 + 16) + 3 * 4 * 8, 4);
  const p = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  cache.store(p.slice(0, 4), state(1000), logits);
  cache.store(p.slice(0, 8), state(1000), logits);
  cache.store(p.slice(0, 10), state(1000), logits);
  assert.equal(cache.lookup(p)?.tokens.length, 10); // the whole prompt
  assert.equal(cache.lookup([...p, 11])?.tokens.length, 8); // aligned prefixes only
  assert.equal(cache.lookup(p.slice(0, 9))?.tokens.length, 8);
  assert.equal(cache.lookup([1, 2, 3, 9])?.tokens.length, undefined); // same length, other tokens
  assert.equal(cache.lookup([1, 2, 3, 4, 9, 9, 9, 9])?.tokens.length, 4);
  // 4 was used last, then 8: storing another entry evicts the least recently used, 10
  cache.store([5, 5, 5, 5], state(1000), logits);
  assert.equal(cache.size, 3);
  assert.ok(cache.bytes <= cache.maxBytes);
  assert.equal(cache.lookup(p)?.tokens.length, 8);
  cache.store([7, 7, 7, 7], state(100_000), logits); // larger than the whole cache: not kept
  assert.equal(cache.lookup([7, 7, 7, 7]), undefined);
  assert.ok(cache.has(p.slice(0, 8)) && !cache.has(p.slice(0, 7)) && !cache.has([1, 2, 3, 5]));
  // the evicted entry's state buffer is offered for the next state
  const spare = cache.spare(1000);
  assert.equal(spare?.byteLength, 1000);
  assert.equal(cache.spare(999), undefined);
});

Deno.test("server: errors have OpenAI's shape and status", async () => {
  await using s = await start(1, { maxPromptTokens: 50, maxBodyBytes: 2000, maxTokens: 100 });
  const post = (body: string) =>
    fetch(`${s.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
  const expectError = async (r: Response, status: number, param: string | null, code: RegExp) => {
    const json = await r.json();
    assert.equal(r.status, status, JSON.stringify(json));
    assert.deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(json.error.param, param, JSON.stringify(json));
    assert.match(String(json.error.code), code, JSON.stringify(json));
    assert.equal(
      json.error.type,
      status >= 500 ? "server_error" : status === 429 ? "rate_limit_error" : "invalid_request_error",
    );
    return json.error.message as string;
  };
  await expectError(await post("{bad"), 400, null, /invalid_json/);
  await expectError(await post("[1]"), 400, null, /invalid_type/);
  await expectError(await post(JSON.stringify({ prompt: 5 })), 400, "prompt", /invalid_type/);
  await expectError(await post(JSON.stringify({})), 400, "prompt", /null/);
  await expectError(
    await post(JSON.stringify({ prompt: "x", temperature: "hot" })),
    400,
    "temperature",
    /invalid_type/,
  );
  await expectError(
    await post(JSON.stringify({ prompt: "x", temperature: 3 })),
    400,
    "temperature",
    /invalid_value/,
  );
  await expectError(
    await post(JSON.stringify({ prompt: "x", max_tokens: -1 })),
    400,
    "max_tokens",
    /invalid_value/,
  );
  await expectError(
    await post(JSON.stringify({ prompt: "x", max_tokens: 101 })),
    400,
    "max_tokens",
    /invalid_value/,
  );
  await expectError(
    await post(JSON.stringify({ prompt: "x", max_tokens: 2.5 })),
    400,
    "max_tokens",
    /invalid_value/,
  );
  await expectError(await post(JSON.stringify({ prompt: "x", top_p: 1.5 })), 400, "top_p", /invalid_value/);
  await expectError(
    await post(JSON.stringify({ prompt: "x", stream: "yes" })),
    400,
    "stream",
    /invalid_type/,
  );
  await expectError(await post(JSON.stringify({ prompt: "x", stop: [1] })), 400, "stop", /invalid_type/);
  await expectError(await post(JSON.stringify({ prompt: "x", seed: 1.5 })), 400, "seed", /invalid_type/);
  await expectError(await post(JSON.stringify({ prompt: "x", model: 3 })), 400, "model", /invalid_type/);
  await expectError(await post(JSON.stringify({ prompt: [1, 9000] })), 400, "prompt", /invalid_value/);
  await expectError(await post(JSON.stringify({ prompt: ["a", "b"] })), 400, "prompt", /invalid_value/);
  await expectError(await post(JSON.stringify({ prompt: "x", n: 2 })), 400, "n", /unsupported_value/);
  await expectError(
    await post(JSON.stringify({ prompt: "x", logprobs: 5 })),
    400,
    "logprobs",
    /unsupported_value/,
  );
  const long = await expectError(
    await post(JSON.stringify({ prompt: randomPrompt(51, 1) })),
    400,
    "prompt",
    /context_length_exceeded/,
  );
  assert.match(long, /51 tokens; this server takes at most 50/);
  await expectError(await post(JSON.stringify({ prompt: "x".repeat(3000) })), 413, null, /request_too_large/);
  // a body without content-length, streamed past the limit
  const chunked = new ReadableStream({
    start(c) {
      for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode(" ".repeat(1000)));
      c.close();
    },
  });
  await expectError(
    await fetch(`${s.url}/v1/completions`, { method: "POST", body: chunked }),
    413,
    null,
    /request_too_large/,
  );
  const get = await fetch(`${s.url}/v1/completions`);
  assert.equal(get.headers.get("allow"), "POST");
  await expectError(get, 405, null, /method_not_allowed/);
  await expectError(
    await fetch(`${s.url}/v1/chat/completions`, { method: "POST", body: "{}" }),
    404,
    null,
    /not_found/,
  );
  await expectError(await fetch(`${s.url}/v1/models/gpt-4`), 404, "model", /model_not_found/);
  const models = await (await fetch(`${s.url}/v1/models`)).json();
  assert.deepEqual(models.data.map((m: { id: string }) => m.id), ["demo"]);
  assert.equal((await (await fetch(`${s.url}/v1/models/demo`)).json()).object, "model");
  // zero tokens asked: an empty completion at once
  const zero = await complete(s.url, { prompt: "x", max_tokens: 0 });
  assert.deepEqual([zero.json.choices[0].text, zero.json.choices[0].finish_reason], ["", "length"]);
});

/** Reads a streamed response until `n` text chunks arrived; returns the reader (the stream stays open). */
async function readChunks(url: string, body: Record<string, unknown>, n: number, signal?: AbortSignal) {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  let seen = 0, text = "";
  while (seen < n) {
    const { value } = await reader.read();
    text += new TextDecoder().decode(value);
    seen = text.split("\n\n").length - 1;
  }
  return reader;
}

async function waitFor(what: string, ok: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("server: a full queue answers 429 with Retry-After; disconnects free their slots", async () => {
  await using s = await start(1, { maxQueue: 1 });
  const health = async () => await (await fetch(`${s.url}/health`)).json();
  const long = { prompt: "Emma", max_tokens: 4000, temperature: 1, seed: 1 };
  const first = await readChunks(s.url, long, 2); // holds the only slot
  const queued = new AbortController();
  const second = fetch(`${s.url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify(long),
    signal: queued.signal,
  })
    .catch(() => undefined);
  await waitFor("the second request to queue", async () => (await health()).queued === 1);
  const refused = await fetch(`${s.url}/v1/completions`, { method: "POST", body: JSON.stringify(long) });
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.equal((await refused.json()).error.code, "queue_full");

  queued.abort(); // a waiting request that goes away leaves the queue
  await second;
  await waitFor("the queue to empty", async () => (await health()).queued === 0);
  await first.cancel(); // a streaming client that goes away frees the slot
  await waitFor("the slot to free", async () => (await health()).busy === 0);
  // the server still serves
  assert.equal((await complete(s.url, { prompt: "Emma", max_tokens: 3 })).status, 200);
});

Deno.test("scheduler: an aborted job frees its slot before the next step and gets no more output", async () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
  const scheduler = new Scheduler(engine, { maxQueue: 4, prefillBlock: 64, cache: null, vocabLimit: 8192 });
  let pieces = 0, afterAbort = 0, stepsAtAbort = -1;
  const eos = [tokenizer.tokenToId("<|endoftext|>")!];
  const job: CompletionJob = new CompletionJob(
    [1, 2, 3],
    1000,
    { seed: 1 },
    [],
    eos,
    tokenizer.decodeStream(),
    {
      text: () => {
        if (job.aborted) afterAbort++;
        if (++pieces === 5) {
          stepsAtAbort = scheduler.steps;
          job.abort();
        }
      },
      finish: () => afterAbort++,
      fail: () => afterAbort++,
    },
  );
  scheduler.submit(job);
  while (stepsAtAbort < 0 || scheduler.busy > 0) await new Promise((r) => setImmediate(r));
  // the step that sampled the 5th piece counts once it ends; the next one drops the job before working
  assert.ok(scheduler.steps <= stepsAtAbort + 1, `${scheduler.steps - stepsAtAbort} steps after the abort`);
  assert.equal(afterAbort, 0);
  scheduler.close();
});

Deno.test("scheduler: a new prompt is prefilled one block between two tokens of a running stream", async () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
  const blocks: number[] = []; // prefill calls since the running job's last token
  const prefill = engine.prefill.bind(engine);
  engine.prefill = (tokens: ArrayLike<number>, seq?: number) => {
    blocks.push(tokens.length);
    return prefill(tokens, seq);
  };
  const scheduler = new Scheduler(engine, { maxQueue: 4, prefillBlock: 64, cache: null, vocabLimit: 8192 });
  const eos: number[] = [];
  const worst: number[] = [];
  const { promise: done, resolve } = Promise.withResolvers<void>();
  let tokens = 0;
  const running = new CompletionJob([1, 2, 3], 60, { seed: 1 }, [], eos, tokenizer.decodeStream(), {
    text: () => {
      if (++tokens === 5) {
        // a 700-token prompt arrives while this one streams
        const late = new CompletionJob(
          randomPrompt(700, 9),
          2,
          { seed: 2 },
          [],
          eos,
          tokenizer.decodeStream(),
          {
            text: () => {},
            finish: () => {},
            fail: () => {},
          },
        );
        scheduler.submit(late);
      }
      worst.push(blocks.reduce((a, b) => a + b, 0));
      blocks.length = 0;
    },
    finish: () => resolve(),
    fail: () => resolve(),
  });
  scheduler.submit(running);
  await done;
  scheduler.close();
  assert.ok(worst.some((n) => n > 0), "the late prompt was not prefilled while the stream ran");
  assert.ok(Math.max(...worst) <= 64, `up to ${Math.max(...worst)} prompt tokens between two tokens`);
});
