/**
 * Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/seed-*) from the test fixtures, small
 * enough to commit: the fixtures' configs and index files as they are; their safetensors files and model
 * directories shrunk to tiny dimensions (same tensor names, dtypes, config formats and sharding); the torch
 * fixtures and the pickles inside them; saved states of tests/fuzz/state-model (the model the `state`
 * target loads into). Inputs the fuzzer found stay in the same folders (crash-*, named by what they hit).
 *
 *   deno run -A tools/make_fuzz_seeds.ts
 *
 * @module
 */
import { MambaEngine } from "../mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURES = `${ROOT}tests/fixtures/`;
const CORPUS = `${ROOT}tests/fuzz/corpus/`;
const STATE_MODEL = `${ROOT}tests/fuzz/state-model`;
const encoder = new TextEncoder();

/** Deterministic values for the tiny weights (xorshift32). */
let rng = 0x9e3779b9;
function random(): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) / 2 ** 32;
}

function writeSeed(target: string, name: string, bytes: Uint8Array | string): void {
  Deno.mkdirSync(CORPUS + target, { recursive: true });
  Deno.writeFileSync(
    `${CORPUS}${target}/seed-${name}`,
    typeof bytes === "string" ? encoder.encode(bytes) : bytes,
  );
}

// ---- safetensors -------------------------------------------------------------------------------

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function readHeader(path: string): Record<string, HeaderEntry | Record<string, string>> {
  const file = Deno.readFileSync(path);
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
}

function headerBytes(path: string): Uint8Array {
  const file = Deno.readFileSync(path);
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return file.slice(8, 8 + n);
}

/** float32 → the bytes of one element in `dtype` (F32, F16, BF16); U32 (MLX's packed codes) takes the
 * values as uniform random numbers in [−0.5, 0.5) and spreads them over every 32-bit word. */
function encodeValues(values: number[], dtype: string): Uint8Array {
  if (dtype === "U32") return new Uint8Array(new Uint32Array(values.map((v) => (v + 0.5) * 2 ** 32)).buffer);
  const f32 = new Float32Array(values);
  if (dtype === "F32") return new Uint8Array(f32.buffer);
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(f32.buffer);
  for (let i = 0; i < values.length; i++) {
    if (dtype === "BF16") {
      out[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
    } else {
      // F16 (values here are small normals)
      const x = bits[i], sign = (x >>> 16) & 0x8000, exp = ((x >>> 23) & 0xff) - 112;
      out[i] = exp <= 0 ? sign : sign | (exp << 10) | ((x >>> 13) & 0x3ff);
    }
  }
  return new Uint8Array(out.buffer);
}

/** A safetensors file holding `tensors` in order (with `metadata` if given). */
function safetensors(
  tensors: { name: string; dtype: string; shape: number[] }[],
  metadata?: Record<string, string>,
  values: (name: string, n: number) => number[] = (_, n) => Array.from({ length: n }, () => random() - 0.5),
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = encodeValues(values(t.name, n), t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let text = JSON.stringify(header);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const h = encoder.encode(text);
  const out = new Uint8Array(8 + h.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let o = 8 + h.length;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- tiny models with the fixtures' formats ----------------------------------------------------

interface TinyShape {
  dModel: number;
  dInner: number;
  nHeads: number;
  nGroups: number;
  dState: number;
  dConv: number;
  vocabRows: number;
}

/** The fixture's config.json with its dimensions shrunk (format, flags and groups kept). */
function tinyConfig(config: Record<string, unknown>): { config: Record<string, unknown>; shape: TinyShape } {
  const c = structuredClone(config);
  if ("hidden_size" in c) {
    const nGroups = c.n_groups as number;
    Object.assign(c, {
      hidden_size: 4,
      state_size: 2,
      head_dim: 4,
      num_heads: 2,
      vocab_size: 5 + nGroups,
      chunk_size: 4,
    });
    return {
      config: c,
      shape: { dModel: 4, dInner: 8, nHeads: 2, nGroups, dState: 2, dConv: 4, vocabRows: 5 + nGroups },
    };
  }
  const ssm = c.ssm_cfg as Record<string, number>;
  Object.assign(c, { d_model: 4, vocab_size: 5, pad_vocab_size_multiple: 4 });
  Object.assign(ssm, { d_state: 2, headdim: 4, chunk_size: 4 });
  return {
    config: c,
    shape: { dModel: 4, dInner: 8, nHeads: 2, nGroups: ssm.ngroups, dState: 2, dConv: 4, vocabRows: 8 },
  };
}

/** The shape of a Mamba2 tensor, from its name. */
function tensorShape(name: string, s: TinyShape): number[] {
  const convDim = s.dInner + 2 * s.nGroups * s.dState;
  const table: [RegExp, number[]][] = [
    [/embeddings?\.weight$|^lm_head\.weight$/, [s.vocabRows, s.dModel]],
    [/norm_f\.weight$|layers\.\d+\.norm\.weight$/, [s.dModel]],
    [/in_proj\.weight$/, [2 * s.dInner + 2 * s.nGroups * s.dState + s.nHeads, s.dModel]],
    [/conv1d\.weight$/, [convDim, 1, s.dConv]],
    [/conv1d\.bias$/, [convDim]],
    [/A_log$|dt_bias$|mixer\.D$/, [s.nHeads]],
    [/mixer\.norm\.weight$/, [s.dInner]],
    [/out_proj\.weight$/, [s.dModel, s.dInner]],
  ];
  for (const [re, shape] of table) if (re.test(name)) return shape;
  throw new Error(`make_fuzz_seeds: no shape rule for tensor ${name}`);
}

/** Plausible values: positive norms, A_log and dt_bias in the ranges Mamba2 initialises them to. */
function tensorValues(name: string, n: number): number[] {
  return Array.from({ length: n }, () => {
    const r = random();
    if (/norm(_f)?\.weight$/.test(name)) return 0.5 + r;
    if (name.endsWith("A_log")) return Math.log(1 + 15 * r);
    if (name.endsWith("dt_bias")) return -4 + 3 * r;
    return (r - 0.5) * 0.5;
  });
}

/** A tiny model directory in the format of fixture `name`: file name → bytes. */
function tinyModel(name: string): Map<string, Uint8Array> {
  const dir = FIXTURES + name;
  const { config, shape } = tinyConfig(JSON.parse(Deno.readTextFileSync(`${dir}/config.json`)));
  const files = new Map<string, Uint8Array>();
  files.set("config.json", encoder.encode(JSON.stringify(config, null, 1)));
  const shard = (file: string) => {
    const header = readHeader(`${dir}/${file}`);
    const metadata = header.__metadata__ as Record<string, string> | undefined;
    const tensors = Object.entries(header).filter(([k]) => k !== "__metadata__").map(([k, e]) => ({
      name: k,
      dtype: (e as HeaderEntry).dtype,
      shape: tensorShape(k, shape),
    }));
    files.set(file, safetensors(tensors, metadata, tensorValues));
  };
  const index = `${dir}/model.safetensors.index.json`;
  try {
    const json = JSON.parse(Deno.readTextFileSync(index));
    files.set("model.safetensors.index.json", encoder.encode(JSON.stringify(json)));
    for (const f of new Set(Object.values(json.weight_map as Record<string, string>))) shard(f);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    shard("model.safetensors");
  }
  return files;
}

/** The `checkpoint` target's input: [name length u8][name][length u32 LE][bytes] per file. */
function packFiles(files: Map<string, Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [name, bytes] of files) {
    const n = encoder.encode(name);
    const head = new Uint8Array(1 + n.length + 4);
    head[0] = n.length;
    head.set(n, 1);
    new DataView(head.buffer).setUint32(1 + n.length, bytes.length, true);
    parts.push(head, bytes);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- MLX quantized models ------------------------------------------------------------------------

/** A tiny mlx-lm quantized model directory (transformers config with "quantization"): embedding, in_proj
 * and out_proj as U32 codes with scales and biases of `scaleDType`, the rest F32. d_model 32, so one
 * group of 32 fits a row. */
function tinyMLXModel(bits: 4 | 8, scaleDType: string): Map<string, Uint8Array> {
  const s: TinyShape = { dModel: 32, dInner: 64, nHeads: 2, nGroups: 1, dState: 2, dConv: 4, vocabRows: 8 };
  const config = {
    model_type: "mamba2",
    hidden_size: s.dModel,
    intermediate_size: s.dInner,
    expand: 2,
    head_dim: 32,
    num_heads: s.nHeads,
    n_groups: s.nGroups,
    state_size: s.dState,
    conv_kernel: s.dConv,
    num_hidden_layers: 1,
    vocab_size: s.vocabRows,
    chunk_size: 4,
    layer_norm_epsilon: 1e-5,
    tie_word_embeddings: true,
    quantization: { group_size: 32, bits, mode: "affine" },
  };
  const tensors: { name: string; dtype: string; shape: number[] }[] = [];
  const quantized = (module: string, rows: number, cols: number) => {
    tensors.push({ name: `${module}.weight`, dtype: "U32", shape: [rows, cols * bits / 32] });
    for (const part of ["scales", "biases"]) {
      tensors.push({ name: `${module}.${part}`, dtype: scaleDType, shape: [rows, cols / 32] });
    }
  };
  const inProj = 2 * s.dInner + 2 * s.nGroups * s.dState + s.nHeads,
    convDim = s.dInner + 2 * s.nGroups * s.dState;
  quantized("backbone.embeddings", s.vocabRows, s.dModel);
  tensors.push({ name: "backbone.norm_f.weight", dtype: "F32", shape: [s.dModel] });
  const p = "backbone.layers.0.";
  tensors.push({ name: `${p}norm.weight`, dtype: "F32", shape: [s.dModel] });
  quantized(`${p}mixer.in_proj`, inProj, s.dModel);
  tensors.push({ name: `${p}mixer.conv1d.weight`, dtype: "F32", shape: [convDim, s.dConv, 1] });
  tensors.push({ name: `${p}mixer.conv1d.bias`, dtype: "F32", shape: [convDim] });
  for (const n of ["A_log", "dt_bias", "D"]) {
    tensors.push({ name: `${p}mixer.${n}`, dtype: "F32", shape: [s.nHeads] });
  }
  tensors.push({ name: `${p}mixer.norm.weight`, dtype: "F32", shape: [s.dInner] });
  quantized(`${p}mixer.out_proj`, s.dModel, s.dInner);
  return new Map([
    ["config.json", encoder.encode(JSON.stringify(config))],
    [
      "model.safetensors",
      safetensors(tensors, { format: "mlx" }, (name, n) => {
        if (name.endsWith(".scales")) return Array.from({ length: n }, () => 0.01 + 0.01 * random());
        if (name.endsWith(".biases")) return Array.from({ length: n }, () => -0.1 * random());
        return name.endsWith(".weight") && /proj|embeddings/.test(name)
          ? Array.from({ length: n }, () => random() - 0.5)
          : tensorValues(name, n);
      }),
    ],
  ]);
}

// ---- GGUF ------------------------------------------------------------------------------------------

type GGUFKV = [key: string, type: "u32" | "f32" | "string" | "strings" | "i32s", value: unknown];

/** A GGUF v3 file (ggml docs/gguf.md): header, metadata, tensor table, data aligned to 32. */
function ggufFile(kvs: GGUFKV[], tensors: { name: string; ne: number[]; type: number; data: Uint8Array }[]) {
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24);
  const u64 = (v: number) => {
    u32(v);
    u32(Math.floor(v / 2 ** 32));
  };
  const str = (t: string) => {
    const b = encoder.encode(t);
    u64(b.length);
    parts.push(...b);
  };
  parts.push(...encoder.encode("GGUF"));
  u32(3);
  u64(tensors.length);
  u64(kvs.length);
  for (const [key, type, value] of kvs) {
    str(key);
    u32({ u32: 4, f32: 6, string: 8, strings: 9, i32s: 9 }[type]);
    if (type === "u32") u32(value as number);
    else if (type === "f32") parts.push(...new Uint8Array(new Float32Array([value as number]).buffer));
    else if (type === "string") str(value as string);
    else if (type === "strings") {
      u32(8);
      u64((value as string[]).length);
      for (const v of value as string[]) str(v);
    } else {
      u32(5);
      u64((value as number[]).length);
      for (const v of value as number[]) u32(v);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(offset);
    offset += Math.ceil(t.data.length / 32) * 32;
  }
  while (parts.length % 32) parts.push(0);
  const out = new Uint8Array(parts.length + offset);
  out.set(parts);
  let o = parts.length;
  for (const t of tensors) {
    out.set(t.data, o);
    o += Math.ceil(t.data.length / 32) * 32;
  }
  return out;
}

const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;

/** `values` in ggml type `type` (F32, F16, Q8_0 or Q4_0 blocks of 32 with an f16 scale). */
function ggmlBytes(values: number[], type: number): Uint8Array {
  if (type === GGML.F32) return encodeValues(values, "F32");
  if (type === GGML.F16) return encodeValues(values, "F16");
  const q8 = type === GGML.Q8_0, blockBytes = q8 ? 34 : 18;
  const out = new Uint8Array(values.length / 32 * blockBytes);
  for (let b = 0; b < values.length / 32; b++) {
    const block = values.slice(32 * b, 32 * b + 32), amax = Math.max(...block.map(Math.abs)) || 1;
    const d = amax / (q8 ? 127 : 8);
    out.set(encodeValues([d], "F16"), b * blockBytes);
    for (let j = 0; j < (q8 ? 32 : 16); j++) {
      if (q8) out[b * blockBytes + 2 + j] = Math.round(block[j] / d) & 255;
      else {
        const q = (x: number) => Math.max(0, Math.min(15, Math.round(x / d) + 8));
        out[b * blockBytes + 2 + j] = q(block[j]) | (q(block[j + 16]) << 4);
      }
    }
  }
  return out;
}

/** A tiny llama.cpp `mamba2` GGUF file (names and ggml shapes of GGUFModel.swift), its matrices in
 * `matrixType`; d_model 32, so one quantization block fits a row; tied embedding; with a vocabulary. */
function tinyGGUFModel(matrixType: number): Uint8Array {
  const dModel = 32, dInner = 64, nHeads = 2, nGroups = 1, dState = 2, dConv = 4, vocab = 8;
  const inProj = 2 * dInner + 2 * nGroups * dState + nHeads, convDim = dInner + 2 * nGroups * dState;
  const tensor = (name: string, ne: number[], type: number, values?: (i: number) => number) => {
    const n = ne.reduce((a, b) => a * b, 1);
    const v = Array.from({ length: n }, (_, i) => values ? values(i) : (random() - 0.5) * 0.5);
    return { name, ne, type, data: ggmlBytes(v, type) };
  };
  const positive = () => 0.5 + random();
  const tensors = [
    tensor("token_embd.weight", [dModel, vocab], matrixType),
    tensor("output_norm.weight", [dModel], GGML.F32, positive),
    tensor("blk.0.attn_norm.weight", [dModel], GGML.F32, positive),
    tensor("blk.0.ssm_in.weight", [dModel, inProj], matrixType),
    tensor("blk.0.ssm_conv1d.weight", [dConv, convDim], GGML.F32),
    tensor("blk.0.ssm_conv1d.bias", [convDim], GGML.F32),
    tensor("blk.0.ssm_dt.bias", [nHeads], GGML.F32, () => -4 + 3 * random()),
    tensor("blk.0.ssm_a", [1, nHeads], GGML.F32, () => -(1 + 15 * random())),
    tensor("blk.0.ssm_d", [1, nHeads], GGML.F32, positive),
    tensor("blk.0.ssm_norm.weight", [dInner / nGroups, nGroups], GGML.F32, positive),
    tensor("blk.0.ssm_out.weight", [dInner, dModel], matrixType),
  ];
  const tokens = ["a", "b", "c", "Ġ", "ab", "Ġa", "<|endoftext|>", "[PAD0]"];
  return ggufFile([
    ["general.architecture", "string", "mamba2"],
    ["mamba2.embedding_length", "u32", dModel],
    ["mamba2.block_count", "u32", 1],
    ["mamba2.ssm.conv_kernel", "u32", dConv],
    ["mamba2.ssm.inner_size", "u32", dInner],
    ["mamba2.ssm.state_size", "u32", dState],
    ["mamba2.ssm.time_step_rank", "u32", nHeads],
    ["mamba2.ssm.group_count", "u32", nGroups],
    ["mamba2.attention.layer_norm_rms_epsilon", "f32", 1e-5],
    ["tokenizer.ggml.model", "string", "gpt2"],
    ["tokenizer.ggml.pre", "string", "gpt-2"],
    ["tokenizer.ggml.tokens", "strings", tokens],
    ["tokenizer.ggml.token_type", "i32s", [1, 1, 1, 1, 1, 1, 3, 5]],
    ["tokenizer.ggml.merges", "strings", ["a b", "Ġ a"]],
  ], tensors);
}

// ---- torch zip entries ------------------------------------------------------------------------

/** The stored entries of a zip file, from its central directory (no ZIP64); throws on a damaged one. */
function zipEntries(bytes: Uint8Array): Map<string, Uint8Array> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.length - 22;
  while (eocd >= 0 && v.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const out = new Map<string, Uint8Array>();
  if (eocd < 0) return out;
  let p = v.getUint32(eocd + 16, true);
  for (let i = 0; i < v.getUint16(eocd + 10, true); i++) {
    const size = v.getUint32(p + 20, true), nameLength = v.getUint16(p + 28, true);
    const extra = v.getUint16(p + 30, true), comment = v.getUint16(p + 32, true);
    const local = v.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLength));
    const data = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    out.set(name, bytes.slice(data, data + size));
    p += 46 + nameLength + extra + comment;
  }
  return out;
}

// ---- main ----------------------------------------------------------------------------------------

if (import.meta.main) {
  // Seeds are rewritten; what the fuzzer found (crash-*, …) stays.
  for (
    const e of (() => {
      try {
        return [...Deno.readDirSync(CORPUS)];
      } catch {
        return [];
      }
    })()
  ) {
    for (const f of Deno.readDirSync(CORPUS + e.name)) {
      if (f.name.startsWith("seed-")) Deno.removeSync(`${CORPUS}${e.name}/${f.name}`);
    }
  }

  const fixtures = ["tiny-g1", "tiny-g2", "tiny-g2-torch", "tiny-f16", "tiny-bf16-sharded"];
  // json and config: the fixtures' own files, then the tiny models' configs.
  const seen = new Set<string>();
  for (const f of fixtures) {
    const text = Deno.readTextFileSync(`${FIXTURES}${f}/config.json`);
    if (seen.has(text)) continue;
    seen.add(text);
    writeSeed("config", f, text);
    writeSeed("json", `config-${f}`, text);
  }
  writeSeed(
    "json",
    "index",
    Deno.readTextFileSync(`${FIXTURES}tiny-bf16-sharded/model.safetensors.index.json`),
  );
  writeSeed("json", "safetensors-header", headerBytes(`${FIXTURES}tiny-f16/model.safetensors`));
  writeSeed(
    "json",
    "escapes",
    '{"a": "\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/", "b": [1e-5, -0.0, 3.25E+2, NaN]}',
  );
  writeSeed(
    "json",
    "python-floats",
    '[Infinity, -Infinity, NaN, {"__float__": "Infinity"}, null, true, false]',
  );
  writeSeed(
    "index",
    "sharded",
    Deno.readTextFileSync(`${FIXTURES}tiny-bf16-sharded/model.safetensors.index.json`),
  );

  // safetensors and checkpoint: tiny models in every fixture's format.
  for (const f of ["tiny-g1", "tiny-g2", "tiny-f16", "tiny-bf16-sharded"]) {
    const files = tinyModel(f);
    writeSeed("config", `shrunk-${f}`, files.get("config.json")!);
    for (const [name, bytes] of files) {
      if (name.endsWith(".safetensors")) {
        writeSeed("safetensors", `${f}-${name.replace(".safetensors", "")}`, bytes);
      }
    }
    writeSeed("checkpoint", f, packFiles(files));
  }
  // the state target's model: the tiny version of tiny-g1 (transformers config, f32, untied).
  Deno.mkdirSync(STATE_MODEL, { recursive: true });
  for (const [name, bytes] of tinyModel("tiny-g1")) Deno.writeFileSync(`${STATE_MODEL}/${name}`, bytes);

  // torch: the torch fixtures as they are, and the pickles inside them.
  const pickles = new Set<string>();
  for (const e of [...Deno.readDirSync(`${FIXTURES}torch`)].sort((a, b) => a.name < b.name ? -1 : 1)) {
    if (!e.name.endsWith(".pt")) continue;
    const bytes = Deno.readFileSync(`${FIXTURES}torch/${e.name}`);
    writeSeed("torch", e.name.replace(".pt", ""), bytes);
    let entries = new Map<string, Uint8Array>();
    try {
      entries = zipEntries(bytes);
    } catch {
      // a damaged fixture (truncated, not a zip): no pickle to take from it
    }
    for (const [name, data] of entries) {
      const key = [...data].join(",");
      if (!name.endsWith("data.pkl") || pickles.has(key)) continue;
      pickles.add(key);
      writeSeed("pickle", e.name.replace(".pt", ""), data);
    }
  }

  // state: saved states of the state model, fresh, after a prompt and after steps.
  using engine = MambaEngine.loadSync(STATE_MODEL, { backend: "cpu", batchSize: 2 });
  writeSeed("state", "zero", engine.saveState(1));
  engine.prefill([1, 2, 3, 4, 5], 1);
  writeSeed("state", "prompt", engine.saveState(1));
  for (let i = 0; i < 20; i++) engine.step([i % engine.vocabSize, (3 * i) % engine.vocabSize]);
  writeSeed("state", "steps", engine.saveState(1));

  // After the older seeds, so their random values stay as they were.
  // checkpoint: tiny MLX-quantized models (U32 codes, scales and biases; 4 and 8 bits).
  writeSeed("checkpoint", "mlx-q4-f16", packFiles(tinyMLXModel(4, "F16")));
  writeSeed("checkpoint", "mlx-q8-bf16", packFiles(tinyMLXModel(8, "BF16")));
  writeSeed("safetensors", "mlx-q4-f32", tinyMLXModel(4, "F32").get("model.safetensors")!);

  // gguf and gguf-model: tiny mamba2 GGUF files (F16, Q8_0, Q4_0 matrices); gguf also gets the
  // fixture of every block type the engine reads (Q4_K, Q5_K, Q6_K, BF16, …).
  for (const [name, type] of [["f16", GGML.F16], ["q8_0", GGML.Q8_0], ["q4_0", GGML.Q4_0]] as const) {
    const bytes = tinyGGUFModel(type);
    writeSeed("gguf", `tiny-${name}`, bytes);
    writeSeed("gguf-model", `tiny-${name}`, bytes);
  }
  writeSeed("gguf", "quants", Deno.readFileSync(`${FIXTURES}gguf/quants.gguf`));

  let total = 0, count = 0;
  for (const e of Deno.readDirSync(CORPUS)) {
    for (const f of Deno.readDirSync(CORPUS + e.name)) {
      if (!f.name.startsWith("seed-")) continue;
      total += Deno.statSync(`${CORPUS}${e.name}/${f.name}`).size;
      count++;
    }
  }
  console.log(`wrote ${count} seeds (${(total / 1024).toFixed(1)} KiB) to tests/fuzz/corpus/`);
}
