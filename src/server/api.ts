/**
 * The OpenAI-compatible HTTP API over a {@linkcode Scheduler}: `POST /v1/completions` (one JSON body,
 * or server-sent events), `GET /v1/models`, `GET /v1/models/{id}` and `GET /health`.
 *
 * @module
 */
import { MambaError } from "../../ffi/errors.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { ApiError, jsonResponse } from "./errors.ts";
import { CompletionJob, type FinishReason, type JobSink, type Usage } from "./job.ts";
import { type CompletionRequest, parseCompletionRequest } from "./request.ts";
import type { Scheduler } from "./scheduler.ts";
import { SseStream } from "./sse.ts";
import type { StateCache } from "./state_cache.ts";

/**
 * Limits and names of an {@linkcode OpenAIApi}.
 *
 * @example
 * ```ts
 * const options: ApiOptions = { modelId: "mamba2-130m", maxBodyBytes: 1 << 20, maxPromptTokens: 8192, maxTokens: 4096 };
 * ```
 */
export interface ApiOptions {
  /** The model's name in responses and /v1/models. */
  modelId: string;
  /** Largest request body; larger is 413. */
  maxBodyBytes: number;
  /** Longest prompt in tokens; longer is 400. */
  maxPromptTokens: number;
  /** Largest max_tokens. */
  maxTokens: number;
}

function completionId(): string {
  return `cmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

/** The ids a prompt starts from: its tokens, or the end-of-text token for an empty prompt. */
function promptIds(tokenizer: Tokenizer, prompt: string | number[], eos: number[]): number[] {
  const ids = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
  if (ids.length > 0) return ids;
  if (eos.length === 0) {
    throw new ApiError(
      400,
      "the prompt is empty and the tokenizer has no <|endoftext|> token to start from",
      {
        param: "prompt",
      },
    );
  }
  return [eos[0]];
}

/**
 * Request handling: routes, body limits, validation, and the response shapes.
 *
 * @example
 * ```ts
 * const api = new OpenAIApi(scheduler, tokenizer, null, { modelId: "demo", maxBodyBytes: 1 << 20, maxPromptTokens: 8192, maxTokens: 4096 });
 * Deno.serve((req) => api.handle(req));
 * ```
 */
export class OpenAIApi {
  /** The limits and names. */
  readonly options: ApiOptions;
  readonly #scheduler: Scheduler;
  readonly #tokenizer: Tokenizer;
  readonly #cache: StateCache | null;
  readonly #eos: number[];
  readonly #created = Math.floor(Date.now() / 1000);

  /** An API over `scheduler`, with `tokenizer` for text prompts and output. */
  constructor(scheduler: Scheduler, tokenizer: Tokenizer, cache: StateCache | null, options: ApiOptions) {
    this.#scheduler = scheduler;
    this.#tokenizer = tokenizer;
    this.#cache = cache;
    this.options = options;
    const eos = tokenizer.tokenToId("<|endoftext|>");
    this.#eos = eos === undefined ? [] : [eos];
  }

  /** Answers one request; never throws. */
  async handle(req: Request): Promise<Response> {
    try {
      return await this.#route(req);
    } catch (e) {
      if (e instanceof ApiError) return e.toResponse();
      const message = e instanceof MambaError
        ? `engine: ${e.message}`
        : `internal error: ${(e as Error).message}`;
      return new ApiError(500, message).toResponse();
    }
  }

  #route(req: Request): Promise<Response> | Response {
    const path = new URL(req.url).pathname.replace(/\/+$/, "");
    const method = req.method;
    const allow = (methods: string) => {
      if (!methods.split(", ").includes(method)) {
        throw new ApiError(405, `${method} is not allowed on ${path}; use ${methods}`, {
          code: "method_not_allowed",
          headers: { allow: methods },
        });
      }
    };
    if (path === "/v1/completions") {
      allow("POST");
      return this.#completions(req);
    }
    if (path === "/v1/models") {
      allow("GET");
      return jsonResponse(200, { object: "list", data: [this.#model()] });
    }
    if (path.startsWith("/v1/models/")) {
      allow("GET");
      const id = decodeURIComponent(path.slice("/v1/models/".length));
      if (id !== this.options.modelId) {
        throw new ApiError(
          404,
          `the model '${id}' does not exist; this server serves '${this.options.modelId}'`,
          {
            param: "model",
            code: "model_not_found",
          },
        );
      }
      return jsonResponse(200, this.#model());
    }
    if (path === "/health") {
      allow("GET");
      const s = this.#scheduler;
      return jsonResponse(200, {
        status: "ok",
        model: this.options.modelId,
        slots: s.engine.batchSize,
        busy: s.busy,
        queued: s.queued,
        steps: s.steps,
        cache: this.#cache && { entries: this.#cache.size, bytes: this.#cache.bytes, ...this.#cache.stats },
      });
    }
    throw new ApiError(404, `no route for ${method} ${path}`, { code: "not_found" });
  }

  #model(): { id: string; object: "model"; created: number; owned_by: string } {
    return { id: this.options.modelId, object: "model", created: this.#created, owned_by: "mamba-metal" };
  }

  /** The body as text, refused with 413 past the limit (announced or counted). */
  async #body(req: Request): Promise<string> {
    const limit = this.options.maxBodyBytes;
    const tooLarge = () =>
      new ApiError(413, `the request body is larger than ${limit} bytes`, { code: "request_too_large" });
    if (Number(req.headers.get("content-length") ?? 0) > limit) throw tooLarge();
    if (!req.body) return "";
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of req.body) {
      total += chunk.byteLength;
      if (total > limit) throw tooLarge();
      chunks.push(chunk);
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.byteLength;
    }
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ApiError(400, "the request body is not valid UTF-8", { code: "invalid_json" });
    }
  }

  async #completions(req: Request): Promise<Response> {
    const text = await this.#body(req);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, {
        code: "invalid_json",
      });
    }
    const { engine } = this.#scheduler;
    const request = parseCompletionRequest(body, {
      maxTokens: this.options.maxTokens,
      vocabSize: engine.vocabSize,
    });
    const ids = promptIds(this.#tokenizer, request.prompt, this.#eos);
    if (ids.length > this.options.maxPromptTokens) {
      throw new ApiError(
        400,
        `the prompt has ${ids.length} tokens; this server takes at most ${this.options.maxPromptTokens}`,
        { param: "prompt", code: "context_length_exceeded" },
      );
    }
    const id = completionId(), created = Math.floor(Date.now() / 1000);
    return request.stream
      ? this.#streamed(request, ids, id, created)
      : await this.#whole(req, request, ids, id, created);
  }

  #job(request: CompletionRequest, ids: number[], sink: JobSink): CompletionJob {
    return new CompletionJob(
      ids,
      request.maxTokens,
      request.sampling,
      request.stop,
      this.#eos,
      this.#tokenizer.decodeStream(),
      sink,
    );
  }

  #choice(text: string, finish: FinishReason | null) {
    return { text, index: 0, logprobs: null, finish_reason: finish };
  }

  #whole(
    req: Request,
    request: CompletionRequest,
    ids: number[],
    id: string,
    created: number,
  ): Promise<Response> {
    const { promise, resolve } = Promise.withResolvers<Response>();
    // A client that disconnects aborts its request; nobody reads the answer. The listener goes once the
    // answer is ready (the signal also fires after a response is sent).
    const gone = () => {
      job.abort();
      resolve(new Response(null, { status: 499 }));
    };
    const answer = (r: Response) => {
      req.signal.removeEventListener("abort", gone);
      resolve(r);
    };
    const pieces: string[] = [];
    const job = this.#job(request, ids, {
      text: (t) => pieces.push(t),
      finish: (reason, usage) =>
        answer(jsonResponse(200, {
          id,
          object: "text_completion",
          created,
          model: this.options.modelId,
          choices: [this.#choice(pieces.join(""), reason)],
          usage,
        })),
      fail: (e) => answer(this.#failure(e).toResponse()),
    });
    req.signal.addEventListener("abort", gone, { once: true });
    try {
      this.#scheduler.submit(job);
    } catch (e) {
      req.signal.removeEventListener("abort", gone);
      throw e;
    }
    return promise;
  }

  #streamed(request: CompletionRequest, ids: number[], id: string, created: number): Response {
    const sse = new SseStream(() => job.abort());
    const chunk = (choices: unknown[], usage?: Usage) => ({
      id,
      object: "text_completion",
      created,
      model: this.options.modelId,
      choices,
      ...(usage ? { usage } : {}),
    });
    const job: CompletionJob = this.#job(request, ids, {
      text: (t) => sse.send(chunk([this.#choice(t, null)])),
      finish: (reason, usage) => {
        sse.send(chunk([this.#choice("", reason)]));
        if (request.includeUsage) sse.send(chunk([], usage));
        sse.done();
      },
      fail: (e) => {
        sse.send(this.#failure(e).body());
        sse.close();
      },
    });
    // A disconnect cancels the body stream (SseStream calls job.abort), also while the job waits.
    this.#scheduler.submit(job); // a full queue throws before any byte is sent: a plain 429
    return new Response(sse.body, { headers: SseStream.headers });
  }

  #failure(e: Error): ApiError {
    if (e instanceof ApiError) return e;
    return new ApiError(
      500,
      e instanceof MambaError ? `engine: ${e.message}` : `internal error: ${e.message}`,
    );
  }
}
