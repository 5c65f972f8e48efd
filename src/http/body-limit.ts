import type { IncomingMessage } from "node:http";
import { RunnerError } from "../errors.ts";

/**
 * A request body over the server's limit (413). The one definition for the
 * daemon and the engine; each passes its own limit.
 */
export class BodyTooLargeError extends RunnerError {
  readonly code = "request_too_large";
  readonly status = 413;
  override readonly type = "invalid_request_error";
  constructor(readonly limitBytes: number) {
    super(`The request body is larger than the ${formatMiB(limitBytes)} limit.`);
  }
}

const formatMiB = (bytes: number) => `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;

/**
 * Reads and drops what is left of `raw`'s body, up to `maxBytes` and
 * `timeoutMs`. An HTTP client that is still uploading when the answer comes
 * (a 413 sent before the body was read) sees its write fail with EPIPE or a
 * reset instead of the answer (Node's fetch, and so the openai, anthropic
 * and ollama SDKs); reading the body first lets the answer through on a
 * connection that stays usable. Resolves true when the body was read to its
 * end, false when it was bigger or slower than the bounds (the caller then
 * answers and closes the connection).
 */
export function discardBody(raw: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<boolean> {
  if (raw.complete || raw.readableEnded) return Promise.resolve(true);
  if (raw.destroyed) return Promise.resolve(false);
  const declared = Number(raw.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      raw.off("data", onData).off("end", onEnd).off("error", onFail).off("close", onClose);
      resolve(ok);
    };
    const onData = (chunk: Buffer | string) => {
      seen += chunk.length;
      if (seen > maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onFail = () => finish(false);
    const onClose = () => finish(raw.complete);
    const timer = setTimeout(() => finish(false), timeoutMs);
    raw.on("data", onData).once("end", onEnd).once("error", onFail).once("close", onClose);
    raw.resume();
  });
}
