// Quantized and GGUF checkpoints through the public API: llama.cpp's converter output against the
// float64 reference, MLX files against MLX's own forward pass, the GGUF tokenizer against the
// tokenizer.json it came from, the quantize tool against mlx-lm's bytes, and bad input.
// Fixtures: tools/make_quant_fixtures.py. The bit-exact checks of every conversion are Swift tests
// (swift/Tests/MambaMetalTests/QuantizedLoadTests.swift).
import assert from "node:assert/strict";
import {
  GGUFError,
  type MambaEngine,
  MambaError,
  parseGGUFMetadata,
  readGGUFMetadata,
  Tokenizer,
} from "../mod.ts";
import {
  copyModel,
  FIXTURES,
  load,
  loadFixture,
  maxAbsDiff,
  readSafetensors,
  ROOT,
  writeSafetensors,
} from "./helpers.ts";

const GGUF = FIXTURES + "gguf/";

function expectError(fn: () => unknown, status: string, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MambaError, `expected MambaError, got ${e}`);
    assert.equal(e.status, status, e.message);
    assert.match(e.message, pattern);
    return;
  }
  assert.fail(`expected a ${status} error matching ${pattern}`);
}

/** Teacher-forced logits of `engine` over the fixture's tokens, worst |Δ| against `ref(t)` per row. */
function worstOver(
  engine: MambaEngine,
  tokens: number[],
  prompt: number,
  ref: (t: number) => Float32Array,
): number {
  let worst = maxAbsDiff(engine.prefill(tokens.slice(0, prompt)).subarray(0, ref(0).length), ref(prompt - 1));
  for (let t = prompt; t < tokens.length; t++) {
    engine.step([tokens[t]]);
    worst = Math.max(worst, maxAbsDiff(engine.logits.subarray(0, ref(0).length), ref(t)));
  }
  return worst;
}

Deno.test("a GGUF file from llama.cpp's converter runs: tiny-g1 logits against the float64 reference", () => {
  const f = loadFixture("tiny-g1");
  using engine = load(GGUF + "tiny-g1.f32.gguf");
  assert.equal(engine.vocabSize, 128); // the converter pads 123 to a multiple of 16, with zero rows
  assert.equal(engine.dtype, "f32");
  const matrices = engine.info.matrices as { name: string; stored: string; dtype: string }[];
  assert.deepEqual(matrices.map((m) => m.name).slice(0, 3), [
    "token_embd.weight",
    "blk.0.ssm_in.weight",
    "blk.0.ssm_out.weight",
  ]);
  const ref = (t: number) => f.logits.subarray(t * f.vocabRows, (t + 1) * f.vocabRows);
  const worst = worstOver(engine, f.tokens, f.promptLength, ref);
  assert.ok(worst <= 1e-4 * f.maxAbsLogit, `max |Δ| ${worst}`);
  assert.deepEqual([...engine.logits.subarray(123)], [0, 0, 0, 0, 0]);
});

Deno.test("MLX 4-bit checkpoint (mlx-lm's files) against MLX's own forward pass", () => {
  const meta = JSON.parse(Deno.readTextFileSync(FIXTURES + "mlx-q4-g32/mlx.json"));
  const bytes = Deno.readFileSync(FIXTURES + "mlx-q4-g32/mlx.logits.f32");
  const mlx = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const V = meta.vocabRows as number, tokens = meta.tokens as number[];
  const ref = (t: number) => mlx.subarray(t * V, (t + 1) * V);
  let top = 0;
  for (const v of mlx) top = Math.max(top, Math.abs(v));
  // Dequantized at load to f32: exactly the values MLX multiplies by.
  using engine = load(FIXTURES + "mlx-q4-g32", { dtype: "f32" });
  const matrices = engine.info.matrices as { stored: string }[];
  assert.match(matrices[0].stored, /^MLX q4 g32, f32 scales, dequantized at load$/);
  const worst = worstOver(engine, tokens, 40, ref);
  assert.ok(worst <= 1e-4 * top, `max |Δ| ${worst} (max |ref| ${top})`);
});

Deno.test("quantized matrices: run where the backend has kernels, else UNSUPPORTED naming the tensor", () => {
  let engine: MambaEngine | undefined;
  try {
    engine = load(FIXTURES + "mlx-q4-g32");
  } catch (e) {
    assert.ok(e instanceof MambaError);
    assert.equal(e.status, "UNSUPPORTED");
    assert.match(e.message, /mlx-q4-g32: tensor backbone\.embeddings\.weight is quantized \(q4, MLX q4 g32/);
    assert.match(e.message, /dtype "f16" or "f32"/);
    return;
  }
  // The CPU backend runs quantized matrices: the same comparison as the dequantized load above.
  using e = engine;
  const meta = JSON.parse(Deno.readTextFileSync(FIXTURES + "mlx-q4-g32/mlx.json"));
  const bytes = Deno.readFileSync(FIXTURES + "mlx-q4-g32/mlx.logits.f32");
  const mlx = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let top = 0;
  for (const v of mlx) top = Math.max(top, Math.abs(v));
  const worst = worstOver(
    e,
    meta.tokens,
    40,
    (t) => mlx.subarray(t * meta.vocabRows, (t + 1) * meta.vocabRows),
  );
  assert.equal(e.dtype, "q4");
  assert.ok(worst <= 1e-4 * top, `max |Δ| ${worst}`);
});

Deno.test("load-time dtype q8/q4: engine info says what each matrix became", () => {
  for (const [dtype, groupSize, want] of [["q4", 64, "q4"], ["q8", 128, "mixed"]] as const) {
    try {
      load(FIXTURES + "tiny-f16", { dtype, groupSize }).close();
    } catch (e) {
      assert.ok(e instanceof MambaError && e.status === "UNSUPPORTED", String(e));
      assert.match(e.message, new RegExp(`is quantized \\(${dtype}, F16, quantized at load\\)`));
      continue;
    }
    using engine = load(FIXTURES + "tiny-f16", { dtype, groupSize });
    assert.equal(engine.dtype, want);
  }
  expectError(
    () => load(FIXTURES + "tiny-f16", { dtype: "q4", groupSize: 48 }),
    "ARGUMENT",
    /groupSize must be 32, 64 or 128/,
  );
});

Deno.test("the tokenizer inside a GGUF file encodes like the tokenizer.json it came from", async () => {
  const gguf = await Tokenizer.load(GGUF + "demo-vocab.gguf");
  const json = await Tokenizer.load(ROOT + "models/demo/tokenizer.json");
  const texts = JSON.parse(Deno.readTextFileSync(FIXTURES + "tokenizer/texts.json")) as string[];
  // GGUF records no normalizer (llama.cpp applies none): compare on text NFC leaves unchanged.
  const nfc = texts.filter((t) => t.normalize("NFC") === t);
  assert.ok(nfc.length > 100, `${nfc.length} texts`);
  for (const text of nfc) {
    const ids = json.encode(text);
    assert.deepEqual(gguf.encode(text), ids, JSON.stringify(text.slice(0, 40)));
    assert.equal(gguf.decode(ids), json.decode(ids));
  }
  assert.equal(gguf.vocabSize, json.vocabSize);
  assert.deepEqual([...gguf.specialTokenIds], [...json.specialTokenIds]);
  const meta = await readGGUFMetadata(GGUF + "demo-vocab.gguf");
  assert.equal(meta.get("tokenizer.ggml.pre"), "gpt-2");
  assert.equal(meta.tensorCount, 0);
});

Deno.test("a single .gguf file is a complete model for the CLI", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ROOT + "examples/generate.ts",
      "--model",
      GGUF + "tiny-g1.f32.gguf",
      "--prompt",
      "the",
      "--max-tokens",
      "4",
      "--temperature",
      "0",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.match(new TextDecoder().decode(out.stdout), /^the/);
  assert.match(stderr, /generated 4 tokens/);
});

Deno.test("deno task quantize writes mlx-lm's bytes and the tokenizer", async () => {
  const dst = Deno.makeTempDirSync({ prefix: "mamba-quantize-" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ROOT + "tools/quantize.ts",
      "--bits",
      "4",
      "--group-size",
      "64",
      ROOT + "models/demo",
      `${dst}/demo`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.match(stderr, /quantize: \d+\/\d+ backbone\.layers\.0\.mixer\.in_proj\.weight/);
  assert.equal(
    Deno.readTextFileSync(`${dst}/demo/tokenizer.json`),
    Deno.readTextFileSync(ROOT + "models/demo/tokenizer.json"),
  );
  const config = JSON.parse(Deno.readTextFileSync(`${dst}/demo/config.json`));
  assert.deepEqual(config.quantization, { bits: 4, group_size: 64, mode: "affine" });
  assert.deepEqual(config.quantization_config, config.quantization);
  const t = readSafetensors(`${dst}/demo/model.safetensors`);
  assert.equal(t.get("backbone.embeddings.weight")!.dtype, "U32");
  assert.deepEqual(t.get("backbone.layers.0.mixer.conv1d.weight")!.shape, [768, 4, 1]); // mlx-lm's Conv1d layout

  // Against mlx-lm's own quantization of the same f16 weights: identical bytes.
  const out2 = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ROOT + "tools/quantize.ts", "--bits", "4", FIXTURES + "tiny-f16", `${dst}/tiny`],
    stderr: "piped",
  }).output();
  assert.equal(out2.code, 0, new TextDecoder().decode(out2.stderr));
  const ours = readSafetensors(`${dst}/tiny/model.safetensors`);
  const mlx = readSafetensors(FIXTURES + "mlx-q4-g64-f16/model.safetensors");
  let compared = 0;
  for (const [name, m] of mlx) {
    if (m.dtype !== "U32" && !name.endsWith(".scales") && !name.endsWith(".biases")) continue;
    assert.deepEqual(ours.get(name), m, name);
    compared++;
  }
  assert.equal(compared, 15);
  Deno.removeSync(dst, { recursive: true });
});

// ---- bad input ------------------------------------------------------------------------------------

/** A copy of a GGUF fixture with `edit` applied to its bytes. */
function editedGGUF(name: string, edit: (b: Uint8Array, v: DataView) => Uint8Array | void): string {
  const bytes = Deno.readFileSync(GGUF + name);
  const path = Deno.makeTempFileSync({ suffix: ".gguf" });
  Deno.writeFileSync(path, edit(bytes, new DataView(bytes.buffer)) ?? bytes);
  return path;
}

/** Offset just after the tensor-info name `name` (n_dims u32, ne u64 × n_dims, type u32, offset u64 follow). */
function tensorInfo(b: Uint8Array, name: string): number {
  const needle = new TextEncoder().encode(name);
  for (let i = b.length - needle.length; i >= 8; i--) {
    if (
      needle.every((x, k) => b[i + k] === x) &&
      new DataView(b.buffer).getBigUint64(i - 8, true) === BigInt(needle.length)
    ) {
      return i + needle.length;
    }
  }
  throw new Error(`${name} not found`);
}

Deno.test("bad GGUF files: truncated, absurd counts, wrong block counts, unknown types, wrong shapes", () => {
  const truncated = editedGGUF("tiny-g1.q8_0.gguf", (b) => b.subarray(0, b.length - 1000));
  expectError(
    () => load(truncated),
    "FORMAT",
    /\.gguf: tensor output\.weight \(Q8_0.*needs \d+ bytes .* truncated file\?/,
  );
  const header = editedGGUF("tiny-g1.q8_0.gguf", (b) => b.subarray(0, 200));
  expectError(
    () => load(header),
    "FORMAT",
    /\.gguf: (truncated at byte \d+|\w+ = \d+ cannot fit in the \d+ bytes that remain)/,
  );
  const tensors = editedGGUF("tiny-g1.q8_0.gguf", (_, v) => v.setBigUint64(8, 1n << 60n, true));
  expectError(
    () => load(tensors),
    "FORMAT",
    /tensor_count = 1152921504606846976 cannot fit in the \d+ bytes/,
  );
  const array = editedGGUF("tiny-g1.q8_0.gguf", (b, v) => {
    const at = tensorInfo(b, "tokenizer.ggml.tokens"); // key, then type u32 (9), element type u32, count u64
    v.setBigUint64(at + 8, 1n << 60n, true);
  });
  expectError(() => load(array), "FORMAT", /length of array tokenizer\.ggml\.tokens = \d+ cannot fit/);
  const unknown = editedGGUF(
    "tiny-g1.q8_0.gguf",
    (b, v) => v.setUint32(tensorInfo(b, "blk.0.ssm_in.weight") + 4 + 16, 7, true),
  );
  expectError(
    () => load(unknown),
    "UNSUPPORTED",
    /tensor blk\.0\.ssm_in\.weight has type Q5_1; supported: F32, F16, BF16, Q8_0/,
  );
  const blocks = editedGGUF(
    "tiny-g1.q8_0.gguf",
    (b, v) => v.setBigUint64(tensorInfo(b, "blk.1.ssm_out.weight") + 4, 100n, true),
  );
  expectError(
    () => load(blocks),
    "FORMAT",
    /tensor blk\.1\.ssm_out\.weight: ne\[0\] = 100 is not a multiple of Q8_0's block of 32/,
  );
  const shape = editedGGUF("tiny-g1.f32.gguf", (b, v) => {
    const at = tensorInfo(b, "blk.0.ssm_conv1d.weight");
    v.setBigUint64(at + 4, 2n, true);
    v.setBigUint64(at + 12, 320n, true);
  });
  expectError(
    () => load(shape),
    "SHAPE",
    /tensor blk\.0\.ssm_conv1d\.weight has shape \[2, 320\] \(ggml order\), but the metadata implies \[4, 160\]/,
  );
  const arch = editedGGUF("tiny-g1.f32.gguf", (b) => {
    const at = tensorInfo(b, "general.architecture") + 4 + 8; // type u32, then the string's length u64
    b.set(new TextEncoder().encode("mamba3"), at);
  });
  expectError(() => load(arch), "UNSUPPORTED", /architecture "mamba3" is not supported \(only mamba2\)/);
  const notGGUF = Deno.makeTempFileSync({ suffix: ".gguf" });
  Deno.writeTextFileSync(notGGUF, "{}");
  expectError(() => load(notGGUF), "FORMAT", /is neither a model directory nor a GGUF file/);
});

Deno.test("bad MLX files: packed sizes, missing biases, unsupported bits and modes", () => {
  function edited(
    edit: (t: Map<string, import("./helpers.ts").RawTensor>) => void,
    config?: (c: Record<string, unknown>) => void,
  ) {
    const dir = copyModel("mlx-q4-g32");
    const t = readSafetensors(`${dir}/model.safetensors`);
    edit(t);
    writeSafetensors(`${dir}/model.safetensors`, t);
    if (config) {
      const c = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
      config(c);
      Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(c));
    }
    return dir;
  }
  const packed = edited((t) => {
    const w = t.get("backbone.layers.0.mixer.in_proj.weight")!;
    w.shape = [w.shape[0] / 2, w.shape[1] * 2];
  });
  expectError(
    () => load(packed, { dtype: "f32" }),
    "SHAPE",
    /in_proj\.weight has shape \[148, 16\], but a \(296, 64\) matrix, 4-bit, group size 32, packs into \[296, 8\] uint32/,
  );
  const noBiases = edited((t) => t.delete("lm_head.biases"));
  expectError(() => load(noBiases, { dtype: "f32" }), "FORMAT", /missing tensor lm_head\.biases/);
  const noScales = edited((t) => t.delete("lm_head.scales"));
  expectError(
    () => load(noScales, { dtype: "f32" }),
    "FORMAT",
    /lm_head\.weight .* is packed \(U32\) but lm_head\.scales is missing/,
  );
  const bits = edited(() => {}, (c) => (c.quantization as Record<string, unknown>).bits = 3);
  expectError(
    () => load(bits),
    "UNSUPPORTED",
    /config\.json: quantization\.bits = 3 is not supported \(4 and 8 are\)/,
  );
  const mode = edited(() => {}, (c) => (c.quantization as Record<string, unknown>).mode = "mxfp4");
  expectError(() => load(mode), "UNSUPPORTED", /quantization\.mode "mxfp4" is not supported/);
  const noConfig = edited(() => {}, (c) => delete c.quantization);
  expectError(
    () => load(noConfig),
    "FORMAT",
    /backbone\.embeddings\.scales exists but .*config\.json has no "quantization"/,
  );
});

Deno.test("bad GGUF metadata in TypeScript: a GGUFError naming the file, never a huge allocation", async () => {
  const bytes = Deno.readFileSync(GGUF + "demo-vocab.gguf");
  assert.throws(
    () => parseGGUFMetadata(bytes.subarray(0, 5000), "x.gguf"),
    (e) =>
      e instanceof GGUFError && /x\.gguf: (truncated at byte|.*cannot fit in the \d+ bytes)/.test(e.message),
  );
  const huge = bytes.slice();
  new DataView(huge.buffer).setBigUint64(16, 1n << 60n, true);
  assert.throws(
    () => parseGGUFMetadata(huge, "x.gguf"),
    (e) => e instanceof GGUFError && /kv_count = 1152921504606846976 cannot fit/.test(e.message),
  );
  assert.throws(
    () => parseGGUFMetadata(new TextEncoder().encode('{"model": 1}'), "t.json"),
    /not a GGUF file/,
  );
  const path = Deno.makeTempFileSync({ suffix: ".gguf" });
  Deno.writeFileSync(path, bytes.subarray(0, bytes.length / 2));
  await assert.rejects(() => Tokenizer.load(path), GGUFError);
  const model = (await readGGUFMetadata(GGUF + "tiny-g1.f32.gguf")).get("tokenizer.ggml.model");
  assert.equal(model, "gpt2");
});
