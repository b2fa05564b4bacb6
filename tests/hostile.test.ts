// Hostile model directories found while fuzzing the loaders (docs/security.md): each once aborted the
// process (an arithmetic overflow trap in Swift), made a few KB of files ask for hundreds of megabytes, or
// blocked the load forever. Now each is a MambaError naming the problem, and the process carries on.
import assert from "node:assert/strict";
import { MambaError } from "../mod.ts";
import { copyModel, FIXTURES, load, readSafetensors, writeSafetensors } from "./helpers.ts";

function expectError(dir: string, status: string, pattern: RegExp): void {
  assert.throws(() => load(dir), (e: unknown) => {
    assert.ok(e instanceof MambaError, `expected MambaError, got ${e}`);
    assert.equal(e.status, status, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

function withConfig(fixture: string, edit: (c: Record<string, unknown>) => void): string {
  const dir = copyModel(fixture);
  const config = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
  edit(config);
  Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(config));
  return dir;
}

Deno.test("config products that overflow 64 bits are errors, not a trap that ends the process", () => {
  expectError(
    withConfig("tiny-g1", (c) => Object.assign(c, { num_heads: 4e15, head_dim: 4e9 })),
    "FORMAT",
    /num_heads/,
  );
  expectError(
    withConfig(
      "tiny-g2",
      (c) => Object.assign(c, { d_model: 4e15, ssm_cfg: { ...c.ssm_cfg as object, d_ssm: 1 } }),
    ),
    "UNSUPPORTED",
    /d_ssm/,
  );
  expectError(
    withConfig("tiny-g2", (c) => {
      Object.assign(c, { d_model: 2 ** 24, n_layer: 2 ** 24 });
      Object.assign(c.ssm_cfg as object, { expand: 2 ** 24, headdim: 1, d_state: 2 ** 24, ngroups: 1 });
    }),
    "FORMAT",
    /d_inner = \d+ is out of range/,
  );
  using engine = load(FIXTURES + "tiny-g1"); // still working
  assert.ok(engine.step([1]).every(Number.isFinite));
});

Deno.test("a config asking for more state and scratch than its weights justify is refused", () => {
  expectError(
    withConfig("tiny-g1", (c) => (c.chunk_size = 65536)),
    "FORMAT",
    /chunk_size 65536.*weights justify/,
  );
  expectError(withConfig("tiny-g1", (c) => (c.chunk_size = 2 ** 24 - 1)), "FORMAT", /weights justify/);
});

Deno.test("a FIFO, a directory or a device as config.json is an IO error, at once", () => {
  const dir = copyModel("tiny-g1");
  Deno.removeSync(`${dir}/config.json`);
  assert.ok(new Deno.Command("mkfifo", { args: [`${dir}/config.json`] }).outputSync().success);
  expectError(dir, "IO", /config\.json is not a regular file/);
  Deno.removeSync(`${dir}/config.json`);
  Deno.symlinkSync("/dev/zero", `${dir}/config.json`);
  expectError(dir, "IO", /config\.json is not a regular file/);
});

Deno.test("a matrix holding NaN or inf quantized at load is refused, not a trap that ends the process", () => {
  // Found by the gguf-model fuzz target (tests/fuzz/corpus/gguf-model/crash-nonfinite-weight-quantized-at-load):
  // the quantizer converted NaN to a UInt8 code, a Swift runtime trap.
  for (const bad of [NaN, Infinity]) {
    const dir = copyModel("tiny-g1");
    const path = `${dir}/model.safetensors`;
    const tensors = readSafetensors(path);
    const inProj = tensors.get("backbone.layers.0.mixer.in_proj.weight")!;
    const cols = inProj.shape[1];
    new DataView(inProj.bytes.buffer, inProj.bytes.byteOffset).setFloat32(4 * (3 * cols + 5), bad, true);
    writeSafetensors(path, tensors);
    for (const dtype of ["q8", "q4"] as const) {
      assert.throws(() => load(dir, { dtype }), (e: unknown) => {
        assert.ok(e instanceof MambaError, `expected MambaError, got ${e}`);
        assert.equal(e.status, "FORMAT", e.message);
        assert.match(e.message, /in_proj\.weight .*non-finite value in row 3: it cannot be quantized/);
        return true;
      });
    }
    using asStored = load(dir); // as float the value is kept (a NaN model is the file's business)
    assert.equal(asStored.vocabSize, 123);
  }
});
