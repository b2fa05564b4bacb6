/**
 * A server-sent-events response body: `data: <json>` events, ended by `data: [DONE]`; a client that
 * goes away cancels it.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * The body of a streamed response.
 *
 * @example
 * ```ts
 * const sse = new SseStream(() => job.abort());
 * sse.send({ choices: [{ text: "Hello" }] });
 * sse.done();
 * return new Response(sse.body, { headers: SseStream.headers });
 * ```
 */
export class SseStream {
  /** Response headers for an event stream. */
  static readonly headers: Record<string, string> = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  };
  /** The response body. */
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;

  /** A stream that calls `onCancel` when the client stops reading (disconnects). */
  constructor(onCancel: () => void) {
    this.body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      cancel: () => {
        this.#closed = true;
        onCancel();
      },
    });
  }

  /** Whether the stream has ended (done, or cancelled by the client). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one event with `data` as JSON. */
  send(data: unknown): void {
    this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** Sends `data: [DONE]` and ends the stream. */
  done(): void {
    this.#write("data: [DONE]\n\n");
    this.close();
  }

  /** Ends the stream. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#controller.close();
  }

  #write(text: string): void {
    if (!this.#closed) this.#controller.enqueue(encoder.encode(text));
  }
}
