import { InvalidRequestError, RunnerError } from "../errors.ts";
import { BodyTooLargeError } from "../http/body-limit.ts";

export { BodyTooLargeError } from "../http/body-limit.ts";

/** The daemon's request body limit: inference bodies are small; anything bigger is a mistake or an attack. */
export const BODY_LIMIT_BYTES = 10 * 1024 * 1024;

/** What fastify's own errors are explained with: the request's path and Content-Type. */
export interface RequestFacts {
  url?: string | undefined;
  contentType?: string | undefined;
}

/** Logs what the user does not see: the full error behind a generic 500. */
export type ErrorLogger = (error: unknown) => void;

/**
 * The only place that turns errors into response bodies for the daemon's
 * native and OpenAI routes: `{"error":{"message","type","code"}}`, OpenAI's
 * shape. Anything that is not a RunnerError is a bug: logged in full, and
 * answered with a generic 500.
 */
export function errorResponse(error: unknown, log: ErrorLogger, request?: RequestFacts): { status: number; body: OpenAIErrorBody; headers: Record<string, string> } {
  const e = mapFrameworkError(error, request);
  if (e instanceof RunnerError) {
    const param = e instanceof InvalidRequestError && e.param !== null ? { param: e.param } : {};
    return {
      status: e.status,
      body: { error: { message: e.message, type: e.type, code: e.code, ...param, ...e.extra } },
      headers: headersOf(e),
    };
  }
  log(error);
  return {
    status: 500,
    body: { error: { message: "Internal server error; the daemon log has the details.", type: "server_error", code: "internal_error" } },
    headers: {},
  };
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string; param?: string; [extra: string]: unknown };
}

/** Errors may carry response headers (Retry-After on 503s). */
function headersOf(e: RunnerError): Record<string, string> {
  const headers = (e as { headers?: unknown }).headers;
  return headers !== null && typeof headers === "object" ? { ...(headers as Record<string, string>) } : {};
}

/** The daemon's API key is set and the request did not carry it. */
export class InvalidApiKeyError extends RunnerError {
  readonly code = "invalid_api_key";
  readonly status = 401;
  override readonly type = "authentication_error";
  constructor() {
    super("Missing or invalid API key: send it as 'Authorization: Bearer <key>'.");
  }
}

export class ForbiddenOriginError extends RunnerError {
  readonly code = "origin_not_allowed";
  readonly status = 403;
  override readonly type = "invalid_request_error";
  constructor(origin: string) {
    super(`Origin ${origin} is not allowed; add it to MODEL_RUNNER_ORIGINS.`);
  }
}

export class RouteNotFoundError extends RunnerError {
  readonly code = "route_not_found";
  readonly status = 404;
  override readonly type = "not_found_error";
  constructor(method: string, url: string) {
    super(`No route for ${method} ${url}.`);
  }
}

/** A path that is not valid percent-encoded UTF-8, or a path parameter over the router's length limit. */
export class InvalidUrlError extends InvalidRequestError {
  override readonly code = "invalid_url";
  constructor(url: string, reason: string) {
    super(`The request path ${JSON.stringify(url.length > 200 ? `${url.slice(0, 200)}...` : url)} ${reason}.`);
  }
}

/** A body whose Content-Type the route does not read. */
export class UnsupportedContentTypeError extends RunnerError {
  readonly code = "unsupported_content_type";
  readonly status = 415;
  override readonly type = "invalid_request_error";
  constructor(contentType: string) {
    super(`Content-Type ${JSON.stringify(contentType)} is not accepted here: send JSON (application/json).`);
  }
}

/** Any other request fastify itself refused (a bad Content-Length, an empty JSON body...), with its status. */
export class MalformedHttpRequestError extends RunnerError {
  readonly code = "malformed_request";
  readonly status: number;
  override readonly type = "invalid_request_error";
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Fastify's own errors (bad URL, bad JSON, body too large, ...) in our terms, so every route answers them in its API's shape. */
export function mapFrameworkError(error: unknown, request: RequestFacts = {}): unknown {
  const url = request.url ?? "";
  if (error instanceof RunnerError) return error;
  const e = error as { statusCode?: number; code?: string; message?: string } | null;
  switch (e?.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new BodyTooLargeError(BODY_LIMIT_BYTES);
    case "FST_ERR_BAD_URL":
      return new InvalidUrlError(url, "is not valid percent-encoded UTF-8");
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new InvalidUrlError(url, "has a path parameter that is too long");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new UnsupportedContentTypeError(request.contentType ?? "");
  }
  if (typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new MalformedHttpRequestError(e.statusCode, e.message ?? "Bad request.");
  }
  return error;
}
