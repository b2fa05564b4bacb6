/**
 * GGUF metadata (the header and key/value section of a llama.cpp model file), read in TypeScript so a
 * `.gguf` file's tokenizer loads without the native library. Tensor data is never read.
 *
 * Layout: "GGUF", version u32 (2 or 3), tensor_count u64, kv_count u64, then kv_count entries of
 * (key: u64 length + UTF-8, value type u32, value). Every count and length is checked against the bytes
 * that remain before anything is allocated for it.
 *
 * @module
 */

/**
 * A malformed or unsupported GGUF file: truncated, a count larger than the file, an unknown value type.
 *
 * @example
 * ```ts
 * try {
 *   await readGGUFMetadata("model.gguf");
 * } catch (e) {
 *   if (e instanceof GGUFError) console.error(e.message); // names the file and what is wrong
 * }
 * ```
 */
export class GGUFError extends Error {
  /** Creates an error whose message names `file`. */
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "GGUFError";
  }
}

/**
 * A metadata value: numbers (bigint for 64-bit integers beyond 2^53), strings, booleans and arrays.
 *
 * @example
 * ```ts
 * const v: GGUFValue = meta.get("tokenizer.ggml.tokens")!;
 * if (Array.isArray(v)) console.log(v.length);
 * ```
 */
export type GGUFValue = number | bigint | string | boolean | GGUFValue[];

/**
 * The parsed metadata of a GGUF file.
 *
 * @example
 * ```ts
 * const meta = await readGGUFMetadata("model.gguf");
 * console.log(meta.version, meta.get("general.architecture"));
 * ```
 */
export interface GGUFMetadata {
  /** GGUF format version (2 or 3). */
  version: number;
  /** Number of tensors the file declares. */
  tensorCount: number;
  /** Key → value. */
  values: Map<string, GGUFValue>;
  /** Shorthand for `values.get(key)`. */
  get(key: string): GGUFValue | undefined;
}

/** Raised internally when the bytes end early; the file reader then reads more and parses again. */
class NeedMore extends Error {}

const MIN_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  8: 8,
  9: 12,
  10: 8,
  11: 8,
  12: 8,
};

/**
 * Parses GGUF metadata from bytes holding at least the header and key/value section. `file` names the
 * source in errors; `fileSize` is the whole file's size when `bytes` holds only its start (counts are
 * capped by it).
 *
 * @example
 * ```ts
 * const meta = parseGGUFMetadata(Deno.readFileSync("model.gguf"), "model.gguf");
 * ```
 */
export function parseGGUFMetadata(
  bytes: Uint8Array,
  file: string,
  fileSize: number = bytes.length,
): GGUFMetadata {
  const complete = bytes.length >= fileSize;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder();
  let at = 0;
  const fail = (m: string) => new GGUFError(file, m);
  const need = (n: number, what: string) => {
    if (n > bytes.length - at) {
      if (!complete) throw new NeedMore();
      throw fail(`truncated at byte ${at}: ${what} needs ${n} bytes, ${bytes.length - at} remain`);
    }
  };
  const u32 = (what: string) => {
    need(4, what);
    at += 4;
    return view.getUint32(at - 4, true);
  };
  const u64 = (what: string) => {
    need(8, what);
    at += 8;
    return view.getBigUint64(at - 8, true);
  };
  // A count of entries of at least `min` bytes each, capped by what the file can hold.
  const count = (what: string, min: number) => {
    const n = u64(what);
    if (n > BigInt(Math.floor((fileSize - at) / min))) {
      throw fail(`${what} = ${n} cannot fit in the ${fileSize - at} bytes that remain`);
    }
    return Number(n);
  };
  const str = (what: string) => {
    const n = u64(`length of ${what}`);
    if (n > BigInt(fileSize - at)) throw fail(`${what} claims ${n} bytes, beyond the file`);
    need(Number(n), what);
    at += Number(n);
    return utf8.decode(bytes.subarray(at - Number(n), at));
  };
  const value = (type: number, key: string, depth: number): GGUFValue => {
    switch (type) {
      case 0:
        need(1, key);
        return bytes[at++];
      case 1:
        need(1, key);
        return view.getInt8(at++);
      case 2:
        need(2, key);
        at += 2;
        return view.getUint16(at - 2, true);
      case 3:
        need(2, key);
        at += 2;
        return view.getInt16(at - 2, true);
      case 4:
        return u32(key);
      case 5:
        need(4, key);
        at += 4;
        return view.getInt32(at - 4, true);
      case 6:
        need(4, key);
        at += 4;
        return view.getFloat32(at - 4, true);
      case 7: {
        need(1, key);
        const b = bytes[at++];
        if (b > 1) throw fail(`${key}: bool value ${b} is neither 0 nor 1`);
        return b === 1;
      }
      case 8:
        return str(key);
      case 9: {
        if (depth >= 4) throw fail(`${key}: arrays nested deeper than 4`);
        const elementType = u32(`element type of ${key}`);
        const min = MIN_BYTES[elementType];
        if (min === undefined) throw fail(`${key}: unknown array element type ${elementType}`);
        const n = count(`length of array ${key}`, min);
        const out: GGUFValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = value(elementType, key, depth + 1);
        return out;
      }
      case 10: {
        const v = u64(key);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 11: {
        need(8, key);
        at += 8;
        const v = view.getBigInt64(at - 8, true);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 12:
        need(8, key);
        at += 8;
        return view.getFloat64(at - 8, true);
      default:
        throw fail(`metadata ${key} has unknown value type ${type}`);
    }
  };

  need(4, "magic");
  if (bytes[0] !== 0x47 || bytes[1] !== 0x47 || bytes[2] !== 0x55 || bytes[3] !== 0x46) {
    throw fail('not a GGUF file (no "GGUF" magic)');
  }
  at = 4;
  const version = u32("version");
  if (version !== 2 && version !== 3) throw fail(`GGUF version ${version} is not supported (2 and 3 are)`);
  const tensorCount = count("tensor_count", 24);
  const kvCount = count("kv_count", 13);
  const values = new Map<string, GGUFValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = str(`key of metadata entry ${i}`);
    const v = value(u32(`type of ${key}`), key, 0);
    if (values.has(key)) throw fail(`metadata key ${key} appears twice`);
    values.set(key, v);
  }
  return { version, tensorCount, values, get: (key) => values.get(key) };
}

/**
 * Reads the metadata of a GGUF file, reading only as much of the file as the metadata takes
 * (at most 1 GiB): the tensor data of a multi-gigabyte model is never read.
 *
 * @example
 * ```ts
 * const meta = await readGGUFMetadata("mamba2-130m.Q8_0.gguf");
 * console.log(meta.get("tokenizer.ggml.model"));
 * ```
 */
export async function readGGUFMetadata(path: string | URL): Promise<GGUFMetadata> {
  const name = path instanceof URL ? path.pathname : path;
  using f = await Deno.open(path, { read: true });
  const size = (await f.stat()).size;
  let want = Math.min(size, 4 << 20);
  let buf = new Uint8Array(0);
  for (;;) {
    if (want > buf.length) {
      const next = new Uint8Array(want);
      next.set(buf);
      let filled = buf.length;
      await f.seek(filled, Deno.SeekMode.Start);
      while (filled < want) {
        const n = await f.read(next.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      buf = next.subarray(0, filled);
    }
    try {
      return parseGGUFMetadata(buf, name, size);
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      if (want >= 1 << 30) throw new GGUFError(name, "the metadata is larger than 1 GiB");
      want = Math.min(size, want * 4);
    }
  }
}

/** Whether the file at `path` starts with the GGUF magic. */
export async function isGGUFFile(path: string | URL): Promise<boolean> {
  using f = await Deno.open(path, { read: true });
  const head = new Uint8Array(4);
  let n = 0;
  while (n < 4) {
    const r = await f.read(head.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n === 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46;
}
