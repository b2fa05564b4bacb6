/**
 * Builds the CUDA side of the GPU proxy: the CUDA view of every metal/*.metal file, a .cu per file with
 * one namespace per pipeline specialization found in the given traces, and cubins for sm_90 (nvcc, no
 * GPU needed). `--generic` instead compiles each file once with its function constants as __constant__
 * variables (the CI check: every kernel compiles with nvcc). `--strict` compiles every file with clang
 * as C++ where device, constant and threadgroup are real address spaces and double is refused.
 *
 *   deno run -A tools/gpu/build.ts --out .gpu/build --traces .gpu/traces [--planted] [--simd-check]
 *   deno run -A tools/gpu/build.ts --generic --out /tmp/cuda-check        (CI)
 *   deno run -A tools/gpu/build.ts --strict                               (CI)
 *
 * Writes OUT/kernels.json: per file, its cubins and the specializations each holds (see replay.py).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { type ParsedMetal, parseMetal } from "../metal_bindings/parse.ts";
import {
  type ConstantValue,
  cudaSymbol,
  cudaView,
  cudaWrappers,
  emitCuda,
  floatValue,
  isDefined,
  type Specialization,
} from "../metal_bindings/emit_cuda.ts";
import { cppView } from "../metal_bindings/transform.ts";
import { librarySource } from "../metal_bindings/include.ts";
import { plant, PLANTED } from "./planted.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** A pipeline as a trace records it. */
export interface TracePipeline {
  file: string;
  function: string;
  constants: ConstantValue[];
  /** The library's math mode as the backend compiled it ("fast": Metal's default; "safe"). */
  mathMode?: string;
}

/** Stable id of a (file, constants) specialization: FNV-1a over the canonical constants (floats by their
 * float32 bits; replay.py's spec_key computes the same). */
export function specId(file: string, constants: ConstantValue[]): string {
  const value = (c: ConstantValue) =>
    c.type === 3 ? new Uint32Array(new Float32Array([floatValue(c)]).buffer)[0] : Number(c.value);
  const text = file + "|" +
    constants.filter(isDefined).map((c) => `${c.index}:${c.type}:${value(c)}`).join(",");
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** A trace's text, from trace.jsonl or (as prepare.ts and sweep.ts pack them) trace.jsonl.gz. */
async function traceText(f: string): Promise<string> {
  if (!f.endsWith(".gz")) return await Deno.readTextFile(f);
  const stream = (await Deno.open(f)).readable.pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}

/** Pipelines of every trace.jsonl (or trace.jsonl.gz) under `dir` (or the file itself). */
export async function tracePipelines(path: string): Promise<TracePipeline[]> {
  const files: string[] = [];
  const st = await Deno.stat(path);
  if (st.isFile) files.push(path);
  else {
    for await (const e of Deno.readDir(path)) {
      if (!e.isDirectory) continue;
      for (const name of ["trace.jsonl", "trace.jsonl.gz"]) {
        try {
          await Deno.stat(join(path, e.name, name));
          files.push(join(path, e.name, name));
          break;
        } catch { /* not a trace directory */ }
      }
    }
  }
  const out: TracePipeline[] = [];
  for (const f of files.sort()) {
    for (const line of (await traceText(f)).split("\n")) {
      if (!line.includes('"ev":"pipeline"')) continue;
      const e = JSON.parse(line);
      out.push({ file: e.file, function: e.function, constants: e.constants, mathMode: e.mathMode });
    }
  }
  return out;
}

/** The nvcc to use: $NVCC, nvcc on PATH, or the one pip installs (nvidia-cuda-nvcc). */
export async function findNvcc(): Promise<string | undefined> {
  const env = Deno.env.get("NVCC");
  if (env) return env;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      await Deno.stat(join(dir, "nvcc"));
      return join(dir, "nvcc");
    } catch { /* next */ }
  }
  try {
    const p = new Deno.Command("python3", {
      args: ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const site = new TextDecoder().decode(p.stdout).trim();
    for (const v of ["cu13", "cu12", "cuda_nvcc"]) {
      const nvcc = join(site, "nvidia", v, "bin", "nvcc");
      try {
        await Deno.stat(nvcc);
        return nvcc;
      } catch { /* next */ }
    }
  } catch { /* no python */ }
  return undefined;
}

interface Source {
  name: string; // file name used in traces, e.g. "matvec.metal" or a planted variant's name
  source: string;
  parsed: ParsedMetal;
}

/** The .metal files as their libraries see them: local headers inlined (metal_bindings/include.ts). */
async function sources(planted: boolean, metalDir = join(ROOT, "metal")): Promise<Source[]> {
  const out: Source[] = [];
  const raw = new Map<string, string>();
  for await (const e of Deno.readDir(metalDir)) {
    if (!e.name.endsWith(".metal")) continue;
    const text = await Deno.readTextFile(join(metalDir, e.name));
    raw.set(e.name, text);
    const source = await librarySource(metalDir, "metal", e.name, text);
    out.push({ name: e.name, source, parsed: parseMetal(source, `metal/${e.name}`) });
  }
  if (planted) {
    for (const p of PLANTED) {
      const source = await librarySource(metalDir, "metal", p.file, plant(raw.get(p.file)!, p));
      out.push({ name: p.name, source, parsed: parseMetal(source, `metal/${p.file} (planted: ${p.what})`) });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function run(cmd: string, args: string[], cwd?: string): Promise<{ ok: boolean; text: string }> {
  const p = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(p.stdout) + new TextDecoder().decode(p.stderr);
  return { ok: p.success, text };
}

/** Runs jobs two at a time (the machines here have two cores). */
async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  }));
  return results;
}

export interface BuildOptions {
  out: string;
  traces?: string[];
  generic?: boolean;
  planted?: boolean;
  simdCheck?: boolean;
  /** Also write PTX next to each cubin (the device can JIT it if its driver rejects the cubin). */
  ptx?: boolean;
  /** Another folder of .metal files, e.g. a kernel variant to time against metal/ on the same traces. */
  metalDir?: string;
  log?: (line: string) => void;
}

/** Builds the CUDA kernels; returns the kernels.json object. Throws with nvcc's output on failure. */
export async function buildCuda(o: BuildOptions): Promise<Record<string, unknown>> {
  const log = o.log ?? ((l: string) => console.error(l));
  const nvcc = await findNvcc();
  if (!nvcc) throw new Error("nvcc not found: pip install nvidia-cuda-nvcc (or set NVCC)");
  const srcDir = join(o.out, "cuda");
  await Deno.mkdir(srcDir, { recursive: true });
  await Deno.copyFile(join(ROOT, "tools/gpu/cuda/metal_cuda.h"), join(srcDir, "metal_cuda.h"));
  const all = await sources(o.planted === true, o.metalDir);

  // Specializations per file, from the traces (planted variants take their base file's).
  const byFile = new Map<string, Map<string, Specialization>>();
  const pipelines: TracePipeline[] = [];
  for (const t of o.traces ?? []) pipelines.push(...await tracePipelines(t));
  for (const p of pipelines) {
    const names = [p.file, ...PLANTED.filter((x) => x.file === p.file && o.planted).map((x) => x.name)];
    for (const name of names) {
      const m = byFile.get(name) ?? new Map<string, Specialization>();
      const id = specId(p.file, p.constants);
      m.set(id, { id, constants: p.constants });
      byFile.set(name, m);
    }
  }

  // Metal compiles every library with fast math unless the backend asks for safe math (MetalKernels'
  // safeMathFiles), and traces record which: a fast library's division and square root are compiled
  // approximate here too (no IEEE division subroutine per `/`), a safe one's exact.
  const fastFiles = new Set(pipelines.filter((p) => p.mathMode === "fast").map((p) => p.file));
  for (const p of pipelines) if (p.mathMode !== "fast") fastFiles.delete(p.file);

  const manifest: Record<string, unknown> = {};
  const jobs: (() => Promise<void>)[] = [];
  for (const s of all) {
    const stem = s.name.replace(/\.metal$/, "");
    const specs = [...(byFile.get(s.name)?.values() ?? [])];
    if (!o.generic && specs.length === 0) continue;
    await Deno.writeTextFile(
      join(srcDir, `${stem}.metal.cuh`),
      cudaView(s.source, s.parsed, `metal/${s.name}`),
    );
    const cu = emitCuda({
      fileName: s.name,
      viewInclude: `${stem}.metal.cuh`,
      parsed: s.parsed,
      specializations: specs,
      generic: o.generic,
    });
    await Deno.writeTextFile(join(srcDir, `${stem}.cu`), cu);
    const entry: Record<string, unknown> = {
      kernels: s.parsed.kernels.map((k) => k.name),
      // What replay.py needs to compile another specialization on the device (--compile).
      view: `${stem}.metal.cuh`,
      constants: s.parsed.constants.map((c) => ({ name: c.name, index: c.index, type: c.type })),
      wrappers: cudaWrappers(s.parsed, "@ID@", s.name),
      specializations: (o.generic ? [{ id: "generic", constants: [] }] : specs).map((x) => ({
        id: x.id,
        symbols: Object.fromEntries(s.parsed.kernels.map((k) => [k.name, cudaSymbol(x.id, k.name)])),
      })),
    };
    manifest[s.name] = entry;
    const variants: [string, string[]][] = [["", []]];
    if (o.simdCheck) variants.push([".simd", ["-DMC_CHECK_SIMD"]]);
    for (const [suffix, defs] of variants) {
      const target = o.generic ? `${stem}${suffix}.ptx` : `${stem}${suffix}.cubin`;
      entry[suffix === "" ? "cubin" : "simdCubin"] = target;
      jobs.push(async () => {
        const t0 = performance.now();
        const args = [
          "-std=c++17",
          "-arch=sm_90",
          "-O3",
          "-lineinfo",
          "-I",
          srcDir,
          ...defs,
          ...(fastFiles.has(PLANTED.find((x) => x.name === s.name)?.file ?? s.name)
            ? ["--prec-div=false", "--prec-sqrt=false"]
            : []),
          // Extra nvcc options for an experiment (e.g. "--prec-div=false"), split on spaces.
          ...(Deno.env.get("MC_NVCC_FLAGS")?.split(" ").filter((f) => f) ?? []),
          "-Xptxas",
          "-v",
          "-diag-suppress",
          "177,550",
          o.generic ? "-ptx" : "-cubin",
          "-o",
          join(o.out, target),
          join(srcDir, `${stem}.cu`),
        ];
        const r = await run(nvcc, args);
        if (!r.ok) throw new Error(`nvcc failed on ${s.name}${suffix}:\n${r.text}`);
        await Deno.writeTextFile(join(o.out, `${stem}${suffix}.ptxas.txt`), r.text);
        if (o.ptx && !o.generic) {
          const p = await run(nvcc, [
            ...args.slice(0, -4),
            "-ptx",
            "-o",
            join(o.out, `${stem}${suffix}.ptx`),
            join(srcDir, `${stem}.cu`),
          ]);
          if (!p.ok) throw new Error(`nvcc -ptx failed on ${s.name}${suffix}:\n${p.text}`);
        }
        log(
          `nvcc ${s.name}${suffix}: ${specs.length || 1} specialization(s), ${
            ((performance.now() - t0) / 1000).toFixed(1)
          } s`,
        );
      });
    }
  }
  await pool(jobs);
  const kernels = { nvcc, generic: o.generic === true, files: manifest };
  await Deno.writeTextFile(join(o.out, "kernels.json"), JSON.stringify(kernels, null, 1) + "\n");
  return kernels;
}

/** clang with real address spaces: device = 1, constant = 2, threadgroup = 3; double refused.
 * `metalDir`: another folder of .metal files (tests plant mistakes there). */
export async function strictCompile(log = (l: string) => console.error(l), metalDir?: string): Promise<void> {
  const clang = ["/opt/swift/usr/bin/clang++", "clang++"];
  let cxx: string | undefined;
  for (const c of clang) {
    try {
      if ((await run(c, ["--version"])).ok) {
        cxx = c;
        break;
      }
    } catch { /* next */ }
  }
  if (!cxx) throw new Error("clang++ not found (the Swift toolchain's clang is enough)");
  const dir = await Deno.makeTempDir({ prefix: "metal-strict-" });
  for (const s of await sources(false, metalDir)) {
    // MetalCompat's C++ view (the [[threadgroup(n)]] attribute renamed so the address-space macro does
    // not meet it), after the strict prelude.
    const tu = join(dir, s.name.replace(/\.metal$/, ".cpp"));
    const flags = s.parsed.constants.map((c) => `bool mc_fc_defined_${c.name} = true;`).join("\n");
    await Deno.writeTextFile(
      tu,
      `#include "strict_prelude.h"\n${flags}\n${cppView(s.source, s.parsed, `metal/${s.name}`)}`,
    );
    const r = await run(cxx, [
      "-std=c++17",
      "-fsyntax-only",
      "-Wno-unknown-attributes",
      "-Wno-vla-cxx-extension",
      "-Werror=double-promotion",
      "-I",
      join(ROOT, "tools/gpu/strict"),
      "-I",
      join(ROOT, "swift/Sources/MetalKernelsCPU/msl"),
      "-I",
      join(ROOT, "swift/Sources/CMetalCompat/include"),
      tu,
    ]);
    if (!r.ok) throw new Error(`strict compile of metal/${s.name} failed:\n${r.text}`);
    log(`clang (address spaces, no double): metal/${s.name} ok`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: ".gpu/build" },
      traces: { type: "string", multiple: true },
      generic: { type: "boolean", default: false },
      planted: { type: "boolean", default: false },
      "simd-check": { type: "boolean", default: false },
      strict: { type: "boolean", default: false },
      ptx: { type: "boolean", default: false },
      metal: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "deno run -A tools/gpu/build.ts [--out DIR] [--traces DIR]... [--planted] [--simd-check] [--ptx] [--metal DIR] | --generic | --strict",
    );
    Deno.exit(0);
  }
  try {
    if (values.strict) await strictCompile();
    else {
      await buildCuda({
        out: values.out!,
        traces: values.traces,
        generic: values.generic,
        planted: values.planted,
        simdCheck: values["simd-check"],
        ptx: values.ptx,
        metalDir: values.metal,
      });
    }
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(1);
  }
}
