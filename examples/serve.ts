/**
 * An OpenAI-compatible completions server:
 *
 *   deno task serve -- --model ~/models/mamba2-130m --tokenizer gpt-neox-20b.tokenizer.json --slots 4
 *   curl http://127.0.0.1:8080/v1/completions -H 'content-type: application/json' \
 *     -d '{"prompt": "It is a truth", "max_tokens": 32, "stream": true}'
 *
 * @module
 */
import {
  type BackendName,
  isGGUFFile,
  MambaEngine,
  MambaError,
  serve,
  Tokenizer,
  type WeightDType,
} from "../mod.ts";
import { ensureLibrary } from "../ffi/build.ts";
import { fail, numberOption, parseCli } from "./cli.ts";

const HELP = `Usage: deno task serve [--] [options]

  --model PATH           model directory or .gguf file (default: the bundled demo model, models/demo)
  --tokenizer FILE       tokenizer.json or .gguf (default: DIR/tokenizer.json, or the GGUF model itself)
  --host HOST            interface to listen on (default 127.0.0.1)
  --port N               port (default 8080; 0 picks a free one)
  --slots N              requests decoded together: the engine's batch size (default 4)
  --model-id NAME        the model's name in responses (default: the directory's name)
  --cache-bytes N        bytes of prompt states kept for reuse, e.g. 512M, 2G; 0 = off (default 1G)
  --max-queue N          requests that may wait for a slot; more get 429 (default 64)
  --max-prompt-tokens N  longest prompt (default 16384)
  --max-tokens N         largest max_tokens a request may ask for (default 4096)
  --prefill-block N      prompt tokens prefilled between two decode steps (default 256)
  --body-limit N         largest request body in bytes (default 1M)
  --backend B            auto | cpu | metal (default auto)
  --dtype D              auto | f32 | f16 | bf16 | q8 | q4 (default auto: as stored)
  --group-size G         q8/q4 at load: columns per scale/bias group, 32 | 64 | 128 (default 64)
  --threads N            CPU threads (default: one per core)
  --help                 this text
`;

/** "512M", "2G", "1048576" → bytes. */
function bytesOption(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  if (!m) fail(`--${name} expects a size such as 0, 512M or 2G, got "${value}"`);
  const scale = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()]!;
  return Math.floor(Number(m[1]) * scale);
}

async function main(): Promise<void> {
  const args = parseCli(Deno.args, {
    model: { type: "string" },
    tokenizer: { type: "string" },
    host: { type: "string" },
    port: { type: "string" },
    slots: { type: "string" },
    "model-id": { type: "string" },
    "cache-bytes": { type: "string" },
    "max-queue": { type: "string" },
    "max-prompt-tokens": { type: "string" },
    "max-tokens": { type: "string" },
    "prefill-block": { type: "string" },
    "body-limit": { type: "string" },
    backend: { type: "string" },
    dtype: { type: "string" },
    "group-size": { type: "string" },
    threads: { type: "string" },
    help: { type: "boolean", short: "h" },
  }, HELP) as Record<string, string | undefined> & { help?: boolean };
  if (args.help) {
    console.log(HELP);
    return;
  }
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
  const port = numberOption("port", args.port, 8080, { min: 0, max: 65535, integer: true });
  const slots = numberOption("slots", args.slots, 4, { min: 1, max: 256, integer: true });
  const threads = numberOption("threads", args.threads, 0, { min: 0, integer: true });
  const options = {
    hostname: args.host ?? "127.0.0.1",
    port,
    cacheBytes: bytesOption("cache-bytes", args["cache-bytes"], 2 ** 30),
    maxQueue: numberOption("max-queue", args["max-queue"], 64, { min: 0, integer: true }),
    maxPromptTokens: numberOption("max-prompt-tokens", args["max-prompt-tokens"], 16384, {
      min: 1,
      integer: true,
    }),
    maxTokens: numberOption("max-tokens", args["max-tokens"], 4096, { min: 0, integer: true }),
    prefillBlock: numberOption("prefill-block", args["prefill-block"], 256, { min: 1, integer: true }),
    maxBodyBytes: bytesOption("body-limit", args["body-limit"], 2 ** 20),
  };

  const modelPath = args.model ?? new URL("../models/demo", import.meta.url).pathname;
  let isFile = false;
  try {
    isFile = Deno.statSync(modelPath).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(`model ${modelPath} does not exist`);
    throw e;
  }
  if (isFile && !(await isGGUFFile(modelPath))) {
    fail(`model ${modelPath} is neither a directory nor a GGUF file`);
  }
  // A GGUF file carries its tokenizer.
  const tokenizerPath = args.tokenizer ?? (isFile ? modelPath : `${modelPath}/tokenizer.json`);
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
  const engine = await MambaEngine.load(modelPath, {
    backend: backend as BackendName,
    dtype: dtype as WeightDType,
    groupSize,
    batchSize: slots,
    threads,
    libraryPath,
  });
  const modelId = args["model-id"] ??
    modelPath.replace(/\/+$/, "").split("/").pop()!.replace(/\.gguf$/i, "");
  console.error(
    `${modelId}: ${engine.config.nLayer} layers, d_model ${engine.config.dModel}, ${engine.dtype} weights, ` +
      `${engine.device}; ${slots} slots, state cache ${options.cacheBytes} bytes`,
  );
  const server = serve(engine, tokenizer, {
    ...options,
    modelId,
    onListen: (addr) => console.log(`listening on http://${addr.hostname}:${addr.port}`),
  });
  Deno.addSignalListener("SIGINT", () => server.shutdown());
  await server.finished;
  engine.close();
}

try {
  await main();
} catch (e) {
  if (e instanceof MambaError || e instanceof RangeError) fail(e.message);
  throw e;
}
