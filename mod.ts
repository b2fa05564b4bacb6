/**
 * Mamba2 language models on Apple GPUs (Metal) and CPUs, from Deno.
 *
 * @example
 * ```ts
 * import { MambaEngine } from "./mod.ts";
 * using engine = await MambaEngine.load("models/demo");
 * const logits = engine.prefill([1, 2, 3]);
 * console.log(logits.length === engine.vocabSize);
 * ```
 *
 * @module
 */
export {
  type BackendName,
  type GpuCounters,
  type LoadOptions,
  MambaEngine,
  type ModelConfig,
  type WeightDType,
} from "./src/engine.ts";
export { MambaError, MambaStatus, type MambaStatusName } from "./src/errors.ts";
