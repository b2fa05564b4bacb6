// Parity of the TypeScript tokenizer with the Python `tokenizers` library, through the fixtures written
// by tools/make_tokenizer_fixtures.py (tests/fixtures/tokenizer/).
import assert from "node:assert/strict";
import { Tokenizer } from "../src/tokenizer.ts";

const FIXTURES = new URL("./fixtures/tokenizer/", import.meta.url);
const NEOX_PATH = new URL("../../shared/data/tokenizers/gpt-neox-20b.tokenizer.json", import.meta.url);
const DEMO_PATH = new URL("../models/demo/tokenizer.json", import.meta.url);

interface Expected {
  tokenizer: string;
  sha256: string;
  encode: { text: number; ids: number[]; decoded: string }[];
  encodeSpecialAsText: { text: number; ids: number[] }[];
  decode: { ids: number[]; text: string; textWithSpecial: string }[];
}

const texts: string[] = JSON.parse(await Deno.readTextFile(new URL("texts.json", FIXTURES)));

async function readIfPresent(url: URL): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface Case {
  name: string;
  /** Tokenizer file contents, or null when absent (tests then skip). */
  file: Uint8Array | null;
  expected: Expected;
  /** Why the case is skipped, if it is. */
  skip: string | null;
  /** decode(encode(t)) must equal t after this normalization (null: no round-trip identity). */
  roundTrip: ((t: string) => string) | null;
}

async function loadCase(
  name: string,
  path: URL,
  roundTrip: Case["roundTrip"],
): Promise<Case> {
  const expected: Expected = JSON.parse(await Deno.readTextFile(new URL(`${name}.expected.json`, FIXTURES)));
  const file = await readIfPresent(path);
  let skip: string | null = null;
  if (file === null) {
    skip = `${path.pathname} is absent`;
  } else if (await sha256(file) !== expected.sha256) {
    skip = `${path.pathname} changed since the fixture was made (run tools/make_tokenizer_fixtures.py)`;
  }
  if (skip !== null) console.warn(`tokenizer tests for ${name} skipped: ${skip}`);
  return { name, file, expected, skip, roundTrip };
}

const nfc = (t: string): string => t.normalize("NFC");
const cases: Case[] = [
  await loadCase("gpt-neox-20b", NEOX_PATH, nfc),
  await loadCase("demo", DEMO_PATH, nfc),
  await loadCase("tiny-bpe", new URL("tiny-bpe.tokenizer.json", FIXTURES), null),
  await loadCase("tiny-nfkc", new URL("tiny-nfkc.tokenizer.json", FIXTURES), null),
];

function tokenizerOf(c: Case): Tokenizer {
  return Tokenizer.fromJSON(new TextDecoder().decode(c.file!));
}

Deno.test("fixtures cover at least 200 texts", () => {
  assert.ok(texts.length >= 200, `${texts.length} texts`);
  for (const c of cases) assert.equal(c.expected.encode.length, texts.length, c.name);
});

for (const c of cases) {
  Deno.test({
    name: `${c.name}: encode matches the Python tokenizers library on every fixture text`,
    ignore: c.skip !== null,
    fn() {
      const tok = tokenizerOf(c);
      const failures: string[] = [];
      for (const e of c.expected.encode) {
        const text = texts[e.text];
        const ids = tok.encode(text);
        if (JSON.stringify(ids) !== JSON.stringify(e.ids)) {
          failures.push(`${JSON.stringify(text).slice(0, 80)}\n  got ${ids}\n  exp ${e.ids}`);
        }
      }
      assert.equal(
        failures.length,
        0,
        `${failures.length} texts differ:\n${failures.slice(0, 5).join("\n")}`,
      );
    },
  });

  Deno.test({
    name: `${c.name}: parseSpecialTokens: false matches the library's encode_special_tokens = True`,
    ignore: c.skip !== null,
    fn() {
      const tok = tokenizerOf(c);
      assert.ok(c.expected.encodeSpecialAsText.length >= 10);
      for (const e of c.expected.encodeSpecialAsText) {
        assert.deepEqual(
          tok.encode(texts[e.text], { parseSpecialTokens: false }),
          e.ids,
          JSON.stringify(texts[e.text]),
        );
      }
    },
  });

  Deno.test({
    name: `${c.name}: decode(encode(t)) matches the library${c.roundTrip ? " and gives back NFC(t)" : ""}`,
    ignore: c.skip !== null,
    fn() {
      const tok = tokenizerOf(c);
      for (const e of c.expected.encode) {
        const text = texts[e.text];
        const ids = tok.encode(text);
        assert.equal(tok.decode(ids), e.decoded, JSON.stringify(text));
        if (c.roundTrip) {
          // identity up to normalization, when special tokens are kept
          assert.equal(
            tok.decode(ids, { skipSpecialTokens: false }),
            c.roundTrip(text),
            JSON.stringify(text),
          );
        }
      }
    },
  });

  Deno.test({
    name: `${c.name}: decode of arbitrary id sequences (invalid UTF-8, special tokens, unknown ids)`,
    ignore: c.skip !== null,
    fn() {
      const tok = tokenizerOf(c);
      for (const d of c.expected.decode) {
        assert.equal(tok.decode(d.ids), d.text, `ids ${d.ids}`);
        assert.equal(tok.decode(d.ids, { skipSpecialTokens: true }), d.text, `ids ${d.ids}`);
        assert.equal(tok.decode(d.ids, { skipSpecialTokens: false }), d.textWithSpecial, `ids ${d.ids}`);
        assert.equal(tok.decode(Int32Array.from(d.ids)), d.text);
      }
    },
  });

  Deno.test({
    name: `${c.name}: stream decoding equals decode and never splits a character`,
    ignore: c.skip !== null,
    fn() {
      const tok = tokenizerOf(c);
      const sequences = [
        ...c.expected.encode.map((e) => e.ids),
        ...c.expected.decode.map((d) => d.ids),
      ];
      for (const skipSpecialTokens of [true, false]) {
        for (const ids of sequences) {
          const stream = tok.decodeStream({ skipSpecialTokens });
          let text = "";
          for (const id of ids) {
            const piece = stream.push(id);
            // a piece is whole characters: no lone surrogate at its end
            if (piece.length > 0) {
              const last = piece.charCodeAt(piece.length - 1);
              assert.ok(!(last >= 0xd800 && last <= 0xdbff), "piece ends in a high surrogate");
            }
            text += piece;
          }
          text += stream.flush();
          assert.equal(text, tok.decode(ids, { skipSpecialTokens }), `ids ${ids}`);
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Behaviour checked directly (the tiny fixtures are committed, so these always run)
// ---------------------------------------------------------------------------------------------
const tiny = await Tokenizer.load(new URL("tiny-bpe.tokenizer.json", FIXTURES));

Deno.test("stream decoder holds back incomplete UTF-8 until the character is complete", () => {
  // the tiny vocabulary has no merges for emoji bytes: one token per byte
  const ids = tiny.encode("a😀b€");
  const stream = tiny.decodeStream();
  const pieces = ids.map((id) => stream.push(id));
  assert.deepEqual(pieces.filter((p) => p !== ""), ["a", "😀", "b", "€"]);
  assert.equal(stream.flush(), "");
  // a stream cut inside a character: flush gives the replacement character, as decode does
  const cut = tiny.encode("😀").slice(0, 2);
  const s2 = tiny.decodeStream();
  assert.equal(cut.map((id) => s2.push(id)).join(""), "");
  assert.equal(s2.flush(), "\ufffd");
  assert.equal(tiny.decode(cut), "\ufffd");
  // reset drops the pending bytes
  const s3 = tiny.decodeStream();
  s3.push(cut[0]);
  s3.reset();
  assert.equal(s3.push(tiny.encode("x")[0]) + s3.flush(), "x");
});

Deno.test("special tokens: parsed by default, plain text with parseSpecialTokens: false", () => {
  const eot = tiny.tokenToId("<|endoftext|>")!;
  assert.equal(eot, 0);
  assert.ok(tiny.isSpecialToken(eot));
  assert.ok(tiny.specialTokenIds.has(eot));
  const ids = tiny.encode("a<|endoftext|>b");
  assert.deepEqual(ids, [tiny.tokenToId("a"), eot, tiny.tokenToId("b")]);
  const plain = tiny.encode("a<|endoftext|>b", { parseSpecialTokens: false });
  assert.ok(!plain.includes(eot));
  assert.equal(tiny.decode(plain), "a<|endoftext|>b");
  assert.equal(tiny.decode(ids), "ab");
  assert.equal(tiny.decode(ids, { skipSpecialTokens: false }), "a<|endoftext|>b");
});

Deno.test("vocabulary accessors", () => {
  assert.equal(tiny.vocabSize, 605);
  assert.equal(tiny.idToToken(tiny.tokenToId("Ġthe")!), "Ġthe");
  assert.equal(tiny.idToToken(100000), undefined);
  assert.ok(tiny.isAddedToken(tiny.tokenToId("[SW]")!));
  assert.ok(!tiny.isSpecialToken(tiny.tokenToId("[SW]")!));
  assert.deepEqual(Array.from(tiny.decodeBytes(tiny.encode("é"))), [0xe9]); // "é" is an added token whose
  // content is also the byte-level spelling of byte 0xE9: the library decodes it to that byte
});

Deno.test("empty input and long inputs", () => {
  assert.deepEqual(tiny.encode(""), []);
  assert.equal(tiny.decode([]), "");
  const long = "ab".repeat(5000) + " " + "中".repeat(3000);
  assert.equal(tiny.decode(tiny.encode(long)), long);
});

Deno.test("unsupported configurations are rejected with a message", () => {
  const base = JSON.parse(Deno.readTextFileSync(new URL("tiny-bpe.tokenizer.json", FIXTURES)));
  const variants: [string, (j: Record<string, unknown>) => void][] = [
    ["pre-tokenizer", (j) => (j.pre_tokenizer = { type: "Whitespace" })],
    ["decoder", (j) => (j.decoder = { type: "WordPiece" })],
    ["normalizer", (j) => (j.normalizer = { type: "Precompiled" })],
    ["post_processor", (j) => (j.post_processor = { type: "TemplateProcessing" })],
    ["model type", (j) => ((j.model as Record<string, unknown>).type = "Unigram")],
  ];
  for (const [what, mutate] of variants) {
    const j = structuredClone(base);
    mutate(j);
    assert.throws(() => Tokenizer.fromJSON(j), /tokenizer: /, what);
  }
});
