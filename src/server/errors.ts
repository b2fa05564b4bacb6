/**
 * Errors of the HTTP API, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
 *
 * @module
 */

/**
 * An error answered to the client with an HTTP status and OpenAI's error body.
 *
 * @example
 * ```ts
 * throw new ApiError(400, "temperature must be a number from 0 to 2", { param: "temperature" });
 * ```
 */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** OpenAI's error type, e.g. `"invalid_request_error"`. */
  readonly type: string;
  /** The request field at fault, if one is. */
  readonly param: string | null;
  /** A machine-readable code, e.g. `"queue_full"`. */
  readonly code: string | null;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string>;

  /** An error with `status` and `message`; type defaults by status. */
  constructor(
    status: number,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = options.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The JSON response for this error. */
  toResponse(): Response {
    return jsonResponse(this.status, this.body(), this.headers);
  }

  /** The error body: `{ error: { message, type, param, code } }`. */
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A JSON response. */
export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}
