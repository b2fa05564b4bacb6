/**
 * Reading a Metal tuning table (configs/metal_tune.json's format, written by `deno task tune`) from a
 * file or over HTTP. The native engine validates its contents and picks the entry; this only finds,
 * reads and parses it, and remembers where it came from so that errors name the file.
 *
 * @module
 */
import { MambaError, MambaStatus } from "../ffi/errors.ts";

/** A tuning table and the file or URL it came from (native errors about it name that). */
export interface TuneTable {
  /** The parsed JSON. */
  table: unknown;
  /** A path or URL. */
  source: string;
}

/** Where a table is read from: a path or URL, `false` for none, undefined for the package's own. */
export type TuneFile = string | URL | false | undefined;

const DEFAULT_TUNE_FILE = new URL("../configs/metal_tune.json", import.meta.url);

function parseTuneTable(text: string, where: string): TuneTable {
  try {
    return { table: JSON.parse(text), source: where };
  } catch (e) {
    throw new MambaError(MambaStatus.FORMAT, `${where}: ${(e as Error).message}`);
  }
}

function tuneSource(url: string | URL): string {
  return url instanceof URL && url.protocol === "file:" ? url.pathname : String(url);
}

/**
 * The table in `file`, read synchronously (an http(s) URL is skipped: only {@linkcode readTuneTable}
 * fetches). The package's own table is optional; a table named explicitly must be readable JSON.
 */
export function readTuneTableSync(file: TuneFile): TuneTable | undefined {
  if (file === false) return undefined;
  const url = file === undefined ? DEFAULT_TUNE_FILE : file;
  if (url instanceof URL && url.protocol !== "file:") return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync(url);
  } catch (e) {
    // The package's own table is optional (and unreadable without --allow-read on the module).
    if (file === undefined && (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotCapable)) {
      return undefined;
    }
    throw new MambaError(MambaStatus.IO, `tuning table ${tuneSource(url)}: ${(e as Error).message}`);
  }
  return parseTuneTable(text, tuneSource(url));
}

/** The table in `file`, fetched when it is an http(s) URL (as the package's own is on a remote import). */
export async function readTuneTable(file: TuneFile): Promise<TuneTable | undefined> {
  const url = file === undefined ? DEFAULT_TUNE_FILE : file;
  if (url instanceof URL && url.protocol !== "file:") {
    const response = await fetch(url).catch(() => undefined);
    if (!response?.ok) {
      await response?.body?.cancel();
      if (file === undefined) return undefined;
      throw new MambaError(MambaStatus.IO, `cannot fetch ${url.href}`);
    }
    return parseTuneTable(await response.text(), url.href);
  }
  return readTuneTableSync(file);
}
