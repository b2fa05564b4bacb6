// Bad input: each case raises a MambaError naming the problem, and leaves the process, other
// engines and the engine's own state intact.
import assert from "node:assert/strict";
import { MambaEngine, MambaError } from "../mod.ts";
import { copyModel, FIXTURES, load, loadFixture, readSafetensors, writeSafetensors } from "./helpers.ts";

function expectError(fn: () => unknown, status: string, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MambaError, `expected MambaError, got ${e}`);
    assert.equal(e.status, status, e.message);
    assert.match(e.message, pattern);
    return;
  }
  assert.fail(`expected a ${status} error matching ${pattern}`);
}

/** A copy of tiny-g1 whose model.safetensors is rewritten by `edit`. */
function editedModel(
  edit: (t: Map<string, import("./helpers.ts").RawTensor>) => void,
  editHeader?: Parameters<typeof writeSafetensors>[2],
): string {
  const dir = copyModel("tiny-g1");
  const tensors = readSafetensors(`${dir}/model.safetensors`);
  edit(tensors);
  writeSafetensors(`${dir}/model.safetensors`, tensors, editHeader);
  return dir;
}

Deno.test("missing directory, missing or malformed config.json", () => {
  expectError(() => load("/nonexistent/model"), "IO", /\/nonexistent\/model does not exist/);
  const dir = copyModel("tiny-g1");
  Deno.removeSync(`${dir}/config.json`);
  expectError(() => load(dir), "IO", /config\.json is missing/);
  Deno.writeTextFileSync(`${dir}/config.json`, '{"hidden_size": 64, "num_hidden_layers": ');
  expectError(() => load(dir), "FORMAT", /config\.json: malformed JSON at byte \d+/);
  Deno.writeTextFileSync(`${dir}/config.json`, '{"hidden_size": 64}');
  expectError(() => load(dir), "FORMAT", /config\.json: missing "num_hidden_layers"/);
  Deno.writeTextFileSync(
    `${dir}/config.json`,
    '{"d_model": 64, "n_layer": 2, "vocab_size": 10, "ssm_cfg": {}}',
  );
  expectError(() => load(dir), "UNSUPPORTED", /Mamba1 models are not supported/);
});

Deno.test("truncated safetensors and a header length beyond the file", () => {
  const dir = copyModel("tiny-g1");
  const path = `${dir}/model.safetensors`;
  const bytes = Deno.readFileSync(path);
  Deno.writeFileSync(path, bytes.subarray(0, 5));
  expectError(() => load(dir), "FORMAT", /truncated safetensors file/);
  Deno.writeFileSync(path, bytes.subarray(0, bytes.length - 100));
  expectError(() => load(dir), "FORMAT", /outside the data/);
  const big = bytes.slice();
  new DataView(big.buffer).setBigUint64(0, BigInt(bytes.length), true);
  Deno.writeFileSync(path, big);
  expectError(() => load(dir), "FORMAT", /header length \d+ is beyond the file/);
});

Deno.test("overlapping and out-of-range data_offsets, unknown dtype", () => {
  const overlap = editedModel(() => {}, (h) => {
    h["backbone.norm_f.weight"].data_offsets = h["backbone.embeddings.weight"].data_offsets.map((x) =>
      x
    ) as number[];
    h["backbone.norm_f.weight"].shape = [h["backbone.embeddings.weight"].shape[0], 64];
  });
  expectError(() => load(overlap), "FORMAT", /overlap/);
  const outOfRange = editedModel(() => {}, (h) => {
    h["backbone.norm_f.weight"].data_offsets = [1e9, 1e9 + 256];
  });
  expectError(() => load(outOfRange), "FORMAT", /backbone\.norm_f\.weight data_offsets .* outside the data/);
  const unknown = editedModel(() => {}, (h) => {
    h["backbone.norm_f.weight"].dtype = "F17";
  });
  expectError(() => load(unknown), "FORMAT", /backbone\.norm_f\.weight has unknown dtype "F17"/);
  const unusable = editedModel((t) => {
    t.get("backbone.norm_f.weight")!.dtype = "I32";
  });
  expectError(() => load(unusable), "UNSUPPORTED", /backbone\.norm_f\.weight .* dtype I32/);
});

Deno.test("missing tensor, wrong shape, config disagreeing with the tensors", () => {
  const missing = editedModel((t) => t.delete("backbone.layers.1.mixer.D"));
  expectError(() => load(missing), "FORMAT", /missing tensor backbone\.layers\.1\.mixer\.D/);
  const noHead = editedModel((t) => t.delete("lm_head.weight"));
  expectError(() => load(noHead), "FORMAT", /missing tensor lm_head\.weight/);
  const wrong = editedModel((t) => {
    const a = t.get("backbone.layers.0.mixer.A_log")!;
    a.shape = [4];
    a.bytes = a.bytes.slice(0, 16);
  });
  expectError(() => load(wrong), "SHAPE", /backbone\.layers\.0\.mixer\.A_log has shape \[4\].*implies \[8\]/);
  const dir = copyModel("tiny-g1");
  const config = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
  Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify({ ...config, state_size: 32 }));
  expectError(() => load(dir), "SHAPE", /mixer\.\w+\.weight has shape .* config\.json implies/);
  Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify({ ...config, vocab_size: 200 }));
  expectError(() => load(dir), "SHAPE", /config vocab_size gives 200 rows but tensor .* \[123, 64\]/);
});

Deno.test("bad token ids, token counts, sequence indices; the failed call changes nothing", () => {
  const f = loadFixture("tiny-g1");
  using engine = load(f.dir, { batchSize: 2 });
  engine.prefill(f.tokens.slice(0, 10), 0);
  const before = engine.saveState(0);
  const logitsBefore = engine.logits.slice();
  expectError(
    () => engine.prefill([1, 2, 123, 4], 0),
    "TOKEN",
    /token id 123 at position 2 is out of range \[0, 123\)/,
  );
  expectError(() => engine.prefill([5, -1], 0), "TOKEN", /token id -1 at position 1/);
  expectError(() => engine.step([1, 999]), "TOKEN", /token id 999 at position 1/);
  expectError(() => engine.step([1]), "ARGUMENT", /got 1, batch size is 2/);
  expectError(() => engine.step([1, 2, 3]), "ARGUMENT", /got 3, batch size is 2/);
  expectError(() => engine.step([1, 2.5]), "TOKEN", /not an integer/);
  // prefill checks ids as step does: never truncated (2.5 → 2) nor wrapped by Int32Array (2³² + 1 → 1).
  expectError(() => engine.prefill([1, 2.5], 0), "TOKEN", /token id 2\.5 at position 1 is not an integer/);
  expectError(
    () => engine.prefill([2 ** 32 + 1], 0),
    "TOKEN",
    /token id 4294967297 at position 0 is out of range/,
  );
  expectError(() => engine.step([1, -(2 ** 31) - 1]), "TOKEN", /at position 1 is out of range/);
  expectError(() => engine.prefill([1], 2), "ARGUMENT", /sequence index 2 is out of range \[0, 2\)/);
  using single = load(f.dir);
  expectError(() => single.step(0.5), "TOKEN", /token id 0\.5 at position 0 is not an integer/);
  expectError(() => engine.prefill([], 0), "ARGUMENT", /at least one token/);
  expectError(() => engine.reset(5), "ARGUMENT", /sequence index 5/);
  expectError(() => engine.saveState(-1), "ARGUMENT", /sequence index -1/);
  assert.deepEqual(engine.saveState(0), before);
  assert.deepEqual(engine.logits, logitsBefore);
  // The next good call gives the same logits as if the bad ones never happened.
  using clean = load(f.dir, { batchSize: 2 });
  clean.prefill(f.tokens.slice(0, 10), 0);
  assert.deepEqual(engine.step([f.tokens[10], 3]).slice(), clean.step([f.tokens[10], 3]).slice());
});

Deno.test("state bytes from another model or truncated are refused", () => {
  using g1 = load(FIXTURES + "tiny-g1");
  using f16 = load(FIXTURES + "tiny-f16");
  g1.prefill([1, 2, 3]);
  const saved = g1.saveState();
  const before = f16.saveState();
  expectError(() => f16.loadState(saved), "STATE", /another model/);
  expectError(() => g1.loadState(saved.subarray(0, 100)), "STATE", /floats in 100 bytes/);
  expectError(() => g1.loadState(new Uint8Array(10)), "STATE", /too short/);
  const garbage = saved.slice();
  garbage[0] ^= 0xff;
  expectError(() => g1.loadState(garbage), "STATE", /not a saved Mamba state/);
  assert.deepEqual(f16.saveState(), before);
});

Deno.test("calls after close throw; close is idempotent; other engines are unaffected", () => {
  const f = loadFixture("tiny-g1");
  const a = load(f.dir);
  using b = load(f.dir);
  const logits = a.logits;
  a.prefill([1, 2, 3]);
  b.prefill([1, 2, 3]);
  a.close();
  a.close();
  a[Symbol.dispose]();
  assert.equal(a.closed, true);
  assert.equal(logits.length, 0, "logits view is detached after close");
  expectError(() => a.step(1), "CLOSED", /closed/);
  expectError(() => a.prefill([1]), "CLOSED", /closed/);
  expectError(() => a.reset(), "CLOSED", /closed/);
  expectError(() => a.saveState(), "CLOSED", /closed/);
  expectError(() => a.loadState(new Uint8Array(4)), "CLOSED", /closed/);
  expectError(() => a.gpuCounters(), "CLOSED", /closed/);
  assert.equal(b.step(4).length, f.vocabRows);
});

Deno.test("bad options and a missing library", () => {
  const dir = FIXTURES + "tiny-g1";
  expectError(() => MambaEngine.loadSync(dir, { batchSize: 0 }), "ARGUMENT", /batchSize/);
  expectError(() => MambaEngine.loadSync(dir, { dtype: "f8" as "f16" }), "ARGUMENT", /options\.dtype/);
  expectError(() => MambaEngine.loadSync(dir, { backend: "gpu" as "cpu" }), "ARGUMENT", /options\.backend/);
  expectError(
    () => MambaEngine.loadSync(dir, { libraryPath: "/nonexistent/libMambaMetal.so" }),
    "LIBRARY",
    /cannot open \/nonexistent\/libMambaMetal\.so/,
  );
});
