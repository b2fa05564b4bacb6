// Parses what MetalCompat needs from a .metal file: kernel signatures (bindings of every parameter),
// [[function_constant]] declarations, program-scope constants derived from them, and the places the
// C++ compilation must rewrite. Everything else in the file is left to the C++ compiler.

import { type Lexed, matching, MetalSyntaxError, type Token, tokenize } from "./tokenize.ts";

export const POSITION_ATTRIBUTES = [
  "thread_position_in_grid",
  "threadgroup_position_in_grid",
  "thread_position_in_threadgroup",
  "threads_per_threadgroup",
  "dispatch_threads_per_threadgroup",
  "threadgroups_per_grid",
  "threads_per_grid",
  "grid_origin",
  "thread_index_in_threadgroup",
  "thread_index_in_simdgroup",
  "simdgroup_index_in_threadgroup",
  "threads_per_simdgroup",
  "simdgroups_per_threadgroup",
  "thread_index_in_quadgroup",
  "quadgroup_index_in_threadgroup",
  "quadgroups_per_threadgroup",
  "dispatch_simdgroups_per_threadgroup",
  "dispatch_quadgroups_per_threadgroup",
];
/** Deprecated MSL spellings of position attributes. */
const POSITION_ALIASES: Record<string, string> = { thread_execution_width: "threads_per_simdgroup" };

/** Largest index of Metal's buffer and threadgroup argument tables. */
export const MAX_ARGUMENT_INDEX = 30;

export type Binding =
  | { kind: "buffer"; index: number; condition?: string }
  | { kind: "threadgroup"; index: number }
  | { kind: "position"; attribute: string };

export interface KernelParam {
  name: string;
  binding: Binding;
  /** The parameter as declared, without its attributes, e.g. `device const float *x`. */
  declaration: string;
  /** The `//` comment that ends the parameter's line, when the line holds only this parameter. */
  comment?: string;
}

export interface Kernel {
  name: string; // the host name (what makeFunction(name:) looks up)
  callee: string; // the C++ function to call, e.g. `add` or `add<float>`
  params: KernelParam[];
  maxTotalThreads: number; // [[max_total_threads_per_threadgroup(N)]], 0 when absent
  line: number;
}

export interface FunctionConstant {
  name: string;
  type: string;
  index: number;
  line: number;
  /** The `//` comment that ends the declaration's line. */
  comment?: string;
}

export interface DerivedConstant {
  name: string;
  type: string;
  expr: string;
  start: number; // source span of the whole declaration
  end: number;
}

export interface ParsedMetal {
  kernels: Kernel[];
  constants: FunctionConstant[];
  derived: DerivedConstant[];
  /** Function constants the file tests with is_function_constant_defined: they may be left unset. */
  optionalConstants: string[];
  /** `threadgroup` tokens followed by `(`: the [[threadgroup(n)]] attribute, renamed for C++. */
  threadgroupAttributes: Token[];
}

interface Statement {
  start: number; // token index
  end: number; // token index of the closing ";" or "}"
  body?: [number, number]; // "{" and "}" of a function/struct body
}

class Parser {
  readonly tokens: Token[];
  readonly defines: Map<string, string>;

  constructor(readonly src: string, readonly file: string) {
    const lexed: Lexed = tokenize(src, file);
    this.tokens = lexed.tokens;
    this.defines = lexed.defines;
  }

  fail(line: number, message: string): never {
    throw new MetalSyntaxError(`${this.file}:${line}: ${message}`);
  }

  text(a: number, b: number): string {
    return this.src.slice(this.tokens[a].start, this.tokens[b].end);
  }

  /** The text of the `//` comment that ends source line `line` (1-based), if any. */
  lineComment(line: number): string | undefined {
    const text = this.src.split("\n")[line - 1] ?? "";
    const at = text.indexOf("//");
    return at < 0 ? undefined : text.slice(at + 2).trim() || undefined;
  }

  /** Program-scope statements: declarations ending in ";" and definitions with a body. */
  statements(): Statement[] {
    const t = this.tokens;
    const out: Statement[] = [];
    let k = 0;
    while (k < t.length) {
      const start = k;
      for (;;) {
        if (k >= t.length) {
          out.push({ start, end: t.length - 1 });
          break;
        }
        const x = t[k].text;
        if (x === ";") {
          out.push({ start, end: k });
          k++;
          break;
        }
        if (x === "(" || x === "[") {
          k = matching(t, k, this.file) + 1;
          continue;
        }
        if (x === "{") {
          const prev = k > 0 ? t[k - 1].text : "";
          const close = matching(t, k, this.file);
          if (prev === "=" || prev === ",") {
            k = close + 1; // an initializer list
            continue;
          }
          out.push({ start, end: close, body: [k, close] });
          k = close + 1;
          if (k < t.length && t[k].text === ";") k++;
          break;
        }
        k++;
      }
    }
    return out;
  }

  /** An integer argument of an attribute: a literal or a #define of one. */
  integer(tok: Token): number {
    let text = tok.text;
    for (let hops = 0; hops < 8 && this.defines.has(text); hops++) text = this.defines.get(text)!.trim();
    const m = /^\(?\s*(0x[0-9a-fA-F]+|\d+)[uU]?\s*\)?$/.exec(text);
    if (!m) this.fail(tok.line, `'${tok.text}' is not an integer literal (or a #define of one)`);
    return Number(m[1]);
  }

  /** Attribute groups [[a, b(c)]] in tokens [a, b]: returns the items and the token range they cover. */
  attributes(a: number, b: number): { items: Token[][]; first: number } {
    const t = this.tokens;
    const items: Token[][] = [];
    let first = -1;
    for (let k = a; k <= b; k++) {
      if (t[k].text === "[" && k + 1 <= b && t[k + 1].text === "[") {
        if (first < 0) first = k;
        const close = matching(t, k, this.file);
        let item: Token[] = [];
        for (let j = k + 2; j < close - 1; j++) {
          if (t[j].text === "(") {
            const end = matching(t, j, this.file);
            item.push(...t.slice(j, end + 1));
            j = end;
            continue;
          }
          if (t[j].text === ",") {
            items.push(item);
            item = [];
            continue;
          }
          item.push(t[j]);
        }
        if (item.length) items.push(item);
        k = close;
      }
    }
    return { items, first };
  }

  /** Splits tokens (a, b) exclusive at top-level commas. */
  splitCommas(a: number, b: number): [number, number][] {
    const t = this.tokens;
    const parts: [number, number][] = [];
    let s = a + 1;
    for (let k = a + 1; k < b; k++) {
      const x = t[k].text;
      if (x === "(" || x === "[" || x === "{") k = matching(t, k, this.file);
      else if (x === "<" && k > s && t[k - 1].kind === "id") {
        try {
          k = matching(t, k, this.file);
        } catch {
          // a less-than, not a template argument list
        }
      } else if (x === ",") {
        parts.push([s, k - 1]);
        s = k + 1;
      }
    }
    if (s <= b - 1) parts.push([s, b - 1]);
    return parts;
  }

  /** Parameters of the kernel whose parameter list is tokens[open] "(" ... tokens[close] ")". */
  params(open: number, close: number, kernel: string): KernelParam[] {
    const t = this.tokens;
    const out: KernelParam[] = [];
    const ends: number[] = []; // the line each parameter ends on
    for (const [a, b] of this.splitCommas(open, close)) {
      const { items, first } = this.attributes(a, b);
      const declEnd = first < 0 ? b : first - 1;
      let nameIdx = declEnd;
      while (nameIdx >= a && t[nameIdx].kind !== "id") nameIdx--;
      if (nameIdx < a) this.fail(t[a].line, `kernel '${kernel}': cannot find a parameter name`);
      const name = t[nameIdx].text;
      const typeText = this.text(a, Math.max(a, nameIdx - 1));
      const indirect = /[*&]/.test(typeText);
      let binding: Binding | undefined;
      let condition: string | undefined;
      for (const item of items) {
        const key = item[0]?.text;
        const arg = item.length >= 3 && item[1].text === "(" ? item[2] : undefined;
        if (key === "buffer" || key === "threadgroup") {
          if (!arg) this.fail(item[0].line, `kernel '${kernel}': [[${key}(n)]] needs an index`);
          const index = this.integer(arg);
          if (index < 0 || index > MAX_ARGUMENT_INDEX) {
            this.fail(
              arg.line,
              `kernel '${kernel}': ${key} index ${index} is outside 0...${MAX_ARGUMENT_INDEX}`,
            );
          }
          binding = key === "buffer" ? { kind: "buffer", index } : { kind: "threadgroup", index };
        } else if (key === "function_constant") {
          if (!arg) this.fail(item[0].line, `kernel '${kernel}': [[function_constant(name)]] needs a name`);
          condition = arg.text;
        } else if (POSITION_ATTRIBUTES.includes(key) || key in POSITION_ALIASES) {
          binding = { kind: "position", attribute: POSITION_ALIASES[key] ?? key };
        } else {
          this.fail(
            item[0].line,
            `kernel '${kernel}', parameter '${name}': attribute [[${key}]] is not supported by MetalCompat`,
          );
        }
      }
      if (!binding) {
        this.fail(
          t[a].line,
          `kernel '${kernel}', parameter '${name}' has no [[buffer(n)]], [[threadgroup(n)]] or position attribute`,
        );
      }
      if (binding.kind !== "position" && !indirect) {
        this.fail(
          t[a].line,
          `kernel '${kernel}', parameter '${name}': ${binding.kind} arguments must be pointers or references`,
        );
      }
      if (condition !== undefined && binding.kind === "buffer") binding.condition = condition;
      out.push({ name, binding, declaration: this.text(a, nameIdx) });
      ends.push(t[b].line);
    }
    // A trailing comment documents its parameter only when no other parameter ends on that line.
    out.forEach((p, i) => {
      if (ends.filter((line) => line === ends[i]).length > 1) return;
      const comment = this.lineComment(ends[i]);
      if (comment !== undefined) p.comment = comment;
    });
    const seen = new Set<string>();
    for (const p of out) {
      if (p.binding.kind === "position") continue;
      const key = `${p.binding.kind}(${p.binding.index})`;
      if (seen.has(key)) this.fail(t[open].line, `kernel '${kernel}': two parameters bound to [[${key}]]`);
      seen.add(key);
    }
    return out;
  }

  maxThreads(a: number, b: number): number {
    for (const item of this.attributes(a, b).items) {
      if (item[0]?.text === "max_total_threads_per_threadgroup" && item[2]) return this.integer(item[2]);
    }
    return 0;
  }

  /** The identifier before the first "(" after `from`, and that "(" (a function declarator). */
  declarator(from: number, to: number): { name: number; open: number } | undefined {
    const t = this.tokens;
    for (let k = from; k < to; k++) {
      if (t[k].text === "[" && t[k + 1]?.text === "[") {
        k = matching(t, k, this.file);
        continue;
      }
      if (t[k].text === "(" && k > 0 && t[k - 1].kind === "id") return { name: k - 1, open: k };
    }
    return undefined;
  }

  /** Reports `threadgroup T name[...]` / `threadgroup T name;` declarations inside a body, and kernels
   * inside namespaces (the generator only binds kernels at file scope). */
  checkBody(open: number, close: number) {
    const t = this.tokens;
    for (let k = open + 1; k < close; k++) {
      if (t[k].text === "kernel") {
        this.fail(
          t[k].line,
          "kernel functions must be declared at file scope (not inside a namespace or struct)",
        );
      }
      if (t[k].text !== "threadgroup" || t[k + 1]?.text === "(") continue;
      let indirect = false;
      let j = k + 1;
      for (; j < close; j++) {
        const x = t[j].text;
        if (x === "*" || x === "&") indirect = true;
        if ([";", "=", "[", "(", ")", ",", "{", ">"].includes(x)) break;
      }
      if (!indirect) {
        this.fail(
          t[k].line,
          `threadgroup variable declared inside a function ('${this.text(k, j - 1)}'): MetalCompat needs ` +
            `threadgroup memory as a kernel parameter, e.g. 'threadgroup float* shared [[threadgroup(0)]]' ` +
            `sized with setThreadgroupMemoryLength(_:index:)`,
        );
      }
    }
  }

  parse(): ParsedMetal {
    const t = this.tokens;
    const kernels: Kernel[] = [];
    const constants: FunctionConstant[] = [];
    const derived: DerivedConstant[] = [];
    const templates = new Map<string, { params: KernelParam[]; maxThreads: number }>();
    const fcNames = new Set<string>();

    for (const st of this.statements()) {
      const headEnd = st.body ? st.body[0] - 1 : st.end;
      if (st.body) this.checkBody(st.body[0], st.body[1]);
      let kernelTok = -1;
      for (let k = st.start; k <= headEnd; k++) {
        if (t[k].text === "kernel" && t[k].kind === "id") {
          kernelTok = k;
          break;
        }
      }
      const isTemplate = t[st.start].text === "template";
      if (kernelTok >= 0) {
        if (isTemplate && t[st.start + 1]?.text !== "<") {
          this.instantiation(st, kernelTok, templates, kernels);
          continue;
        }
        const decl = this.declarator(kernelTok + 1, headEnd + 1);
        if (!decl) this.fail(t[kernelTok].line, "cannot read this kernel's signature");
        const name = t[decl.name].text;
        const close = matching(t, decl.open, this.file);
        const params = this.params(decl.open, close, name);
        const maxThreads = this.maxThreads(st.start, headEnd);
        if (isTemplate) templates.set(name, { params, maxThreads });
        else if (st.body) {
          kernels.push({ name, callee: name, params, maxTotalThreads: maxThreads, line: t[decl.name].line });
        }
        continue;
      }
      // Program-scope `constant` declarations.
      const paren = t.slice(st.start, headEnd + 1).findIndex((x) => x.text === "(");
      const constantAt = t.slice(st.start, headEnd + 1).findIndex((x) => x.text === "constant");
      if (constantAt < 0 || (paren >= 0 && paren < constantAt) || st.body) continue;
      const { items, first } = this.attributes(st.start, st.end);
      const fc = items.find((it) => it[0]?.text === "function_constant");
      if (fc) {
        const nameIdx = first - 1;
        if (t[nameIdx]?.kind !== "id" || !fc[2]) {
          this.fail(t[st.start].line, "cannot read this function constant");
        }
        const typeTokens = t.slice(st.start + constantAt + 1, nameIdx).map((x) => x.text);
        const c = {
          name: t[nameIdx].text,
          type: typeTokens.join(" "),
          index: this.integer(fc[2]),
          line: t[nameIdx].line,
          comment: this.lineComment(t[nameIdx].line),
        };
        if (constants.some((o) => o.index === c.index)) {
          this.fail(c.line, `two function constants with index ${c.index}`);
        }
        constants.push(c);
        fcNames.add(c.name);
        continue;
      }
      const eq = t.slice(st.start, st.end + 1).findIndex((x) => x.text === "=") + st.start;
      if (eq <= st.start) continue;
      const init = t.slice(eq + 1, st.end);
      const usesFc = init.some((x) => fcNames.has(x.text) || x.text === "is_function_constant_defined");
      if (!usesFc) continue;
      const nameIdx = eq - 1;
      if (t[nameIdx].kind !== "id") {
        this.fail(
          t[eq].line,
          "program-scope arrays derived from function constants are not supported by MetalCompat",
        );
      }
      const type = t.slice(st.start, nameIdx).map((x) => x.text).filter((x) =>
        !["constant", "constexpr", "static"].includes(x)
      );
      const lineStart = this.src.lastIndexOf("\n", t[st.start].start - 1) + 1;
      if (this.src.slice(lineStart, t[st.start].start).trim() !== "") {
        this.fail(t[st.start].line, "put this constant declaration at the start of its own line");
      }
      const lineEnd = this.src.indexOf("\n", t[st.end].end);
      const rest = this.src.slice(t[st.end].end, lineEnd < 0 ? this.src.length : lineEnd).trim();
      if (rest !== "" && !rest.startsWith("//") && !rest.startsWith("/*")) {
        this.fail(t[st.end].line, "put nothing but a comment after this constant declaration on its line");
      }
      derived.push({
        name: t[nameIdx].text,
        type: type.join(" "),
        expr: init.map((x) => x.text).join(" "),
        start: t[st.start].start,
        end: t[st.end].end,
      });
      fcNames.add(t[nameIdx].text);
    }
    const names = new Set<string>();
    for (const k of kernels) {
      if (names.has(k.name)) this.fail(k.line, `two kernels named '${k.name}'`);
      names.add(k.name);
    }
    const threadgroupAttributes = t.filter((x, i) => x.text === "threadgroup" && t[i + 1]?.text === "(");
    const optionalConstants = t.flatMap((x, i) =>
      x.text === "is_function_constant_defined" && t[i + 1]?.text === "(" && t[i + 2] ? [t[i + 2].text] : []
    );
    return {
      kernels,
      constants,
      derived,
      optionalConstants: [...new Set(optionalConstants)],
      threadgroupAttributes,
    };
  }

  /** `template [[host_name("name")]] kernel ... callee<args> ...;` */
  instantiation(
    st: Statement,
    kernelTok: number,
    templates: Map<string, { params: KernelParam[]; maxThreads: number }>,
    kernels: Kernel[],
  ) {
    const t = this.tokens;
    const hostItem = this.attributes(st.start, st.end).items.find((it) => it[0]?.text === "host_name");
    if (!hostItem || hostItem[2]?.kind !== "str") {
      this.fail(t[kernelTok].line, 'a kernel template instantiation needs [[host_name("name")]]');
    }
    const name = hostItem[2].text.slice(1, -1);
    for (let k = kernelTok + 1; k < st.end; k++) {
      if (t[k].kind === "id" && templates.has(t[k].text) && t[k + 1]?.text === "<") {
        const close = matching(t, k + 1, this.file);
        const tpl = templates.get(t[k].text)!;
        kernels.push({
          name,
          callee: this.text(k, close),
          params: tpl.params,
          maxTotalThreads: tpl.maxThreads,
          line: t[k].line,
        });
        return;
      }
    }
    this.fail(t[kernelTok].line, `cannot find which kernel template '${name}' instantiates`);
  }
}

export function parseMetal(src: string, file: string): ParsedMetal {
  return new Parser(src, file).parse();
}
