// The Metal backend on quantized checkpoints (on Linux through MetalCompat): mlx-lm's files, a GGUF file
// from llama.cpp's converter and load-time quantization, against the same checkpoints dequantized to
// float32 at load (`dtype: "f32"`, exact: the quantization is then the only difference from the float
// model, and the two engines see the same values) and, where the CPU backend runs quantized matrices,
// against it. Then the GPU work per token, which quantized weights must not change.
import assert from "node:assert/strict";
import { type LoadOptions, type MambaEngine, MambaError } from "../mod.ts";
import { FIXTURES, load, maxAbsDiff } from "./helpers.ts";

/** Quantized fixtures (tools/make_quant_fixtures.py) and what the engine holds them as. */
const QUANTIZED = [
  ["mlx-q4-g32", "q4"], // f32 scales (the file's are bf16), untied lm_head
  ["mlx-q4-g64-f16", "q4"], // tied
  ["mlx-q8-g128-f16", "mixed"], // in_proj and the embedding stay f16 (d_model 64 < G)
  ["mlx-q8-g32-bf16", "q8"], // ngroups 2
  ["gguf/tiny-g1.q8_0.gguf", "q8"], // Q8_0 → 8-bit G 32
] as const;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** A deterministic prompt of `n` tokens below `vocab`. */
function tokens(n: number, vocab: number, seed = 7): number[] {
  return Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + 3) % vocab);
}

/**
 * The worst max|Δ| / max|ref| of `engine` against `ref` over a 37-token prefill of sequence `seq`
 * (chunked: the matmul and the prompt embedding) and 12 decode steps of the whole batch.
 */
function worstRelative(engine: MambaEngine, ref: MambaEngine, seq: number): number {
  const V = engine.vocabSize, prompt = tokens(37, V);
  const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / maxAbs(b);
  let worst = rel(engine.prefill(prompt, seq).slice(), ref.prefill(prompt, seq).slice());
  for (let t = 0; t < 12; t++) {
    const step = Array.from(
      { length: engine.batchSize },
      (_, b) => (b === seq ? prompt[t] : (t * 7 + b) % V),
    );
    worst = Math.max(worst, rel(engine.step(step).slice(), ref.step(step).slice()));
  }
  return worst;
}

/** The CPU engine on the quantized weights, or undefined while the CPU backend cannot run them. */
function cpuQuantized(path: string, options: LoadOptions): MambaEngine | undefined {
  try {
    return load(path, { backend: "cpu", ...options });
  } catch (e) {
    if (e instanceof MambaError && e.status === "UNSUPPORTED") return undefined;
    throw e;
  }
}

for (const [name, dtype] of QUANTIZED) {
  Deno.test(`metal ${name}: quantized kernels match the model dequantized at load, batch 3`, () => {
    const path = FIXTURES + name;
    using metal = load(path, { backend: "metal", batchSize: 3 });
    assert.equal(metal.backend, "metal");
    assert.equal(metal.dtype, dtype);
    using dequantized = load(path, { backend: "cpu", batchSize: 3, dtype: "f32" });
    const worst = worstRelative(metal, dequantized, 1);
    console.log(
      `${name}: metal (${dtype}) vs dequantized f32 on the CPU: max|Δ| / max|ref| = ${
        worst.toExponential(2)
      }`,
    );
    assert.ok(worst <= 1e-5, `${worst}`);
    using cpu = cpuQuantized(path, { batchSize: 3 });
    if (cpu) {
      metal.reset();
      const vsCpu = worstRelative(metal, cpu, 1);
      console.log(`${name}: metal vs the CPU backend's quantized kernels: ${vsCpu.toExponential(2)}`);
      assert.ok(vsCpu <= 1e-5, `vs cpu: ${vsCpu}`);
    }
  });
}

Deno.test("metal dtype q4/q8 at load equals the quantize tool's output dequantized", async () => {
  const dst = Deno.makeTempDirSync({ prefix: "mamba-metal-q-" });
  try {
    for (const [fixture, bits, groupSize] of [["tiny-g2", 4, 32], ["tiny-f16", 8, 64]] as const) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../tools/quantize.ts", import.meta.url).pathname,
          "--bits",
          String(bits),
          "--group-size",
          String(groupSize),
          FIXTURES + fixture,
          `${dst}/${fixture}`,
        ],
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const dtype = bits === 4 ? "q4" : "q8";
      using metal = load(FIXTURES + fixture, { backend: "metal", dtype, groupSize });
      assert.equal(metal.dtype, dtype);
      using dequantized = load(`${dst}/${fixture}`, { backend: "cpu", dtype: "f32" });
      const worst = worstRelative(metal, dequantized, 0);
      console.log(
        `${fixture} ${dtype} g${groupSize}: metal vs the tool's file dequantized: ${worst.toExponential(2)}`,
      );
      assert.ok(worst <= 1e-5, `${fixture}: ${worst}`);
    }
  } finally {
    Deno.removeSync(dst, { recursive: true });
  }
});

Deno.test("metal quantized: one command buffer and 3 dispatches per layer + 2 per step, nothing allocated; recorded replay equal", () => {
  const path = FIXTURES + "mlx-q4-g32";
  using engine = load(path, { backend: "metal", batchSize: 2 });
  using recorded = load(path, { backend: "metal", batchSize: 2, recorded: true });
  const nLayer = engine.config.nLayer;
  engine.prefill(tokens(20, engine.vocabSize), 0);
  recorded.prefill(tokens(20, engine.vocabSize), 0);
  const steps = 4;
  let commandBuffers = 0, dispatches = 0;
  const before = engine.gpuCounters();
  for (let i = 0; i < steps; i++) {
    const step = [3 + i, 4];
    // Counters are process-wide under MetalCompat: count the plain engine's step alone.
    const c0 = engine.gpuCounters();
    const row = engine.step(step).slice();
    const c1 = engine.gpuCounters();
    commandBuffers += c1.commandBuffers - c0.commandBuffers;
    dispatches += c1.dispatches - c0.dispatches;
    assert.deepEqual(recorded.step(step).slice(), row, `recorded step ${i}`);
  }
  const after = engine.gpuCounters();
  assert.equal(commandBuffers, steps);
  assert.equal(dispatches, steps * (3 * nLayer + 2));
  assert.equal(after.bufferAllocations, before.bufferAllocations);
  assert.equal(after.allocatedBytes, before.allocatedBytes);
  const p0 = engine.gpuCounters();
  engine.prefill(tokens(40, engine.vocabSize), 1);
  const p1 = engine.gpuCounters();
  assert.equal(p1.commandBuffers - p0.commandBuffers, 1, "one block");
  assert.equal(p1.dispatches - p0.dispatches, 1 + 8 * nLayer + 1, "prefill dispatches (+1: the lm_head)");
});
