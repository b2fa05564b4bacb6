// The engine against float64 references (tools/make_fixtures.py): prefill, teacher-forced steps,
// split prefill, state round trips and batching, on every fixture.
import assert from "node:assert/strict";
import {
  type Fixture,
  FIXTURE_NAMES,
  load,
  loadFixture,
  maxAbsDiff,
  refRow,
  teacherForce,
} from "./helpers.ts";

const BACKEND = (Deno.env.get("MAMBA_TEST_BACKEND") ?? "cpu") as "cpu" | "metal";

function assertMatchesReference(f: Fixture, batchSize = 1, seq = 0): void {
  using engine = load(f.dir, { backend: BACKEND, batchSize });
  assert.equal(engine.vocabSize, f.vocabRows);
  let worst = 0;
  teacherForce(engine, f, (pos, row) => {
    worst = Math.max(worst, maxAbsDiff(row, refRow(f, pos)));
  }, seq);
  const tol = 1e-4 * f.maxAbsLogit;
  assert.ok(worst <= tol, `${f.name}: max|Δ| ${worst.toExponential(2)} > ${tol.toExponential(2)}`);
}

for (const name of FIXTURE_NAMES) {
  Deno.test(`${name}: logits after prefill and 64 teacher-forced steps match the float64 reference`, () => {
    assertMatchesReference(loadFixture(name));
  });
}

Deno.test("the reference check can fail: a poisoned reference is detected", () => {
  const f = loadFixture("tiny-g1");
  const poisoned = { ...f, logits: f.logits.slice() };
  poisoned.logits[(f.promptLength + 10) * f.vocabRows + 7] += 0.01 * f.maxAbsLogit;
  assert.throws(() => assertMatchesReference(poisoned), /max\|Δ\|/);
});

Deno.test("batch of 3: each sequence matches the reference; sequence 2 of 3 too", () => {
  assertMatchesReference(loadFixture("tiny-g2"), 3, 2);
});

Deno.test("prefill split at arbitrary points equals one prefill", () => {
  for (const name of ["tiny-g1", "tiny-g2"]) {
    const f = loadFixture(name);
    const prompt = f.tokens.slice(0, f.promptLength);
    using engine = load(f.dir);
    const whole = engine.prefill(prompt).slice();
    for (const cuts of [[1], [7, 20], [16, 17, 33], [5, 6, 7, 8, 39]]) {
      engine.reset();
      let start = 0;
      let row: Float32Array = new Float32Array();
      for (const end of [...cuts, prompt.length]) {
        row = engine.prefill(prompt.slice(start, end));
        start = end;
      }
      assert.ok(maxAbsDiff(row, whole) <= 1e-5 * f.maxAbsLogit, `${name} split at ${cuts}`);
    }
  }
});

Deno.test("prefill one token at a time equals stepping", () => {
  const f = loadFixture("tiny-f16");
  using a = load(f.dir);
  using b = load(f.dir);
  a.prefill(f.tokens.slice(0, 10));
  b.prefill(f.tokens.slice(0, 9));
  b.step(f.tokens[9]);
  assert.ok(maxAbsDiff(a.row(0), b.row(0)) <= 1e-6 * f.maxAbsLogit);
});

Deno.test("saveState / loadState round-trip exactly, across engines and sequences", () => {
  const f = loadFixture("tiny-g2");
  using engine = load(f.dir, { batchSize: 2 });
  engine.prefill(f.tokens.slice(0, f.promptLength), 0);
  const saved = engine.saveState(0);
  const after: Float32Array[] = [];
  for (let t = 0; t < 5; t++) {
    after.push(engine.step([f.tokens[f.promptLength + t], 0]).slice(0, f.vocabRows));
  }
  engine.loadState(saved, 1);
  engine.reset(0);
  for (let t = 0; t < 5; t++) {
    const row = engine.step([0, f.tokens[f.promptLength + t]]).slice(f.vocabRows);
    assert.deepEqual(row, after[t]);
  }
  using other = load(f.dir);
  other.loadState(saved);
  assert.deepEqual(other.saveState(), saved);
  assert.deepEqual(other.step(f.tokens[f.promptLength]).slice(), after[0]);
});

Deno.test("reset returns a sequence to the empty state", () => {
  const f = loadFixture("tiny-g1");
  using engine = load(f.dir);
  const fresh = engine.prefill(f.tokens.slice(0, 3)).slice();
  engine.prefill(f.tokens.slice(3, 20));
  engine.reset(0);
  assert.deepEqual(engine.prefill(f.tokens.slice(0, 3)).slice(), fresh);
  assert.ok(engine.saveState().subarray(24).every((b) => b === 0) === false);
  engine.reset();
  assert.ok(engine.saveState().subarray(24).every((b) => b === 0));
});

Deno.test("logits are a zero-copy view, created once", () => {
  const f = loadFixture("tiny-g1");
  using engine = load(f.dir, { batchSize: 2 });
  const view = engine.logits;
  assert.equal(view.length, 2 * f.vocabRows);
  const returned = engine.step([1, 2]);
  assert.equal(returned, view);
  assert.equal(engine.row(1).buffer, view.buffer);
  assert.equal(engine.prefill([3, 4], 1), engine.row(1));
});

// Rounding every weight to f16 (2^-11) or bf16 (2^-8) moves the logits by about that much times
// the depth; the point is that conversion happens and stays near the f32 result.
Deno.test("forced dtypes: f32 weights converted to f16 and bf16 stay near the f32 reference", () => {
  const f = loadFixture("tiny-g1");
  for (const [dtype, tol] of [["f16", 1e-2], ["bf16", 5e-2]] as const) {
    using engine = load(f.dir, { dtype });
    assert.equal(engine.dtype, dtype);
    let worst = 0;
    teacherForce(engine, f, (pos, row) => worst = Math.max(worst, maxAbsDiff(row, refRow(f, pos))));
    assert.ok(worst <= tol * f.maxAbsLogit, `${dtype}: ${worst}`);
    assert.ok(worst > 1e-6 * f.maxAbsLogit, `${dtype}: weights were not converted`);
  }
});
