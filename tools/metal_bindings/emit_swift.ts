// Writes the Swift file that carries the .metal sources' text: on macOS the backend compiles exactly
// this text with device.makeLibrary(source:options:); on Linux MetalCompat finds the C++ compiled from
// the same text through its hash.

import { BANNER } from "./emit_cpp.ts";

/** A Swift raw multi-line string literal whose value is exactly `text`. */
export function swiftLiteral(text: string): string {
  // More #s than any run of # in the text, so neither `"""#...` nor `\#...` can occur inside.
  const runs = text.match(/#+/g) ?? [];
  const hashes = "#".repeat(1 + Math.max(0, ...runs.map((r) => r.length)));
  // The newline before the closing delimiter is not part of the value.
  return `${hashes}"""\n${text.replace(/\r\n/g, "\n")}\n"""${hashes}`;
}

export interface SwiftInputs {
  enumName: string;
  description: string; // what the sources are, for the doc comment
  files: { name: string; source: string }[];
}

export function emitSwift(x: SwiftInputs): string {
  const out: string[] = [];
  out.push(`// ${BANNER}`);
  out.push(`/// ${x.description}`);
  out.push(`enum ${x.enumName} {`);
  out.push("    /// Each file's name and source text, sorted by name.");
  if (x.files.length === 0) {
    out.push("    static let files: [(name: String, source: String)] = []");
  } else {
    out.push("    static let files: [(name: String, source: String)] = [");
    for (const f of x.files) {
      out.push(`        (name: ${JSON.stringify(f.name)}, source: ${swiftLiteral(f.source)}),`);
    }
    out.push("    ]");
  }
  out.push("");
  out.push(
    '    /// The source text of the file with this name (e.g. "ssm_scan.metal"), nil when there is none.',
  );
  out.push("    static func source(named name: String) -> String? {");
  out.push("        files.first { $0.name == name }?.source");
  out.push("    }");
  out.push("}");
  return out.join("\n") + "\n";
}
