import type { OutgoingHttpHeaders } from "node:http";
import type { FastifyReply } from "fastify";

/** While a model loads, a comment line this often (besides the first, at once) shows the wait goes on. */
const REPEAT_MS = 5_000;

/**
 * SSE comment lines for a streaming request that waits for a cold load:
 * `start` (the scheduler's onLoading) opens the stream (status 200, the
 * hooks' headers) and writes `: loading <model>`, then `: loading <model>
 * (Ns)` every 5 s until `stop`. OpenAI clients skip comment lines; a person
 * watching the raw stream sees why it waits. After `start`, the answer (or
 * the error) must go out as SSE events on the opened stream.
 */
export class LoadingComments {
  private timer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  /** The stream is open: what follows must be SSE. */
  started = false;

  constructor(
    private readonly reply: FastifyReply,
    model: string,
  ) {
    // A model name with a line break would end the comment and start a field.
    this.model = model.replace(/[\r\n]+/g, " ");
  }

  private readonly model: string;

  readonly start = (): void => {
    if (this.started) return;
    this.started = true;
    this.startedAt = performance.now();
    const raw = this.reply.raw;
    this.reply.hijack();
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(this.reply.getHeaders())) if (value !== undefined) headers[name] = value;
    raw.writeHead(200, { ...headers, "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" });
    raw.write(`: loading ${this.model}\n\n`);
    this.timer = setInterval(() => {
      if (!raw.destroyed) raw.write(`: loading ${this.model} (${Math.round((performance.now() - this.startedAt) / 1000)}s)\n\n`);
    }, REPEAT_MS);
    this.timer.unref();
  };

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
