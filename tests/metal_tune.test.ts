// The Metal tuning table (configs/metal_tune.json): schema errors name the file and the problem, the
// entry for this GPU, model shape and batch is picked, and `deno task tune` writes an entry the engine
// then loads. On Linux the GPU is MetalCompat's, so this proves the plumbing, not the timings.
import assert from "node:assert/strict";
import { MambaError } from "../mod.ts";
import { FIXTURES, load, loadFixture, maxAbsDiff, refRow, ROOT } from "./helpers.ts";

const MODEL = `${FIXTURES}tiny-g2`;

/** The GPU name and shape key the engine looks entries up by. */
function keyOf(): { gpu: string; shape: string } {
  using engine = load(MODEL, { backend: "metal", tuneFile: false });
  const c = engine.config, shape = String(engine.info.tuneShape);
  assert.equal(shape, `d${c.dModel}-l${c.nLayer}-s${c.dState}-h${c.headDim}-g${c.nGroups}-v${c.vocabSize}`);
  return { gpu: String(engine.info.gpu), shape };
}

function withTable<T>(table: unknown, fn: (path: string) => T): T {
  const path = Deno.makeTempFileSync({ suffix: ".json" });
  try {
    Deno.writeTextFileSync(path, typeof table === "string" ? table : JSON.stringify(table));
    return fn(path);
  } finally {
    Deno.removeSync(path);
  }
}

function tuningOf(tuneFile: string, batchSize = 1): Record<string, unknown> {
  using engine = load(MODEL, { backend: "metal", tuneFile, batchSize });
  return engine.info.tuning as Record<string, unknown>;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

const DEFAULTS = {
  matvecRowsPerSimdgroup: 2,
  matvecSplitK: 2,
  lmHeadRowsPerSimdgroup: 2,
  lmHeadSplitK: 2,
  outProjRowsPerSimdgroup: 1,
  outProjSplitK: 4,
  ssmSplit: 8, // tiny-g2 (8 heads) at batch 1: the smallest split with 8 · split · batch ≥ 80 is above 8
  matmulTile: 32,
};

/** The defaults at another batch: the SSM split fitted to fill 80 cores (mamba.h's @tuning ssmSplit). */
function defaultsAt(batch: number, heads = 8): typeof DEFAULTS {
  return { ...DEFAULTS, ssmSplit: [1, 2, 4, 8].find((s) => heads * s * batch >= 80) ?? 8 };
}

/** Every value each parameter may take (mamba.h's @tuning lines). */
const CHOICES: Record<keyof typeof DEFAULTS, number[]> = {
  matvecRowsPerSimdgroup: [1, 2, 3, 4],
  matvecSplitK: [1, 2, 4],
  lmHeadRowsPerSimdgroup: [1, 2, 3, 4],
  lmHeadSplitK: [1, 2, 4],
  outProjRowsPerSimdgroup: [1, 2, 3, 4],
  outProjSplitK: [1, 2, 4],
  ssmSplit: [1, 2, 4, 8],
  matmulTile: [16, 32],
};

/** Tunings that together take every value of every parameter: the i-th takes the j-th parameter's
 * (i + j)-th value (cyclically), so the values also meet in different combinations. */
function coveringTunings(): (typeof DEFAULTS)[] {
  const keys = Object.keys(CHOICES) as (keyof typeof DEFAULTS)[];
  const width = Math.max(...keys.map((k) => CHOICES[k].length));
  return Array.from(
    { length: width },
    (_, i) =>
      Object.fromEntries(keys.map((k, j) => [k, CHOICES[k][(i + j) % CHOICES[k].length]])) as typeof DEFAULTS,
  );
}

Deno.test("tuning table: malformed tables are rejected with the file and the problem named", () => {
  const { gpu, shape } = keyOf();
  const cases: [unknown, RegExp][] = [
    ["{ not json", /JSON/],
    [[1, 2], /must be a JSON object/],
    [{ schema: "mamba-metal-tune/0", entries: [] }, /"schema" must be "mamba-metal-tune\/1"/],
    [{ schema: "mamba-metal-tune/1" }, /"entries" must be a list/],
    [{ schema: "mamba-metal-tune/1", entries: [{ gpu, shape, params: {} }] }, /entries\[0\] needs .*"batch"/],
    [
      { schema: "mamba-metal-tune/1", entries: [{ gpu, shape, batch: 1, params: { matmulTile: 24 } }] },
      /entries\[0\]: matmulTile must be 16 or 32, got 24/,
    ],
    [
      {
        schema: "mamba-metal-tune/1",
        entries: [{ gpu, shape, batch: 1, params: { matvecRowsPerSimdgroup: 9 } }],
      },
      /matvecRowsPerSimdgroup must be 1…4, got 9/,
    ],
    [
      { schema: "mamba-metal-tune/1", entries: [{ gpu, shape, batch: 1, params: { ssmSplit: 3 } }] },
      /entries\[0\]: ssmSplit must be 1, 2, 4 or 8, got 3/,
    ],
    [
      { schema: "mamba-metal-tune/1", entries: [{ gpu, shape, batch: 1, params: { outProjSplitK: 8 } }] },
      /entries\[0\]: outProjSplitK must be 1, 2 or 4, got 8/,
    ],
    [
      // an entry for another GPU is still validated: a broken table is broken for every machine
      { schema: "mamba-metal-tune/1", entries: [{ gpu: "other", shape, batch: 1, params: { tile: 16 } }] },
      /entries\[0\]: unknown parameter "tile"/,
    ],
  ];
  for (const [table, message] of cases) {
    withTable(table, (path) => {
      const error = thrown(() => load(MODEL, { backend: "metal", tuneFile: path }));
      assert.ok(error instanceof MambaError, String(error));
      assert.equal(error.status, "FORMAT");
      assert.ok(error.message.includes(path), `names the file: ${error.message}`);
      assert.match(error.message, message);
    });
  }
  const missing = `${Deno.makeTempDirSync()}/absent.json`;
  const error = thrown(() => load(MODEL, { backend: "metal", tuneFile: missing }));
  assert.ok(error instanceof MambaError && error.status === "IO" && error.message.includes(missing));
  Deno.removeSync(missing.slice(0, missing.lastIndexOf("/")));
});

Deno.test("tuning table: the entry for this GPU, shape and nearest batch is used; others fall back to defaults", () => {
  const { gpu, shape } = keyOf();
  const entry = (g: string, s: string, batch: number, params: object) => ({
    gpu: g,
    shape: s,
    batch,
    params,
  });
  const table = {
    schema: "mamba-metal-tune/1",
    entries: [
      entry("Some Other GPU", shape, 1, { matvecRowsPerSimdgroup: 1, matmulTile: 16 }),
      entry(gpu, "d1-l1-s1-h1-g1-v1", 1, { matvecRowsPerSimdgroup: 1, matmulTile: 16 }),
      entry(gpu, shape, 1, { matvecRowsPerSimdgroup: 4, matmulTile: 16 }),
      entry(gpu, shape, 4, { matvecRowsPerSimdgroup: 1 }),
    ],
  };
  withTable(table, (path) => {
    assert.deepEqual(tuningOf(path, 1), { ...DEFAULTS, matvecRowsPerSimdgroup: 4, matmulTile: 16 });
    // batch 4 is nearest; its entry's other parameters are the defaults at batch 3 (8 · 4 · 3 ≥ 80: split 4)
    assert.deepEqual(tuningOf(path, 3), { ...defaultsAt(3), matvecRowsPerSimdgroup: 1 });
    assert.equal(defaultsAt(3).ssmSplit, 4);
  });
  withTable({ schema: "mamba-metal-tune/1", entries: [table.entries[0], table.entries[1]] }, (path) => {
    assert.deepEqual(tuningOf(path), DEFAULTS);
  });
  // explicit options.tuning overrides the table, key by key
  withTable(table, (path) => {
    using engine = load(MODEL, { backend: "metal", tuneFile: path, tuning: { matmulTile: 32 } });
    assert.deepEqual(engine.info.tuning, { ...DEFAULTS, matvecRowsPerSimdgroup: 4, matmulTile: 32 });
  });
  // the CPU backend has no kernel parameters and does not read the table's entries
  withTable({ schema: "wrong" }, (path) => {
    using engine = load(MODEL, { backend: "cpu", tuneFile: path });
    assert.equal(engine.backend, "cpu");
  });
});

Deno.test("tuning: every parameter choice gives the reference logits, and batched rows equal single runs", () => {
  const f = loadFixture("tiny-g2"); // 8 heads of 16 rows, 2 groups: splits of 8 leave blocks of 2 rows
  const tol = 1e-4 * f.maxAbsLogit;
  const tunings = coveringTunings();
  for (const key of Object.keys(CHOICES) as (keyof typeof DEFAULTS)[]) {
    for (const v of CHOICES[key]) assert.ok(tunings.some((t) => t[key] === v), `${key} ${v} is covered`);
  }
  const prompt = f.tokens.slice(0, f.promptLength);
  for (const tuning of tunings) {
    const what = JSON.stringify(tuning);
    using single = load(f.dir, { backend: "metal", tuneFile: false, tuning });
    assert.deepEqual(single.info.tuning, tuning);
    const row = single.prefill(prompt);
    const d = maxAbsDiff(row, refRow(f, f.promptLength - 1));
    assert.ok(d <= tol, `${what}: prefill ${d} > ${tol}`);
    const steps: Float32Array[] = [];
    for (let t = f.promptLength; t < f.promptLength + 4; t++) {
      steps.push(single.step([f.tokens[t]]).slice());
      const d2 = maxAbsDiff(steps[steps.length - 1], refRow(f, t));
      assert.ok(d2 <= tol, `${what}, step ${t}: ${d2} > ${tol}`);
    }
    // The same sequence as row 1 of a batch of 3 (others on other tokens): bit for bit the same logits.
    using batched = load(f.dir, { backend: "metal", tuneFile: false, tuning, batchSize: 3 });
    batched.prefill(prompt, 1);
    for (let i = 0; i < steps.length; i++) {
      const t = f.promptLength + i;
      const logits = batched.step([(t * 7) % 50, f.tokens[t], (t * 3) % 50]);
      const V = batched.vocabSize;
      assert.deepEqual(
        logits.slice(V, 2 * V),
        steps[i],
        `${what}: batched step ${i} differs from the single run`,
      );
    }
  }
});

Deno.test("deno task tune (against MetalCompat here) writes an entry that the engine then loads", async () => {
  const dir = Deno.makeTempDirSync();
  const out = `${dir}/metal_tune.json`;
  try {
    // an existing entry for another shape must survive the rewrite
    const other = { gpu: "Other", shape: "d1-l1-s1-h1-g1-v1", batch: 1, params: { matmulTile: 16 } };
    Deno.writeTextFileSync(out, JSON.stringify({ schema: "mamba-metal-tune/1", entries: [other] }));
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${ROOT}tools/tune.ts`,
        "--model",
        MODEL,
        "--steps",
        "2",
        "--prompt",
        "40",
        "--out",
        out,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 0, stderr);
    for (
      const key of [
        "matvecRowsPerSimdgroup",
        "matvecSplitK",
        "lmHeadRowsPerSimdgroup",
        "lmHeadSplitK",
        "outProjRowsPerSimdgroup",
        "outProjSplitK",
      ]
    ) {
      assert.match(stderr, new RegExp(`${key} 4: .* ms/token`));
    }
    assert.match(stderr, /ssmSplit 8: .* ms\/token/);
    assert.match(stderr, /matmulTile 16: prefill .* tokens\/s/);
    const table = JSON.parse(Deno.readTextFileSync(out));
    const { gpu, shape } = keyOf();
    assert.equal(table.schema, "mamba-metal-tune/1");
    assert.deepEqual(table.entries[0], other);
    const mine = table.entries.filter((e: { gpu: string; shape: string }) =>
      e.gpu === gpu && e.shape === shape
    );
    assert.equal(mine.length, 1);
    assert.equal(mine[0].batch, 1);
    assert.deepEqual(tuningOf(out), mine[0].params);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
