import { once } from "node:events";
import type { OutgoingHttpHeaders } from "node:http";
import type { FastifyReply } from "fastify";

/** A follower that reads slower than events come gets no more than this queued; later events are dropped until it catches up. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** A comment line this often keeps proxies and idle timeouts from closing a quiet follow. */
const KEEP_ALIVE_MS = 15_000;

/**
 * Answers with an SSE stream that stays open until the client leaves: the
 * hook's headers (CORS) go out with it, `start` gets the function that
 * writes one event's wire text (from sseEvent) and returns the function
 * that stops the feed. A follower that does not read is not allowed to
 * grow the daemon's memory: past MAX_QUEUED_BYTES events are dropped (as
 * DMR drops them for a full subscriber channel), and a comment line says how
 * many once it reads again.
 */
export async function followSse(reply: FastifyReply, start: (send: (text: string) => void) => () => void): Promise<void> {
  const signal = reply.request.clientSignal;
  const raw = reply.raw;
  reply.hijack();
  const hooked: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) hooked[name] = value;
  raw.writeHead(200, {
    ...hooked,
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  let dropped = 0;
  const send = (text: string) => {
    if (raw.destroyed || raw.writableEnded) return;
    if (raw.writableLength > MAX_QUEUED_BYTES) {
      dropped++;
      return;
    }
    if (dropped > 0) {
      raw.write(`: ${dropped} events dropped: this client read too slowly\n\n`);
      dropped = 0;
    }
    raw.write(text);
  };
  const stop = start(send);
  const keepAlive = setInterval(() => send(": keep-alive\n\n"), KEEP_ALIVE_MS);
  keepAlive.unref();
  try {
    if (!signal.aborted) await once(signal, "abort");
  } finally {
    clearInterval(keepAlive);
    stop();
    raw.end();
  }
}
