/**
 * Byte-level BPE tokenizer that reads Hugging Face `tokenizer.json` files (GPT-2 / GPT-NeoX style), with
 * the same results as the Python `tokenizers` library, and a streaming decoder for generation.
 *
 * @module
 */

import { BpeModel, CHAR_TO_BYTE, GPT2_SPLIT_PATTERN } from "./tokenizer_bpe.ts";
import { checkTokenizerJson, TokenizerError } from "./tokenizer_json.ts";
import {
  type AddedTokenJson,
  AddedTokenSplitter,
  buildNormalizer,
  type Normalize,
  type NormalizerJson,
  type Segment,
} from "./tokenizer_added.ts";

import { type GGUFMetadata, type GGUFValue, isGGUFFile, readGGUFMetadata } from "./gguf.ts";

export type { AddedTokenJson, NormalizerJson } from "./tokenizer_added.ts";
export { TokenizerError } from "./tokenizer_json.ts";

/** GGUF tokenizer.ggml.pre values whose pre-tokenizer is the GPT-2 regex (llama.cpp llama-vocab.cpp). */
const GGUF_GPT2_PRE = new Set([
  "gpt-2",
  "mpt",
  "olmo",
  "phi-2",
  "jina-es",
  "jina-de",
  "gigachat",
  "jina-v2-es",
  "jina-v2-de",
  "a.x-4.0",
  "mellum",
  "modern-bert",
  "jina-v1-en",
  "jina-v2-code",
  "roberta-bpe",
  "jais",
  "trillion",
  "granite-docling",
]);
/** A metadata value for a message: JSON, except 64-bit integers (bigint) and arrays, which JSON cannot
 * show or which could be huge. */
function showGGUF(v: GGUFValue | undefined): string {
  if (typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return JSON.stringify(v) ?? "nothing";
}

/** llama.cpp's token types (tokenizer.ggml.token_type). */
const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * The parts of a Hugging Face `tokenizer.json` that {@link Tokenizer} reads.
 *
 * @example
 * ```ts
 * const json: TokenizerJson = JSON.parse(await Deno.readTextFile("tokenizer.json"));
 * const tokenizer = Tokenizer.fromJSON(json);
 * ```
 */
export interface TokenizerJson {
  /** Added tokens (special tokens and user-added tokens), matched before BPE. */
  added_tokens?: AddedTokenJson[] | null;
  /** `NFC`, `NFD`, `NFKC`, `NFKD`, `Lowercase`, a `Sequence` of those, or null. */
  normalizer?: NormalizerJson | null;
  /** Must be `ByteLevel`. */
  pre_tokenizer?: { type: string; add_prefix_space?: boolean; use_regex?: boolean } | null;
  /** `ByteLevel` or null (neither adds tokens). */
  post_processor?: { type: string } | null;
  /** Must be `ByteLevel` (or null: byte-level decoding is then assumed). */
  decoder?: { type: string } | null;
  /** Must be a `BPE` model. */
  model: {
    type?: string;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
    unk_token?: string | null;
    fuse_unk?: boolean;
    dropout?: number | null;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
    byte_fallback?: boolean;
    ignore_merges?: boolean;
  };
}

/**
 * Options of {@link Tokenizer.encode}.
 *
 * @example
 * ```ts
 * const ids = tokenizer.encode("<|endoftext|>", { parseSpecialTokens: false } satisfies EncodeOptions);
 * ```
 */
export interface EncodeOptions {
  /**
   * Recognize special tokens (such as `<|endoftext|>`) written in the text. Default true, as in the
   * Python library; pass false for untrusted text so that it is encoded as plain characters.
   */
  parseSpecialTokens?: boolean;
}

/**
 * Options of {@link Tokenizer.decode} and {@link Tokenizer.decodeStream}.
 *
 * @example
 * ```ts
 * const text = tokenizer.decode([0, 42], { skipSpecialTokens: false } satisfies DecodeOptions);
 * ```
 */
export interface DecodeOptions {
  /**
   * Leave special tokens (such as `<|endoftext|>`) out of the text. Default true, the default of the
   * Python `tokenizers` library's `Tokenizer.decode` (the `transformers` wrappers default to false).
   */
  skipSpecialTokens?: boolean;
}

/**
 * A byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json` (GPT-2, GPT-NeoX-20B, or one
 * trained with the `tokenizers` library using the `ByteLevel` pre-tokenizer).
 *
 * Encoding follows the Python `tokenizers` library step by step: added tokens that are not normalized
 * are split out of the raw text first; the rest is normalized (e.g. NFC) and split on the normalized
 * added tokens (GPT-NeoX's runs of 2–24 spaces); each remaining piece is cut with the GPT-2 pattern,
 * turned into bytes, and merged by BPE rank. No BOS/EOS tokens are added.
 *
 * Decoding maps tokens back to bytes and decodes UTF-8, replacing invalid sequences with U+FFFD like
 * the Rust library's lossy decoding. Special tokens are skipped by default. Ids outside the
 * vocabulary (for instance the padding rows of a model's embedding matrix) are skipped.
 *
 * @example
 * ```ts
 * const tok = await Tokenizer.load("../shared/data/tokenizers/gpt-neox-20b.tokenizer.json");
 * const ids = tok.encode("It is a truth universally acknowledged");
 * console.log(ids, tok.decode(ids));
 * const stream = tok.decodeStream();
 * let text = "";
 * for (const id of ids) text += stream.push(id);
 * text += stream.flush();
 * ```
 */
export class Tokenizer {
  /** Number of ids: one more than the largest id of the vocabulary and the added tokens. */
  readonly vocabSize: number;
  /** Ids of the special added tokens (e.g. `<|endoftext|>`). */
  readonly specialTokenIds: ReadonlySet<number>;

  private readonly model: BpeModel;
  private readonly normalize: Normalize | null;
  private readonly rawSplitter: AddedTokenSplitter;
  private readonly normalizedSplitter: AddedTokenSplitter;
  private readonly addPrefixSpace: boolean;
  private readonly useRegex: boolean;
  private readonly idToTokenTable: (string | undefined)[];
  private readonly addedByContent: Map<string, number>;
  private readonly tokenBytesCache: (Uint8Array | undefined)[];
  private readonly addedIds: Set<number>;

  private constructor(json: TokenizerJson) {
    const m = json.model;
    if (m.type !== undefined && m.type !== "BPE") {
      throw new TokenizerError(`tokenizer: unsupported model type "${m.type}"`);
    }
    if (m.dropout) throw new TokenizerError("tokenizer: BPE dropout is not supported");
    if (m.continuing_subword_prefix || m.end_of_word_suffix) {
      throw new TokenizerError("tokenizer: continuing_subword_prefix / end_of_word_suffix are not supported");
    }
    if (m.byte_fallback) throw new TokenizerError("tokenizer: byte_fallback is not supported");
    const pre = json.pre_tokenizer;
    if (!pre || pre.type !== "ByteLevel") {
      throw new TokenizerError(
        `tokenizer: only the ByteLevel pre-tokenizer is supported (got ${pre ? pre.type : "none"})`,
      );
    }
    const post = json.post_processor;
    if (post && post.type !== "ByteLevel") {
      throw new TokenizerError(`tokenizer: unsupported post_processor "${post.type}" (only ByteLevel)`);
    }
    const dec = json.decoder;
    if (dec && dec.type !== "ByteLevel") {
      throw new TokenizerError(`tokenizer: unsupported decoder "${dec.type}"`);
    }

    this.addPrefixSpace = pre.add_prefix_space ?? false;
    this.useRegex = pre.use_regex ?? true;
    this.model = new BpeModel({
      vocab: m.vocab,
      merges: m.merges,
      unkToken: m.unk_token,
      fuseUnk: m.fuse_unk,
      ignoreMerges: m.ignore_merges,
    });
    this.normalize = buildNormalizer(json.normalizer);

    const added = json.added_tokens ?? [];
    let maxId = -1;
    for (const id of this.model.vocab.values()) maxId = Math.max(maxId, id);
    for (const t of added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    this.idToTokenTable = new Array(this.vocabSize);
    for (const [token, id] of this.model.vocab) this.idToTokenTable[id] = token;
    this.tokenBytesCache = new Array(this.vocabSize);

    // The Rust library matches normalized added tokens by their normalized content, and gives that
    // normalized content back when decoding them.
    const normalizedContent = (t: AddedTokenJson): string =>
      t.normalized !== false && this.normalize ? this.normalize(t.content) : t.content;
    const raw = added.filter((t) => t.normalized === false);
    const norm = added.filter((t) => t.normalized !== false);
    this.rawSplitter = new AddedTokenSplitter(raw, raw.map((t) => t.content));
    this.normalizedSplitter = new AddedTokenSplitter(norm, norm.map(normalizedContent));
    this.addedByContent = new Map();
    this.addedIds = new Set();
    const special = new Set<number>();
    for (const t of added) {
      this.idToTokenTable[t.id] = normalizedContent(t);
      this.addedByContent.set(t.content, t.id);
      this.addedIds.add(t.id);
      if (t.special) special.add(t.id);
    }
    this.specialTokenIds = special;
  }

  /**
   * Reads a `tokenizer.json` file, or the tokenizer inside a GGUF model file (recognised by its magic).
   * Throws {@link TokenizerError} for a file that is not a usable tokenizer, `GGUFError` for a GGUF
   * file whose container is malformed (truncated, counts beyond the file), and the file system's error
   * (e.g. `Deno.errors.NotFound`) for one it cannot read.
   *
   * @param path file path or `file:` URL
   */
  static async load(path: string | URL): Promise<Tokenizer> {
    if (await isGGUFFile(path)) return Tokenizer.fromGGUF(await readGGUFMetadata(path));
    return Tokenizer.fromJSON(await Deno.readTextFile(path));
  }

  /**
   * Builds a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata (see `readGGUFMetadata`): model
   * "gpt2" (byte-level BPE) with a pre-tokenizer that is GPT-2's regex ("gpt-2", "mpt", "olmo", …).
   * Tokens of type CONTROL are special added tokens, USER_DEFINED ones plain added tokens, UNUSED ones
   * (the converter's padding) are left out. Like llama.cpp, no normalizer is applied: GGUF does not
   * record one, so text that is not in NFC may encode differently from a tokenizer.json with NFC.
   */
  static fromGGUF(meta: GGUFMetadata): Tokenizer {
    return new Tokenizer(checkTokenizerJson(Tokenizer.jsonFromGGUF(meta)));
  }

  /**
   * The `tokenizer.json` equivalent of a GGUF file's tokenizer (what {@link Tokenizer.fromGGUF} builds
   * from; `deno task quantize` writes it next to a model quantized from a GGUF file).
   */
  static jsonFromGGUF(meta: GGUFMetadata): TokenizerJson {
    const model = meta.get("tokenizer.ggml.model");
    if (model !== "gpt2") {
      throw new TokenizerError(
        `tokenizer: GGUF tokenizer.ggml.model ${showGGUF(model)} is not supported (only "gpt2")`,
      );
    }
    const pre = meta.get("tokenizer.ggml.pre") ?? "default";
    if (typeof pre !== "string" || !GGUF_GPT2_PRE.has(pre)) {
      throw new TokenizerError(
        `tokenizer: GGUF tokenizer.ggml.pre ${
          showGGUF(pre)
        } is not supported (GPT-2-regex types only: gpt-2, mpt, olmo, …)`,
      );
    }
    const strings = (key: string, required: boolean): string[] => {
      const v: GGUFValue | undefined = meta.get(key);
      if (v === undefined && !required) return [];
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
        throw new TokenizerError(`tokenizer: GGUF ${key} must be an array of strings`);
      }
      return v as string[];
    };
    const tokens = strings("tokenizer.ggml.tokens", true);
    const merges = strings("tokenizer.ggml.merges", false);
    const typesValue = meta.get("tokenizer.ggml.token_type");
    const types = Array.isArray(typesValue) ? typesValue : [];
    if (types.length !== 0 && types.length !== tokens.length) {
      throw new TokenizerError(`tokenizer: GGUF has ${tokens.length} tokens but ${types.length} token types`);
    }
    const vocab: Record<string, number> = Object.create(null);
    const added: AddedTokenJson[] = [];
    tokens.forEach((token, id) => {
      const type = types.length ? types[id] : TOKEN_TYPE.NORMAL;
      if (type === TOKEN_TYPE.UNUSED) return;
      if (type === TOKEN_TYPE.CONTROL || type === TOKEN_TYPE.USER_DEFINED) {
        added.push({ id, content: token, special: type === TOKEN_TYPE.CONTROL, normalized: false });
      } else if (!(token in vocab)) {
        vocab[token] = id;
      }
    });
    return {
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true },
      post_processor: null,
      decoder: { type: "ByteLevel" },
      model: { type: "BPE", vocab, merges },
    };
  }

  /**
   * Builds a tokenizer from the text or the parsed object of a `tokenizer.json`. Anything malformed or
   * unsupported, from invalid JSON to a field of the wrong type, is a {@link TokenizerError} naming it.
   */
  static fromJSON(json: string | TokenizerJson): Tokenizer {
    return new Tokenizer(checkTokenizerJson(json));
  }

  /** Encodes text to token ids (no special tokens are added). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const parseSpecial = options.parseSpecialTokens ?? true;
    const out: number[] = [];
    const first: Segment[] = [];
    this.rawSplitter.split(text, parseSpecial, first);
    const second: Segment[] = [];
    for (const seg of first) {
      if (typeof seg === "number") {
        second.push(seg);
      } else {
        this.normalizedSplitter.split(this.normalize ? this.normalize(seg) : seg, parseSpecial, second);
      }
    }
    for (const seg of second) {
      if (typeof seg === "number") out.push(seg);
      else this.encodePlain(seg, out);
    }
    return out;
  }

  /** Pre-tokenizes and BPE-encodes text that holds no added tokens. */
  private encodePlain(text: string, out: number[]): void {
    if (this.addPrefixSpace && !text.startsWith(" ")) text = " " + text;
    if (!this.useRegex) {
      this.model.encodePiece(text, out);
      return;
    }
    const pieces = text.match(GPT2_SPLIT_PATTERN);
    if (pieces === null) return;
    for (let i = 0; i < pieces.length; i++) this.model.encodePiece(pieces[i], out);
  }

  /**
   * Decodes ids to text. Invalid UTF-8 (e.g. an id sequence cut inside a character) becomes U+FFFD;
   * ids outside the vocabulary are skipped; special tokens are skipped unless
   * `skipSpecialTokens: false`.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return UTF8.decode(this.decodeBytes(ids, options));
  }

  /** The UTF-8 bytes that {@link Tokenizer.decode} decodes. */
  decodeBytes(ids: ArrayLike<number>, options: DecodeOptions = {}): Uint8Array {
    const skip = options.skipSpecialTokens ?? true;
    let buf = new Uint8Array(Math.max(16, ids.length * 4));
    let n = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.tokenBytes(ids[i], skip);
      if (bytes === null) continue;
      if (n + bytes.length > buf.length) {
        const bigger = new Uint8Array(Math.max(buf.length * 2, n + bytes.length));
        bigger.set(buf.subarray(0, n));
        buf = bigger;
      }
      buf.set(bytes, n);
      n += bytes.length;
    }
    return buf.subarray(0, n);
  }

  /**
   * A decoder for generation: feed ids one at a time, get text pieces that never end inside a UTF-8
   * sequence. The pieces concatenated (with {@link StreamDecoder.flush} at the end) equal
   * `decode(allIds, options)`.
   */
  decodeStream(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  /**
   * The bytes of one token, or null when it contributes nothing (unknown id, or a skipped special token).
   * Tokens whose characters all belong to the byte-level alphabet map to those bytes; others (added tokens
   * such as GPT-NeoX's runs of spaces) to their UTF-8 encoding, as in the Rust ByteLevel decoder.
   */
  tokenBytes(id: number, skipSpecialTokens: boolean = true): Uint8Array | null {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return null;
    if (skipSpecialTokens && this.specialTokenIds.has(id)) return null;
    let bytes = this.tokenBytesCache[id];
    if (bytes === undefined) {
      const token = this.idToTokenTable[id];
      if (token === undefined) return null;
      bytes = tokenToBytes(token);
      this.tokenBytesCache[id] = bytes;
    }
    return bytes;
  }

  /** The id of a token string (added tokens first, then the BPE vocabulary). */
  tokenToId(token: string): number | undefined {
    return this.addedByContent.get(token) ?? this.model.vocab.get(token);
  }

  /** The token string of an id (in the byte-level alphabet for BPE tokens), or undefined. */
  idToToken(id: number): string | undefined {
    return this.idToTokenTable[id];
  }

  /** Whether `id` is a special added token (skipped by `decode` by default). */
  isSpecialToken(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  /** Whether `id` is an added token (special or not). */
  isAddedToken(id: number): boolean {
    return this.addedIds.has(id);
  }
}

/** Lossy UTF-8 decoding (U+FFFD for invalid sequences) that keeps a leading BOM, like Rust's. */
const UTF8 = new TextDecoder("utf-8", { ignoreBOM: true });

function tokenToBytes(token: string): Uint8Array {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const b = c < 512 ? CHAR_TO_BYTE[c] : -1;
    if (b < 0) return new TextEncoder().encode(token); // not a byte-level token: its UTF-8 text
    bytes[i] = b;
  }
  return bytes;
}

/**
 * Incremental decoder returned by {@link Tokenizer.decodeStream}. Incomplete UTF-8 sequences at the end
 * are held back until the next ids complete them (or {@link StreamDecoder.flush} gives them up as
 * U+FFFD).
 *
 * @example
 * ```ts
 * const stream = tokenizer.decodeStream();
 * for (const id of ids) {
 *   const piece = stream.push(id); // "" while a character is incomplete
 *   if (piece) await write(piece);
 * }
 * await write(stream.flush());
 * ```
 */
export class StreamDecoder {
  private readonly tokenizer: Tokenizer;
  private readonly skip: boolean;
  private utf8: TextDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

  /** Use {@link Tokenizer.decodeStream}. */
  constructor(tokenizer: Tokenizer, options: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.skip = options.skipSpecialTokens ?? true;
  }

  /** Feeds one id; returns the text completed by it (possibly ""). */
  push(id: number): string {
    const bytes = this.tokenizer.tokenBytes(id, this.skip);
    if (bytes === null || bytes.length === 0) return "";
    return this.utf8.decode(bytes, { stream: true });
  }

  /** Ends the stream: returns what is held back (an incomplete sequence becomes U+FFFD) and resets. */
  flush(): string {
    return this.utf8.decode();
  }

  /** Drops anything held back and starts over. */
  reset(): void {
    this.utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
  }
}
