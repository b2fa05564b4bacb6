/**
 * The module's version; the native library must report the same (tests check it against deno.json).
 * In ffi/ because the library loader checks it; src/version.ts re-exports it.
 *
 * @module
 */

/** Version of this module and of the libMambaMetal it loads. */
export const VERSION = "0.2.0";
