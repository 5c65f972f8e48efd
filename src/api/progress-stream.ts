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
 */
export async function streamProgressLines(
  reply: FastifyReply,
  options: { contentType: string; encode: (line: ProgressLine) => string; logError: ErrorLogger; errorExtra?: Record<string, unknown> },
  run: (send: (line: ProgressLine) => void, signal: AbortSignal) => Promise<ProgressLine>,
): Promise<void> {
  const signal = reply.request.clientSignal;
  const stream = new LazyStream(reply, 200, { "content-type": options.contentType, "cache-control": "no-cache" });
  let writing: Promise<void> = Promise.resolve();
  const send = (line: ProgressLine) => {
    writing = writing.then(() => stream.write(options.encode(line))).catch(() => undefined);
  };
  try {
    send(await run(send, signal));
    await writing;
    stream.end();
  } catch (error) {
    await writing;
    if (!stream.hasStarted) throw error;
    if (!signal.aborted) {
      const { body } = errorResponse(error, options.logError);
      await stream.write(options.encode({ type: "error", message: body.error.message, code: body.error.code, ...options.errorExtra })).catch(() => undefined);
    }
    stream.end();
  }
}
