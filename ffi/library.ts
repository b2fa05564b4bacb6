/**
 * Finding and opening libMambaMetal.
 *
 * Order: the `libraryPath` option, the `MAMBA_METAL_LIB` environment variable, then the package's
 * own `swift/.build/release` output (when the module is loaded from files).
 *
 * @module
 */
import { ABI_VERSION, type MambaSymbols, symbols } from "./symbols.ts";
import { MambaError, MambaStatus } from "./errors.ts";
import { fileExists, readEnv, requirePermission } from "./host.ts";

/** Environment variable naming the library file. */
export const LIBRARY_ENV = "MAMBA_METAL_LIB";

/** File name of the library on this platform. */
export function libraryFileName(): string {
  switch (Deno.build.os) {
    case "darwin":
      return "libMambaMetal.dylib";
    case "windows":
      return "MambaMetal.dll";
    default:
      return "libMambaMetal.so";
  }
}

/** The library that `swift build -c release` leaves in this package, if the module is on disk. */
export function localBuildPath(): string | undefined {
  const url = new URL(`../swift/.build/release/${libraryFileName()}`, import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : undefined;
}

/** An opened library: its symbols and where it came from. */
export interface OpenedLibrary {
  /** The C functions. */
  readonly symbols: MambaSymbols;
  /** The file that was opened. */
  readonly path: string;
  /** Library version string. */
  readonly version: string;
}

const opened = new Map<string, OpenedLibrary>();

/** Where the library would be loaded from, without opening it; undefined if nothing is found. */
export function findLibrary(libraryPath?: string): string | undefined {
  if (libraryPath) return libraryPath;
  const fromEnv = readEnv(LIBRARY_ENV);
  if (fromEnv) return fromEnv;
  const local = localBuildPath();
  return local && fileExists(local) ? local : undefined;
}

/** The two calls that identify a library, which every caller checks before using it. */
type IdentitySymbols = Pick<MambaSymbols, "mamba_abi_version" | "mamba_version">;

/**
 * Checks that the library at `path` implements this ABI_VERSION (and, when `version` is given, is that
 * version); returns its version. Throws a `LIBRARY` MambaError saying how to rebuild it.
 */
export function checkLibrary(lib: IdentitySymbols, path: string, version?: string): string {
  const abi = lib.mamba_abi_version();
  const p = lib.mamba_version();
  const actual = p ? Deno.UnsafePointerView.getCString(p) : "?";
  if (version !== undefined && (abi !== ABI_VERSION || actual !== version)) {
    throw new MambaError(
      MambaStatus.LIBRARY,
      `${path} is version ${actual} (ABI ${abi}); this module needs ${version} (ABI ${ABI_VERSION})`,
    );
  }
  if (abi !== ABI_VERSION) {
    throw new MambaError(
      MambaStatus.LIBRARY,
      `${path} has C ABI version ${abi}, these bindings need ${ABI_VERSION}: rebuild it with \`deno task build\``,
    );
  }
  return actual;
}

/** Opens (once per path) and checks the library. Throws a MambaError saying how to build it. */
export function openLibrary(libraryPath?: string): OpenedLibrary {
  const path = findLibrary(libraryPath);
  if (!path) {
    throw new MambaError(
      MambaStatus.LIBRARY,
      `libMambaMetal not found: build it with \`deno task build\` (swift build -c release --package-path swift), ` +
        `or set ${LIBRARY_ENV} or the libraryPath option to the library file`,
    );
  }
  const cached = opened.get(path);
  if (cached) return cached;
  requirePermission({ name: "ffi" }, "--allow-ffi", "loading the native library");
  const open = <S extends Deno.ForeignLibraryInterface>(table: S): Deno.DynamicLibrary<S> => {
    try {
      return Deno.dlopen(path, table);
    } catch (e) {
      throw new MambaError(
        MambaStatus.LIBRARY,
        `cannot open ${path}: ${(e as Error).message}. Rebuild it with \`deno task build\``,
      );
    }
  };
  // The identity calls first: a library of another ABI version lacks some symbols (or has them with other
  // types), and binding the whole table would fail with dlopen's "undefined symbol" instead of the
  // version check's message.
  const identity = open({
    mamba_abi_version: symbols.mamba_abi_version,
    mamba_version: symbols.mamba_version,
  });
  let version: string;
  try {
    version = checkLibrary(identity.symbols, path);
  } finally {
    identity.close();
  }
  const lib = open(symbols);
  const entry = { symbols: lib.symbols, path, version };
  opened.set(path, entry);
  return entry;
}

/** The message of the last failing native call on this thread. */
export function lastError(lib: OpenedLibrary): string {
  const p = lib.symbols.mamba_last_error();
  return p ? Deno.UnsafePointerView.getCString(p) : "unknown error";
}

/** Throws a MambaError for a non-zero status, with the native message. */
export function check(lib: OpenedLibrary, status: number): void {
  if (status !== 0) throw new MambaError(status, lastError(lib));
}
