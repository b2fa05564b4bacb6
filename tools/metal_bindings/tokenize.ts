// Tokenizer for Metal Shading Language sources: just enough C++ lexing to find kernel signatures and
// program-scope declarations. Comments and preprocessor lines are skipped (object-like #defines of
// integers are collected, so `[[buffer(IDX)]]` with `#define IDX 2` works).

export type TokenKind = "id" | "num" | "str" | "punct";

export interface Token {
  kind: TokenKind;
  text: string;
  start: number; // offset of the first character in the source
  end: number; // offset after the last character
  line: number; // 1-based
}

export interface Lexed {
  tokens: Token[];
  defines: Map<string, string>; // #define NAME VALUE (object-like, one line)
}

const PUNCT3 = ["<<=", ">>=", "...", "->*"];
const PUNCT2 = [
  "::",
  "->",
  "++",
  "--",
  "<<",
  ">>",
  "<=",
  ">=",
  "==",
  "!=",
  "&&",
  "||",
  "+=",
  "-=",
  "*=",
  "/=",
  "%=",
  "&=",
  "|=",
  "^=",
  "##",
];

export class MetalSyntaxError extends Error {}

export function tokenize(src: string, file: string): Lexed {
  const tokens: Token[] = [];
  const defines = new Map<string, string>();
  let i = 0;
  let line = 1;
  let atLineStart = true;
  const n = src.length;
  while (i < n) {
    const c = src[i];
    if (c === "\n") {
      line++;
      i++;
      atLineStart = true;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r" || c === "\f" || c === "\v") {
      i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "/") {
      while (i < n && src[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "*") {
      const close = src.indexOf("*/", i + 2);
      if (close < 0) throw new MetalSyntaxError(`${file}:${line}: unterminated comment`);
      for (let k = i; k < close; k++) if (src[k] === "\n") line++;
      i = close + 2;
      continue;
    }
    if (c === "#" && atLineStart) {
      // A preprocessor directive, with backslash continuations.
      let j = i;
      let text = "";
      while (j < n) {
        if (src[j] === "\\" && src[j + 1] === "\n") {
          j += 2;
          line++;
          continue;
        }
        if (src[j] === "\n") break;
        text += src[j];
        j++;
      }
      const m = /^#\s*define\s+([A-Za-z_]\w*)\s+(.+?)\s*(\/\/.*)?$/.exec(text);
      if (m) defines.set(m[1], m[2]);
      i = j;
      continue;
    }
    atLineStart = false;
    const start = i;
    if (/[A-Za-z_]/.test(c)) {
      while (i < n && /\w/.test(src[i])) i++;
      tokens.push({ kind: "id", text: src.slice(start, i), start, end: i, line });
      continue;
    }
    if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(src[i + 1] ?? ""))) {
      // pp-number: digits, letters, dots, and exponent signs.
      while (
        i < n && (/[\w.]/.test(src[i]) || ((src[i] === "+" || src[i] === "-") && /[eEpP]/.test(src[i - 1])))
      ) i++;
      tokens.push({ kind: "num", text: src.slice(start, i), start, end: i, line });
      continue;
    }
    if (c === '"' || c === "'") {
      i++;
      while (i < n && src[i] !== c) {
        if (src[i] === "\\") i++;
        if (src[i] === "\n") throw new MetalSyntaxError(`${file}:${line}: unterminated literal`);
        i++;
      }
      i++;
      tokens.push({ kind: "str", text: src.slice(start, i), start, end: i, line });
      continue;
    }
    const three = src.slice(i, i + 3);
    const two = src.slice(i, i + 2);
    const len = PUNCT3.includes(three) ? 3 : PUNCT2.includes(two) ? 2 : 1;
    i += len;
    tokens.push({ kind: "punct", text: src.slice(start, i), start, end: i, line });
  }
  return { tokens, defines };
}

/** Index of the token closing the bracket opened at tokens[open] ("(", "[", "{" or "<"). */
export function matching(tokens: Token[], open: number, file: string): number {
  const pairs: Record<string, string> = { "(": ")", "[": "]", "{": "}", "<": ">" };
  const opener = tokens[open].text;
  const closer = pairs[opener];
  let depth = 0;
  for (let k = open; k < tokens.length; k++) {
    const t = tokens[k].text;
    if (opener === "<") {
      // Template argument lists: count only angle brackets outside nested parentheses.
      if (t === "(" || t === "[") {
        k = matching(tokens, k, file);
        continue;
      }
      if (t === ">>") {
        depth -= 2;
        if (depth <= 0) return k;
        continue;
      }
    }
    if (t === opener) depth++;
    else if (t === closer) {
      depth--;
      if (depth === 0) return k;
    }
  }
  throw new MetalSyntaxError(`${file}:${tokens[open].line}: unbalanced '${opener}'`);
}
