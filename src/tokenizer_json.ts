/**
 * What a `tokenizer.json` must look like before the {@link Tokenizer} reads it, and the error it gets
 * when it does not. A file from the internet is checked field by field, so a truncated or corrupted one
 * is a {@link TokenizerError} naming the field, never a `TypeError` from deep inside the tokenizer.
 *
 * @module
 */

import type { TokenizerJson } from "./tokenizer.ts";

/**
 * A `tokenizer.json` that cannot be used: not JSON, a field of the wrong type, an unsupported model or
 * option. The only error {@link Tokenizer.fromJSON} and {@link Tokenizer.fromGGUF} throw (and
 * {@link Tokenizer.load}, besides `GGUFError` for a malformed GGUF container and the file system's errors
 * for a file it cannot read).
 *
 * @example
 * ```ts
 * try {
 *   Tokenizer.fromJSON('{"model": {}}');
 * } catch (e) {
 *   if (e instanceof TokenizerError) console.error(e.message); // tokenizer: model.vocab must be an object …
 * }
 * ```
 */
export class TokenizerError extends Error {
  /** Creates an error with `message` (prefixed with "tokenizer: " by convention). */
  constructor(message: string) {
    super(message);
    this.name = "TokenizerError";
  }
}

/** Ids index arrays of this length; 2^24 is far above any released vocabulary (≈ 256k). */
export const MAX_TOKEN_ID = 2 ** 24 - 1;
/** Nesting of `Sequence` normalizers (real files use one level). */
const MAX_NORMALIZER_DEPTH = 8;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail(what: string): never {
  throw new TokenizerError(`tokenizer: ${what}`);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `"${v.length > 40 ? v.slice(0, 40) + "…" : v}"`;
  return typeof v === "object" ? "an object" : String(v);
}

function optional(o: Json, key: string, type: "boolean" | "string" | "number", where: string): void {
  const v = o[key];
  if (v !== undefined && v !== null && typeof v !== type) {
    fail(`${where}.${key} must be a ${type}, got ${describe(v)}`);
  }
}

function checkId(v: unknown, where: string): void {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > MAX_TOKEN_ID) {
    fail(`${where} is ${describe(v)}, not a token id (an integer from 0 to ${MAX_TOKEN_ID})`);
  }
}

function checkTyped(v: unknown, where: string): Json {
  if (!isObject(v)) fail(`${where} must be an object, got ${describe(v)}`);
  if (typeof v.type !== "string") fail(`${where}.type must be a string, got ${describe(v.type)}`);
  return v;
}

function checkNormalizer(v: unknown, where: string, depth: number): void {
  const n = checkTyped(v, where);
  if (n.type !== "Sequence") return;
  if (depth >= MAX_NORMALIZER_DEPTH) fail(`${where}: Sequence normalizers nested too deeply`);
  if (!Array.isArray(n.normalizers)) {
    fail(`${where}.normalizers must be an array, got ${describe(n.normalizers)}`);
  }
  n.normalizers.forEach((m, i) => checkNormalizer(m, `${where}.normalizers[${i}]`, depth + 1));
}

/**
 * Parses (when given text) and checks the structure of a `tokenizer.json`; throws {@link TokenizerError}
 * naming the first field that is missing or of the wrong type. Which values are supported (model type,
 * pre-tokenizer, …) is the {@link Tokenizer}'s to check.
 */
export function checkTokenizerJson(input: string | unknown): TokenizerJson {
  let json: unknown = input;
  if (typeof input === "string") {
    try {
      json = JSON.parse(input);
    } catch (e) {
      fail(`not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (!isObject(json)) fail(`expected a JSON object, got ${describe(json)}`);
  const m = json.model;
  if (!isObject(m)) fail(`model must be an object, got ${describe(m)}`);
  optional(m, "type", "string", "model");
  if (!isObject(m.vocab)) fail(`model.vocab must be an object (token → id), got ${describe(m.vocab)}`);
  for (const [token, id] of Object.entries(m.vocab)) checkId(id, `model.vocab[${JSON.stringify(token)}]`);
  if (!Array.isArray(m.merges)) fail(`model.merges must be an array, got ${describe(m.merges)}`);
  m.merges.forEach((merge, i) => {
    const pair = Array.isArray(merge) && merge.length === 2 && merge.every((s) => typeof s === "string");
    if (typeof merge !== "string" && !pair) {
      fail(`model.merges[${i}] is ${describe(merge)}, not "a b" or ["a", "b"]`);
    }
  });
  optional(m, "unk_token", "string", "model");
  optional(m, "fuse_unk", "boolean", "model");
  optional(m, "dropout", "number", "model");
  optional(m, "continuing_subword_prefix", "string", "model");
  optional(m, "end_of_word_suffix", "string", "model");
  optional(m, "byte_fallback", "boolean", "model");
  optional(m, "ignore_merges", "boolean", "model");

  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) fail(`added_tokens must be an array, got ${describe(added)}`);
    added.forEach((t, i) => {
      const where = `added_tokens[${i}]`;
      if (!isObject(t)) fail(`${where} must be an object, got ${describe(t)}`);
      checkId(t.id, `${where}.id`);
      if (typeof t.content !== "string") {
        fail(`${where}.content must be a string, got ${describe(t.content)}`);
      }
      for (const key of ["special", "single_word", "lstrip", "rstrip", "normalized"]) {
        optional(t, key, "boolean", where);
      }
    });
  }
  if (json.normalizer !== undefined && json.normalizer !== null) {
    checkNormalizer(json.normalizer, "normalizer", 0);
  }
  for (const key of ["pre_tokenizer", "post_processor", "decoder"]) {
    if (json[key] !== undefined && json[key] !== null) checkTyped(json[key], key);
  }
  if (isObject(json.pre_tokenizer)) {
    optional(json.pre_tokenizer, "add_prefix_space", "boolean", "pre_tokenizer");
    optional(json.pre_tokenizer, "use_regex", "boolean", "pre_tokenizer");
  }
  return json as unknown as TokenizerJson;
}
