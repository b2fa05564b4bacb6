// Checks the restatements of swift/include/mamba.h that are not generated from it: the Deno FFI table
// (ffi/symbols.ts) with its struct layouts, and the Swift functions exported with @c. Each check returns the problems it found,
// one sentence each, so tests/abi.test.ts can show them all and can test the checks themselves on a
// broken header. A C function added to the header is checked without touching this file.

import { type CFunction, type CStruct, type Header, normaliseType } from "./header.ts";

/** A `Deno.dlopen` symbol definition, as far as the checks read it. */
export interface FfiSymbol {
  parameters: readonly string[];
  result: string;
}

/** Deno FFI type of each C scalar type. */
const FFI_SCALARS: Record<string, string> = {
  void: "void",
  int8_t: "i8",
  uint8_t: "u8",
  int16_t: "i16",
  uint16_t: "u16",
  int32_t: "i32",
  uint32_t: "u32",
  int64_t: "i64",
  uint64_t: "u64",
  size_t: "usize",
  float: "f32",
  double: "f64",
};

/** The FFI types that pass a C type: any pointer goes as "pointer", or as "buffer" when it is an argument. */
function ffiTypes(cType: string, result: boolean): string[] {
  if (cType.endsWith("*")) return result ? ["pointer"] : ["pointer", "buffer"];
  const t = FFI_SCALARS[cType.replace(/^const /, "")];
  return t ? [t] : [];
}

/** `symbols` against the header's prototypes; `source` is symbols.ts, whose comments restate them. */
export function checkSymbols(h: Header, symbols: Record<string, FfiSymbol>, source: string): string[] {
  const problems: string[] = [];
  const declared = new Map(h.functions.map((f) => [f.name, f]));
  for (const f of h.functions) {
    const s = symbols[f.name];
    if (!s) {
      problems.push(`${f.name} is in mamba.h but not in ffi/symbols.ts`);
      continue;
    }
    if (s.parameters.length !== f.params.length) {
      problems.push(
        `${f.name}: symbols.ts has ${s.parameters.length} parameters, mamba.h ${f.params.length}`,
      );
    }
    f.params.forEach((p, i) => {
      const allowed = ffiTypes(p.type, false);
      if (i < s.parameters.length && !allowed.includes(s.parameters[i])) {
        problems.push(
          `${f.name}: parameter ${p.name} is ${p.type} in mamba.h, "${s.parameters[i]}" in symbols.ts ` +
            `(expected ${allowed.map((a) => `"${a}"`).join(" or ") || "a type the FFI can pass"})`,
        );
      }
    });
    const results = ffiTypes(f.result, true);
    if (!results.includes(s.result)) {
      problems.push(`${f.name}: returns ${f.result} in mamba.h, "${s.result}" in symbols.ts`);
    }
    const comment = new RegExp(`//\\s*(.*)\\n\\s*${f.name}:`).exec(source)?.[1].trim();
    if (comment !== f.prototype) {
      problems.push(
        `${f.name}: the comment in symbols.ts should be the prototype "${f.prototype}", is "${comment}"`,
      );
    }
  }
  for (const name of Object.keys(symbols)) {
    if (!declared.has(name)) problems.push(`${name} is in ffi/symbols.ts but not in mamba.h`);
  }
  return problems;
}

/** A struct layout as ffi/symbols.ts states it: the size and each field's offset. */
export interface StatedLayout {
  size: number;
  offsets: Record<string, number>;
}

/** Every struct of the header has an entry in `stated` (ffi/symbols.ts's STRUCTS) with its size and offsets. */
export function checkStructs(h: Header, stated: Record<string, StatedLayout>): string[] {
  const problems: string[] = [];
  for (const s of h.structs) {
    const t = stated[s.name];
    if (!t) {
      problems.push(`struct ${s.name} is in mamba.h but not in ffi/symbols.ts' STRUCTS`);
      continue;
    }
    if (t.size !== s.size) {
      problems.push(`struct ${s.name}: size ${t.size} in symbols.ts, ${s.size} in mamba.h`);
    }
    const want = Object.fromEntries(s.fields.map((f) => [f.name, f.offset]));
    for (const [name, offset] of Object.entries(want)) {
      if (t.offsets[name] !== offset) {
        problems.push(
          `struct ${s.name}: ${name} is at ${t.offsets[name]} in symbols.ts, ${offset} in mamba.h`,
        );
      }
    }
    for (const name of Object.keys(t.offsets)) {
      if (!(name in want)) problems.push(`struct ${s.name}: symbols.ts has a field ${name} mamba.h lacks`);
    }
  }
  for (const name of Object.keys(stated)) {
    if (!h.structs.some((s) => s.name === name)) {
      problems.push(`struct ${name} is in symbols.ts but not in mamba.h`);
    }
  }
  return problems;
}

/** `mirror` (a struct of another C header that native code reads an ABI struct as) has `abi`'s fields:
 * the same names, types, counts and so offsets, and the same size. */
export function checkStructMirror(abi: CStruct, mirror: CStruct): string[] {
  const show = (s: CStruct) =>
    s.fields.map((f) => `${f.type} ${f.name}${f.count > 1 ? `[${f.count}]` : ""} @${f.offset}`).join(", ") +
    `; ${s.size} bytes`;
  return show(abi) === show(mirror)
    ? []
    : [`${mirror.name} is {${show(mirror)}}; mamba.h's ${abi.name} is {${show(abi)}}`];
}

/** The C type a Swift @c parameter or result type stands for (undefined: not a C type). A struct of the
 * header keeps its C name in Swift (a typealias where Swift imports it under another name). */
function swiftToC(swift: string, opaque: string[], structs: string[] = []): string | undefined {
  const t = swift.trim().replace(/\?$/, "");
  const scalars: Record<string, string> = {
    Void: "void",
    Int8: "int8_t",
    UInt8: "uint8_t",
    Int16: "int16_t",
    UInt16: "uint16_t",
    Int32: "int32_t",
    UInt32: "uint32_t",
    Int64: "int64_t",
    UInt64: "uint64_t",
    Float: "float",
    Double: "double",
    CChar: "char",
  };
  if (scalars[t]) return scalars[t];
  if (structs.includes(t)) return t;
  // Swift imports a pointer to an incomplete struct as OpaquePointer.
  if (t === "OpaquePointer") return opaque.length === 1 ? `${opaque[0]} *` : "opaque *";
  const m = /^Unsafe(Mutable)?Pointer<(.+)>$/.exec(t);
  if (!m) return undefined;
  const pointee = swiftToC(m[2], opaque, structs);
  return pointee === undefined ? undefined : normaliseType(`${m[1] ? "" : "const "}${pointee} *`);
}

export interface SwiftSource {
  path: string;
  text: string;
}

/** The C functions the Swift sources export with `@c(name)` / `@_cdecl("name")`, with their signatures. */
export function swiftExports(
  sources: SwiftSource[],
  h: Header,
): Map<string, { where: string; fn: CFunction }> {
  const out = new Map<string, { where: string; fn: CFunction }>();
  const structs = h.structs.map((s) => s.name);
  const pattern =
    /@(?:c\((\w+)\)|_cdecl\("(\w+)"\))[\s\S]*?public func \w+\(([^)]*)\)\s*(?:->\s*([^{]+?))?\s*\{/g;
  for (const { path, text } of sources) {
    for (const m of text.matchAll(pattern)) {
      const name = m[1] ?? m[2];
      if (out.has(name)) continue; // the @c and @_cdecl spellings of the same function
      const params = m[3].split(",").map((p) => p.trim()).filter(Boolean).map((p) => {
        const [label, type] = p.split(":").map((x) => x.trim());
        return {
          name: label.split(/\s+/).pop()!,
          type: swiftToC(type, h.opaqueTypes, structs) ?? `?${type}`,
        };
      });
      const result = m[4] ? swiftToC(m[4], h.opaqueTypes, structs) ?? `?${m[4].trim()}` : "void";
      const line = text.slice(0, m.index).split("\n").length;
      out.set(name, { where: `${path}:${line}`, fn: { name, result, params, prototype: "" } });
    }
  }
  return out;
}

/** Every header function exported by Swift with the same C types, and nothing else exported. */
export function checkSwiftExports(h: Header, sources: SwiftSource[]): string[] {
  const problems: string[] = [];
  const exported = swiftExports(sources, h);
  for (const f of h.functions) {
    const e = exported.get(f.name);
    if (!e) {
      problems.push(`${f.name} is in mamba.h but no Swift function is exported as @c(${f.name})`);
      continue;
    }
    const want = f.params.map((p) => p.type), got = e.fn.params.map((p) => p.type);
    if (want.join(", ") !== got.join(", ")) {
      problems.push(
        `${f.name} (${e.where}): takes (${got.join(", ")}) in Swift, (${want.join(", ")}) in mamba.h`,
      );
    }
    if (e.fn.result !== f.result) {
      problems.push(`${f.name} (${e.where}): returns ${e.fn.result} in Swift, ${f.result} in mamba.h`);
    }
  }
  for (const [name, e] of exported) {
    if (!h.functions.some((f) => f.name === name)) {
      problems.push(`${name} (${e.where}) is exported but not in mamba.h`);
    }
  }
  return problems;
}

/** The same names, in the same order when `ordered`. */
export function checkNames(what: string, header: string[], other: string[], ordered = false): string[] {
  const missing = header.filter((k) => !other.includes(k)), extra = other.filter((k) => !header.includes(k));
  const problems = [
    ...missing.map((k) => `${what}: "${k}" is in mamba.h but missing`),
    ...extra.map((k) => `${what}: "${k}" is not in mamba.h`),
  ];
  if (ordered && problems.length === 0 && header.join() !== other.join()) {
    problems.push(`${what}: order is ${other.join(", ")}; mamba.h says ${header.join(", ")}`);
  }
  return problems;
}
