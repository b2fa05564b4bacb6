// The CPU backend's quantized kernels through the whole engine: each quantized fixture (files MLX and
// llama.cpp wrote) run as stored against the same file dequantized at load (`dtype: "f32"`: exactly the
// values the kernels multiply by, in float32 kernels). Long and short prompts (the prefill path and the
// decode kernels) and teacher-forced steps at batch 3, within 1e-5 · max|ref|: the quantization must be
// the only difference. cpu_generic.test.ts runs this file again with the generic kernels.
import assert from "node:assert/strict";
import { FIXTURES, load, maxAbsDiff } from "./helpers.ts";

const CASES = [
  { path: "mlx-q4-g32", dtype: "q4" }, // f32 scales (the file's f32 weights)
  { path: "mlx-q4-g64-f16", dtype: "q4" },
  { path: "mlx-q8-g128-f16", dtype: "mixed" }, // layers narrower than 128 stay float
  { path: "mlx-q8-g32-bf16", dtype: "q8" }, // bf16 scales widened to f32; untied lm_head
  { path: "gguf/tiny-g1.q8_0.gguf", dtype: "q8" }, // Q8_0 as 8-bit, G 32
];

for (const c of CASES) {
  Deno.test(`quantized ${c.path} runs as its dequantized float32 model does (prefill, batch-3 steps)`, () => {
    using q = load(FIXTURES + c.path, { batchSize: 3 });
    using f = load(FIXTURES + c.path, { batchSize: 3, dtype: "f32" });
    assert.equal(q.dtype, c.dtype);
    assert.equal(f.dtype, "f32");
    const V = q.vocabSize;
    let seed = 7;
    const token = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % V;
    const close = (what: string) => {
      let top = 0;
      for (const v of f.logits) top = Math.max(top, Math.abs(v));
      const d = maxAbsDiff(q.logits, f.logits);
      assert.ok(d <= 1e-5 * top, `${c.path}, ${what}: max |Δ| ${d}, max |ref| ${top}`);
    };
    // 40 tokens: dequantized panels and the float kernels; 5 tokens: the decode kernels
    for (const [seq, n] of [[0, 40], [1, 5], [2, 17]]) {
      const prompt = Array.from({ length: n }, token);
      q.prefill(prompt, seq);
      f.prefill(prompt, seq);
    }
    close("after the prompts");
    for (let s = 0; s < 8; s++) {
      const tokens = [token(), token(), token()];
      q.step(tokens);
      f.step(tokens);
      close(`step ${s}`);
    }
  });
}

Deno.test("quantized decode allocates nothing per token: resident memory flat over 5,000 steps", () => {
  using engine = load(FIXTURES + "tiny-g1", { batchSize: 2, dtype: "q4", groupSize: 32 });
  assert.equal(engine.dtype, "q4");
  const tokens = new Int32Array(2);
  let next = 1;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      tokens[0] = next;
      tokens[1] = (next * 7) % engine.vocabSize;
      const logits = engine.step(tokens);
      next = (next + (logits[3] > 0 ? 5 : 11)) % engine.vocabSize;
    }
  };
  run(6000); // Deno's own heap and JIT settle within the first few thousand calls, whatever the dtype
  const before = Deno.memoryUsage().rss;
  run(5000);
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < 1 << 20, `resident memory grew by ${(grown / 1024).toFixed(0)} KiB`);
});
