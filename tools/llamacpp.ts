/**
 * llama.cpp as a reference, for tools/compare_llamacpp.ts and tools/perplexity.ts: built once from the
 * `llama-cpp-python` sdist on PyPI (its vendor/llama.cpp: CPU only, Release (-O3), -march=native) into
 * a cache directory, never into the repository; GGUF files made with its own converter
 * (tools/llamacpp_convert.py) and `llama-quantize`; `llama-bench`; and tools/llamacpp_logits.c, a small
 * program against libllama that returns llama.cpp's logits or held-out loss.
 *
 * Cache: `$LLAMACPP_CACHE`, else `~/.cache/llamacpp` (`src/` the unpacked sdist, `build/`, `models/`).
 * Needs python3 with pip (and torch, transformers, numpy, safetensors for the converter), cmake, a C/C++
 * compiler, and ninja or make.
 *
 * `deno run -A tools/llamacpp.ts gguf MODEL_DIR NAME F16,Q8_0,Q4_0` builds what is missing and prints
 * the GGUF paths; `deno run -A tools/llamacpp.ts fixture` makes tests/fixtures/gguf/tiny-g1.q4_0-llama-quantize.
 *
 * @module
 */
import { cacheRoot } from "./make_bench_models.ts";
import { fileExists } from "../ffi/host.ts";

/** The sdist the reference is built from (its vendor/llama.cpp is commit 0c1e570, ggml 0.25.3). */
export const LLAMA_CPP_PYTHON_VERSION = "0.3.36";
const ROOT = new URL("..", import.meta.url).pathname;

/** Where the reference lives. */
export interface LlamaCpp {
  /** Cache root. */
  root: string;
  /** The llama.cpp source tree (vendor/llama.cpp of the sdist). */
  src: string;
  /** Binaries and libllama. */
  bin: string;
  /** tools/llamacpp_logits.c, compiled. */
  logits: string;
  /** GGUF files made here. */
  models: string;
}

/** The cache directory: $LLAMACPP_CACHE, else the parent of the project's cache (~/.cache/llamacpp). */
export function llamaCppDirs(): LlamaCpp {
  const root = Deno.env.get("LLAMACPP_CACHE") ?? cacheRoot().replace(/\/mamba-metal$/, "/llamacpp");
  return {
    root,
    src: `${root}/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp`,
    bin: `${root}/build/bin`,
    logits: `${root}/build/llamacpp_logits`,
    models: `${root}/models`,
  };
}

/** Runs a command with its output on stderr (progress); throws naming it when it fails. */
export async function run(cmd: string, args: string[], options: { cwd?: string; quiet?: boolean } = {}) {
  const p = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    stdout: options.quiet ? "null" : "inherit",
    stderr: options.quiet ? "piped" : "inherit",
  });
  let out;
  try {
    out = await p.output();
  } catch (e) {
    throw new Error(`cannot run ${cmd}: ${(e as Error).message}`);
  }
  if (!out.success) {
    const tail = options.quiet
      ? "\n" + new TextDecoder().decode(out.stderr).split("\n").slice(-20).join("\n")
      : "";
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code})${tail}`);
  }
}

/** Runs a command and returns its stdout (stderr passed through unless `quiet`). */
export async function capture(
  cmd: string,
  args: string[],
  quiet = true,
  env?: Record<string, string>,
): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: quiet ? "piped" : "inherit" })
    .output();
  if (!out.success) {
    const err = quiet ? new TextDecoder().decode(out.stderr).split("\n").slice(-20).join("\n") : "";
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code})\n${err}`);
  }
  return new TextDecoder().decode(out.stdout);
}

const TARGETS = ["llama-bench", "llama-quantize", "llama"];

/**
 * Downloads the sdist (pip, only this package as source) and builds llama-bench, llama-quantize and
 * libllama, unless they are there; then compiles tools/llamacpp_logits.c if it is newer than the binary.
 */
export async function ensureLlamaCpp(): Promise<LlamaCpp> {
  const d = llamaCppDirs();
  await Deno.mkdir(d.root, { recursive: true });
  if (!fileExists(d.src)) {
    const tarball = `${d.root}/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz`;
    if (!fileExists(tarball)) {
      console.error(`llama.cpp: downloading the llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} sdist …`);
      await run("python3", [
        "-m",
        "pip",
        "download",
        `llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}`,
        "--no-deps",
        "--no-binary",
        "llama-cpp-python",
        "-d",
        d.root,
      ]);
    }
    await run("tar", ["xzf", tarball, "-C", d.root]);
  }
  const built = fileExists(`${d.bin}/llama-bench`) && fileExists(`${d.bin}/llama-quantize`) &&
    fileExists(`${d.bin}/libllama.so`);
  if (!built) {
    console.error(`llama.cpp: building ${TARGETS.join(", ")} in ${d.root}/build (CPU, Release, native) …`);
    let ninja = true;
    try {
      await capture("ninja", ["--version"]);
    } catch {
      ninja = false;
    }
    await run("cmake", [
      "-S",
      d.src,
      "-B",
      `${d.root}/build`,
      ...(ninja ? ["-G", "Ninja"] : []),
      "-DCMAKE_BUILD_TYPE=Release", // -O3
      "-DGGML_NATIVE=ON", // -march=native
      "-DGGML_CUDA=OFF",
      "-DGGML_METAL=OFF",
      "-DGGML_VULKAN=OFF",
      "-DLLAMA_CURL=OFF",
      "-DLLAMA_OPENSSL=OFF",
      "-DBUILD_SHARED_LIBS=ON",
      "-DLLAMA_BUILD_TESTS=OFF",
      "-DLLAMA_BUILD_SERVER=OFF",
    ]);
    await run("cmake", [
      "--build",
      `${d.root}/build`,
      "--parallel",
      String(navigator.hardwareConcurrency),
      "--target",
      ...TARGETS,
    ]);
  }
  const source = `${ROOT}tools/llamacpp_logits.c`;
  if (!fileExists(d.logits) || Deno.statSync(d.logits).mtime! < Deno.statSync(source).mtime!) {
    await run(Deno.env.get("CC") ?? "cc", [
      "-O2",
      "-Wall",
      "-I",
      `${d.src}/include`,
      "-I",
      `${d.src}/ggml/include`,
      source,
      "-L",
      d.bin,
      "-lllama",
      "-lggml",
      "-lggml-base",
      `-Wl,-rpath,${d.bin}`,
      "-lm",
      "-o",
      d.logits,
    ]);
  }
  return d;
}

/** llama.cpp's version line (`version: … (build N, commit X)`). */
export async function llamaCppVersion(d: LlamaCpp): Promise<string> {
  const out = await new Deno.Command(`${d.bin}/llama-bench`, {
    args: ["--version"],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return text.split("\n").filter((l) => l.startsWith("version") || l.startsWith("built")).join("; ");
}

/**
 * GGUF files of `modelDir` under the name `name`: `F16` through llama.cpp's converter, every other type
 * (`Q8_0`, `Q4_0`, `Q4_K_M`, …, llama-quantize's names) from that F16 file with llama-quantize. Made once.
 */
export async function ensureGGUF(
  d: LlamaCpp,
  modelDir: string,
  name: string,
  types: string[],
): Promise<Record<string, string>> {
  await Deno.mkdir(d.models, { recursive: true });
  const path = (t: string) => `${d.models}/${name}-${t}.gguf`;
  const f16 = path("F16");
  if (!fileExists(f16)) {
    console.error(`llama.cpp: converting ${modelDir} → ${f16} …`);
    await run("python3", [
      `${ROOT}tools/llamacpp_convert.py`,
      "--llama-cpp",
      d.src,
      "--outtype",
      "f16",
      modelDir,
      f16 + ".partial",
    ], { quiet: true });
    await Deno.rename(f16 + ".partial", f16);
  }
  const out: Record<string, string> = {};
  for (const t of types) {
    if (t !== "F16" && !fileExists(path(t))) {
      console.error(`llama.cpp: llama-quantize ${t} → ${path(t)} …`);
      await run(`${d.bin}/llama-quantize`, [f16, path(t) + ".partial", t], { quiet: true });
      await Deno.rename(path(t) + ".partial", path(t));
    }
    out[t] = path(t);
  }
  return out;
}

async function withIds<T>(ids: Int32Array, fn: (file: string) => Promise<T>): Promise<T> {
  const file = await Deno.makeTempFile({ prefix: "llamacpp-ids-" });
  try {
    await Deno.writeFile(file, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
    return await fn(file);
  } finally {
    await Deno.remove(file);
  }
}

/** llama.cpp's logits after every id of `ids`, fed from an empty state as one batch: (ids × vocab). */
export function llamaCppLogits(
  d: LlamaCpp,
  gguf: string,
  ids: Int32Array,
  threads: number,
): Promise<Float32Array> {
  return withIds(ids, async (idsFile) => {
    const out = await Deno.makeTempFile({ prefix: "llamacpp-logits-" });
    try {
      await run(d.logits, ["logits", gguf, idsFile, String(threads), out], { quiet: true });
      const bytes = await Deno.readFile(out);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    } finally {
      await Deno.remove(out);
    }
  });
}

/**
 * llama.cpp's layer-0 and lm_head matrix products for `ids` (inputs and outputs, through its eval
 * callback), written into `dir` as `<weight>.{in,out}.f32`.
 */
export function llamaCppMatmuls(
  d: LlamaCpp,
  gguf: string,
  ids: Int32Array,
  threads: number,
  dir: string,
): Promise<void> {
  return withIds(
    ids,
    (idsFile) => run(d.logits, ["matmuls", gguf, idsFile, String(threads), dir], { quiet: true }),
  );
}

/** tools/llamacpp_reference.py's float64 logits of a GGUF file, and its check of llama.cpp's products. */
export interface Reference {
  /** The file's model, weights dequantized by gguf-py, float64: (ids × vocab). */
  exact: Float32Array;
  /** The same with each product's input rounded as ggml's CPU backend rounds it. */
  rounded: Float32Array;
  /** Per dumped product: worst relative difference of llama.cpp's output from the recomputed ones. */
  matmuls: Record<string, { type: string; vsRounded: number; vsExact: number }>;
}

/** Runs tools/llamacpp_reference.py on `gguf` for `ids` (and the products in `matmulsDir`). */
export function reference(
  d: LlamaCpp,
  gguf: string,
  ids: Int32Array,
  matmulsDir: string,
): Promise<Reference> {
  return withIds(ids, async (idsFile) => {
    const prefix = await Deno.makeTempFile({ prefix: "llamacpp-reference-" });
    try {
      const out = await capture("python3", [
        `${ROOT}tools/llamacpp_reference.py`,
        "--llama-cpp",
        d.src,
        gguf,
        idsFile,
        prefix,
        "--matmuls",
        matmulsDir,
      ]);
      const read = async (p: string) => {
        const b = await Deno.readFile(p);
        await Deno.remove(p);
        return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      };
      return {
        exact: await read(`${prefix}.exact.f32`),
        rounded: await read(`${prefix}.ggml.f32`),
        matmuls: JSON.parse(out.trim().split("\n").pop()!),
      };
    } finally {
      await Deno.remove(prefix);
    }
  });
}

/** llama.cpp's held-out loss: tools/train_demo.py's windows, each from an empty state. */
export function llamaCppHeldOutLoss(
  d: LlamaCpp,
  gguf: string,
  ids: Int32Array,
  seqLen: number,
  threads: number,
): Promise<{ nats: number; count: number }> {
  return withIds(ids, async (idsFile) => {
    const out = await capture(d.logits, ["windows", gguf, idsFile, String(threads), String(seqLen)]);
    const r = JSON.parse(out);
    return { nats: r.nats, count: r.count };
  });
}

/** One llama-bench test (`avg_ts`: tokens/s; `samples_ts`: each repetition's). */
export interface LlamaBenchResult {
  avg_ts: number;
  stddev_ts: number;
  samples_ts: number[];
  model_type: string;
  model_size: number;
  n_threads: number;
  n_gen: number;
  build_commit: string;
  cpu_info: string;
}

/**
 * `llama-bench -m GGUF -p 0 -n nGen -t threads -r reps -o json`: decode of nGen tokens at batch 1. `env`
 * is added to its environment (e.g. `OMP_WAIT_POLICY`).
 */
export async function llamaBench(
  d: LlamaCpp,
  gguf: string,
  threads: number,
  nGen: number,
  reps: number,
  env?: Record<string, string>,
): Promise<LlamaBenchResult> {
  const out = await capture(
    `${d.bin}/llama-bench`,
    [
      "-m",
      gguf,
      "-p",
      "0",
      "-n",
      String(nGen),
      "-t",
      String(threads),
      "-r",
      String(reps),
      "-o",
      "json",
    ],
    true,
    env,
  );
  const rows = JSON.parse(out) as LlamaBenchResult[];
  if (rows.length !== 1) throw new Error(`llama-bench returned ${rows.length} rows for ${gguf}`);
  return rows[0];
}

/**
 * tests/fixtures/gguf/tiny-g1.q4_0-llama-quantize/: tiny-g1.f32.gguf (llama.cpp's converter) through
 * llama-quantize Q4_0, a file as llama-quantize writes them (1-D ssm_norm, an 8-bit fallback for the lm_head
 * whose width is not a multiple of 256), with, over tiny-g1's tokens fed one by one from an empty state:
 * `exact.f32` the float64 reference of the file (gguf-py's dequantization), `rounded.f32` the same with
 * ggml's activation rounding, `llamacpp.f32` llama.cpp's logits (tools/llamacpp_reference.py and
 * tools/llamacpp_logits.c; tests/llamacpp_files.test.ts reads them).
 */
async function makeFixture(d: LlamaCpp): Promise<void> {
  const fixtures = `${ROOT}tests/fixtures`;
  const out = `${fixtures}/gguf/tiny-g1.q4_0-llama-quantize`;
  await Deno.mkdir(out, { recursive: true });
  const gguf = `${out}/model.gguf`;
  await run(`${d.bin}/llama-quantize`, [`${fixtures}/gguf/tiny-g1.f32.gguf`, gguf, "Q4_0"], { quiet: true });
  const tokens: number[] = JSON.parse(await Deno.readTextFile(`${fixtures}/tiny-g1/reference.json`)).tokens;
  const ids = Int32Array.from(tokens);
  const dir = await Deno.makeTempDir({ prefix: "llamacpp-matmuls-" });
  try {
    await llamaCppMatmuls(d, gguf, ids, 1, dir);
    const ref = await reference(d, gguf, ids, dir);
    const worst = Math.max(...Object.values(ref.matmuls).map((m) => m.vsRounded));
    if (worst > 1e-5) throw new Error(`llama.cpp's products are ${worst} from the rounded reference`);
    await Deno.writeFile(`${out}/exact.f32`, new Uint8Array(ref.exact.buffer));
    await Deno.writeFile(`${out}/rounded.f32`, new Uint8Array(ref.rounded.buffer));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const llama = await llamaCppLogits(d, gguf, ids, 1);
  await Deno.writeFile(
    `${out}/llamacpp.f32`,
    new Uint8Array(llama.buffer, llama.byteOffset, llama.byteLength),
  );
  await Deno.writeTextFile(
    `${out}/reference.json`,
    JSON.stringify({ tokens, llamaCpp: await llamaCppVersion(d), sdist: LLAMA_CPP_PYTHON_VERSION }, null, 1) +
      "\n",
  );
  console.log(out);
}

if (import.meta.main) {
  const [cmd, modelDir, name, types] = Deno.args;
  if (cmd === "fixture") {
    await makeFixture(await ensureLlamaCpp());
  } else if (cmd === "gguf" && modelDir && name) {
    const d = await ensureLlamaCpp();
    const files = await ensureGGUF(d, modelDir, name, (types ?? "F16").split(","));
    for (const [t, p] of Object.entries(files)) console.log(`${t}\t${p}`);
  } else {
    console.error(
      "usage: deno run -A tools/llamacpp.ts gguf MODEL_DIR NAME [F16,Q8_0,Q4_0,…]\n" +
        "       deno run -A tools/llamacpp.ts fixture      (tests/fixtures/gguf/tiny-g1.q4_0-llama-quantize)",
    );
    Deno.exit(2);
  }
}
