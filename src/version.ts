/**
 * The module's version (defined in ffi/version.ts, where the library loader checks it).
 *
 * @module
 */
export { VERSION } from "../ffi/version.ts";
