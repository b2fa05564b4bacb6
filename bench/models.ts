/**
 * Shared setup of the engine benchmarks: which synthetic models to run (created on demand in the
 * cache by tools/make_bench_models.ts) and one engine alive at a time, so that the 780m f32 model
 * (3.1 GB) never shares memory with another.
 *
 * Environment: `MAMBA_BENCH_SHAPES` (default `130m,780m`) and `MAMBA_BENCH_DTYPES` (default
 * `f32,f16,bf16`; also `q8`, `q4`: the f16 model quantized at load) narrow the matrix;
 * `MAMBA_BENCH_THREADS` sets the CPU threads (default: all cores).
 *
 * @module
 */
import { MambaEngine, Tokenizer, type TokenizerJson, type WeightDType } from "../mod.ts";
import {
  BENCH_FORMATS,
  type BenchFormat,
  type BenchShape,
  benchSource,
  ensureBenchModel,
} from "../tools/make_bench_models.ts";

/** The shape × dtype matrix chosen by the environment. */
export function benchMatrix(): { shape: BenchShape; dtype: BenchFormat }[] {
  const list = (name: string, all: readonly string[], defaults: readonly string[]) => {
    const v = Deno.env.get(name);
    const picked = v ? v.split(",").map((s) => s.trim()).filter(Boolean) : [...defaults];
    for (const p of picked) {
      if (!all.includes(p)) throw new Error(`${name}: unknown value ${p} (${all.join(", ")})`);
    }
    return picked;
  };
  const shapes = list("MAMBA_BENCH_SHAPES", ["130m", "780m"], ["130m", "780m"]) as BenchShape[];
  const dtypes = list("MAMBA_BENCH_DTYPES", BENCH_FORMATS, ["f32", "f16", "bf16"]) as BenchFormat[];
  return shapes.flatMap((shape) => dtypes.map((dtype) => ({ shape, dtype })));
}

/** CPU threads for the benchmarks (0: one per core). */
export function benchThreads(): number {
  return Number(Deno.env.get("MAMBA_BENCH_THREADS") ?? 0);
}

let current: { key: string; engine: MambaEngine } | undefined;

/** The engine for a benchmark model at a batch size; the previous one is closed when the key changes. */
export async function benchEngine(
  shape: BenchShape,
  dtype: BenchFormat,
  batchSize: number,
): Promise<MambaEngine> {
  const key = `${shape}/${dtype}/${batchSize}`;
  if (current?.key === key) return current.engine;
  current?.engine.close();
  current = undefined;
  const { stored, loadDType } = benchSource(dtype);
  const dir = await ensureBenchModel(shape, stored);
  const engine = await MambaEngine.load(dir, {
    backend: "cpu",
    batchSize,
    threads: benchThreads(),
    ...(loadDType ? { dtype: loadDType as WeightDType } : {}),
  });
  current = { key, engine };
  return engine;
}

/** Closes the engine kept by {@linkcode benchEngine}. */
export function closeBenchEngine(): void {
  current?.engine.close();
  current = undefined;
}

/** A deterministic prompt of `n` token ids below 50000. */
export function benchPrompt(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13) % 50000);
}

/** GPT-NeoX-20B's tokenizer.json beside the checkout (../shared/data), which the bench models' ids follow. */
export const NEOX_TOKENIZER: URL = new URL(
  "../../shared/data/tokenizers/gpt-neox-20b.tokenizer.json",
  import.meta.url,
);

/**
 * A byte-level BPE tokenizer.json with `vocab` ids and no merges: ids 0…255 are the bytes (id 0 is also
 * `<|endoftext|>`), the rest decode to two or three bytes each. For benchmarks that need the bench
 * models' vocabulary size where GPT-NeoX's tokenizer is absent (prompts are then token ids).
 */
export function syntheticTokenizerJson(vocab = 50277): TokenizerJson {
  // GPT-2's byte-level alphabet: printable bytes map to themselves, the others to U+0100 on.
  const alphabet: string[] = [];
  let next = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    alphabet.push(String.fromCharCode(printable ? b : 256 + next++));
  }
  const map: Record<string, number> = {};
  for (let id = 1; id < vocab; id++) {
    const t = id < 256
      ? alphabet[id]
      : alphabet[id % 256] + alphabet[(id >> 8) % 256] + (id >= 65536 ? alphabet[id >> 16] : "");
    if (!(t in map)) map[t] = id;
  }
  map[alphabet[0]] = 0;
  // ids that collided with an earlier token string get a unique three-byte one
  const used = new Set(Object.values(map));
  for (let id = 0, k = 0; id < vocab; id++) {
    if (used.has(id)) continue;
    let t: string;
    do {
      t = alphabet[k % 256] + alphabet[(k >> 8) % 256] + alphabet[((k >> 16) % 255) + 1];
      k++;
    } while (t in map);
    map[t] = id;
  }
  return {
    model: { type: "BPE", vocab: map, merges: [] },
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false },
    decoder: { type: "ByteLevel" },
    added_tokens: [{ id: 0, content: "<|endoftext|>", special: true }],
  } as TokenizerJson;
}

/** GPT-NeoX's tokenizer when it is beside the checkout, else {@linkcode syntheticTokenizerJson}'s. */
export async function benchTokenizer(): Promise<{ tokenizer: Tokenizer; neox: boolean }> {
  try {
    return { tokenizer: await Tokenizer.load(NEOX_TOKENIZER), neox: true };
  } catch {
    return { tokenizer: Tokenizer.fromJSON(syntheticTokenizerJson()), neox: false };
  }
}
