// Generates Swift's copy of the C ABI's constants and keys from swift/include/mamba.h.
//
//   deno run -A tools/gen_abi.ts          write swift/Sources/MambaMetal/Generated/ABI.swift
//   deno run -A tools/gen_abi.ts --check  write nothing; exit 1 if it is stale
//
// The Swift side then uses enums it cannot get wrong: the status codes, the GPU counters in output order,
// and the keys of every JSON object of the ABI. A key documented in the header but not handled fails the
// Swift build (the option and tuning parsers switch exhaustively over them); one used but not documented
// is not a case at all. tests/abi.test.ts checks the TypeScript side against the same header.

import {
  camel,
  counterName,
  counters,
  type Header,
  type JsonKey,
  readHeader,
  statuses,
} from "./abi/header.ts";
import { runGenerator } from "./generated.ts";

export const ABI_SWIFT = "swift/Sources/MambaMetal/Generated/ABI.swift";

const SWIFT_KEYWORDS = new Set([
  "internal",
  "default",
  "case",
  "class",
  "struct",
  "enum",
  "func",
  "let",
  "var",
]);

function caseName(name: string): string {
  return SWIFT_KEYWORDS.has(name) ? `\`${name}\`` : name;
}

function keyEnum(name: string, what: string, keys: JsonKey[]): string[] {
  const out = [`/// ${what}`, `enum ${name}: String, CaseIterable {`];
  for (const k of keys) {
    out.push(`    /// ${k.backend ? `(${k.backend} only) ` : ""}${k.doc}`);
    out.push(`    case ${caseName(k.key)}`);
  }
  out.push("}");
  return out;
}

export function emitABI(h: Header): string {
  const out = [
    "// GENERATED from swift/include/mamba.h by tools/gen_abi.ts: do not edit; rerun `deno task gen:abi`.",
    "",
    "/// MAMBA_ABI_VERSION: the C ABI this library implements.",
    `let mambaABIVersion: UInt32 = ${h.abiVersion}`,
    "",
    "/// enum mamba_status: what every call that can fail returns.",
    "enum MambaStatus: Int32, CaseIterable {",
  ];
  for (const e of statuses(h)) {
    if (e.doc) out.push(`    /// ${e.doc}`);
    out.push(`    case ${caseName(camel(e.name.replace(/^MAMBA_(ERR_)?/, "")))} = ${e.value}`);
  }
  out.push("}", "");
  out.push("/// enum mamba_gpu_counter: mamba_gpu_counters' output, in this order.");
  out.push("enum GPUCounter: Int, CaseIterable {");
  for (const e of counters(h)) {
    if (e.doc) out.push(`    /// ${e.doc}`);
    out.push(`    case ${caseName(counterName(e))} = ${e.value}`);
  }
  out.push("}");
  // One enum per kind of key: @option → OptionKey, @info → InfoKey; a new @quantize would be QuantizeKey.
  const what: Record<string, string> = {
    option: "The keys of mamba_engine_create's options JSON (@option).",
    tuning: 'The keys of the "tuning" option and of the info\'s "tuning" (@tuning).',
    info: "The keys of mamba_engine_info's JSON (@info).",
    config: 'The keys of the info\'s "config" object (@config).',
  };
  for (const [kind, keys] of h.keys) {
    const name = `${kind[0].toUpperCase()}${kind.slice(1)}Key`;
    out.push("", ...keyEnum(name, what[kind] ?? `The keys documented as @${kind} in mamba.h.`, keys));
  }
  return out.join("\n") + "\n";
}

export async function expectedABI(root: string): Promise<Map<string, string>> {
  return new Map([[ABI_SWIFT, emitABI(await readHeader(root))]]);
}

if (import.meta.main) {
  Deno.exit(
    await runGenerator(Deno.args, { expected: expectedABI, task: "gen:abi", what: "C ABI constants" }),
  );
}
