// Generates MetalCompat's bindings from the .metal kernel sources.
//
//   deno run -A tools/gen_metal_bindings.ts          write the generated files
//   deno run -A tools/gen_metal_bindings.ts --check  write nothing; list stale files and exit 1 if any
//   (--root DIR runs on another checkout; tests use it)
//
// For every .metal file of a source set (with the headers it includes from its directory inlined,
// metal_bindings/include.ts) it writes, next to the C++ target that compiles them, the
// file's C++ view (<stem>.metal.h) and <stem>.cpp (trampolines and the kernel table, see
// metal_bindings/emit_cpp.ts), one Swift file with every source's text (metal_bindings/emit_swift.ts)
// and, for the engine's kernels, the host's named bindings (metal_bindings/emit_bindings.ts). Kernel
// parameter bindings come from the kernels' own signatures (metal_bindings/parse.ts); nothing is bound
// by hand.

import { type BindingFile, emitBindings } from "./metal_bindings/emit_bindings.ts";
import { emitCpp, emitView } from "./metal_bindings/emit_cpp.ts";
import { emitSwift } from "./metal_bindings/emit_swift.ts";
import { sourceHash } from "./metal_bindings/hash.ts";
import { parseMetal } from "./metal_bindings/parse.ts";
import { cppView } from "./metal_bindings/transform.ts";
import { librarySource } from "./metal_bindings/include.ts";
import { runGenerator, staleFiles, writeFiles } from "./generated.ts";

export interface SourceSet {
  metalDir: string; // repo-relative
  cppDir: string; // generated C++ goes here (only *.cpp and *.metal.h in it are the generator's)
  bindHeader: string; // mc_bind.h as included from cppDir
  swiftFile: string;
  enumName: string;
  description: string;
  /** Where the host's named bindings go (kernels the engine dispatches), and their namespace. */
  bindings?: { swiftFile: string; namespace: string };
}

export const SOURCE_SETS: SourceSet[] = [
  {
    metalDir: "metal",
    cppDir: "swift/Sources/MetalKernelsCPU/generated",
    bindHeader: "../mc_bind.h",
    swiftFile: "swift/Sources/MambaMetal/Generated/MetalSources.swift",
    enumName: "MetalSources",
    description:
      "The kernel sources in metal/: compiled by Metal on macOS, found precompiled by MetalCompat on Linux.",
    bindings: { swiftFile: "swift/Sources/MambaMetal/Generated/KernelBindings.swift", namespace: "Kernel" },
  },
  {
    metalDir: "swift/Tests/MetalCompatTests/Kernels",
    cppDir: "swift/Tests/MetalCompatTestKernels/generated",
    bindHeader: "../../../Sources/MetalKernelsCPU/mc_bind.h",
    swiftFile: "swift/Tests/MetalCompatTests/Generated/TestKernelSources.swift",
    enumName: "TestKernelSources",
    description: "The MetalCompat test kernels (swift/Tests/MetalCompatTests/Kernels).",
  },
];

async function listDir(dir: string): Promise<string[]> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
    return names.sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Every file the generator owns, with the content it should have (repo-relative path → text). */
export async function expectedOutputs(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const set of SOURCE_SETS) {
    const files: { name: string; source: string }[] = [];
    const bound: BindingFile[] = [];
    for (const name of (await listDir(`${root}/${set.metalDir}`)).filter((n) => n.endsWith(".metal"))) {
      const text = await Deno.readTextFile(`${root}/${set.metalDir}/${name}`);
      const source = await librarySource(`${root}/${set.metalDir}`, set.metalDir, name, text);
      const displayPath = `${set.metalDir}/${name}`;
      const parsed = parseMetal(source, displayPath);
      const stem = name.slice(0, -".metal".length);
      out.set(`${set.cppDir}/${name}.h`, emitView(cppView(source, parsed, displayPath), displayPath));
      out.set(
        `${set.cppDir}/${stem}.cpp`,
        emitCpp({
          stem,
          fileName: name,
          displayPath,
          hash: sourceHash(source),
          parsed,
          bindHeader: set.bindHeader,
        }),
      );
      files.push({ name, source });
      bound.push({ stem, displayPath, parsed });
    }
    out.set(set.swiftFile, emitSwift({ enumName: set.enumName, description: set.description, files }));
    if (set.bindings) out.set(set.bindings.swiftFile, emitBindings(set.bindings.namespace, bound));
  }
  return out;
}

/** Generated files on disk that no longer have a source. */
async function strayOutputs(root: string, expected: Map<string, string>): Promise<string[]> {
  const stray: string[] = [];
  for (const set of SOURCE_SETS) {
    for (const name of await listDir(`${root}/${set.cppDir}`)) {
      const path = `${set.cppDir}/${name}`;
      if ((name.endsWith(".cpp") || name.endsWith(".metal.h")) && !expected.has(path)) stray.push(path);
    }
  }
  return stray;
}

const GENERATOR = {
  expected: expectedOutputs,
  stray: strayOutputs,
  task: "gen:metal",
  what: "MetalCompat bindings",
};

async function outputs(root: string) {
  const expected = await expectedOutputs(root);
  return { expected, stray: await strayOutputs(root, expected) };
}

/** Files that differ from what the generator would write (missing, changed or stray). */
export async function staleOutputs(root: string): Promise<string[]> {
  return staleFiles(root, await outputs(root));
}

/** Writes every generated file that changed and removes stray ones; returns the paths touched. */
export async function writeOutputs(root: string): Promise<string[]> {
  return writeFiles(root, await outputs(root));
}

if (import.meta.main) Deno.exit(await runGenerator(Deno.args, GENERATOR));
