// The C++ view of a .metal file: the source text with the few rewrites plain C++ needs, line for line
// (compiler messages point into the .metal file through a #line directive).
//
//  - `[[threadgroup(n)]]` becomes `[[mc_threadgroup_index(n)]]`: the metal_stdlib macro that makes the
//    `threadgroup` address space vanish would otherwise turn the attribute into `[[(n)]]`.
//  - A program-scope constant computed from function constants becomes a macro, so that it is
//    evaluated at each use, after the dispatcher has stored the function constants' values (a C++
//    global would be initialized once, at load time).

import type { ParsedMetal } from "./parse.ts";

interface Edit {
  start: number;
  end: number;
  text: string;
}

export function cppView(src: string, parsed: ParsedMetal, displayPath: string): string {
  const edits: Edit[] = [];
  for (const tok of parsed.threadgroupAttributes) {
    edits.push({ start: tok.start, end: tok.end, text: "mc_threadgroup_index" });
  }
  for (const d of parsed.derived) {
    const newlines = src.slice(d.start, d.end).split("\n").length - 1;
    edits.push({
      start: d.start,
      end: d.end,
      text: `#define ${d.name} ((${d.type})(${d.expr}))` + "\n".repeat(newlines),
    });
  }
  edits.sort((a, b) => a.start - b.start);
  let out = "";
  let at = 0;
  for (const e of edits) {
    out += src.slice(at, e.start) + e.text;
    at = e.end;
  }
  out += src.slice(at);
  return `#line 1 "${displayPath}"\n${out}${out.endsWith("\n") ? "" : "\n"}`;
}
