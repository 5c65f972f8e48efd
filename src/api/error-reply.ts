import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { discardBody } from "../http/body-limit.ts";
import { anthropicErrorResponse } from "./anthropic/errors.ts";
import { errorResponse, MalformedHttpRequestError, type ErrorLogger, type RequestFacts } from "./errors.ts";
import { ollamaErrorResponse } from "./ollama/errors.ts";

/** The three error shapes the daemon answers in. */
export type Dialect = "openai" | "ollama" | "anthropic";

/**
 * The API a path belongs to, for errors raised before (or without) a route:
 * fastify's own (bad URL), unknown paths, hooks. Ollama's API is `/api/...`,
 * Anthropic's `/anthropic/...` and `/v1/messages...`; everything else (DMR's
 * and OpenAI's routes) answers in OpenAI's shape.
 */
export function dialectOf(url: string): Dialect {
  const path = url.split("?")[0]!;
  if (path === "/api" || path.startsWith("/api/")) return "ollama";
  if (path === "/anthropic" || path.startsWith("/anthropic/") || path === "/v1/messages" || path.startsWith("/v1/messages/")) return "anthropic";
  return "openai";
}

/** Status, body and headers of `error` in `dialect`'s shape. */
export function dialectErrorResponse(dialect: Dialect, error: unknown, log: ErrorLogger, facts?: RequestFacts): { status: number; body: unknown; headers: Record<string, string> } {
  if (dialect === "ollama") return ollamaErrorResponse(error, log, facts);
  if (dialect === "anthropic") return anthropicErrorResponse(error, log, facts);
  return errorResponse(error, log, facts);
}

/** How much of an oversized body is read (and dropped) so that its 413 reaches the client. */
const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;
const DISCARD_TIMEOUT_MS = 10_000;

/**
 * Answers `error` in `dialect`'s shape: the one path every error handler of
 * the daemon (routes, scopes, 404s, fastify's own errors) goes through.
 * An oversized body is read and dropped (within bounds) before the 413 is
 * sent, so clients that are still uploading see the 413 rather than EPIPE.
 */
export async function sendError(dialect: Dialect, error: unknown, request: FastifyRequest, reply: FastifyReply, log: ErrorLogger): Promise<void> {
  const facts = { url: request.url, contentType: request.headers["content-type"] };
  const { status, body, headers } = dialectErrorResponse(dialect, error, log, facts);
  // Fastify asks for `Connection: close` after any body error, the body may be unread;
  // a body read to its end leaves the connection usable.
  const complete = status === 413 ? await discardBody(request.raw, DISCARD_LIMIT_BYTES, DISCARD_TIMEOUT_MS) : request.raw.complete;
  if (complete) reply.removeHeader("connection");
  else if (status === 413) reply.header("connection", "close");
  await reply.code(status).headers(headers).send(body);
}

/**
 * Node's HTTP parser refused the request (headers or URL over 16 KiB, bad
 * framing, a timeout): fastify's `clientErrorHandler`. No request object
 * exists; the path, when the request line was read, picks the shape.
 */
export function writeClientError(error: Error & { code?: string; rawPacket?: unknown }, socket: Duplex): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  const message =
    status === 431
      ? "The request's headers (its URL included) are larger than the 16 KiB the server reads."
      : status === 408
        ? "The request was not received in time."
        : `The request is not valid HTTP (${error.code ?? error.message}).`;
  const raw = Buffer.isBuffer(error.rawPacket) ? error.rawPacket.subarray(0, 8192).toString("latin1") : "";
  const path = /^[A-Z]+ (\S+)/.exec(raw)?.[1] ?? "/";
  const { body } = dialectErrorResponse(dialectOf(path), new MalformedHttpRequestError(status, message), () => undefined);
  const text = JSON.stringify(body);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // end, not destroy: the answer must be flushed before the socket goes; a client that never closes is cut off.
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${text}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}
