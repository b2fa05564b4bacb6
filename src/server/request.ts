/**
 * The body of `POST /v1/completions`, checked field by field: a wrong type or a value out of range is an
 * {@linkcode ApiError} 400 naming the field. Unknown fields are ignored (clients send many); fields
 * whose other values this server cannot honour (`n`, `echo`, `logprobs`, penalties, …) are accepted
 * only at their neutral value.
 *
 * @module
 */
import type { SamplingOptions } from "../sampling.ts";
import { ApiError } from "./errors.ts";

/**
 * A checked completion request.
 *
 * @example
 * ```ts
 * const request: CompletionRequest = parseCompletionRequest({ prompt: "Emma", max_tokens: 8 }, limits);
 * ```
 */
export interface CompletionRequest {
  /** The prompt: text, or token ids. */
  prompt: string | number[];
  /** Most tokens to generate. */
  maxTokens: number;
  /** Sampling (temperature, top-k/p, min-p, repetition penalty, seed). */
  sampling: SamplingOptions;
  /** Strings that end the completion (not included in it). */
  stop: string[];
  /** Server-sent events instead of one JSON body. */
  stream: boolean;
  /** Streaming: a last chunk with `usage`. */
  includeUsage: boolean;
}

/**
 * What a request may ask for.
 *
 * @example
 * ```ts
 * const limits: RequestLimits = { maxTokens: 4096, vocabSize: 50288 };
 * ```
 */
export interface RequestLimits {
  /** Largest `max_tokens`. */
  maxTokens: number;
  /** Token ids in a prompt must be below this. */
  vocabSize: number;
}

type Json = Record<string, unknown>;

function bad(param: string, message: string): ApiError {
  return new ApiError(400, message, { param, code: "invalid_value" });
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function numberField(body: Json, name: string, min: number, max: number, fallback: number): number {
  const v = body[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ApiError(400, `${name} must be a number, got ${typeName(v)}`, {
      param: name,
      code: "invalid_type",
    });
  }
  if (v < min || v > max) throw bad(name, `${name} must be from ${min} to ${max}, got ${v}`);
  return v;
}

function integerField(body: Json, name: string, min: number, max: number, fallback: number): number {
  const v = numberField(body, name, min, max, fallback);
  if (!Number.isInteger(v)) throw bad(name, `${name} must be an integer, got ${v}`);
  return v;
}

function booleanField(body: Json, name: string, fallback: boolean): boolean {
  const v = body[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") {
    throw new ApiError(400, `${name} must be a boolean, got ${typeName(v)}`, {
      param: name,
      code: "invalid_type",
    });
  }
  return v;
}

/** Fields accepted only at the value that changes nothing. */
function neutral(body: Json, name: string, ok: (v: unknown) => boolean, what: string): void {
  const v = body[name];
  if (v !== undefined && v !== null && !ok(v)) {
    throw new ApiError(400, `${name} is not supported by this server (${what})`, {
      param: name,
      code: "unsupported_value",
    });
  }
}

function parsePrompt(v: unknown, vocabSize: number): string | number[] {
  if (v === undefined || v === null) throw new ApiError(400, "prompt is required", { param: "prompt" });
  // One prompt per request: a one-element array of either form is that prompt.
  if (Array.isArray(v) && v.length === 1 && (typeof v[0] === "string" || Array.isArray(v[0]))) v = v[0];
  if (typeof v === "string") return v;
  if (!Array.isArray(v)) {
    throw new ApiError(400, `prompt must be a string or an array of token ids, got ${typeName(v)}`, {
      param: "prompt",
      code: "invalid_type",
    });
  }
  if (v.some((x) => typeof x === "string" || Array.isArray(x))) {
    throw bad("prompt", "one prompt per request: batches of prompts are not supported");
  }
  v.forEach((id, i) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw bad("prompt", `prompt[${i}] is not a token id in [0, ${vocabSize}): ${JSON.stringify(id)}`);
    }
  });
  return v as number[];
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) {
    throw new ApiError(400, "stop must be a string or an array of strings", {
      param: "stop",
      code: "invalid_type",
    });
  }
  if (list.length > 4) throw bad("stop", `stop takes at most 4 strings, got ${list.length}`);
  return (list as string[]).filter((s) => s.length > 0);
}

/**
 * Checks a parsed JSON body. Throws {@linkcode ApiError} 400 for the first problem, naming the field.
 *
 * @example
 * ```ts
 * const r = parseCompletionRequest({ prompt: "Emma", max_tokens: 8, temperature: 0 }, { maxTokens: 4096, vocabSize: 50288 });
 * ```
 */
export function parseCompletionRequest(body: unknown, limits: RequestLimits): CompletionRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, `the request body must be a JSON object, got ${typeName(body)}`, {
      code: "invalid_type",
    });
  }
  const b = body as Json;
  if (b.model !== undefined && typeof b.model !== "string") {
    throw new ApiError(400, `model must be a string, got ${typeName(b.model)}`, {
      param: "model",
      code: "invalid_type",
    });
  }
  const prompt = parsePrompt(b.prompt, limits.vocabSize);
  const maxTokens = integerField(b, "max_tokens", 0, limits.maxTokens, Math.min(16, limits.maxTokens));
  const temperature = numberField(b, "temperature", 0, 2, 1);
  const topP = numberField(b, "top_p", 0, 1, 1);
  const topK = integerField(b, "top_k", 0, 1 << 30, 0);
  const minP = numberField(b, "min_p", 0, 1, 0);
  const repetitionPenalty = numberField(b, "repetition_penalty", 0, 100, 1);
  if (repetitionPenalty === 0) throw bad("repetition_penalty", "repetition_penalty must be > 0");
  let seed: number | undefined;
  if (b.seed !== undefined && b.seed !== null) {
    if (typeof b.seed !== "number" || !Number.isSafeInteger(b.seed)) {
      throw new ApiError(400, `seed must be an integer, got ${JSON.stringify(b.seed)}`, {
        param: "seed",
        code: "invalid_type",
      });
    }
    seed = b.seed;
  }
  const stream = booleanField(b, "stream", false);
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (typeof b.stream_options !== "object" || Array.isArray(b.stream_options)) {
      throw new ApiError(400, "stream_options must be an object", {
        param: "stream_options",
        code: "invalid_type",
      });
    }
    includeUsage = booleanField(b.stream_options as Json, "include_usage", false);
  }
  neutral(b, "n", (v) => v === 1, "n must be 1");
  neutral(b, "best_of", (v) => v === 1, "best_of must be 1");
  neutral(b, "echo", (v) => v === false, "echo must be false");
  neutral(b, "logprobs", (v) => v === 0 || v === false, "no logprobs");
  neutral(b, "suffix", (v) => v === "", "no suffix");
  neutral(b, "presence_penalty", (v) => v === 0, "use repetition_penalty");
  neutral(b, "frequency_penalty", (v) => v === 0, "use repetition_penalty");
  neutral(
    b,
    "logit_bias",
    (v) => typeof v === "object" && !Array.isArray(v) && Object.keys(v as Json).length === 0,
    "no logit_bias",
  );
  return {
    prompt,
    maxTokens,
    // top_p 0 asks for the single most likely token: top-k 1.
    sampling: {
      temperature,
      topP: topP === 0 ? 1 : topP,
      topK: topP === 0 ? 1 : topK,
      minP,
      repetitionPenalty,
      seed,
    },
    stop: parseStop(b.stop),
    stream,
    includeUsage,
  };
}
