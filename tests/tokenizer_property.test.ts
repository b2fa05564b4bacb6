// Property tests of the tokenizer on random and hostile input: random Unicode (lone surrogates, combining
// marks, astral characters, the tokenizers' own special strings), random ids (any byte sequence, so
// invalid UTF-8), truncated and corrupted tokenizer.json files, corrupted GGUF files and metadata. Seeded:
// the seed is printed, and PROPERTY_SEED=<n> replays a run; PROPERTY_SCALE=<k> runs k times the iterations
// (CI runs the default, a few seconds; e.g. PROPERTY_SCALE=100 for a long run).
//   - fromJSON / load of any text throws nothing but TokenizerError;
//   - fromGGUF of any metadata throws nothing but TokenizerError; parsing GGUF bytes nothing but GGUFError,
//     and Tokenizer.load of a GGUF file nothing but those two;
//   - decode(encode(t)) = normalize(t): NFC(t) for NFC tokenizers (the demo's, GPT-NeoX's), the
//     tokenizer's normalizer otherwise, with lone surrogates as U+FFFD (encoding them makes U+FFFD);
//   - the stream decoder's pieces are well-formed and join to decode(ids), for any ids: no piece holds
//     half a character, and U+FFFD appears only where decode has it.
import assert from "node:assert/strict";
import { Tokenizer, TokenizerError } from "../src/tokenizer.ts";
import { buildNormalizer, type NormalizerJson } from "../src/tokenizer_added.ts";
import { CHAR_TO_BYTE } from "../src/tokenizer_bpe.ts";
import { Xoshiro128 } from "../src/sampling.ts";
import { GGUFError, type GGUFMetadata, type GGUFValue, parseGGUFMetadata } from "../src/gguf.ts";

const SEED = Number(Deno.env.get("PROPERTY_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const SCALE = Number(Deno.env.get("PROPERTY_SCALE") ?? 1);
console.log(`tokenizer property tests: PROPERTY_SEED=${SEED} PROPERTY_SCALE=${SCALE}`);

const FIXTURES = new URL("./fixtures/tokenizer/", import.meta.url);
const files: [string, URL][] = [
  ["demo", new URL("../models/demo/tokenizer.json", import.meta.url)],
  ["tiny-bpe", new URL("tiny-bpe.tokenizer.json", FIXTURES)],
  ["tiny-nfkc", new URL("tiny-nfkc.tokenizer.json", FIXTURES)],
  ["gpt-neox-20b", new URL("../../shared/data/tokenizers/gpt-neox-20b.tokenizer.json", import.meta.url)],
];
const tokenizers: { name: string; text: string; tok: Tokenizer }[] = [];
for (const [name, url] of files) {
  try {
    const text = Deno.readTextFileSync(url);
    tokenizers.push({ name, text, tok: Tokenizer.fromJSON(text) });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e; // GPT-NeoX's lives outside the repository
  }
}

class Random {
  private readonly rng: Xoshiro128;
  constructor(seed: number) {
    this.rng = new Xoshiro128(seed);
  }
  int(n: number): number {
    return Math.floor(this.rng.nextFloat() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.rng.nextFloat() < p;
  }
}

/** Runs `body(random, i)` `n` times; a failure names the seed and iteration that reproduce it. */
function forAll(name: string, n: number, body: (r: Random, i: number) => void): void {
  const r = new Random(
    SEED ^ [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261),
  );
  for (let i = 0; i < n * SCALE; i++) {
    try {
      body(r, i);
    } catch (e) {
      throw new Error(`${name}: fails at iteration ${i} (PROPERTY_SEED=${SEED})`, { cause: e });
    }
  }
}

/** Pieces of text that exercise pre-tokenization, normalization, UTF-8 and the added tokens. */
const FRAGMENTS = [
  "the",
  " quick",
  "Brown",
  "'s",
  "'ll",
  " 123",
  "4567",
  "  ",
  "   ",
  "\t",
  "\n",
  "\r\n",
  "\n\n\n",
  " ",
  "é",
  "e\u0301",
  "Å",
  "A\u030a",
  "ﬁ",
  "①",
  "Ⅻ",
  "ｶﾀｶﾅ",
  "한국어",
  "\u1100\u1161",
  "Σίσυφος",
  "ΣΑΣ",
  "İ",
  "ß",
  "中文字",
  "日本語",
  "😀",
  "👩‍👩‍👧",
  "🏳️‍🌈",
  "\u{1F600}\u{1F3FD}",
  "\u{10FFFF}",
  "\u{E000}",
  "\uFEFF",
  "\uFFFD",
  "\u200b",
  "\u200d",
  "\u00a0",
  "\u2028",
  "\u0085",
  "\u3000",
  "\u0000",
  "\u007f",
  "\u0301\u0302",
  "‮rtl",
  "\ud800",
  "\udfff",
  "\ud83d",
  "\ude00",
  "\udbff\udbff",
  "<|endoftext|>",
  "<|padding|>",
  "<pad>",
  "<mask>",
  "[SW]",
  " [SW] ",
  "<|endoftext",
  "|>",
];

function randomChar(r: Random): string {
  switch (r.int(6)) {
    case 0:
      return String.fromCharCode(0x20 + r.int(0x5f));
    case 1:
      return String.fromCharCode(r.int(0x800));
    case 2:
      return String.fromCharCode(r.int(0x10000)); // lone surrogates included
    case 3:
      return String.fromCodePoint(0x10000 + r.int(0x100000));
    case 4:
      return String.fromCharCode(0x300 + r.int(0x70)); // combining marks
    default:
      return " ";
  }
}

function randomText(r: Random, tokenizer?: Tokenizer): string {
  let s = "";
  const parts = r.int(24);
  for (let i = 0; i < parts; i++) {
    if (r.chance(0.5)) s += r.pick(FRAGMENTS);
    else if (tokenizer && r.chance(0.3)) s += tokenizer.idToToken(r.int(tokenizer.vocabSize)) ?? "";
    else for (let k = r.int(6); k >= 0; k--) s += randomChar(r);
  }
  return s;
}

/** What encode's normalization makes of `text`, computed without the tokenizer where it is NFC. */
function normalized(json: { normalizer?: NormalizerJson | null }, text: string): string {
  const wellFormed = text.toWellFormed();
  if (json.normalizer?.type === "NFC") return wellFormed.normalize("NFC");
  const f = buildNormalizer(json.normalizer);
  return f ? f(wellFormed) : wellFormed;
}

function streamPieces(tok: Tokenizer, ids: number[], skipSpecialTokens: boolean): string[] {
  const stream = tok.decodeStream({ skipSpecialTokens });
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  return pieces;
}

function checkStream(tok: Tokenizer, ids: number[], skipSpecialTokens: boolean): void {
  const pieces = streamPieces(tok, ids, skipSpecialTokens);
  for (const p of pieces) assert.ok(p.isWellFormed(), `stream piece ${JSON.stringify(p)} is not well-formed`);
  assert.equal(pieces.join(""), tok.decode(ids, { skipSpecialTokens }));
}

/** Bytes that occur in UTF-8: all but C0, C1 and F5–FF (GPT-NeoX's vocabulary leaves those out). */
const UTF8_BYTES = Array.from({ length: 256 }, (_, b) => b).filter((b) =>
  b !== 0xc0 && b !== 0xc1 && b < 0xf5
);

/**
 * Whether decode(encode(t)) can equal the normalized text: every byte UTF-8 uses has a token of its own
 * (else encoding drops it, as the Rust library does), and no added token is spelled in the byte-level
 * alphabet with non-ASCII characters (such a token decodes to those bytes, not to its text: tiny-bpe's
 * "é" decodes to the byte E9, as in the Rust library).
 */
function exactRoundTrip(tok: Tokenizer, json: { added_tokens?: { content: string }[] | null }): boolean {
  const bytes = new Set<number>();
  for (let id = 0; id < tok.vocabSize; id++) {
    const b = tok.tokenBytes(id, false);
    if (b && b.length === 1) bytes.add(b[0]);
  }
  const byteLevel = (s: string) =>
    [...s].every((c) => c.charCodeAt(0) < 512 && CHAR_TO_BYTE[c.charCodeAt(0)] >= 0);
  const quirk = (json.added_tokens ?? []).some((t) =>
    byteLevel(t.content) && [...t.content].some((c) => c.charCodeAt(0) > 0x7f)
  );
  return UTF8_BYTES.every((b) => bytes.has(b)) && !quirk;
}

Deno.test("decode(encode(t)) can be exact for the demo's and GPT-NeoX's tokenizers", () => {
  assert.ok(tokenizers.length >= 3);
  for (const { name, text, tok } of tokenizers) {
    if (name === "demo" || name === "gpt-neox-20b") assert.ok(exactRoundTrip(tok, JSON.parse(text)), name);
  }
});

for (const { name, text, tok } of tokenizers) {
  const json = JSON.parse(text);
  // Where the round trip cannot be exact (see exactRoundTrip), the stream and error properties still hold.
  const exact = exactRoundTrip(tok, json);
  Deno.test(`${name}: decode(encode(t)) is t normalized, and the stream decoder agrees`, () => {
    forAll(`${name} round trip`, name === "gpt-neox-20b" ? 300 : 600, (r) => {
      const t = randomText(r, tok);
      const ids = tok.encode(t, { parseSpecialTokens: false });
      if (exact) {
        assert.equal(tok.decode(ids, { skipSpecialTokens: false }), normalized(json, t), JSON.stringify(t));
      }
      for (const skip of [false, true]) {
        const pieces = streamPieces(tok, ids, skip);
        // no U+FFFD beyond those decode has (for exact tokenizers: those the text itself had)
        const expected = (tok.decode(ids, { skipSpecialTokens: skip }).match(/\uFFFD/g) ?? []).length;
        assert.equal((pieces.join("").match(/\uFFFD/g) ?? []).length, expected);
        if (exact && !skip) assert.equal(expected, (normalized(json, t).match(/\uFFFD/g) ?? []).length);
        checkStream(tok, ids, skip);
      }
      // with special tokens parsed, the same holds up to the special tokens themselves
      const withSpecial = tok.encode(t);
      assert.ok(withSpecial.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize));
    });
  });

  Deno.test(`${name}: any ids (so any bytes, invalid UTF-8 too) decode, and stream in well-formed pieces`, () => {
    forAll(`${name} random ids`, 400, (r) => {
      const ids: number[] = [];
      for (let k = r.int(40); k > 0; k--) {
        // mostly real ids, some outside the vocabulary or not integers at all
        ids.push(r.chance(0.9) ? r.int(tok.vocabSize) : r.pick([-1, tok.vocabSize, 2 ** 40, 0.5, NaN]));
      }
      const skip = r.chance(0.5);
      const text = tok.decode(ids, { skipSpecialTokens: skip });
      assert.ok(text.isWellFormed());
      checkStream(tok, ids, skip);
    });
  });
}

/** A mutation of a parsed tokenizer.json: one value somewhere replaced, removed or wrapped. */
function mutateJson(r: Random, root: unknown): unknown {
  const values: unknown[] = [
    null,
    true,
    0,
    -1,
    1.5,
    2 ** 31,
    2 ** 53,
    1e308,
    "",
    "x",
    "BPE",
    "ByteLevel",
    "Sequence",
    [],
    {},
    [[[]]],
    { type: "Sequence", normalizers: [{ type: "Sequence", normalizers: [] }] },
    { type: "NFC" },
    ["a", "b"],
    "a b c",
  ];
  const path: (string | number)[] = [];
  let node = root;
  while (typeof node === "object" && node !== null && r.chance(0.75)) {
    const keys: (string | number)[] = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0) break;
    const k = r.pick(keys);
    path.push(k);
    node = (node as Record<string | number, unknown>)[k];
  }
  if (path.length === 0) return r.pick(values);
  let parent = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  switch (r.int(3)) {
    case 0:
      parent[last] = r.pick(values);
      break;
    case 1:
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last];
      break;
    default:
      parent[last] = r.chance(0.5) ? [parent[last]] : { type: parent[last] };
  }
  return root;
}

function expectOnlyTokenizerError(make: () => Tokenizer, r: Random): void {
  let tok: Tokenizer;
  try {
    tok = make();
  } catch (e) {
    if (e instanceof TokenizerError) {
      assert.match(e.message, /^tokenizer: /);
      return;
    }
    throw e;
  }
  // what loads must also encode and decode anything
  for (let k = 0; k < 3; k++) {
    const ids = tok.encode(randomText(r, tok));
    tok.decode(ids);
    checkStream(tok, ids, false);
  }
}

const base = Deno.readTextFileSync(new URL("tiny-bpe.tokenizer.json", FIXTURES));

Deno.test("tokenizer.json cut short, with bytes flipped, or with invalid UTF-8: only TokenizerError", () => {
  const bytes = new TextEncoder().encode(base);
  forAll("corrupt bytes", 400, (r) => {
    let b = bytes.slice(0, r.chance(0.5) ? r.int(bytes.length + 1) : bytes.length);
    for (let k = r.int(4); k > 0 && b.length > 0; k--) {
      b[r.int(b.length)] = r.pick([0x80, 0xc3, 0xff, 0x00, r.int(256)]);
    }
    if (r.chance(0.2)) b = new Uint8Array([...b, 0xed, 0xa0, 0x80]); // an encoded surrogate: invalid UTF-8
    // as Tokenizer.load reads a file: UTF-8 with U+FFFD for what is invalid
    expectOnlyTokenizerError(() => Tokenizer.fromJSON(new TextDecoder().decode(b)), r);
  });
});

Deno.test("tokenizer.json with values of the wrong type or shape: only TokenizerError", () => {
  forAll("mutated json", 1500, (r) => {
    let json: unknown = JSON.parse(base);
    for (let k = 1 + r.int(3); k > 0; k--) json = mutateJson(r, json);
    expectOnlyTokenizerError(() => Tokenizer.fromJSON(json as never), r);
    expectOnlyTokenizerError(() => Tokenizer.fromJSON(JSON.stringify(json) ?? "undefined"), r);
  });
});

Deno.test("hostile tokenizer.json shapes: deep nesting, huge ids, non-objects", () => {
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
  const j = JSON.parse(base);
  const cases: [string, string][] = [
    ["nested arrays", deep(100_000)],
    ["nested normalizers", JSON.stringify({ ...j, normalizer: "NEST" }).replace('"NEST"', nest(100_000))],
    ["huge id", JSON.stringify({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, huge: 2 ** 31 } } })],
    ["fractional id", JSON.stringify({ ...j, added_tokens: [{ id: 0.5, content: "x", special: true }] })],
    ["content not a string", JSON.stringify({ ...j, added_tokens: [{ id: 1, content: 5, special: true }] })],
    ["merges not strings", JSON.stringify({ ...j, model: { ...j.model, merges: [[1, 2]] } })],
    ["a number", "42"],
    ["null", "null"],
    ["empty", ""],
  ];
  for (const [what, text] of cases) {
    assert.throws(() => Tokenizer.fromJSON(text), TokenizerError, what);
  }
  function nest(n: number): string {
    return '{"type": "Sequence", "normalizers": ['.repeat(n) + '{"type": "NFC"}' + "]}".repeat(n);
  }
});

// ---- GGUF: the tokenizer inside a llama.cpp model file -------------------------------------------

/** A GGUF v3 file holding `kvs` and no tensors (the layout of src/gguf.ts). */
function ggufBytes(kvs: [string, number, GGUFValue, number?][]): Uint8Array {
  const out: number[] = [];
  const u32 = (v: number) => out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24);
  const u64 = (v: number) => {
    u32(v);
    u32(Math.floor(v / 2 ** 32));
  };
  const str = (t: string) => {
    const b = new TextEncoder().encode(t);
    u64(b.length);
    out.push(...b);
  };
  const value = (type: number, v: GGUFValue, elementType?: number) => {
    if (type === 4) u32(v as number);
    else if (type === 5) u32((v as number) >>> 0);
    else if (type === 8) str(v as string);
    else if (type === 10) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt(v as bigint), true);
      out.push(...b);
    } else if (type === 9) {
      u32(elementType!);
      u64((v as GGUFValue[]).length);
      for (const x of v as GGUFValue[]) value(elementType!, x);
    } else throw new Error(`ggufBytes: type ${type}`);
  };
  out.push(0x47, 0x47, 0x55, 0x46);
  u32(3);
  u64(0);
  u64(kvs.length);
  for (const [key, type, v, elementType] of kvs) {
    str(key);
    u32(type);
    value(type, v, elementType);
  }
  return new Uint8Array(out);
}

/** tiny-bpe's tokenizer as llama.cpp's converter would store it (tokens by id, types, "a b" merges). */
function tinyGGUF(): Uint8Array {
  const j = JSON.parse(base);
  const tokens: string[] = [], types: number[] = [];
  const set = (id: number, token: string, type: number) => {
    tokens[id] = token;
    types[id] = type;
  };
  for (const [t, id] of Object.entries(j.model.vocab as Record<string, number>)) set(id, t, 1);
  for (const t of j.added_tokens) set(t.id, t.content, t.special ? 3 : 4);
  for (let id = 0; id < tokens.length; id++) if (tokens[id] === undefined) set(id, `[PAD${id}]`, 5);
  const merges = (j.model.merges as (string | string[])[]).map((m) =>
    typeof m === "string" ? m : m.join(" ")
  );
  return ggufBytes([
    ["general.architecture", 8, "mamba2"],
    ["tokenizer.ggml.model", 8, "gpt2"],
    ["tokenizer.ggml.pre", 8, "gpt-2"],
    ["tokenizer.ggml.tokens", 9, tokens, 8],
    ["tokenizer.ggml.token_type", 9, types, 5],
    ["tokenizer.ggml.merges", 9, merges, 8],
    ["tokenizer.ggml.eos_token_id", 4, 0],
  ]);
}

const GGUF_BYTES = tinyGGUF();

/** Only GGUFError (from parsing) or TokenizerError (from the tokenizer) escapes; what loads works. */
function expectOnlyDocumentedErrors(make: () => Tokenizer, r: Random): void {
  try {
    expectOnlyTokenizerError(make, r);
  } catch (e) {
    if (!(e instanceof GGUFError)) throw e;
    assert.match(e.message, /^x\.gguf: /);
  }
}

Deno.test("the GGUF tokenizer built here loads and agrees with its tokenizer.json on plain text", () => {
  const fromGGUF = Tokenizer.fromGGUF(parseGGUFMetadata(GGUF_BYTES, "x.gguf"));
  const fromJSON = Tokenizer.fromJSON(base);
  forAll("gguf agrees", 100, (r) => {
    // plain ASCII words: no added tokens, whose options (lstrip, single_word, …) GGUF does not keep
    const t = Array.from({ length: r.int(8) }, () => r.pick(["the", " quick", "Brown", " 123", "'s", " "]))
      .join("");
    assert.deepEqual(fromGGUF.encode(t), fromJSON.encode(t), JSON.stringify(t));
  });
});

Deno.test("GGUF bytes cut short, flipped, or with huge counts: only GGUFError or TokenizerError", () => {
  forAll("corrupt gguf", 300, (r) => {
    let b = GGUF_BYTES.slice(0, r.chance(0.3) ? r.int(GGUF_BYTES.length + 1) : GGUF_BYTES.length);
    for (let k = r.int(6); k > 0 && b.length > 0; k--) {
      const at = r.chance(0.5) ? r.int(Math.min(b.length, 128)) : r.int(b.length); // the header, often
      if (r.chance(0.7)) {
        b[at] = r.pick([0x00, 0x01, 0x05, 0x08, 0x09, 0x0c, 0x0d, 0x7f, 0x80, 0xff, r.int(256)]);
      } else if (at + 8 <= b.length) {
        new DataView(b.buffer, b.byteOffset).setBigUint64(
          at,
          r.pick([0n, 1n, 2n ** 32n, 2n ** 60n, 2n ** 64n - 1n]),
          true,
        );
      }
    }
    if (r.chance(0.1)) b = new Uint8Array([...b, ...b.subarray(24, 24 + r.int(64))]);
    expectOnlyDocumentedErrors(() => Tokenizer.fromGGUF(parseGGUFMetadata(b, "x.gguf")), r);
  });
});

Deno.test("GGUF tokenizer metadata of the wrong type or shape: only TokenizerError", () => {
  const meta = parseGGUFMetadata(GGUF_BYTES, "x.gguf");
  const keys = [...meta.values.keys()].filter((k) => k.startsWith("tokenizer."));
  const values: GGUFValue[] = [
    0,
    -1,
    2 ** 40,
    2n ** 63n,
    1.5,
    true,
    "",
    "gpt2",
    "llama",
    "a b",
    [],
    [1, 2, 3],
    [2n, 3n],
    ["a", 1],
    [["a"]],
    ["a b", "b", "", " ", "ab c"],
    ["<|endoftext|>", "<|endoftext|>"],
    [3, 3, 3],
    [5, 5],
  ];
  forAll("mutated gguf metadata", 600, (r) => {
    const v = new Map(meta.values);
    for (let k = 1 + r.int(3); k > 0; k--) {
      const key = r.pick(keys);
      const old = v.get(key);
      if (r.chance(0.15)) v.delete(key);
      else if (Array.isArray(old) && old.length > 0 && r.chance(0.5)) {
        // one element changed, the array cut, or elements swapped
        const a = [...old];
        if (r.chance(0.4)) a[r.int(a.length)] = r.pick(values.filter((x) => !Array.isArray(x)));
        else if (r.chance(0.5)) a.length = r.int(a.length);
        else [a[0], a[a.length - 1]] = [a[a.length - 1], a[0]];
        v.set(key, a);
      } else v.set(key, r.pick(values));
    }
    const mutated: GGUFMetadata = { version: 3, tensorCount: 0, values: v, get: (key) => v.get(key) };
    expectOnlyTokenizerError(() => Tokenizer.fromGGUF(mutated), r);
  });
});

Deno.test("Tokenizer.load of corrupted GGUF files: only GGUFError or TokenizerError", async () => {
  const path = Deno.makeTempFileSync({ suffix: ".gguf" });
  try {
    const r = new Random(SEED ^ 0x6767);
    for (let i = 0; i < 40 * SCALE; i++) {
      const b = GGUF_BYTES.slice(0, r.chance(0.5) ? 4 + r.int(GGUF_BYTES.length - 3) : GGUF_BYTES.length);
      for (let k = r.int(4); k > 0; k--) b[4 + r.int(b.length - 4)] = r.int(256);
      Deno.writeFileSync(path, b);
      try {
        const tok = await Tokenizer.load(path);
        checkStream(tok, tok.encode(randomText(r, tok)), false);
      } catch (e) {
        if (!(e instanceof GGUFError || e instanceof TokenizerError)) {
          throw new Error(`Tokenizer.load: iteration ${i} (PROPERTY_SEED=${SEED})`, { cause: e });
        }
      }
    }
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("a GGUF tokenizer whose model or pre-tokenizer is a 64-bit integer: TokenizerError", async () => {
  // Found by the metadata property test: the message's JSON.stringify threw a TypeError on the bigint.
  const path = Deno.makeTempFileSync({ suffix: ".gguf" });
  try {
    for (const key of ["tokenizer.ggml.model", "tokenizer.ggml.pre"]) {
      Deno.writeFileSync(
        path,
        ggufBytes([
          [
            "tokenizer.ggml.model",
            ...(key.endsWith("model") ? [10, 2n ** 63n] : [8, "gpt2"]) as [number, GGUFValue],
          ],
          [
            "tokenizer.ggml.pre",
            ...(key.endsWith("pre") ? [10, 2n ** 63n] : [8, "gpt-2"]) as [number, GGUFValue],
          ],
          ["tokenizer.ggml.tokens", 9, ["a"], 8],
        ]),
      );
      await assert.rejects(
        () => Tokenizer.load(path),
        (e) =>
          e instanceof TokenizerError && e.message.includes(`${key} 9223372036854775808 is not supported`),
      );
    }
  } finally {
    Deno.removeSync(path);
  }
});
