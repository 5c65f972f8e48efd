import { once } from "node:events";
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";

/**
 * An AbortSignal that fires when the client goes away before its response
 * is complete; `dispose` stops listening. This is how a closed client stops
 * token generation.
 */
export function clientSignal(reply: FastifyReply): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const raw: ServerResponse = reply.raw;
  const onClose = () => {
    if (!raw.writableFinished) controller.abort(new ClientClosedError());
  };
  raw.on("close", onClose);
  return { signal: controller.signal, dispose: () => raw.off("close", onClose) };
}

export class ClientClosedError extends Error {
  override readonly name = "ClientClosedError";
  constructor() {
    super("the client closed the connection");
  }
}

/** Writes `chunk`, waiting for the socket to drain when its buffer is full (a slow reader slows the writer). */
export async function writeWithBackpressure(raw: ServerResponse, chunk: string | Uint8Array): Promise<void> {
  if (raw.destroyed) throw new ClientClosedError();
  if (!raw.write(chunk)) {
    await Promise.race([once(raw, "drain"), once(raw, "close")]);
    if (raw.destroyed) throw new ClientClosedError();
  }
}

/**
 * A response that starts streaming lazily: nothing is sent until the first
 * `write` (or `open`), so an error before it can still become a normal JSON
 * error with the right status; after it, errors must travel inside the
 * stream. Headers set on the reply before that (the hooks' CORS headers) go
 * out with the stream's own.
 */
export class LazyStream {
  private started = false;

  constructor(
    private readonly reply: FastifyReply,
    private readonly status: number,
    private readonly headers: Record<string, string>,
  ) {}

  get hasStarted(): boolean {
    return this.started;
  }

  /** Sends the status and headers now (idempotent): the stream is open, what follows must be its own format. */
  open(): ServerResponse {
    if (!this.started) {
      this.started = true;
      const headers: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(this.reply.getHeaders())) if (value !== undefined) headers[name] = value;
      this.reply.hijack();
      this.reply.raw.writeHead(this.status, { ...headers, ...this.headers });
    }
    return this.reply.raw;
  }

  async write(chunk: string | Uint8Array): Promise<void> {
    await writeWithBackpressure(this.open(), chunk);
  }

  end(): void {
    this.open().end();
  }
}
