/**
 * Synthetic benchmark models: random weights with the exact shapes of state-spaces/mamba2-130m and
 * mamba2-780m, in f32, f16 or bf16, written once into a cache directory (never into the repository).
 *
 * The weights are random but shaped like a trained model's (unit norms, A in [-16, -1], dt in
 * [0.001, 0.1], small projections), so activations stay finite and free of denormals over long runs:
 * speed then depends only on the shapes and the dtype.
 *
 * Usage: `deno run -A tools/make_bench_models.ts [130m|780m|all] [f32|f16|bf16|all]`
 *
 * @module
 */

/** The two model shapes benchmarked. */
export type BenchShape = "130m" | "780m";
/** Weight storage type of a benchmark model. */
export type BenchDType = "f32" | "f16" | "bf16";

/** Sizes of a benchmark shape (mamba_ssm config names). */
export interface ShapeSpec {
  dModel: number;
  nLayer: number;
  /** vocab_size before padding to a multiple of 16 (as the released checkpoints store it). */
  vocab: number;
  dState: number;
  headDim: number;
}

/** mamba2-130m and mamba2-780m: d_state 128, headdim 64, ngroups 1, expand 2, d_conv 4, tied lm_head. */
export const SHAPES: Record<BenchShape, ShapeSpec> = {
  "130m": { dModel: 768, nLayer: 24, vocab: 50277, dState: 128, headDim: 64 },
  "780m": { dModel: 1536, nLayer: 48, vocab: 50277, dState: 128, headDim: 64 },
};

const FORMAT_VERSION = 1; // bump when the generated weights change: old cache entries are rebuilt

/** The cache root: $XDG_CACHE_HOME/mamba-metal or ~/.cache/mamba-metal. */
export function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME");
  if (xdg) return `${xdg}/mamba-metal`;
  if (home) return `${home}/.cache/mamba-metal`;
  throw new Error("neither XDG_CACHE_HOME nor HOME is set: no place for the benchmark model cache");
}

/** Directory of a benchmark model in the cache (it may not exist yet). */
export function benchModelDir(shape: BenchShape, dtype: BenchDType): string {
  return `${cacheRoot()}/bench-models/mamba2-${shape}-${dtype}`;
}

// ---- random numbers: a small fast generator, deterministic per tensor -------------------------

class Rng {
  #s: Uint32Array;
  constructor(seed: number) {
    // splitmix32 seeds the four words of xoshiro128+
    this.#s = new Uint32Array(4);
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0;
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (t ^ (t >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.#s;
    const r = (s[0] + s[3]) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return r / 4294967296;
  }
}

function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---- dtype conversion -------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half, round to nearest even (the values here are small: no overflow handling needed
 * beyond clamping to ±65504). */
function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp < 103) return sign; // below half's smallest subnormal: ±0
  if (exp > 142) return sign | 0x7bff; // clamp to the largest finite half
  if (exp < 113) {
    // subnormal half
    const m = mant | 0x800000;
    const shift = 126 - exp;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = ((exp - 112) << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

function toBF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---- the tensors ------------------------------------------------------------------------------

interface TensorSpec {
  name: string;
  shape: number[];
  /** Large matrices take the model dtype; small vectors stay f32, as in the released checkpoints. */
  big: boolean;
  /** Fills `out` with values for flat indices [start, start + out.length). */
  fill: (out: Float32Array, start: number, rng: Rng) => void;
}

const uniform = (lo: number, hi: number) => (out: Float32Array, _start: number, rng: Rng) => {
  for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * rng.next();
};
const constant = (v: number) => (out: Float32Array) => out.fill(v);
/** Roughly normal (sum of four uniforms), standard deviation `std`. */
const normal = (std: number) => (out: Float32Array, _start: number, rng: Rng) => {
  const k = std * Math.sqrt(3); // var of (u1+u2+u3+u4-2) is 1/3
  for (let i = 0; i < out.length; i++) {
    out[i] = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * k;
  }
};

function tensorSpecs(s: ShapeSpec): { specs: TensorSpec[]; vocabRows: number } {
  const vocabRows = Math.ceil(s.vocab / 16) * 16;
  const dInner = 2 * s.dModel;
  const nHeads = dInner / s.headDim;
  const convDim = dInner + 2 * s.dState;
  const dInProj = 2 * dInner + 2 * s.dState + nHeads;
  const specs: TensorSpec[] = [
    { name: "backbone.embedding.weight", shape: [vocabRows, s.dModel], big: true, fill: normal(0.02) },
  ];
  for (let l = 0; l < s.nLayer; l++) {
    const p = `backbone.layers.${l}.`;
    specs.push(
      { name: p + "norm.weight", shape: [s.dModel], big: false, fill: constant(1) },
      {
        name: p + "mixer.in_proj.weight",
        shape: [dInProj, s.dModel],
        big: true,
        fill: uniform(-1 / Math.sqrt(s.dModel), 1 / Math.sqrt(s.dModel)),
      },
      { name: p + "mixer.conv1d.weight", shape: [convDim, 1, 4], big: false, fill: uniform(-0.5, 0.5) },
      { name: p + "mixer.conv1d.bias", shape: [convDim], big: false, fill: uniform(-0.5, 0.5) },
      {
        // softplus⁻¹ of dt drawn log-uniformly from [0.001, 0.1], as mamba_ssm initialises it
        name: p + "mixer.dt_bias",
        shape: [nHeads],
        big: false,
        fill: (out, _start, rng) => {
          for (let i = 0; i < out.length; i++) {
            const dt = Math.exp(Math.log(0.001) + (Math.log(0.1) - Math.log(0.001)) * rng.next());
            out[i] = dt + Math.log(-Math.expm1(-dt));
          }
        },
      },
      {
        name: p + "mixer.A_log",
        shape: [nHeads],
        big: false,
        fill: (out, _start, rng) => {
          for (let i = 0; i < out.length; i++) out[i] = Math.log(1 + 15 * rng.next());
        },
      },
      { name: p + "mixer.D", shape: [nHeads], big: false, fill: constant(1) },
      { name: p + "mixer.norm.weight", shape: [dInner], big: false, fill: constant(1) },
      {
        name: p + "mixer.out_proj.weight",
        shape: [s.dModel, dInner],
        big: true,
        fill: uniform(-1 / Math.sqrt(dInner * s.nLayer), 1 / Math.sqrt(dInner * s.nLayer)),
      },
    );
  }
  specs.push({ name: "backbone.norm_f.weight", shape: [s.dModel], big: false, fill: constant(1) });
  return { specs, vocabRows };
}

/**
 * The first `count` float32 values of one tensor of a benchmark shape, as the model file holds them before
 * any f16/bf16 rounding (tools/gpu/bench_weights.c regenerates the same values on the GPU proxy's device).
 */
export function benchTensorValues(shape: BenchShape, name: string, count: number): Float32Array {
  const t = tensorSpecs(SHAPES[shape]).specs.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name} in the ${shape} benchmark model`);
  const out = new Float32Array(Math.min(count, t.shape.reduce((a, b) => a * b, 1)));
  t.fill(out, 0, new Rng(hashName(t.name)));
  return out;
}

const ALIGN = 64; // tensor data start on cache lines, as a converter that aligns would leave them

/** Writes model.safetensors and config.json into `dir` (via a temporary name, so a killed run leaves
 * no half-written model behind). */
export async function writeBenchModel(dir: string, shape: BenchShape, dtype: BenchDType): Promise<void> {
  const s = SHAPES[shape];
  const { specs } = tensorSpecs(s);
  const elemBytes = (t: TensorSpec) => (t.big && dtype !== "f32" ? 2 : 4);
  const header: Record<string, unknown> = {
    __metadata__: {
      format: "pt",
      generator: "mamba-metal tools/make_bench_models.ts",
      version: `${FORMAT_VERSION}`,
    },
  };
  let offset = 0;
  for (const t of specs) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = n * elemBytes(t);
    header[t.name] = {
      dtype: t.big ? dtype.toUpperCase() : "F32",
      shape: t.shape,
      data_offsets: [offset, offset + bytes],
    };
    offset = Math.ceil((offset + bytes) / ALIGN) * ALIGN;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((ALIGN - ((8 + json.length) % ALIGN)) % ALIGN);
  const headerBytes = new TextEncoder().encode(json);

  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${dir}/model.safetensors.partial`;
  using file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const lead = new Uint8Array(8);
  new DataView(lead.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  await writeAll(file, lead);
  await writeAll(file, headerBytes);

  const CHUNK = 1 << 20; // elements per write
  const values = new Float32Array(CHUNK);
  const out16 = new Uint16Array(CHUNK);
  let written = 0;
  for (const t of specs) {
    const entry = header[t.name] as { data_offsets: number[] };
    if (entry.data_offsets[0] > written) {
      await writeAll(file, new Uint8Array(entry.data_offsets[0] - written));
      written = entry.data_offsets[0];
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    const rng = new Rng(hashName(t.name));
    const to16 = !t.big || dtype === "f32" ? null : dtype === "f16" ? toHalf : toBF16;
    for (let start = 0; start < n; start += CHUNK) {
      const m = Math.min(CHUNK, n - start);
      const v = values.subarray(0, m);
      t.fill(v, start, rng);
      if (to16) {
        for (let i = 0; i < m; i++) out16[i] = to16(v[i]);
        await writeAll(file, new Uint8Array(out16.buffer, 0, m * 2));
        written += m * 2;
      } else {
        await writeAll(file, new Uint8Array(v.buffer, 0, m * 4));
        written += m * 4;
      }
    }
  }
  const config = {
    d_model: s.dModel,
    d_intermediate: 0,
    n_layer: s.nLayer,
    vocab_size: s.vocab,
    ssm_cfg: { layer: "Mamba2", d_state: s.dState, headdim: s.headDim, ngroups: 1, chunk_size: 256 },
    attn_layer_idx: [],
    attn_cfg: {},
    rms_norm: true,
    residual_in_fp32: true,
    fused_add_norm: true,
    pad_vocab_size_multiple: 16,
    tie_embeddings: true,
    bench_model_version: FORMAT_VERSION,
  };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(tmp, `${dir}/model.safetensors`);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await file.write(bytes.subarray(o));
}

async function isCurrent(dir: string): Promise<boolean> {
  try {
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.stat(`${dir}/model.safetensors`);
    return cfg.bench_model_version === FORMAT_VERSION;
  } catch {
    return false;
  }
}

/**
 * A weight format benchmarked: a stored dtype, or `"q8"` / `"q4"` (group 64), the f16 model quantized
 * at load (`MambaEngine.load(dir, { dtype })`).
 */
export type BenchFormat = BenchDType | "q8" | "q4";

/** Every benchmark format, stored first. */
export const BENCH_FORMATS: readonly BenchFormat[] = ["f32", "f16", "bf16", "q8", "q4"];

/** Which stored model a format loads, and the `dtype` load option that makes it (none: as stored). */
export function benchSource(format: BenchFormat): { stored: BenchDType; loadDType?: string } {
  return format === "q8" || format === "q4" ? { stored: "f16", loadDType: format } : { stored: format };
}

/** The directory of a benchmark model, creating it first if the cache lacks it (seconds to a minute). */
export async function ensureBenchModel(shape: BenchShape, dtype: BenchDType): Promise<string> {
  const dir = benchModelDir(shape, dtype);
  if (!(await isCurrent(dir))) {
    const t0 = performance.now();
    console.error(`making benchmark model ${dir} …`);
    await writeBenchModel(dir, shape, dtype);
    console.error(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return dir;
}

if (import.meta.main) {
  const [shapeArg = "all", dtypeArg = "all"] = Deno.args;
  const shapes = (shapeArg === "all" ? Object.keys(SHAPES) : [shapeArg]) as BenchShape[];
  const dtypes = (dtypeArg === "all" ? ["f32", "f16", "bf16"] : [dtypeArg]) as BenchDType[];
  for (const sh of shapes) {
    if (!(sh in SHAPES)) throw new Error(`unknown shape ${sh}: 130m, 780m or all`);
    for (const dt of dtypes) {
      if (!["f32", "f16", "bf16"].includes(dt)) throw new Error(`unknown dtype ${dt}: f32, f16, bf16 or all`);
      console.log(await ensureBenchModel(sh, dt));
    }
  }
}
