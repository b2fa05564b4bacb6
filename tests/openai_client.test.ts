// The server driven by the official `openai` Python package (PyPI), as editors and agents drive it: a
// completion and a streamed completion, whose text must equal Generator's for the same seed. Skipped,
// saying why, where Python or the package is missing (.ci/run installs it).
import assert from "node:assert/strict";
import { Generator, MambaEngine, serve, Tokenizer } from "../mod.ts";
import { ROOT } from "./helpers.ts";

const DEMO = `${ROOT}models/demo`;

function pythonWithOpenAI(): string | undefined {
  try {
    const r = new Deno.Command("python3", { args: ["-c", "import openai; print(openai.__version__)"] })
      .outputSync();
    return r.code === 0 ? new TextDecoder().decode(r.stdout).trim() : undefined;
  } catch {
    return undefined; // no python3
  }
}

const version = pythonWithOpenAI();
if (!version) console.log("openai_client.test.ts: skipped: python3 with the openai package is not available");

const SCRIPT = `
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused")
args = dict(model="demo", prompt="It is a truth universally acknowledged", max_tokens=20,
            temperature=0.9, top_p=0.9, seed=11)
whole = client.completions.create(**args)
pieces, finish, usage = [], None, None
for chunk in client.completions.create(stream=True, stream_options={"include_usage": True}, **args):
    if chunk.choices:
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage.completion_tokens
models = [m.id for m in client.models.list()]
try:
    client.completions.create(model="demo", prompt="x", temperature=5)
    error = None
except Exception as e:
    error = [type(e).__name__, e.status_code]
print(json.dumps({"text": whole.choices[0].text, "finish": whole.choices[0].finish_reason,
                  "usage": whole.usage.completion_tokens, "cached": whole.usage.prompt_tokens_details.cached_tokens,
                  "streamed": "".join(pieces), "streamFinish": finish, "streamUsage": usage,
                  "models": models, "error": error}))
`;

Deno.test({
  name: `the openai Python client (${version ?? "absent"}): a completion and a streamed one`,
  ignore: !version,
  async fn() {
    const tokenizer = await Tokenizer.load(`${DEMO}/tokenizer.json`);
    using engine = MambaEngine.loadSync(DEMO, { backend: "cpu", batchSize: 2 });
    const { promise, resolve } = Promise.withResolvers<number>();
    const server = serve(engine, tokenizer, { port: 0, modelId: "demo", onListen: (a) => resolve(a.port) });
    try {
      const port = await promise;
      const out = await new Deno.Command("python3", {
        args: ["-c", SCRIPT, `http://127.0.0.1:${port}/v1`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const r = JSON.parse(new TextDecoder().decode(out.stdout));

      using solo = MambaEngine.loadSync(DEMO, { backend: "cpu" });
      const gen = new Generator(solo, tokenizer).generate("It is a truth universally acknowledged", {
        maxTokens: 20,
        temperature: 0.9,
        topP: 0.9,
        seed: 11,
        repetitionPenalty: 1,
      });
      let want = "";
      for await (const piece of gen) want += piece;
      assert.deepEqual(r, {
        text: want,
        finish: "length",
        usage: 20,
        cached: 0,
        streamed: want,
        streamFinish: "length",
        streamUsage: 20,
        models: ["demo"],
        error: ["BadRequestError", 400],
      });
    } finally {
      await server.shutdown();
    }
  },
});
