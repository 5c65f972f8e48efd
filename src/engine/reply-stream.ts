import type { FastifyReply } from "fastify";
import { clientSignal, LazyStream } from "../http/streaming.ts";
import { engineErrorBody } from "./errors.ts";
import type { GenerationResult } from "./generate.ts";

/**
 * How the engine's routes answer while generation runs: a client signal that
 * aborts when the client goes away, text collected for a whole reply, or
 * Server-Sent Events.
 */

/** Runs `run` with a signal that aborts when the client disconnects. */
export async function withAbort<T>(reply: FastifyReply, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const { signal, dispose } = clientSignal(reply);
  try {
    return await run(signal);
  } finally {
    dispose();
  }
}

/** Runs one generation for a whole (not streamed) reply, collecting its text. */
export async function collect<R extends GenerationResult>(
  reply: FastifyReply,
  run: (onText: (t: string) => void, signal: AbortSignal) => Promise<R>,
): Promise<{ text: string; result: R }> {
  let text = "";
  const result = await withAbort(reply, (signal) => run((t) => void (text += t), signal));
  return { text, result };
}

/**
 * Streams Server-Sent Events. Validation errors thrown before the first event
 * still become normal JSON error responses; once the stream has begun, an
 * error is sent as a last `data: {"error":...}` event. Writes wait for the
 * socket to drain, so a slow reader slows generation instead of filling memory.
 * OpenAI streams end with `data: [DONE]`; llama-server's native ones
 * (`/completion`, `/infill`) just end (`done: false`).
 */
export async function streamSse(
  reply: FastifyReply,
  run: (send: (event: object) => Promise<void>, signal: AbortSignal) => Promise<void>,
  { done = true }: { done?: boolean } = {},
): Promise<void> {
  const { signal, dispose } = clientSignal(reply);
  const stream = new LazyStream(reply, 200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const write = async (text: string) => {
    if (signal.aborted) throw signal.reason;
    await stream.write(text);
  };
  try {
    await run((event) => write(`data: ${JSON.stringify(event)}\n\n`), signal);
    if (done) await write("data: [DONE]\n\n");
    stream.end();
  } catch (error) {
    if (!stream.hasStarted) throw error;
    if (!signal.aborted) await stream.write(`data: ${JSON.stringify(engineErrorBody(error).body)}\n\n`).catch(() => undefined);
    stream.end();
  } finally {
    dispose();
  }
}

/**
 * Runs `n` generations of one request side by side (choices), each on its
 * own slot. When one fails the others are stopped, and the first error is
 * the request's.
 */
export async function allChoices<T>(n: number, signal: AbortSignal, run: (index: number, signal: AbortSignal) => Promise<T>): Promise<T[]> {
  const failed = new AbortController();
  const linked = AbortSignal.any([signal, failed.signal]);
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      run(i, linked).catch((error: unknown) => {
        failed.abort(error);
        throw error;
      }),
    ),
  );
}

/** `n` whole generations side by side, each with the text it produced. */
export async function collectAll<T extends { result: GenerationResult }>(
  reply: FastifyReply,
  n: number,
  run: (index: number, onText: (t: string) => void, signal: AbortSignal) => Promise<T>,
): Promise<Array<T & { text: string }>> {
  return withAbort(reply, (signal) =>
    allChoices(n, signal, async (index, signal) => {
      let text = "";
      const out = await run(index, (t) => void (text += t), signal);
      return { ...out, text };
    }),
  );
}
