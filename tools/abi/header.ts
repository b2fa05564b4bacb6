// Reads the C ABI's one statement, swift/include/mamba.h: the ABI version, the enums (status codes and
// GPU counters), the structs passed by pointer and their layout, every function prototype, and the documented keys of the JSON objects the ABI takes
// and gives (`@option key  doc` lines in its comments; any `@kind` names one such object). tools/gen_abi.ts generates Swift from
// it and tests/abi.test.ts checks every other restatement against it.

/** One `NAME = value, /* doc *\/` line of a C enum. */
export interface EnumEntry {
  name: string;
  value: number;
  doc: string;
}

export interface CParam {
  /** Normalised C type: `const int32_t *`, `mamba_engine **`, `int32_t`. */
  type: string;
  name: string;
}

export interface CFunction {
  name: string;
  result: string;
  params: CParam[];
  /** The prototype, whitespace collapsed: `int32_t mamba_reset(mamba_engine *engine, int32_t seq);`. */
  prototype: string;
}

/** A field of a C struct, where it sits. */
export interface CField {
  /** A fixed-width scalar type: `double`, `int32_t`, `uint32_t`, … */
  type: string;
  name: string;
  /** Elements: 1, or N for an array field `type name[N]`. */
  count: number;
  /** offsetof. */
  offset: number;
}

/** `typedef struct [tag] { fields } name;`, laid out with natural alignment (what every C ABI does for
 * fixed-width scalars). */
export interface CStruct {
  name: string;
  fields: CField[];
  /** sizeof, trailing padding included. */
  size: number;
}

/** A key of a JSON object the ABI takes or gives (`@option`, `@tuning`, `@info`, `@config`, …). */
export interface JsonKey {
  key: string;
  doc: string;
  /** `@info[metal]`: only that backend reports the key. */
  backend?: string;
}

export interface Header {
  abiVersion: number;
  /** `typedef struct x x;`: types only ever handled through pointers. */
  opaqueTypes: string[];
  enums: Map<string, EnumEntry[]>;
  /** The structs the header defines (not the opaque ones), in order. */
  structs: CStruct[];
  functions: CFunction[];
  options: JsonKey[];
  tuning: JsonKey[];
  info: JsonKey[];
  config: JsonKey[];
  /** Every `@kind` of key, those above included, in the order the header first uses them. */
  keys: Map<string, JsonKey[]>;
}

/** The kinds of keys the header must document: engine options and their tuning object, info, config. */
const REQUIRED_KINDS = ["option", "tuning", "info", "config"];

export const HEADER_PATH = "swift/include/mamba.h";

/** `const  char*x` → type `const char *`, name `x`. */
function param(text: string, where: string): CParam {
  const m = /^(.*?)([A-Za-z_]\w*)$/.exec(text.trim());
  if (!m) throw new Error(`${where}: cannot read parameter '${text}'`);
  return { type: normaliseType(m[1]), name: m[2] };
}

export function normaliseType(type: string): string {
  return type.replace(/\*/g, " * ").replace(/\s+/g, " ").trim().replace(/\* \*/g, "**");
}

function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " ")).replace(/\/\/[^\n]*/g, "");
}

/** Bytes (and alignment) of the scalar types a struct of the ABI may hold. */
const SCALAR_BYTES: Record<string, number> = {
  int8_t: 1,
  uint8_t: 1,
  int16_t: 2,
  uint16_t: 2,
  int32_t: 4,
  uint32_t: 4,
  float: 4,
  int64_t: 8,
  uint64_t: 8,
  double: 8,
};

const STRUCT_PATTERN = /typedef\s+struct\s*(?:\w+\s*)?\{([^}]*)\}\s*(\w+)\s*;/g;

/** Every `typedef struct [tag] { … } name;` of a C text (mamba.h, or with `only` the one struct of a
 * header that mirrors one of its structs), with its layout. */
export function parseStructs(text: string, file = HEADER_PATH, only?: string): CStruct[] {
  const out: CStruct[] = [];
  for (const m of withoutComments(text).matchAll(STRUCT_PATTERN)) {
    if (only !== undefined && m[2] !== only) continue;
    const fields: CField[] = [];
    let offset = 0, align = 1;
    for (const declaration of m[1].split(";").map((d) => d.replace(/\s+/g, " ").trim()).filter(Boolean)) {
      const f = /^(\w+) (\w+)(?:\s*\[(\d+)\])?$/.exec(declaration);
      const bytes = f && SCALAR_BYTES[f[1]];
      if (!f || !bytes) {
        throw new Error(
          `${file}: struct ${m[2]}: cannot lay out '${declaration}' (fixed-width scalars only)`,
        );
      }
      offset = Math.ceil(offset / bytes) * bytes;
      fields.push({ type: f[1], name: f[2], count: Number(f[3] ?? 1), offset });
      offset += bytes * Number(f[3] ?? 1);
      align = Math.max(align, bytes);
    }
    out.push({ name: m[2], fields, size: Math.ceil(offset / align) * align });
  }
  return out;
}

export function parseHeader(text: string, file = HEADER_PATH): Header {
  const code = withoutComments(text);
  const version = /^\s*#define\s+MAMBA_ABI_VERSION\s+(\d+)/m.exec(code);
  if (!version) throw new Error(`${file}: no #define MAMBA_ABI_VERSION`);

  const enums = new Map<string, EnumEntry[]>();
  for (const m of text.matchAll(/enum\s+(\w+)\s*\{([\s\S]*?)\};/g)) {
    const entries: EnumEntry[] = [];
    for (const line of m[2].split("\n")) {
      const e = /^\s*(\w+)\s*=\s*(\d+)\s*,?\s*(?:\/\*\s*(.*?)\s*\*\/)?\s*$/.exec(line);
      if (e) entries.push({ name: e[1], value: Number(e[2]), doc: e[3] ?? "" });
      else if (line.trim()) throw new Error(`${file}: enum ${m[1]}: cannot read '${line.trim()}'`);
    }
    enums.set(m[1], entries);
  }

  const functions: CFunction[] = [];
  const flat = code.replace(/^\s*#.*$/gm, "").replace(/enum\s+\w+\s*\{[\s\S]*?\};/g, "")
    .replace(STRUCT_PATTERN, "");
  for (const statement of flat.split(";")) {
    const s = statement.replace(/\s+/g, " ").trim();
    const m = /^(.*?)\b(mamba_\w+)\s*\((.*)\)$/.exec(s);
    if (!m || s.startsWith("typedef")) continue;
    const where = `${file}: ${m[2]}`;
    const params = m[3].trim() === "void" ? [] : m[3].split(",").map((p) => param(p, where));
    const result = normaliseType(m[1]);
    const args = params.map((p) => `${p.type}${p.type.endsWith("*") ? "" : " "}${p.name}`).join(", ");
    const prototype = `${result}${result.endsWith("*") ? "" : " "}${m[2]}(${args || "void"});`;
    functions.push({ name: m[2], result, params, prototype });
  }

  const keys = new Map<string, JsonKey[]>();
  let last: JsonKey | undefined;
  for (const line of text.split("\n")) {
    const tag = /^\s*\*\s*@([a-z]+)(?:\[(\w+)\])?\s+(\w+)\s+(.*)$/.exec(line);
    if (tag) {
      last = { key: tag[3], doc: tag[4].trim(), ...(tag[2] ? { backend: tag[2] } : {}) };
      keys.set(tag[1], [...(keys.get(tag[1]) ?? []), last]);
      continue;
    }
    // A continuation line: indented past the key, no tag.
    const more = /^\s*\*\s{4,}(\S.*)$/.exec(line);
    if (last && more) last.doc += ` ${more[1].trim()}`;
    else last = undefined;
  }
  for (const kind of REQUIRED_KINDS) {
    if (!keys.has(kind)) throw new Error(`${file}: no @${kind} lines`);
  }
  return {
    abiVersion: Number(version[1]),
    opaqueTypes: [...code.matchAll(/typedef\s+struct\s+\w+\s+(\w+)\s*;/g)].map((m) => m[1]),
    enums,
    structs: parseStructs(text, file),
    functions,
    options: keys.get("option")!,
    tuning: keys.get("tuning")!,
    info: keys.get("info")!,
    config: keys.get("config")!,
    keys,
  };
}

export async function readHeader(root: string): Promise<Header> {
  return parseHeader(await Deno.readTextFile(`${root}/${HEADER_PATH}`));
}

/** `MAMBA_ERR_TOKEN` → `TOKEN`, `MAMBA_OK` → `OK`: the status names TypeScript uses. */
export function statusName(entry: EnumEntry): string {
  return entry.name.replace(/^MAMBA_(ERR_)?/, "");
}

/** `MAMBA_COUNTER_COMMAND_BUFFERS` → `commandBuffers`. */
export function counterName(entry: EnumEntry): string {
  return camel(entry.name.replace(/^MAMBA_COUNTER_/, ""));
}

/** `COMMAND_BUFFERS` → `commandBuffers`. */
export function camel(upper: string): string {
  return upper.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The status codes (enum mamba_status). */
export function statuses(h: Header): EnumEntry[] {
  const list = h.enums.get("mamba_status");
  if (!list) throw new Error(`${HEADER_PATH}: no enum mamba_status`);
  return list;
}

/** The GPU counters in output order (enum mamba_gpu_counter without its MAMBA_COUNTER_COUNT). */
export function counters(h: Header): EnumEntry[] {
  const list = h.enums.get("mamba_gpu_counter");
  if (!list) throw new Error(`${HEADER_PATH}: no enum mamba_gpu_counter`);
  const count = list.find((e) => e.name === "MAMBA_COUNTER_COUNT");
  const out = list.filter((e) => e !== count);
  out.forEach((e, i) => {
    if (e.value !== i) {
      throw new Error(`${HEADER_PATH}: ${e.name} = ${e.value}, expected ${i} (counters are indices)`);
    }
  });
  if (count?.value !== out.length) {
    throw new Error(`${HEADER_PATH}: MAMBA_COUNTER_COUNT must be ${out.length}`);
  }
  return out;
}
