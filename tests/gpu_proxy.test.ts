// The GPU proxy (tools/gpu, docs/gpu-proxy.md): what can be checked without a GPU. The replay itself, the
// sanitizers and the timings need an NVIDIA GPU (the device run, tools/gpu/device_run.sh): those parts
// say so and are not run here. nvcc (pip: nvidia-cuda-nvcc) and python3 with numpy are used when present;
// .ci/run installs them.
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseMetal } from "../tools/metal_bindings/parse.ts";
import { cudaView, floatLiteral } from "../tools/metal_bindings/emit_cuda.ts";
import { buildCuda, findNvcc, strictCompile } from "../tools/gpu/build.ts";
import { plant, PLANTED } from "../tools/gpu/planted.ts";
import { traceSession } from "../tools/gpu/trace.ts";
import { benchTensorValues } from "../tools/make_bench_models.ts";
import { tokenize } from "../tools/metal_bindings/tokenize.ts";
import { librarySource } from "../tools/metal_bindings/include.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const METAL = [...Deno.readDirSync(join(ROOT, "metal"))].map((e) => e.name).filter((n) =>
  n.endsWith(".metal")
).sort();
const NVCC = await findNvcc();
const PYTHON = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "import numpy"], stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

function run(cmd: string, args: string[]): { ok: boolean; text: string } {
  const p = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
  return { ok: p.success, text: new TextDecoder().decode(p.stdout) + new TextDecoder().decode(p.stderr) };
}

Deno.test("CUDA views keep every line and drop address spaces, attributes and function-constant declarations", async () => {
  for (const name of METAL) {
    const src = await librarySource(
      join(ROOT, "metal"),
      "metal",
      name,
      Deno.readTextFileSync(join(ROOT, "metal", name)),
    );
    const view = cudaView(src, parseMetal(src, name), `metal/${name}`);
    const body = view.split("\n").slice(2).join("\n"); // banner and #line
    assert.equal(body.split("\n").length, src.split("\n").length + (src.endsWith("\n") ? 0 : 1), name);
    const ids = tokenize(body, name).tokens.map((t) => t.text);
    for (const word of ["device", "threadgroup", "constant", "kernel"]) {
      assert.ok(!ids.includes(word), `${name}: '${word}' left in the CUDA view`);
    }
    assert.ok(!body.includes("[["), `${name}: an attribute left in the CUDA view`);
    assert.ok(!body.includes("function_constant"), name);
  }
});

Deno.test("function-constant floats become exact hexadecimal literals", () => {
  assert.equal(floatLiteral(1), "0x1.000000p0f");
  assert.equal(floatLiteral(-0.5), "-0x1.000000p-1f");
  assert.equal(floatLiteral(1e-5), "0x1.4f8b58p-17f");
  assert.equal(floatLiteral(Infinity), "__builtin_inff()");
  assert.equal(floatLiteral(0), "0.0f");
});

Deno.test("planted bugs still apply to the real kernels, once each", () => {
  for (const bug of PLANTED) {
    const src = Deno.readTextFileSync(join(ROOT, "metal", bug.file));
    const planted = plant(src, bug);
    assert.notEqual(planted, src);
    parseMetal(planted, bug.name); // still a valid kernel file
  }
  assert.throws(() => plant("kernel void f() {}", PLANTED[0]), /not there exactly once/);
});

Deno.test("every kernel compiles with clang where device, constant and threadgroup are address spaces", async () => {
  await strictCompile(() => {});
});

Deno.test("the strict compile rejects an address-space mistake and a double", async () => {
  const src = Deno.readTextFileSync(join(ROOT, "metal/matvec.metal"));
  const dir = await Deno.makeTempDir({ prefix: "strict-" });
  try {
    const mistakes = [
      // a threadgroup pointer where a device pointer is declared (MetalCompat's empty macros accept it)
      src.replace(
        "device float *y [[buffer(2)]],",
        "device float *y [[buffer(2)]], threadgroup float *t [[threadgroup(1)]],",
      )
        .replace(
          "const float prior = MV_ACCUMULATE && writes ? y[out_b * N + out_row] : 0.0f;",
          "device float *out = t + out_b * N + out_row;\n    const float prior = MV_ACCUMULATE && writes ? *out : 0.0f;",
        ),
      src.replace("float ss = 0.0f;", "double ss = 0.0;"),
    ];
    for (const [i, text] of mistakes.entries()) {
      assert.notEqual(text, src);
      await Deno.mkdir(join(dir, `m${i}`));
      await Deno.writeTextFile(join(dir, `m${i}`, "matvec.metal"), text);
      // The headers matvec.metal includes (quantized.h), beside it as in metal/.
      for (const e of Deno.readDirSync(join(ROOT, "metal"))) {
        if (e.name.endsWith(".h")) {
          await Deno.copyFile(join(ROOT, "metal", e.name), join(dir, `m${i}`, e.name));
        }
      }
      await assert.rejects(
        () => strictCompile(() => {}, join(dir, `m${i}`)),
        /strict compile of metal\/matvec.metal failed/,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "every kernel compiles with nvcc for sm_90 (function constants as __constant__ variables)",
  ignore: !NVCC,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "cuda-generic-" });
    try {
      const k = await buildCuda({ out, generic: true, planted: true, log: () => {} });
      const files = Object.keys((k as { files: Record<string, unknown> }).files);
      for (const name of METAL) assert.ok(files.includes(name), name);
      for (const bug of PLANTED) assert.ok(files.includes(bug.name), bug.name);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
if (!NVCC) {
  console.log("gpu_proxy: nvcc not found (pip install nvidia-cuda-nvcc): the nvcc compile test is skipped");
}

Deno.test("bench_weights.c regenerates make_bench_models.ts's tensors bit for bit", () => {
  const so = Deno.makeTempFileSync({ suffix: ".so" });
  const built = run("cc", [
    "-O2",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-o",
    so,
    join(ROOT, "tools/gpu/bench_weights.c"),
    "-lm",
  ]);
  assert.ok(built.ok, built.text);
  const lib = Deno.dlopen(so, {
    bench_fill: { parameters: ["buffer", "buffer", "buffer", "i64"], result: "i32" },
  });
  try {
    const cases: [("130m" | "780m"), string, number][] = [
      ["130m", "backbone.embedding.weight", 50288 * 768],
      ["130m", "backbone.layers.7.mixer.in_proj.weight", 3352 * 768],
      ["780m", "backbone.layers.47.mixer.out_proj.weight", 1536 * 3072],
    ];
    const cstr = (s: string) => new TextEncoder().encode(s + "\0");
    for (const [shape, name, n] of cases) {
      const out = new Float32Array(n);
      assert.equal(lib.symbols.bench_fill(cstr(shape), cstr(name), out, BigInt(n)), 0, name);
      const want = benchTensorValues(shape, name, 4096);
      assert.deepEqual(new Uint32Array(out.buffer, 0, want.length), new Uint32Array(want.buffer), name);
    }
    assert.equal(
      lib.symbols.bench_fill(cstr("130m"), cstr("backbone.layers.0.mixer.D"), new Float32Array(24), 24n),
      -1,
    );
    assert.equal(
      lib.symbols.bench_fill(cstr("130m"), cstr("backbone.embedding.weight"), new Float32Array(8), 8n),
      -2,
    );
  } finally {
    lib.close();
    Deno.removeSync(so);
  }
});

/** Dispatch events of a trace (pipelines by file and function), in order. */
function plan(path: string): string[] {
  const pipelines = new Map<number, string>();
  const out: string[] = [];
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    if (!line) continue;
    const e = JSON.parse(line);
    if (e.ev === "pipeline") pipelines.set(e.id, `${e.file}:${e.function}:${JSON.stringify(e.constants)}`);
    if (e.ev === "dispatch") {
      out.push(`${pipelines.get(e.p)} ${JSON.stringify([e.grid, e.tg, e.buffers, e.tgmem])}`);
    }
    if (e.ev === "barrier" || e.ev === "commit") out.push(e.ev);
  }
  return out;
}

Deno.test("a trace records the backend's plan: the same dispatches whether kernels run or not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gpu-trace-" });
  try {
    const spec = {
      model: join(ROOT, "tests/fixtures/tiny-g2"),
      batch: 2,
      prompts: [37, 5],
      steps: 3,
      dtype: "auto" as const,
      recorded: true,
    };
    await traceSession({ ...spec, out: join(dir, "run"), dry: false, inline: 1 << 30 });
    await traceSession({ ...spec, out: join(dir, "dry"), dry: true, inline: 1 << 30 });
    const executed = plan(join(dir, "run/trace.jsonl")), dry = plan(join(dir, "dry/trace.jsonl"));
    assert.deepEqual(dry, executed);
    const session = JSON.parse(Deno.readTextFileSync(join(dir, "run/session.json")));
    // 2 prefills (one block each) and 3 recorded steps: 5 command buffers; each step 3·2 + 2 dispatches.
    assert.deepEqual(session.ops.map((o: { cb: number[] }) => o.cb), [[0, 1], [1, 2], [2, 3], [3, 4], [
      4,
      5,
    ]]);
    assert.equal(executed.filter((x) => x === "commit").length, 5);
    const events = Deno.readTextFileSync(join(dir, "run/trace.jsonl")).split("\n").filter((l) => l).map((l) =>
      JSON.parse(l)
    );
    assert.equal(events.filter((e) => e.ev === "unsupported").length, 0);
    const icb = events.filter((e) => e.ev === "dispatch" && e.icb);
    assert.equal(icb.length, 3 * (3 * 2 + 2)); // the recorded steps, resolved from the ICB
    const labels = events.filter((e) => e.ev === "buffer").map((e) => e.label);
    for (const l of ["logits", "ssm_state", "conv_state", "conv_pos", "tokens", "prefill count"]) {
      assert.ok(labels.includes(l), l);
    }
    // Every binding lies inside the heap; every fill travels as bytes or zeros at this inline size.
    const heap = events.find((e) => e.ev === "heap").size;
    for (const d of events.filter((e) => e.ev === "dispatch")) {
      for (const [, , offset] of d.buffers) assert.ok(offset >= 0 && offset < heap);
    }
    assert.ok(events.filter((e) => e.ev === "fill").every((f) => f.bytes || f.zero));
    if (PYTHON) {
      const ref = JSON.parse(Deno.readTextFileSync(join(dir, "run/reference.json")));
      const mc = JSON.parse(Deno.readTextFileSync(join(dir, "run/metalcompat.json")));
      assert.equal(ref.final.logits.length, mc.final.logits.length);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "the replay prepares every dispatch of a traced session (fake driver: no GPU here)",
  ignore: !NVCC || !PYTHON,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "gpu-replay-" });
    try {
      await traceSession({
        model: join(ROOT, "tests/fixtures/tiny-f16"),
        out: join(dir, "fx"),
        batch: 2,
        prompts: [37, 16],
        steps: 4,
        dtype: "auto",
        recorded: false,
        dry: false,
        inline: 1 << 30,
      });
      await buildCuda({ out: join(dir, "build"), traces: [dir], log: () => {} });
      const r = run("python3", [
        join(ROOT, "tools/gpu/replay_selftest.py"),
        "--build",
        join(dir, "build"),
        join(dir, "fx"),
      ]);
      assert.ok(r.ok, r.text);
      const result = JSON.parse(r.text.split("\n")[0]);
      assert.equal(result.commandBuffers, 6);
      assert.ok(result.metalcompatVsCpu <= 1e-4, r.text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "replay on an NVIDIA GPU, sanitizers, planted bugs caught, timings",
  ignore: true, // needs an NVIDIA GPU: tools/gpu/device_run.sh through the device tool (docs/gpu-proxy.md)
  fn: () => {},
});
