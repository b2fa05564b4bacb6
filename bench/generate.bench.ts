// Generation at step speed: Generator (native sampling with temperature 0.8 and top-p 0.95, stop
// checks, streaming detokenisation) against the raw engine calls it makes, 32 tokens from a one-token
// prompt on the 130m shape (f16, CPU, batch 1). The bench model's logits are nearly flat, so the top-p
// nucleus holds ~40k of its 50k tokens: sampling's worst case. Goal: Generator ≥ 95% of raw tokens/s,
// i.e. at most 1.05× the baseline's time in the summary.
import { Generator } from "../mod.ts";
import { benchEngine, benchTokenizer } from "./models.ts";

const TOKENS = 32;
const { tokenizer } = await benchTokenizer();

Deno.bench({
  name: `raw prefill(1) + ${TOKENS - 1} step() calls, 130m f16`,
  group: "generation 130m f16",
  baseline: true,
  n: 12,
  warmup: 2,
  async fn(b) {
    const engine = await benchEngine("130m", "f16", 1);
    engine.reset(0);
    b.start();
    engine.prefill([100], 0);
    for (let i = 1; i < TOKENS; i++) engine.step(100 + i);
    b.end();
  },
});

Deno.bench({
  name: `Generator, ${TOKENS} tokens, temperature 0.8, top-p 0.95`,
  group: "generation 130m f16",
  n: 12,
  warmup: 2,
  async fn(b) {
    const engine = await benchEngine("130m", "f16", 1);
    const gen = new Generator(engine, tokenizer).generate([100], {
      maxTokens: TOKENS,
      temperature: 0.8,
      topP: 0.95,
      seed: 1,
      eosTokenIds: [], // always the full 32 tokens
    });
    b.start();
    for await (const _ of gen);
    b.end();
  },
});
