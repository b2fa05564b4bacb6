// A GGUF file as llama-quantize writes it (tests/fixtures/gguf/tiny-g1.q4_0-llama-quantize, made by
// `deno run -A tools/llamacpp.ts fixture`): it stores 1-D tensors where the converter writes [n, 1] and
// falls back to Q8_0 for a matrix whose width is not a multiple of 256. The engine must compute the
// model the file describes (float64 reference on gguf-py's dequantization), and differ from llama.cpp's
// own logits by no more than llama.cpp's activation rounding explains (the reference with that rounding
// emulated): the reasoning is in docs/performance.md ("llama.cpp side by side").
import assert from "node:assert/strict";
import { FIXTURES, load } from "./helpers.ts";

const DIR = FIXTURES + "gguf/tiny-g1.q4_0-llama-quantize/";
const { tokens } = JSON.parse(Deno.readTextFileSync(DIR + "reference.json")) as { tokens: number[] };
const floats = (name: string) => {
  const b = Deno.readFileSync(DIR + name);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

function rms(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / a.length);
}

Deno.test("llama-quantize's Q4_0 file: loads, computes the file's model, differs from llama.cpp by its rounding", () => {
  using engine = load(DIR + "model.gguf");
  const matrices = engine.info.matrices as { name: string; stored: string }[];
  assert.deepEqual(
    [...new Set(matrices.map((m) => m.stored))].sort(),
    ["Q4_0", "Q8_0"],
  );
  const V = engine.vocabSize;
  const ours = new Float32Array(tokens.length * V);
  for (let t = 0; t < tokens.length; t++) ours.set(engine.step([tokens[t]]), t * V);
  const exact = floats("exact.f32"), rounded = floats("rounded.f32"), llama = floats("llamacpp.f32");
  assert.equal(exact.length, ours.length);
  let top = 0, worst = 0;
  for (let i = 0; i < exact.length; i++) {
    top = Math.max(top, Math.abs(exact[i]));
    worst = Math.max(worst, Math.abs(ours[i] - exact[i]));
  }
  assert.ok(worst <= 1e-4 * top, `against the float64 reference: max |Δ| ${worst}, max |ref| ${top}`);
  // What the fixture shows about llama.cpp: its logits are the emulated rounding's (6e-8 of the rms here),
  // an effect of 3.6% of the rms on this model; so this engine (float32) is that far from llama.cpp.
  const scale = rms(exact, new Float32Array(exact.length));
  assert.ok(
    rms(llama, rounded) <= 1e-5 * scale,
    `llama.cpp vs the emulated rounding: ${rms(llama, rounded)}`,
  );
  const effect = rms(rounded, exact), vsLlama = rms(ours, llama);
  assert.ok(effect > 0 && vsLlama <= 1.5 * effect, `rms vs llama.cpp ${vsLlama}, rounding effect ${effect}`);
});
