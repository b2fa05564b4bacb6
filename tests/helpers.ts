// Shared test helpers: fixtures, the library, comparing logits, and writing safetensors files.
import { type LoadOptions, MambaEngine } from "../mod.ts";

export const ROOT: string = new URL("..", import.meta.url).pathname;
export const FIXTURES: string = new URL("./fixtures/", import.meta.url).pathname;

/** A reference fixture made by tools/make_fixtures.py. */
export interface Fixture {
  name: string;
  dir: string;
  tokens: number[];
  promptLength: number;
  vocabRows: number;
  maxAbsLogit: number;
  nGroups: number;
  dtype: string;
  /** Reference logits after each position: [tokens.length * vocabRows]. */
  logits: Float32Array;
}

export const FIXTURE_NAMES = [
  "tiny-g1",
  "tiny-g2",
  "tiny-g2-torch",
  "tiny-f16",
  "tiny-bf16-sharded",
] as const;

export function loadFixture(name: string): Fixture {
  const dir = FIXTURES + name;
  const ref = JSON.parse(Deno.readTextFileSync(`${dir}/reference.json`));
  const bytes = Deno.readFileSync(`${dir}/logits.f32`);
  return {
    name,
    dir,
    ...ref,
    logits: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4),
  };
}

export function refRow(f: Fixture, position: number): Float32Array {
  return f.logits.subarray(position * f.vocabRows, (position + 1) * f.vocabRows);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = Number.isNaN(x) ? Infinity : x;
  }
  return d;
}

export function load(dir: string, options: LoadOptions = {}): MambaEngine {
  return MambaEngine.loadSync(dir, { backend: "cpu", ...options });
}

/**
 * Teacher-forced run of a fixture: prefill the prompt, then step through every later token,
 * calling `check(position, logitsRow)` after each position whose logits the engine produced.
 */
export function teacherForce(
  engine: MambaEngine,
  f: Fixture,
  check: (position: number, row: Float32Array) => void,
  seq = 0,
): void {
  check(f.promptLength - 1, engine.prefill(f.tokens.slice(0, f.promptLength), seq));
  for (let t = f.promptLength; t < f.tokens.length; t++) {
    const tokens = new Array(engine.batchSize).fill(0);
    tokens[seq] = f.tokens[t];
    engine.step(tokens);
    check(t, engine.row(seq));
  }
}

// ---- safetensors files for the bad-input tests -------------------------------------------------

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export function readSafetensors(path: string): Map<string, RawTensor> {
  const file = Deno.readFileSync(path);
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
  const out = new Map<string, RawTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets: [b, end] } = e as {
      dtype: string;
      shape: number[];
      data_offsets: number[];
    };
    out.set(name, { dtype, shape, bytes: file.slice(8 + n + b, 8 + n + end) });
  }
  return out;
}

/** Writes tensors in order; `edit` may change the header entries (offsets, dtype) before writing. */
export function writeSafetensors(
  path: string,
  tensors: Map<string, RawTensor>,
  edit?: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void,
): void {
  const header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  edit?.(header);
  let h = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (h.length % 8)) % 8;
  h = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad));
  const out = new Uint8Array(8 + h.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let o = 8 + h.length;
  for (const t of tensors.values()) {
    out.set(t.bytes, o);
    o += t.bytes.length;
  }
  Deno.writeFileSync(path, out);
}

/** A copy of a fixture's model directory in a fresh temp dir. */
export function copyModel(fixture: string): string {
  const dir = Deno.makeTempDirSync({ prefix: "mamba-test-" });
  for (const e of Deno.readDirSync(FIXTURES + fixture)) {
    if (e.name.endsWith(".safetensors") || e.name.endsWith(".json")) {
      Deno.copyFileSync(`${FIXTURES}${fixture}/${e.name}`, `${dir}/${e.name}`);
    }
  }
  return dir;
}
