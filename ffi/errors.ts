/**
 * Errors raised by the engine: the C ABI's status codes (`enum mamba_status` in swift/include/mamba.h,
 * checked by tests/abi.test.ts) and the error that carries them. Part of ffi/, the layer that talks to
 * the native library; src/errors.ts re-exports it for the API.
 *
 * @module
 */

/**
 * Status codes of the C ABI (`enum mamba_status` in swift/include/mamba.h).
 *
 * @example
 * ```ts
 * try {
 *   engine.step([-1]);
 * } catch (e) {
 *   if (e instanceof MambaError && e.code === MambaStatus.TOKEN) console.error(e.message);
 * }
 * ```
 */
export const MambaStatus = {
  OK: 0,
  ARGUMENT: 1,
  IO: 2,
  FORMAT: 3,
  SHAPE: 4,
  TOKEN: 5,
  STATE: 6,
  BACKEND: 7,
  CLOSED: 8,
  UNSUPPORTED: 9,
  INTERNAL: 10,
  /** Raised by the TypeScript side itself: the native library is missing or unusable. */
  LIBRARY: 100,
} as const;

/**
 * The name of a status code, e.g. `"TOKEN"`.
 *
 * @example
 * ```ts
 * const status: MambaStatusName = "SHAPE";
 * ```
 */
export type MambaStatusName = keyof typeof MambaStatus;

/**
 * An error from the Mamba engine, carrying the native message that names the problem (file,
 * tensor, shape, token id, …) and the status code.
 *
 * @example
 * ```ts
 * import { MambaEngine, MambaError } from "./mod.ts";
 * try {
 *   await MambaEngine.load("./no-such-model");
 * } catch (e) {
 *   if (e instanceof MambaError) console.error(e.status, e.message);
 * }
 * ```
 */
export class MambaError extends Error {
  /** Numeric status code from the C ABI. */
  readonly code: number;
  /** Symbolic status, e.g. `"IO"`, `"SHAPE"`, `"TOKEN"`, `"CLOSED"`. */
  readonly status: MambaStatusName | "UNKNOWN";

  /** Creates an error for status `code` with `message`. */
  constructor(code: number, message: string) {
    super(message);
    this.name = "MambaError";
    this.code = code;
    const entry = Object.entries(MambaStatus).find(([, v]) => v === code);
    this.status = entry ? entry[0] as MambaStatusName : "UNKNOWN";
  }
}
