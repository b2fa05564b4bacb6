// Writes the host side of the kernels' binding contract: one Swift file in which every .metal file's
// function constants are a struct with one stored property per constant (named as in the kernel), and
// every kernel is a type whose `Arguments` has one property per [[buffer(n)]] and [[threadgroup(n)]]
// parameter. The host builds these with memberwise initialisers, so a constant or parameter added,
// renamed or retyped in a .metal file stops the Swift build until the host follows; an input switched
// off by [[function_constant(c)]] is an Optional that the host passes as nil. Nothing is numbered by hand.

import { BANNER } from "./emit_cpp.ts";
import type { FunctionConstant, Kernel, KernelParam, ParsedMetal } from "./parse.ts";

/** Swift type and FunctionConstant case of each function-constant type the bindings support. */
const SWIFT_CONSTANT_TYPES: Record<string, { swift: string; wrap: (v: string) => string }> = {
  int: { swift: "Int", wrap: (v) => `.int(${v})` },
  uint: { swift: "Int", wrap: (v) => `.uint(${v})` },
  bool: { swift: "Bool", wrap: (v) => `.bool(${v})` },
  float: { swift: "Float", wrap: (v) => `.float(${v})` },
};

const SWIFT_KEYWORDS = new Set(
  ("associatedtype class deinit enum extension fileprivate func import init inout internal let open operator " +
    "private precedencegroup protocol public rethrows static struct subscript typealias var break case catch " +
    "continue default defer do else fallthrough for guard if in repeat return throw switch where while Any as " +
    "false is nil self Self super true try").split(" "),
);

/** An identifier usable as a Swift declaration name. */
function swiftName(name: string): string {
  return SWIFT_KEYWORDS.has(name) ? `\`${name}\`` : name;
}

/** snake_case or lower → UpperCamelCase: `ssm_decode_block` → `SsmDecodeBlock`. */
export function typeName(name: string): string {
  return name.split(/[_\W]+/).filter(Boolean).map((w) => w[0].toUpperCase() + w.slice(1)).join("");
}

export interface BindingFile {
  stem: string;
  displayPath: string;
  parsed: ParsedMetal;
}

/** `enum name: Int { case a = 0, b = 1 }`, its cases wrapped to lines of at most 110 characters. */
function intEnum(indent: string, name: string, cases: string[]): string[] {
  const one = `${indent}enum ${name}: Int { case ${cases.join(", ")} }`;
  if (one.length <= 110) return [one];
  const out = [`${indent}enum ${name}: Int {`];
  let line = "";
  for (const c of cases) {
    if (line && `${indent}    case ${line}, ${c}`.length > 110) {
      out.push(`${indent}    case ${line}`);
      line = c;
    } else line = line ? `${line}, ${c}` : c;
  }
  out.push(`${indent}    case ${line}`, `${indent}}`);
  return out;
}

function docLines(indent: string, text: string | undefined): string[] {
  return text ? [`${indent}/// ${text}`] : [];
}

function constantsStruct(f: BindingFile, name: string): string[] {
  const { constants, optionalConstants } = f.parsed;
  const out = [`    /// Function constants of ${f.displayPath}, named as the kernels name them.`];
  out.push(`    struct ${name}: FunctionConstants {`);
  const values: string[] = [];
  for (const c of constants) {
    const t = swiftConstantType(c, f.displayPath);
    const optional = optionalConstants.includes(c.name);
    out.push(...docLines("        ", c.comment));
    out.push(`        let ${swiftName(c.name)}: ${t.swift}${optional ? "?" : ""}`);
    const v = `self.${swiftName(c.name)}`;
    values.push(
      optional
        ? `${v}.map { (ID.${swiftName(c.name)}.rawValue, ${t.wrap("$0")}) }`
        : `(ID.${swiftName(c.name)}.rawValue, ${t.wrap(v)})`,
    );
  }
  out.push("");
  if (constants.length) {
    out.push("        /// [[function_constant(id)]] of each constant.");
    out.push(...intEnum("        ", "ID", constants.map((c) => `${swiftName(c.name)} = ${c.index}`)));
    out.push("");
  }
  out.push("        var values: [(id: Int, value: FunctionConstant)] {");
  if (values.length === 0) out.push("            []");
  else if (constants.some((c) => optionalConstants.includes(c.name))) {
    out.push("            let all: [(id: Int, value: FunctionConstant)?] = [");
    for (const v of values) out.push(`                ${v},`);
    out.push("            ]");
    out.push("            return all.compactMap { $0 }");
  } else {
    out.push("            [");
    for (const v of values) out.push(`                ${v},`);
    out.push("            ]");
  }
  out.push("        }");
  out.push("    }");
  return out;
}

function swiftConstantType(c: FunctionConstant, file: string) {
  const type = c.type.replace(/\bconst\b/g, "").trim().replace(/^unsigned int$/, "uint");
  const t = SWIFT_CONSTANT_TYPES[type];
  if (!t) {
    throw new Error(
      `${file}:${c.line}: function constant '${c.name}' has type '${c.type}', which the Swift bindings do not ` +
        "support yet (add it to SWIFT_CONSTANT_TYPES in tools/metal_bindings/emit_bindings.ts and to " +
        "FunctionConstant in swift/Sources/MambaMetal/MetalKernels.swift)",
    );
  }
  return t;
}

type Bound = KernelParam & { binding: { kind: "buffer" | "threadgroup"; index: number; condition?: string } };

function bound(k: Kernel): Bound[] {
  return k.params.filter((p): p is Bound => p.binding.kind !== "position");
}

function indexEnum(name: string, what: string, params: Bound[]): string[] {
  if (params.length === 0) return [];
  const cases = params.map((p) => `${swiftName(p.name)} = ${p.binding.index}`);
  return [`        /// [[${what}(n)]] of each parameter.`, ...intEnum("        ", name, cases)];
}

function kernelType(f: BindingFile, k: Kernel, name: string, constants: string): string[] {
  const params = bound(k);
  const buffers = params.filter((p) => p.binding.kind === "buffer");
  const groups = params.filter((p) => p.binding.kind === "threadgroup");
  const out = [`    /// \`kernel ${k.name}\` of ${f.displayPath}: what it is bound to, by parameter name.`];
  out.push(`    enum ${name}: KernelBinding {`);
  out.push(`        typealias Constants = ${constants}`);
  out.push(`        static let file = ${JSON.stringify(`${f.stem}.metal`)}`);
  out.push(`        static let function = ${JSON.stringify(k.name)}`);
  out.push(...indexEnum("Buffer", "buffer", buffers));
  out.push(...indexEnum("Threadgroup", "threadgroup", groups));
  out.push("");
  out.push(
    "        /// Each buffer parameter's buffer and offset, and each threadgroup parameter's length in bytes.",
  );
  out.push("        struct Arguments: KernelArguments {");
  for (const p of params) {
    const what = `\`${p.declaration}\`${p.comment ? `: ${p.comment}` : ""}`;
    if (p.binding.kind === "buffer") {
      const optional = p.binding.condition !== undefined;
      out.push(`            /// ${what}${optional ? ` (only when ${p.binding.condition}; else nil)` : ""}`);
      out.push(`            let ${swiftName(p.name)}: KernelBuffer${optional ? "?" : ""}`);
    } else {
      out.push(`            /// ${what}: bytes of threadgroup memory`);
      out.push(`            let ${swiftName(p.name)}: Int`);
    }
  }
  out.push("");
  out.push("            func bind(to sink: any MetalCommandSink) {");
  for (const p of params) {
    const v = `self.${swiftName(p.name)}`;
    if (p.binding.kind === "threadgroup") {
      out.push(
        `                sink.setThreadgroupMemory(${v}, index: Threadgroup.${swiftName(p.name)}.rawValue)`,
      );
    } else if (p.binding.condition !== undefined) {
      out.push(
        `                if let b = ${v} { sink.setBuffer(b.buffer, offset: b.offset, index: Buffer.${
          swiftName(p.name)
        }.rawValue) }`,
      );
    } else {
      out.push(
        `                sink.setBuffer(${v}.buffer, offset: ${v}.offset, index: Buffer.${
          swiftName(p.name)
        }.rawValue)`,
      );
    }
  }
  out.push("            }");
  out.push("        }");
  out.push("    }");
  return out;
}

/** The Swift bindings of every kernel in `files`, as members of `namespace`. */
export function emitBindings(namespace: string, files: BindingFile[]): string {
  const out = [`// ${BANNER}`];
  out.push("// The binding contract of every kernel, read from the kernels' own signatures (see");
  out.push("// tools/metal_bindings/emit_bindings.ts); the protocols are in MetalKernels.swift.");
  out.push("");
  out.push(
    `/// The kernels in ${files.length ? files[0].displayPath.replace(/\/[^/]*$/, "/") : "metal/"}, by name.`,
  );
  out.push(`enum ${namespace} {`);
  const taken = new Map<string, string>();
  const claim = (name: string, what: string) => {
    const prior = taken.get(name);
    if (prior) throw new Error(`${what} and ${prior} would both be the Swift type ${namespace}.${name}`);
    taken.set(name, what);
  };
  let maxBuffer = -1, maxThreadgroup = -1;
  for (const f of files) {
    const constants = `${typeName(f.stem)}Constants`;
    claim(constants, `the constants of ${f.displayPath}`);
    out.push(...constantsStruct(f, constants));
    out.push("");
    for (const k of f.parsed.kernels) {
      const name = typeName(k.name);
      claim(name, `kernel ${k.name} (${f.displayPath})`);
      out.push(...kernelType(f, k, name, constants));
      out.push("");
      for (const p of bound(k)) {
        if (p.binding.kind === "buffer") maxBuffer = Math.max(maxBuffer, p.binding.index);
        else maxThreadgroup = Math.max(maxThreadgroup, p.binding.index);
      }
    }
  }
  out.push(
    "    /// The largest [[buffer(n)]] index of any kernel, plus one (an indirect command buffer's bind count).",
  );
  out.push(`    static let maxBufferBindCount = ${maxBuffer + 1}`);
  out.push("    /// The largest [[threadgroup(n)]] index of any kernel, plus one.");
  out.push(`    static let maxThreadgroupMemoryBindCount = ${maxThreadgroup + 1}`);
  out.push("}");
  return out.join("\n") + "\n";
}
