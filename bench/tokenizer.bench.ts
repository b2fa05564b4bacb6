// Tokenizer encode/decode throughput on about 1 MB of Austen text (GPT-NeoX-20B tokenizer).
// The data live outside the repository (../shared/data relative to its root); without them the
// benchmarks are skipped with a message.
import { Tokenizer } from "../src/tokenizer.ts";

const NEOX = new URL("../../shared/data/tokenizers/gpt-neox-20b.tokenizer.json", import.meta.url);
const AUSTEN = new URL("../../shared/data/austen/", import.meta.url);
const TARGET_BYTES = 1_000_000;

async function loadText(): Promise<string | null> {
  try {
    let text = "";
    for (const name of ["pride_and_prejudice.txt", "emma.txt"]) {
      text += await Deno.readTextFile(new URL(name, AUSTEN));
      if (text.length >= TARGET_BYTES) break;
    }
    return text.slice(0, TARGET_BYTES); // the novels are ASCII: characters = bytes
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function loadTokenizer(): Promise<Tokenizer | null> {
  try {
    return await Tokenizer.load(NEOX);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

const text = await loadText();
const tokenizer = await loadTokenizer();
const missing = text === null || tokenizer === null;
if (missing) {
  console.warn(`tokenizer benchmarks skipped: ${text === null ? AUSTEN.pathname : NEOX.pathname} is absent`);
} else {
  const bytes = new TextEncoder().encode(text).length;
  // one cold pass (empty word cache) reported as MB/s, then the timed benchmarks
  const t0 = performance.now();
  const ids = tokenizer.encode(text);
  const coldMs = performance.now() - t0;
  const t1 = performance.now();
  tokenizer.encode(text);
  const warmMs = performance.now() - t1;
  console.log(
    `encode ${(bytes / 1e6).toFixed(2)} MB -> ${ids.length} tokens: cold cache ${
      (bytes / 1e6 / (coldMs / 1000)).toFixed(1)
    } MB/s, warm cache ${(bytes / 1e6 / (warmMs / 1000)).toFixed(1)} MB/s`,
  );
}

Deno.bench({
  name: "tokenizer: encode 1 MB of Austen (GPT-NeoX-20B)",
  group: "tokenizer",
  baseline: true,
  ignore: missing,
  n: 20,
  fn() {
    tokenizer!.encode(text!);
  },
});

Deno.bench({
  name: "tokenizer: decode the ids of 1 MB of Austen",
  group: "tokenizer",
  ignore: missing,
  n: 20,
  fn: missing ? () => {} : (() => {
    const ids = tokenizer!.encode(text!);
    return () => {
      tokenizer!.decode(ids);
    };
  })(),
});

Deno.bench({
  name: "tokenizer: stream-decode the ids of 1 MB of Austen, one id at a time",
  group: "tokenizer",
  ignore: missing,
  n: 10,
  fn: missing ? () => {} : (() => {
    const ids = tokenizer!.encode(text!);
    return () => {
      const stream = tokenizer!.decodeStream();
      for (let i = 0; i < ids.length; i++) stream.push(ids[i]);
      stream.flush();
    };
  })(),
});
