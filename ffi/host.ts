/**
 * What this process may do and see, asked the same way by the library loader (./library.ts) and the
 * builder (./build.ts): a permission that is missing is a `MambaError` naming the flag that grants it,
 * an environment variable that may not be read is absent, and so is a file that cannot be seen.
 *
 * @module
 */
import { MambaError, MambaStatus } from "./errors.ts";

/** Throws a `LIBRARY` MambaError saying that `why` needs `flag`, unless `desc` is granted. */
export function requirePermission(desc: Deno.PermissionDescriptor, flag: string, why: string): void {
  if (Deno.permissions.querySync(desc).state !== "granted") {
    throw new MambaError(MambaStatus.LIBRARY, `permission denied: ${why} needs ${flag}`);
  }
}

/** The variable's value; undefined when it is unset, empty, or not readable without --allow-env. */
export function readEnv(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
  return Deno.env.get(name) || undefined;
}

/** Whether `path` exists and this process may see it (no --allow-read for it counts as absent). */
export function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotCapable) return false;
    throw e;
  }
}
