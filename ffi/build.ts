/**
 * Finding, or else building, libMambaMetal for a module that may have been imported from anywhere.
 *
 * Order: the `libraryPath` option, the `MAMBA_METAL_LIB` environment variable, the package's own
 * `swift/.build/release` output (when the module is on disk), a per-user cache keyed by the module
 * version and platform; otherwise build: fetch `swift/` and `metal/`
 * (listed in ./sources.ts) from beside the module URL into the cache, run `swift build -c release`
 * there, check the result's ABI and version, and move it into place with an atomic rename.
 *
 * @module
 */
import { symbols } from "./symbols.ts";
import { checkLibrary, findLibrary, LIBRARY_ENV, libraryFileName } from "./library.ts";
import { SOURCE_FILES } from "./sources.ts";
import { MambaError, MambaStatus } from "./errors.ts";
import { fileExists, readEnv, requirePermission } from "./host.ts";
import { VERSION } from "./version.ts";

/** The module's version, which the library must report. */
export const MODULE_VERSION: string = VERSION;

/** Options of {@linkcode ensureLibrary}. */
export interface EnsureLibraryOptions {
  /** Use this library file, skipping every lookup. */
  libraryPath?: string;
  /** Receives progress lines (fetching, compiler output); default: nothing. */
  progress?: (line: string) => void;
}

function libraryError(message: string): MambaError {
  return new MambaError(MambaStatus.LIBRARY, message);
}

/** The per-user cache directory: $MAMBA_METAL_CACHE, else the platform's user cache folder. */
export function cacheRoot(): string {
  const explicit = readEnv("MAMBA_METAL_CACHE");
  if (explicit) return explicit;
  const home = readEnv("HOME") ?? readEnv("USERPROFILE");
  if (Deno.build.os === "darwin" && home) return `${home}/Library/Caches/mamba-metal`;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/mamba-metal`;
  if (home) return `${home}/.cache/mamba-metal`;
  throw libraryError(
    "cannot find a cache directory: set MAMBA_METAL_CACHE (and allow it with --allow-env), or HOME",
  );
}

/** The cache entry for this module version and platform (a published version's sources never change). */
export function cacheKey(): string {
  return `${MODULE_VERSION}-${Deno.build.os}-${Deno.build.arch}`;
}

/** Opens `path` briefly and checks it is a libMambaMetal of this ABI and version. */
export function verifyLibrary(path: string): void {
  requirePermission({ name: "ffi" }, "--allow-ffi", "loading the native library");
  const lib = Deno.dlopen(path, {
    mamba_abi_version: symbols.mamba_abi_version,
    mamba_version: symbols.mamba_version,
  });
  try {
    checkLibrary(lib.symbols, path, MODULE_VERSION);
  } finally {
    lib.close();
  }
}

/** The package root this module was loaded from (a file: or http(s): URL). */
function packageRoot(): URL {
  return new URL("../", import.meta.url);
}

async function fetchSources(into: string, progress: (line: string) => void): Promise<void> {
  const root = packageRoot();
  const local = root.protocol === "file:";
  if (local) {
    requirePermission({ name: "read", path: root.pathname }, "--allow-read", "copying the native sources");
  } else {requirePermission(
      { name: "net", host: root.host },
      `--allow-net=${root.host}`,
      "fetching the native sources",
    );}
  progress(`mamba-metal: fetching ${SOURCE_FILES.length} native source files from ${root.href}`);
  for (const file of SOURCE_FILES) {
    const url = new URL(file, root);
    let bytes: Uint8Array;
    if (local) {
      bytes = await Deno.readFile(url);
    } else {
      const response = await fetch(url);
      if (!response.ok) throw libraryError(`cannot fetch ${url.href}: HTTP ${response.status}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    }
    const dest = `${into}/${file}`;
    await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(dest, bytes);
  }
}

async function streamLines(
  stream: ReadableStream<Uint8Array>,
  sink: (line: string) => void,
): Promise<string> {
  let all = "", pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    all += chunk;
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) if (line.trim()) sink(line);
  }
  if (pending.trim()) sink(pending);
  return all;
}

async function swiftBuild(packageDir: string, progress: (line: string) => void): Promise<void> {
  requirePermission({ name: "run", command: "swift" }, "--allow-run=swift", "building the native library");
  progress(`mamba-metal: building libMambaMetal (swift build -c release) in ${packageDir}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("swift", {
      args: ["build", "-c", "release", "--package-path", packageDir],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw libraryError(
        "building libMambaMetal needs the Swift toolchain (`swift` on PATH): install Xcode 16+ on macOS or " +
          `the toolchain from swift.org on Linux, or point ${LIBRARY_ENV} at a built library`,
      );
    }
    throw e;
  }
  const echo = (line: string) => progress(`  ${line}`);
  const [out, err, status] = await Promise.all([
    streamLines(child.stdout, echo),
    streamLines(child.stderr, echo),
    child.status,
  ]);
  if (!status.success) {
    const tail = (out + err).trim().split("\n").slice(-20).join("\n");
    throw libraryError(`swift build failed (exit ${status.code}):\n${tail}`);
  }
}

/** Waits while another process holds the build lock; takes it over when it is stale. */
async function acquireLock(lockPath: string, done: () => boolean): Promise<Deno.FsFile | undefined> {
  const staleMs = 30 * 60 * 1000;
  for (;;) {
    try {
      return await Deno.open(lockPath, { createNew: true, write: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    if (done()) return undefined;
    try {
      if (Date.now() - (Deno.statSync(lockPath).mtime?.getTime() ?? 0) > staleMs) Deno.removeSync(lockPath);
    } catch { /* lock went away meanwhile */ }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Returns the path of a usable libMambaMetal, building it into the per-user cache if needed.
 *
 * @example
 * ```ts
 * import { ensureLibrary } from "./ffi/build.ts";
 * const path = await ensureLibrary({ progress: (line) => console.error(line) });
 * ```
 */
export async function ensureLibrary(options: EnsureLibraryOptions = {}): Promise<string> {
  const found = findLibrary(options.libraryPath);
  if (found) return found;
  const progress = options.progress ?? (() => {});
  const root = packageRoot();

  // A checkout on disk builds in place, where `deno task build` would put the library.
  if (root.protocol === "file:" && fileExists(`${root.pathname}swift/Package.swift`)) {
    requirePermission(
      { name: "write", path: `${root.pathname}swift` },
      "--allow-write",
      "building the native library",
    );
    await swiftBuild(`${root.pathname}swift`, progress);
    const built = findLibrary();
    if (!built) throw libraryError("swift build succeeded but produced no library");
    return built;
  }

  const cache = cacheRoot();
  requirePermission({ name: "read", path: cache }, "--allow-read", "the library cache");
  const dir = `${cache}/${cacheKey()}`;
  const lib = `${dir}/${libraryFileName()}`;
  if (fileExists(lib)) return lib;

  // Everything a build needs, checked before any work so the error names what is missing.
  requirePermission(
    { name: "write", path: cache },
    `--allow-write=${cache}`,
    "building into the library cache",
  );
  if (root.protocol !== "file:") {
    requirePermission(
      { name: "net", host: root.host },
      `--allow-net=${root.host}`,
      "fetching the native sources",
    );
  }
  requirePermission({ name: "run", command: "swift" }, "--allow-run=swift", "building the native library");
  requirePermission({ name: "ffi" }, "--allow-ffi", "loading the native library");

  await Deno.mkdir(cache, { recursive: true });
  const lock = await acquireLock(`${dir}.lock`, () => fileExists(lib));
  if (!lock) return lib; // another process finished the build while we waited
  const work = `${dir}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (fileExists(lib)) return lib;
    await fetchSources(work, progress);
    await swiftBuild(`${work}/swift`, progress);
    const built = `${work}/swift/.build/release/${libraryFileName()}`;
    verifyLibrary(built);
    // Only the library moves into the cache entry; a rename is atomic, so readers see all or nothing.
    await Deno.mkdir(`${work}/entry`);
    await Deno.copyFile(built, `${work}/entry/${libraryFileName()}`);
    await Deno.rename(`${work}/entry`, dir);
    progress(`mamba-metal: library cached at ${lib}`);
    return lib;
  } finally {
    lock.close();
    await Deno.remove(`${dir}.lock`).catch(() => {});
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
