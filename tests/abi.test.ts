// swift/include/mamba.h is the one statement of the C ABI. Swift's copy of its constants and keys is
// generated (tools/gen_abi.ts); everything else that restates it is checked here against the parsed
// header: the FFI table and its prototypes, the Swift @c exports, the status codes, ABI version and
// counter order of ffi/, the TypeScript types of options, info, config, tuning and counters, and the
// keys real engines report. A function or key added to the header is checked without editing this file.
import assert from "node:assert/strict";
import {
  counterName,
  counters,
  parseHeader,
  parseStructs,
  readHeader,
  statuses,
  statusName,
} from "../tools/abi/header.ts";
import {
  checkNames,
  checkStructMirror,
  checkStructs,
  checkSwiftExports,
  checkSymbols,
  type SwiftSource,
} from "../tools/abi/check.ts";
import { emitABI, expectedABI } from "../tools/gen_abi.ts";
import { staleFiles } from "../tools/generated.ts";
import { ABI_VERSION, GPU_COUNTERS, STRUCTS, symbols } from "../ffi/symbols.ts";
import { MambaError, MambaStatus } from "../ffi/errors.ts";
import { openLibrary } from "../ffi/library.ts";
import { nativeOptions } from "../src/options.ts";
import type { LoadOptions } from "../src/options.ts";
import { FIXTURES, load } from "./helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const header = await readHeader(ROOT);
const headerText = await Deno.readTextFile(`${ROOT}/swift/include/mamba.h`);
const symbolsSource = await Deno.readTextFile(`${ROOT}/ffi/symbols.ts`);

async function swiftSources(): Promise<SwiftSource[]> {
  const dir = `${ROOT}/swift/Sources/MambaMetal`;
  const out: SwiftSource[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".swift")) {
      out.push({
        path: `swift/Sources/MambaMetal/${e.name}`,
        text: await Deno.readTextFile(`${dir}/${e.name}`),
      });
    }
  }
  return out;
}

/** Property names of an interface, read by `deno doc` (TypeScript's own parser). */
async function interfaceKeys(file: string, name: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", "--private", `${ROOT}/${file}`],
    stdout: "piped",
  }).output();
  const doc = JSON.parse(new TextDecoder().decode(out.stdout));
  for (
    const module of Object.values(doc.nodes) as { symbols: { name: string; declarations: unknown[] }[] }[]
  ) {
    const symbol = module.symbols.find((s) => s.name === name);
    const decl = symbol?.declarations.find((d) => (d as { kind: string }).kind === "interface") as
      | { def: { properties: { name: string }[] } }
      | undefined;
    if (decl) return decl.def.properties.map((p) => p.name);
  }
  throw new Error(`${file}: no interface ${name}`);
}

Deno.test("Swift's ABI constants are generated from the current mamba.h (gen_abi.ts)", async () => {
  const stale = await staleFiles(ROOT, { expected: await expectedABI(ROOT) });
  assert.deepEqual(stale, [], "run `deno task gen:abi`");
});

Deno.test("ffi/symbols.ts has every mamba.h function, with the prototype's types", () => {
  assert.ok(header.functions.length >= 15, "the prototypes were read");
  assert.deepEqual(checkSymbols(header, symbols, symbolsSource), []);
});

Deno.test("the Swift @c exports are exactly mamba.h's functions, with its C types", async () => {
  assert.deepEqual(checkSwiftExports(header, await swiftSources()), []);
});

Deno.test("ffi/symbols.ts lays out mamba.h's structs as C does; CMambaCPU's copies have the same fields", () => {
  assert.ok(header.structs.some((s) => s.name === "mamba_sampling"), "the structs were read");
  assert.deepEqual(checkStructs(header, STRUCTS), []);
  // Native code that reads an ABI struct under its own name (Swift passes one as the other).
  const mirrors: Record<string, [file: string, struct: string]> = {
    mamba_sampling: ["swift/Sources/CMambaCPU/include/mcpu_sample.h", "mcpu_sampling"],
  };
  for (const [abi, [file, name]] of Object.entries(mirrors)) {
    const mirror = parseStructs(Deno.readTextFileSync(`${ROOT}/${file}`), file, name)[0];
    assert.ok(mirror, `${file}: no struct ${name}`);
    assert.deepEqual(checkStructMirror(header.structs.find((s) => s.name === abi)!, mirror), []);
  }
});

Deno.test("the checks catch a header that drifted", async () => {
  const drifted = parseHeader(
    headerText
      .replace(
        "int32_t mamba_reset(mamba_engine *engine, int32_t seq);",
        "int32_t mamba_reset(mamba_engine *engine, int64_t seq);",
      )
      .replace(
        "#ifdef __cplusplus\n}",
        "int32_t mamba_new_call(mamba_engine *engine, float *out);\n#ifdef __cplusplus\n}",
      ),
  );
  const problems = checkSymbols(drifted, symbols, symbolsSource);
  assert.ok(
    problems.some((p) => p.includes("mamba_reset: parameter seq is int64_t in mamba.h")),
    problems.join("\n"),
  );
  assert.ok(problems.includes("mamba_new_call is in mamba.h but not in ffi/symbols.ts"), problems.join("\n"));
  const swift = checkSwiftExports(drifted, await swiftSources());
  assert.ok(
    swift.some((p) => p.startsWith("mamba_reset (swift/Sources/MambaMetal/CABI.swift")),
    swift.join("\n"),
  );
  assert.ok(
    swift.includes("mamba_new_call is in mamba.h but no Swift function is exported as @c(mamba_new_call)"),
  );
  const broken = { ...symbols, mamba_step: { parameters: ["pointer", "buffer", "i64"], result: "i32" } };
  assert.ok(
    checkSymbols(header, broken, symbolsSource).some((p) => p.includes("parameter n_tokens is int32_t")),
  );
  assert.deepEqual(checkNames("x", ["a", "b"], ["b", "a"], true), ["x: order is b, a; mamba.h says a, b"]);
  // Structs: natural alignment, and a field that moved is named.
  assert.deepEqual(
    parseStructs("typedef struct t { int32_t a; double b; uint8_t c[3]; } t;")[0],
    {
      name: "t",
      fields: [
        { type: "int32_t", name: "a", count: 1, offset: 0 },
        { type: "double", name: "b", count: 1, offset: 8 },
        { type: "uint8_t", name: "c", count: 3, offset: 16 },
      ],
      size: 24,
    },
  );
  const moved = parseHeader(headerText.replace("    int32_t top_k; ", "    int64_t top_k; "));
  const structProblems = checkStructs(moved, STRUCTS);
  assert.ok(
    structProblems.includes("struct mamba_sampling: size 56 in symbols.ts, 64 in mamba.h"),
    structProblems.join("\n"),
  );
  assert.ok(structProblems.includes("struct mamba_sampling: vocab is at 36 in symbols.ts, 40 in mamba.h"));
  assert.equal(
    checkStructMirror(moved.structs[0], header.structs[0]).length,
    1,
    "a mirror with another field type is reported",
  );
  // A new kind of documented key becomes a Swift enum of its own.
  const widget = parseHeader(
    headerText.replace(" * @option backend", " * @widget bits  4 or 8\n * @option backend"),
  );
  assert.ok(
    emitABI(widget).includes("enum WidgetKey: String, CaseIterable {\n    /// 4 or 8\n    case bits\n}"),
  );
});

Deno.test("ffi/ restates the ABI version, the status codes and the counter order of mamba.h", () => {
  assert.equal(ABI_VERSION, header.abiVersion);
  for (const e of statuses(header)) {
    assert.equal(MambaStatus[statusName(e) as keyof typeof MambaStatus], e.value, e.name);
  }
  const native = new Set(statuses(header).map(statusName));
  for (const [name, value] of Object.entries(MambaStatus)) {
    if (native.has(name)) continue;
    // TypeScript's own codes (LIBRARY) must not collide with a native one.
    assert.ok(!statuses(header).some((e) => e.value === value), `${name} = ${value} collides with mamba.h`);
  }
  assert.deepEqual(
    checkNames("GPU_COUNTERS", counters(header).map(counterName), [...GPU_COUNTERS], true),
    [],
  );
});

Deno.test("the TypeScript types have mamba.h's keys: counters, config, tuning, info, options", async () => {
  const keys = (list: { key: string }[]) => list.map((k) => k.key);
  const problems = [
    ...checkNames(
      "GpuCounters",
      counters(header).map(counterName),
      await interfaceKeys("src/engine.ts", "GpuCounters"),
    ),
    ...checkNames("ModelConfig", keys(header.config), await interfaceKeys("src/engine.ts", "ModelConfig")),
    ...checkNames(
      "MetalTuningParams",
      keys(header.tuning),
      await interfaceKeys("src/options.ts", "MetalTuningParams"),
    ),
  ];
  // EngineInfo types the keys the engine reads; each must be one mamba.h documents.
  for (const k of await interfaceKeys("src/engine.ts", "EngineInfo")) {
    if (!keys(header.info).includes(k)) problems.push(`EngineInfo: "${k}" is not an @info key of mamba.h`);
  }
  // Every LoadOptions key either reaches the engine as an @option or is TypeScript's own.
  const all = Object.fromEntries(
    (await interfaceKeys("src/options.ts", "LoadOptions")).map((k) => [k, true]),
  );
  const sent = Object.keys(nativeOptions(all as LoadOptions, { table: {}, source: "t.json" }));
  problems.push(...checkNames("options sent to mamba_engine_create", keys(header.options), sent));
  assert.deepEqual(problems, []);
});

Deno.test("engines report exactly mamba.h's info, config and tuning keys", () => {
  const keys = (list: { key: string; backend?: string }[], backend?: string) =>
    list.filter((k) => !k.backend || k.backend === backend).map((k) => k.key).sort();
  for (const backend of ["cpu", "metal"] as const) {
    using engine = load(FIXTURES + "tiny-g2", { backend });
    assert.deepEqual(Object.keys(engine.info).sort(), keys(header.info, backend), backend);
    assert.deepEqual(
      Object.keys(engine.info.config as object).sort(),
      keys(header.config),
      `${backend} config`,
    );
    if (backend === "metal") {
      assert.deepEqual(Object.keys(engine.info.tuning as object).sort(), keys(header.tuning));
    }
    assert.equal(engine.info.abiVersion, header.abiVersion);
  }
});

Deno.test("a library of the previous ABI is refused by the version check, not by dlopen", async () => {
  // What an old build of the library exports: the identity calls, without this ABI's new functions.
  const dir = await Deno.makeTempDir({ prefix: "mamba-old-abi-" });
  try {
    const so = `${dir}/libold.so`;
    await Deno.writeTextFile(
      `${dir}/old.c`,
      `#include <stdint.h>
       uint32_t mamba_abi_version(void) { return ${header.abiVersion - 1}; }
       const char *mamba_version(void) { return "0.1.0"; }
       const char *mamba_last_error(void) { return ""; }
       int32_t mamba_step(void *e, const int32_t *t, int32_t n) { (void)e; (void)t; (void)n; return 0; }`,
    );
    const cc = await new Deno.Command("cc", { args: ["-shared", "-fPIC", "-o", so, `${dir}/old.c`] })
      .output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    assert.throws(
      () => openLibrary(so),
      (e) =>
        e instanceof MambaError && e.code === MambaStatus.LIBRARY &&
        e.message.includes(
          `has C ABI version ${header.abiVersion - 1}, these bindings need ${header.abiVersion}`,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
