// The CPU backend's portable kernels (SSE2 on x86-64, NEON on ARM), which machines without AVX2 run:
// the engine and prefill suites again in a process where MAMBA_CPU_KERNELS=generic forces them.
import assert from "node:assert/strict";
import { FIXTURES, ROOT } from "./helpers.ts";

function run(args: string[]): { code: number; out: string } {
  const r = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { MAMBA_CPU_KERNELS: "generic", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const text = new TextDecoder();
  return { code: r.code, out: text.decode(r.stdout) + text.decode(r.stderr) };
}

Deno.test("MAMBA_CPU_KERNELS=generic selects the portable kernels", () => {
  const script = `import { MambaEngine } from "./mod.ts";
    using e = MambaEngine.loadSync(${JSON.stringify(`${FIXTURES}tiny-g1`)}, { backend: "cpu" });
    console.log(e.device);`;
  const { code, out } = run(["eval", script]);
  assert.equal(code, 0, out);
  assert.match(out, /cpu \(generic, \d+ threads\)/);
});

Deno.test("generic kernels: engine, prefill, quantized-model, native sampling and subset-step suites pass", () => {
  const { code, out } = run([
    "test",
    "-A",
    "tests/engine.test.ts",
    "tests/prefill.test.ts",
    "tests/cpu_quantized.test.ts",
    "tests/native_sampling.test.ts",
    "tests/step_seqs.test.ts",
  ]);
  assert.equal(code, 0, out);
  assert.match(out, /ok \| \d+ passed \| 0 failed/);
});
