/**
 * Errors raised by the engine (defined in ffi/errors.ts, next to the C ABI they mirror).
 *
 * @module
 */
export { MambaError, MambaStatus, type MambaStatusName } from "../ffi/errors.ts";
