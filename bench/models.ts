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
import { MambaEngine, type WeightDType } from "../mod.ts";
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
