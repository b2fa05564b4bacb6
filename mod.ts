/**
 * Mamba2 language models on Apple GPUs (Metal) and CPUs, from Deno.
 *
 * @example
 * ```ts
 * import { Generator, MambaEngine, Tokenizer } from "./mod.ts";
 * using engine = await MambaEngine.load("models/demo");
 * const tokenizer = await Tokenizer.load("models/demo/tokenizer.json");
 * const gen = new Generator(engine, tokenizer).generate("It is a truth universally acknowledged", {
 *   maxTokens: 32,
 *   temperature: 0,
 * });
 * for await (const piece of gen) await Deno.stdout.write(new TextEncoder().encode(piece));
 * ```
 *
 * @module
 */
export { type GpuCounters, MambaEngine, type ModelConfig } from "./src/engine.ts";
export {
  type BackendName,
  type LoadOptions,
  type MetalTuningParams,
  type WeightDType,
} from "./src/options.ts";
export { MambaError, MambaStatus, type MambaStatusName } from "./src/errors.ts";
export {
  GGUFError,
  type GGUFMetadata,
  type GGUFValue,
  isGGUFFile,
  parseGGUFMetadata,
  readGGUFMetadata,
} from "./src/gguf.ts";
export {
  type AddedTokenJson,
  type DecodeOptions,
  type EncodeOptions,
  type NormalizerJson,
  StreamDecoder,
  Tokenizer,
  TokenizerError,
  type TokenizerJson,
} from "./src/tokenizer.ts";
export {
  argmax,
  checkStopStrings,
  type ResolvedSamplingOptions,
  Sampler,
  type SamplingOptions,
  StopChecker,
  type StopCheckerOptions,
  type StopStringCheck,
  Xoshiro128,
} from "./src/sampling.ts";
export {
  type GenerateOptions,
  type Generation,
  type GenerationStats,
  Generator,
  type StopReason,
} from "./src/generate.ts";
export { serve, type ServeOptions } from "./src/server/serve.ts";
