/**
 * `serve(engine, tokenizer, options)`: an OpenAI-compatible completions server over one engine, whose
 * sequences are the slots of continuous batching (see {@linkcode Scheduler}), with a state cache.
 *
 * @module
 */
import type { MambaEngine } from "../engine.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { OpenAIApi } from "./api.ts";
import { Scheduler } from "./scheduler.ts";
import { StateCache } from "./state_cache.ts";

/**
 * Options of {@linkcode serve}.
 *
 * @example
 * ```ts
 * const options: ServeOptions = { hostname: "127.0.0.1", port: 8080, modelId: "mamba2-130m", cacheBytes: 2 ** 30 };
 * ```
 */
export interface ServeOptions {
  /** Interface to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  /** The model's name in responses and /v1/models (default `"mamba"`). */
  modelId?: string;
  /** Requests that may wait for a slot; more get 429 (default 64). */
  maxQueue?: number;
  /** Largest request body in bytes; larger gets 413 (default 1 MiB). */
  maxBodyBytes?: number;
  /** Longest prompt in tokens; longer gets 400 (default 16384). */
  maxPromptTokens?: number;
  /** Largest `max_tokens` (default 4096). */
  maxTokens?: number;
  /** Bytes of prompt states kept for reuse; 0 disables the cache (default 1 GiB). */
  cacheBytes?: number;
  /** Prompt tokens prefilled per step, between decode steps (default 256; rounded to whole chunks). */
  prefillBlock?: number;
  /** Stops the server. */
  signal?: AbortSignal;
  /** Called once listening (default: a line on stderr). */
  onListen?: (addr: Deno.NetAddr) => void;
}

/**
 * Serves `engine` over HTTP: `POST /v1/completions` (streamed or not), `GET /v1/models`, `GET /health`.
 * The engine's `batchSize` is the number of requests decoded together; it must stay open while the
 * server runs (the caller closes it after `server.finished`).
 *
 * @example
 * ```ts
 * import { MambaEngine, serve, Tokenizer } from "./mod.ts";
 * const engine = await MambaEngine.load("models/demo", { batchSize: 4 });
 * const tokenizer = await Tokenizer.load("models/demo/tokenizer.json");
 * const server = serve(engine, tokenizer, { port: 8080, modelId: "demo" });
 * await server.finished;
 * engine.close();
 * ```
 */
export function serve(
  engine: MambaEngine,
  tokenizer: Tokenizer,
  options: ServeOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const cacheBytes = options.cacheBytes ?? 2 ** 30;
  const cache = cacheBytes > 0 ? new StateCache(cacheBytes, engine.config.chunkSize) : null;
  const scheduler = new Scheduler(engine, {
    maxQueue: options.maxQueue ?? 64,
    prefillBlock: options.prefillBlock ?? 256,
    cache,
    vocabLimit: Math.min(engine.vocabSize, tokenizer.vocabSize),
  });
  const api = new OpenAIApi(scheduler, tokenizer, cache, {
    modelId: options.modelId ?? "mamba",
    maxBodyBytes: options.maxBodyBytes ?? 1 << 20,
    maxPromptTokens: options.maxPromptTokens ?? 16384,
    maxTokens: options.maxTokens ?? 4096,
  });
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 8080,
    signal: options.signal,
    onListen: options.onListen ??
      ((addr) => console.error(`listening on http://${addr.hostname}:${addr.port}`)),
  }, (req) => api.handle(req));
  server.finished.then(() => scheduler.close());
  return server;
}
