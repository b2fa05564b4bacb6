/**
 * Quantize a checkpoint to MLX's 4- or 8-bit layout:
 *
 *   deno task quantize -- --bits 4|8 [--group-size 64] SRC DST
 *
 * SRC is anything `MambaEngine.load` reads (a model directory or a GGUF file). DST gets model.safetensors
 * and config.json with "quantization" (mlx-lm's layout: MLX and this engine load it) plus the tokenizer:
 * SRC's tokenizer files, or a tokenizer.json built from a GGUF file's metadata. in_proj, out_proj and the
 * embedding / lm_head are quantized when their width divides into groups; everything else stays float.
 * The quantizer is the native one `dtype: "q8" | "q4"` uses at load, so both give the same bytes.
 * Progress goes to stderr.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ensureLibrary } from "../ffi/build.ts";
import { check, openLibrary } from "../ffi/library.ts";
import { isGGUFFile, MambaError, readGGUFMetadata, Tokenizer } from "../mod.ts";

const HELP = `Usage: deno task quantize -- --bits 4|8 [--group-size 32|64|128] SRC DST

  SRC   model directory or .gguf file (anything MambaEngine.load reads)
  DST   output directory (created): model.safetensors, config.json, tokenizer files
`;

function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(1);
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** Files that make up a Hugging Face tokenizer, copied when present. */
const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

async function main(): Promise<void> {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        bits: { type: "string" },
        "group-size": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    fail(`${(e as Error).message}\n\n${HELP}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (positionals.length !== 2) fail(`expected SRC and DST\n\n${HELP}`);
  const [src, dst] = positionals;
  const bits = Number(values.bits);
  if (bits !== 4 && bits !== 8) fail(`--bits must be 4 or 8, got "${values.bits ?? ""}"`);
  const groupSize = values["group-size"] === undefined ? 64 : Number(values["group-size"]);
  if (![32, 64, 128].includes(groupSize)) {
    fail(`--group-size must be 32, 64 or 128, got "${values["group-size"]}"`);
  }
  let srcIsFile: boolean;
  try {
    srcIsFile = Deno.statSync(src).isFile;
  } catch {
    fail(`${src} does not exist`);
  }

  await Deno.mkdir(dst, { recursive: true });
  const lib = openLibrary(await ensureLibrary({ progress: (line) => console.error(line) }));
  const t0 = performance.now();
  check(
    lib,
    lib.symbols.mamba_quantize(
      cString(src),
      cString(dst),
      cString(JSON.stringify({ bits, groupSize, progress: true })),
    ),
  );
  if (srcIsFile && await isGGUFFile(src)) {
    const json = Tokenizer.jsonFromGGUF(await readGGUFMetadata(src));
    await Deno.writeTextFile(`${dst}/tokenizer.json`, JSON.stringify(json));
    console.error(`quantize: wrote ${dst}/tokenizer.json from ${src}'s metadata`);
  } else if (!srcIsFile) {
    for (const f of TOKENIZER_FILES) {
      try {
        await Deno.copyFile(`${src}/${f}`, `${dst}/${f}`);
        console.error(`quantize: copied ${f}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
  console.error(`quantize: ${dst} written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

try {
  await main();
} catch (e) {
  if (e instanceof MambaError) fail(e.message);
  throw e;
}
