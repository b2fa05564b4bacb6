// The chunked (SSD) prefill against the token-by-token recurrence of the decode step, on a random
// model larger than the fixtures: several prefill blocks, partial chunks, two groups, and prompts
// that continue a conversation (prefill after steps, steps after prefill, batches).
import assert from "node:assert/strict";
import { load, maxAbsDiff, type RawTensor, writeSafetensors } from "./helpers.ts";

const D_MODEL = 96, N_LAYER = 2, D_STATE = 32, HEADDIM = 24, NGROUPS = 2, CHUNK = 32, VOCAB = 300;

/** A deterministic random model in a temp dir (mamba_ssm names and config). */
function randomModel(): string {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const dInner = 2 * D_MODEL, nHeads = dInner / HEADDIM, convDim = dInner + 2 * NGROUPS * D_STATE;
  const dInProj = 2 * dInner + 2 * NGROUPS * D_STATE + nHeads;
  const tensors = new Map<string, RawTensor>();
  const add = (name: string, shape: number[], f: (i: number) => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = Float32Array.from({ length: n }, (_, i) => f(i));
    tensors.set(name, { dtype: "F32", shape, bytes: new Uint8Array(v.buffer) });
  };
  const uniform = (a: number) => () => (rand() * 2 - 1) * a;
  add("backbone.embedding.weight", [VOCAB, D_MODEL], uniform(1));
  for (let l = 0; l < N_LAYER; l++) {
    const p = `backbone.layers.${l}.`;
    add(p + "norm.weight", [D_MODEL], () => 0.5 + rand());
    add(p + "mixer.in_proj.weight", [dInProj, D_MODEL], uniform(1 / Math.sqrt(D_MODEL)));
    add(p + "mixer.conv1d.weight", [convDim, 1, 4], uniform(0.5));
    add(p + "mixer.conv1d.bias", [convDim], uniform(0.2));
    // dt from about 0.005 to 0.5: some heads forget within a chunk, some remember across blocks
    add(p + "mixer.dt_bias", [nHeads], (h) => Math.log(Math.expm1(0.005 * Math.pow(100, h / (nHeads - 1)))));
    add(p + "mixer.A_log", [nHeads], () => Math.log(1 + 7 * rand()));
    add(p + "mixer.D", [nHeads], () => rand());
    add(p + "mixer.norm.weight", [dInner], () => 0.5 + rand());
    add(p + "mixer.out_proj.weight", [D_MODEL, dInner], uniform(1 / Math.sqrt(dInner)));
  }
  add("backbone.norm_f.weight", [D_MODEL], () => 1);
  const dir = Deno.makeTempDirSync({ prefix: "mamba-prefill-" });
  writeSafetensors(`${dir}/model.safetensors`, tensors);
  Deno.writeTextFileSync(
    `${dir}/config.json`,
    JSON.stringify({
      d_model: D_MODEL,
      n_layer: N_LAYER,
      vocab_size: VOCAB,
      tie_embeddings: true,
      ssm_cfg: { layer: "Mamba2", d_state: D_STATE, headdim: HEADDIM, ngroups: NGROUPS, chunk_size: CHUNK },
    }),
  );
  return dir;
}

const DIR = randomModel();
globalThis.addEventListener("unload", () => Deno.removeSync(DIR, { recursive: true }));
const TOKENS = Array.from({ length: 700 }, (_, i) => (i * 7919 + 11) % VOCAB);

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function stateFloats(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice(24).buffer);
}

/** Logits and state after feeding `tokens` one decode step at a time. */
function stepped(tokens: number[]): { logits: Float32Array; state: Float32Array } {
  using engine = load(DIR);
  for (const t of tokens) engine.step(t);
  return { logits: engine.row(0).slice(), state: stateFloats(engine.saveState()) };
}

function assertClose(what: string, got: Float32Array, want: Float32Array, rel = 1e-4): void {
  const d = maxAbsDiff(got, want), tol = rel * maxAbs(want);
  assert.ok(d <= tol, `${what}: max|Δ| ${d.toExponential(2)} > ${tol.toExponential(2)}`);
}

Deno.test("chunked prefill of 700 tokens (3 blocks, partial chunks) equals 700 decode steps", () => {
  const ref = stepped(TOKENS);
  using engine = load(DIR);
  const row = engine.prefill(TOKENS).slice();
  assertClose("logits", row, ref.logits);
  assertClose("state", stateFloats(engine.saveState()), ref.state);
});

Deno.test("prefill continues a conversation: steps, prefill, steps, prefill", () => {
  const ref = stepped(TOKENS.slice(0, 500));
  using engine = load(DIR);
  for (const t of TOKENS.slice(0, 5)) engine.step(t);
  engine.prefill(TOKENS.slice(5, 300));
  for (const t of TOKENS.slice(300, 303)) engine.step(t);
  const row = engine.prefill(TOKENS.slice(303, 500)).slice();
  assertClose("logits", row, ref.logits);
  assertClose("state", stateFloats(engine.saveState()), ref.state);
});

Deno.test("prefill of one sequence in a batch leaves the other sequences alone", () => {
  const ref = stepped(TOKENS.slice(0, 333));
  using engine = load(DIR, { batchSize: 3 });
  engine.step([1, 2, 3]);
  const before0 = engine.saveState(0), before2 = engine.saveState(2);
  engine.prefill(TOKENS.slice(0, 333), 1);
  assertClose("logits of sequence 1", engine.row(1).slice(), ref.logits);
  assert.deepEqual(engine.saveState(0), before0);
  assert.deepEqual(engine.saveState(2), before2);
});
