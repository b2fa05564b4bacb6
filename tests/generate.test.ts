// End to end on the bundled demo model: greedy ids equal transformers', the generation API streams
// text with stats and stops where told, and the CLI works (and fails) as documented.
import assert from "node:assert/strict";
import { Generator, MambaEngine, Tokenizer } from "../mod.ts";
import { ROOT } from "./helpers.ts";

const DEMO = `${ROOT}models/demo`;
const fixture = JSON.parse(Deno.readTextFileSync(`${ROOT}tests/fixtures/demo_greedy.json`));
const tokenizer = await Tokenizer.load(`${DEMO}/tokenizer.json`);

async function collect(gen: AsyncIterable<string>): Promise<string> {
  let text = "";
  for await (const piece of gen) text += piece;
  return text;
}

Deno.test("demo model: 32 greedy tokens equal transformers' (float64) on the same weights", async () => {
  assert.deepEqual(tokenizer.encode(fixture.prompt), fixture.promptIds);
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu" });
  const gen = new Generator(engine, tokenizer).generate(fixture.prompt, { maxTokens: 32, temperature: 0 });
  const text = await collect(gen);
  assert.deepEqual(gen.tokens, fixture.greedyIds);
  assert.equal(text, fixture.greedyText);
  assert.equal(gen.stats.promptTokens, fixture.promptIds.length);
  assert.equal(gen.stats.generatedTokens, 32);
  assert.equal(gen.stats.stopReason, "max_tokens");
  assert.ok(
    gen.stats.prefillTokensPerSecond > 0 && gen.stats.decodeTokensPerSecond > 0 && gen.stats.msPerToken > 0,
  );
});

Deno.test("generation: pieces concatenate to the decoded ids; seeded sampling repeats exactly", async () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu" });
  const g = new Generator(engine, tokenizer);
  const a = g.generate("Mr. Darcy", { maxTokens: 40, temperature: 0.9, topP: 0.9, seed: 7 });
  const textA = await collect(a);
  assert.equal(textA, tokenizer.decode(a.tokens));
  const b = g.generate("Mr. Darcy", { maxTokens: 40, temperature: 0.9, topP: 0.9, seed: 7 });
  assert.equal(await collect(b), textA);
  const c = g.generate("Mr. Darcy", { maxTokens: 40, temperature: 0.9, topP: 0.9, seed: 8 });
  await collect(c);
  assert.notDeepEqual(c.tokens, a.tokens);
});

Deno.test("generation: stop strings cut the text, EOS ids end it", async () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu" });
  const g = new Generator(engine, tokenizer);
  const full = fixture.greedyText as string;
  const stopAt = full.indexOf(" so very");
  const stopped = g.generate(fixture.prompt, { maxTokens: 32, temperature: 0, stop: [" so very"] });
  assert.equal(await collect(stopped), full.slice(0, stopAt));
  assert.equal(stopped.stats.stopReason, "stop_string");
  // Make the 5th greedy token an end-of-sequence id.
  const eos = g.generate(fixture.prompt, {
    maxTokens: 32,
    temperature: 0,
    eosTokenIds: [fixture.greedyIds[4]],
  });
  assert.equal(await collect(eos), tokenizer.decode(fixture.greedyIds.slice(0, 4)));
  assert.equal(eos.stats.stopReason, "eos");
  assert.equal(eos.tokens.length, 5);
});

Deno.test("generation continues a conversation from the saved state", async () => {
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu" });
  const g = new Generator(engine, tokenizer);
  const first = g.generate(fixture.prompt, { maxTokens: 10, temperature: 0 });
  await collect(first);
  // Continuing with the last token as the prompt reproduces the greedy path's next tokens.
  const next = g.generate([first.tokens[9]], { maxTokens: 5, temperature: 0, continueState: true });
  await collect(next);
  assert.deepEqual(next.tokens, fixture.greedyIds.slice(10, 15));
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}examples/generate.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** The CLI generating 12 greedy tokens of the fixture prompt on the CPU backend; `lead`/`extra` around. */
function greedyCli(lead: string[], ...extra: string[]) {
  const greedy = [
    "--prompt",
    fixture.prompt,
    "--max-tokens",
    "12",
    "--temperature",
    "0",
    "--repeat-penalty",
    "1",
  ];
  return cli(...lead, ...greedy, "--backend", "cpu", ...extra);
}

Deno.test("CLI: generates from the bundled model, with or without a leading --", async () => {
  for (const lead of [[], ["--"]]) {
    const r = await greedyCli(lead);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, fixture.prompt + tokenizer.decode(fixture.greedyIds.slice(0, 12)) + "\n");
    assert.match(r.stderr, /prompt 6 tokens, prefill .* tok\/s; generated 12 tokens/);
  }
});

Deno.test("CLI: --help, and one-line errors for a missing model, tokenizer or bad option", async () => {
  const help = await cli("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--repeat-penalty R/);
  const noModel = await cli("--prompt", "x", "--model", "/nonexistent/model");
  assert.equal(noModel.code, 1);
  assert.equal(noModel.stderr.trim(), "error: model /nonexistent/model does not exist");
  const dir = await Deno.makeTempDir();
  const noTok = await cli("--prompt", "x", "--model", dir);
  assert.equal(noTok.code, 1);
  assert.match(noTok.stderr.trim(), /^error: no tokenizer at .*tokenizer\.json: pass --tokenizer FILE/);
  await Deno.remove(dir);
  const bad = await cli("--prompt", "x", "--temperature", "hot");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--temperature expects a number/);
  const badDtype = await cli("--prompt", "x", "--dtype", "f8");
  assert.equal(badDtype.code, 1);
  assert.equal(badDtype.stderr.trim(), 'error: --dtype must be auto, f32, f16, bf16, q8 or q4, got "f8"');
});

Deno.test("CLI: --dtype converts the weights at load (the demo's f16 weights as f32 give the same text)", async () => {
  const r = await greedyCli([], "--dtype", "f32");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /f32 weights/);
  assert.equal(r.stdout, fixture.prompt + tokenizer.decode(fixture.greedyIds.slice(0, 12)) + "\n");
});

Deno.test("CLI: an empty prompt starts from the end-of-text token; a negative count says what is wrong", async () => {
  const empty = await cli("--prompt", "", "--max-tokens", "6", "--temperature", "0", "--backend", "cpu");
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stderr, /prompt 1 tokens/);
  using engine = MambaEngine.loadSync(DEMO, { backend: "cpu" });
  const gen = new Generator(engine, tokenizer).generate("", {
    maxTokens: 6,
    temperature: 0,
    repetitionPenalty: 1.1,
  });
  assert.equal(empty.stdout, (await collect(gen)) + "\n");
  assert.deepEqual(new Generator(engine, tokenizer).promptIds(""), [tokenizer.tokenToId("<|endoftext|>")]);

  const negative = await cli("--prompt", "x", "--max-tokens", "-5");
  assert.equal(negative.code, 1);
  assert.equal(negative.stderr.trim(), 'error: --max-tokens expects a whole number ≥ 0, got "-5"');
  const topP = await cli("--prompt", "x", "--top-p=0");
  assert.equal(topP.stderr.trim(), 'error: --top-p expects a number in (0, 1], got "0"');
});
