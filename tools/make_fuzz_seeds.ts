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

/** float32 → the bytes of one element in `dtype` (F32, F16, BF16). */
function encodeValues(values: number[], dtype: string): Uint8Array {
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
