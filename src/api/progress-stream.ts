import type { FastifyReply } from "fastify";
import { errorResponse, type ErrorLogger } from "./errors.ts";
import { LazyStream } from "./streaming.ts";

/** One line of a progress stream: DMR's `{type, message, ...}`. */
export type ProgressLine = { type: string; message?: string; [k: string]: unknown };

/**
 * Streams the progress of `run` as lines (pull, push, backend install):
 * `send` queues a line in order without waiting for a slow client (callers
 * rate-limit upstream); the line `run` resolves with ends the stream. An error
 * before the first line is a plain error response with its status; after it,
 * a last `{type:"error", message, code, ...errorExtra}` line, unless the
 * client has gone.
 *
 * While `run` is quiet for `heartbeatMs` (a compile step can take minutes on
 * a loaded machine), the last line is sent again, so that clients and proxies
 * with an idle timeout (undici's fetch gives up after 300 s without a byte)
 * do not cut the stream and, with it, abort the work.
 */
export async function streamProgressLines(
  reply: FastifyReply,
  options: {
    contentType: string;
    encode: (line: ProgressLine) => string;
    logError: ErrorLogger;
    errorExtra?: Record<string, unknown>;
    /** Default 30 s. */
    heartbeatMs?: number;
  },
  run: (send: (line: ProgressLine) => void, signal: AbortSignal) => Promise<ProgressLine>,
): Promise<void> {
  const signal = reply.request.clientSignal;
  const stream = new LazyStream(reply, 200, { "content-type": options.contentType, "cache-control": "no-cache" });
  let writing: Promise<void> = Promise.resolve();
  let last: ProgressLine | null = null;
  let quiet = false;
  const write = (line: ProgressLine) => {
    writing = writing.then(() => stream.write(options.encode(line))).catch(() => undefined);
  };
  const send = (line: ProgressLine) => {
    last = line;
    quiet = false;
    write(line);
  };
  const heartbeat = setInterval(() => {
    if (quiet && last !== null && !signal.aborted) write(last);
    quiet = true;
  }, options.heartbeatMs ?? 30_000);
  heartbeat.unref();
  try {
    const done = await run(send, signal);
    clearInterval(heartbeat);
    send(done);
    await writing;
    stream.end();
  } catch (error) {
    clearInterval(heartbeat);
    await writing;
    if (!stream.hasStarted) throw error;
    if (!signal.aborted) {
      const { body } = errorResponse(error, options.logError);
      await stream.write(options.encode({ type: "error", message: body.error.message, code: body.error.code, ...options.errorExtra })).catch(() => undefined);
    }
    stream.end();
  }
}
