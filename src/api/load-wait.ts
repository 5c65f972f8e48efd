import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";
import { LazyStream } from "../http/streaming.ts";

/** While a model loads, a comment line this often (besides the first, at once) shows the wait goes on. */
const REPEAT_MS = 5_000;

/**
 * SSE comment lines for a streaming request that waits for a cold load:
 * `start` (the scheduler's onLoading) opens the stream (status 200, the
 * hooks' headers) and writes `: loading <model>`, then `: loading <model>
 * (Ns)` every 5 s until `stop`. SSE clients skip comment lines (the OpenAI
 * and Anthropic SDKs' parsers drop a line that starts with `:`); a person
 * watching the raw stream sees why it waits. After `start`, the answer (or
 * the error) must go out as SSE events on the opened stream, in the
 * dialect's own shape. Only for SSE: Ollama's NDJSON streams have no
 * comment syntax and get none.
 */
export class LoadingComments {
  private timer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  /** The stream is open: what follows must be SSE. */
  started = false;
  private readonly model: string;

  /**
   * `target`: the reply, for a route that writes the raw response itself (the
   * OpenAI pass-through; `start` opens it with the reply's headers), the
   * LazyStream a route streams through (Anthropic, Responses; `start` opens
   * it early), or a function that opens the stream and returns its writer
   * (the fast lane, which frames its own chunks).
   */
  constructor(
    private readonly target: FastifyReply | LazyStream | (() => (text: string) => void),
    model: string,
  ) {
    // A model name with a line break would end the comment and start a field.
    this.model = model.replace(/[\r\n]+/g, " ");
  }

  readonly start = (): void => {
    if (this.started) return;
    this.started = true;
    this.startedAt = performance.now();
    const write = typeof this.target === "function" ? this.target() : writerOf(this.target instanceof LazyStream ? this.target.open() : openReply(this.target));
    write(`: loading ${this.model}\n\n`);
    this.timer = setInterval(() => write(`: loading ${this.model} (${Math.round((performance.now() - this.startedAt) / 1000)}s)\n\n`), REPEAT_MS);
    this.timer.unref();
  };

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

function writerOf(raw: ServerResponse): (text: string) => void {
  return (text) => {
    if (!raw.destroyed) raw.write(text);
  };
}

function openReply(reply: FastifyReply): ServerResponse {
  const raw = reply.raw;
  reply.hijack();
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) headers[name] = value;
  raw.writeHead(200, { ...headers, "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" });
  return raw;
}
