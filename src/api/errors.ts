import { InvalidRequestError, RunnerError } from "../errors.ts";

/** Logs what the user does not see: the full error behind a generic 500. */
export type ErrorLogger = (error: unknown) => void;

/**
 * The only place that turns errors into response bodies for the daemon's
 * native and OpenAI routes: `{"error":{"message","type","code"}}`, OpenAI's
 * shape. Anything that is not a RunnerError is a bug: logged in full, and
 * answered with a generic 500.
 */
export function errorResponse(error: unknown, log: ErrorLogger): { status: number; body: OpenAIErrorBody; headers: Record<string, string> } {
  const e = mapFrameworkError(error);
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

export class BodyTooLargeError extends RunnerError {
  readonly code = "request_too_large";
  readonly status = 413;
  override readonly type = "invalid_request_error";
  constructor(limitBytes: number) {
    super(`The request body is larger than the ${Math.round(limitBytes / 1024 / 1024)} MiB limit.`);
  }
}

export class UnauthorizedError extends RunnerError {
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

/** Fastify's own errors (bad JSON, body too large) in our terms. */
function mapFrameworkError(error: unknown): unknown {
  if (error instanceof RunnerError) return error;
  const e = error as { statusCode?: number; code?: string; message?: string };
  if (e?.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new BodyTooLargeError(10 * 1024 * 1024);
  if (e?.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return new InvalidRequestError(e.message ?? "Unsupported content type.");
  if (typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new InvalidRequestError(e.message ?? "Bad request.");
  }
  return error;
}
