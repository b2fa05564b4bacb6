/**
 * Generate text from the command line:
 *
 *   deno task generate --prompt "It is a truth universally acknowledged"
 *   deno task generate -- --model ~/models/mamba2-130m --tokenizer gpt-neox-20b.tokenizer.json --prompt "…"
 *
 * Text streams to stdout; progress and statistics go to stderr.
 *
 * @module
 */
import {
  type BackendName,
  Generator,
  isGGUFFile,
  MambaEngine,
  MambaError,
  Tokenizer,
  type WeightDType,
} from "../mod.ts";
import { ensureLibrary } from "../ffi/build.ts";
import { fail, numberOption, parseCli } from "./cli.ts";

const HELP = `Usage: deno task generate [--] --prompt TEXT [options]

  --prompt TEXT          text to continue (required; "" starts from the end-of-text token)
  --model PATH           model directory or .gguf file (default: the bundled demo model, models/demo)
  --tokenizer FILE       tokenizer.json or .gguf (default: DIR/tokenizer.json, or the GGUF model itself)
  --max-tokens N         tokens to generate (default 128)
  --temperature T        0 = greedy (default 0.8)
  --top-k K              keep the K most likely tokens (default 0 = off)
  --top-p P              nucleus sampling (default 0.95)
  --min-p P              drop tokens below P × the best probability (default 0 = off)
  --repeat-penalty R     penalise tokens already seen (default 1.1)
  --seed S               PRNG seed, for repeatable samples
  --backend B            auto | cpu | metal (default auto)
  --dtype D              weights in memory: auto (as stored) | f32 | f16 | bf16 | q8 | q4 (default auto);
                         f16 halves what a decode step reads from float32 checkpoints; q8/q4 quantize
                         at load (MLX's affine algorithm, as deno task quantize)
  --group-size G         columns per quantization group for q8/q4: 32, 64 or 128 (default 64)
  --stop TEXT            stop at TEXT (repeatable)
  --help                 this text
`;

async function main(): Promise<void> {
  const args = parseCli(Deno.args, {
    prompt: { type: "string" },
    model: { type: "string" },
    tokenizer: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "min-p": { type: "string" },
    "repeat-penalty": { type: "string" },
    seed: { type: "string" },
    backend: { type: "string" },
    dtype: { type: "string" },
    "group-size": { type: "string" },
    stop: { type: "string", multiple: true },
    help: { type: "boolean", short: "h" },
  }, HELP) as Record<string, string | undefined> & { stop?: string[]; help?: boolean };
  if (args.help) {
    console.log(HELP);
    return;
  }
  if (args.prompt === undefined) fail(`--prompt is required\n\n${HELP}`);
  const backend = args.backend ?? "auto";
  if (!["auto", "cpu", "metal"].includes(backend)) {
    fail(`--backend must be auto, cpu or metal, got "${backend}"`);
  }
  const dtype = args.dtype ?? "auto";
  if (!["auto", "f32", "f16", "bf16", "q8", "q4"].includes(dtype)) {
    fail(`--dtype must be auto, f32, f16, bf16, q8 or q4, got "${dtype}"`);
  }
  const groupSize = numberOption("group-size", args["group-size"], 64, { integer: true });
  if (![32, 64, 128].includes(groupSize)) {
    fail(`--group-size must be 32, 64 or 128, got "${args["group-size"]}"`);
  }
  const options = {
    maxTokens: numberOption("max-tokens", args["max-tokens"], 128, { min: 0, integer: true }),
    temperature: numberOption("temperature", args.temperature, 0.8, { min: 0 }),
    topK: numberOption("top-k", args["top-k"], 0, { min: 0, integer: true }),
    topP: numberOption("top-p", args["top-p"], 0.95, { above: 0, max: 1 }),
    minP: numberOption("min-p", args["min-p"], 0, { min: 0, max: 1 }),
    repetitionPenalty: numberOption("repeat-penalty", args["repeat-penalty"], 1.1, { above: 0 }),
    seed: args.seed === undefined ? undefined : numberOption("seed", args.seed, 0, { integer: true }),
    stop: args.stop,
  };

  const modelDir = args.model ?? new URL("../models/demo", import.meta.url).pathname;
  let isFile = false;
  try {
    isFile = Deno.statSync(modelDir).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(`model ${modelDir} does not exist`);
    throw e;
  }
  if (isFile && !(await isGGUFFile(modelDir))) {
    fail(`model ${modelDir} is neither a directory nor a GGUF file`);
  }
  // A GGUF file carries its tokenizer.
  const tokenizerPath = args.tokenizer ?? (isFile ? modelDir : `${modelDir}/tokenizer.json`);
  let tokenizer: Tokenizer;
  try {
    tokenizer = await Tokenizer.load(tokenizerPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      fail(
        `no tokenizer at ${tokenizerPath}: pass --tokenizer FILE ` +
          `(state-spaces mamba2 checkpoints use GPT-NeoX-20B's tokenizer.json)`,
      );
    }
    fail(`cannot load tokenizer ${tokenizerPath}: ${(e as Error).message}`);
  }

  const libraryPath = await ensureLibrary({ progress: (line) => console.error(line) });
  console.error(`loading ${modelDir} …`);
  const t0 = performance.now();
  using engine = await MambaEngine.load(modelDir, {
    backend: backend as BackendName,
    dtype: dtype as WeightDType,
    groupSize,
    libraryPath,
  });
  console.error(
    `loaded in ${(performance.now() - t0).toFixed(0)} ms: ${engine.config.nLayer} layers, d_model ` +
      `${engine.config.dModel}, ${engine.dtype} weights, ${engine.device}`,
  );

  const generation = new Generator(engine, tokenizer).generate(args.prompt, options);
  const out = new TextEncoder();
  await Deno.stdout.write(out.encode(args.prompt));
  for await (const piece of generation) await Deno.stdout.write(out.encode(piece));
  await Deno.stdout.write(out.encode("\n"));
  const s = generation.stats;
  console.error(
    `prompt ${s.promptTokens} tokens, prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s; ` +
      `generated ${s.generatedTokens} tokens, ${s.decodeTokensPerSecond.toFixed(1)} tok/s ` +
      `(${s.msPerToken.toFixed(2)} ms/token); stop: ${s.stopReason}`,
  );
}

try {
  await main();
} catch (e) {
  if (e instanceof MambaError || e instanceof RangeError) fail(e.message);
  throw e;
}
