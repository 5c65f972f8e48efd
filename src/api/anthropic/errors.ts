import { errorResponse, type ErrorLogger, type RequestFacts } from "../errors.ts";

/** Anthropic's error `type` for an HTTP status (docs: "Errors"). */
export function anthropicErrorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503 || status === 529) return "overloaded_error";
  if (status >= 500) return "api_error";
  return "invalid_request_error";
}

/**
 * `{"type":"error","error":{"type","message"}}` with the daemon error's
 * status: the one place the Anthropic routes shape errors.
 */
export function anthropicErrorResponse(error: unknown, log: ErrorLogger, facts?: RequestFacts) {
  const { status, body, headers } = errorResponse(error, log, facts);
  return { status, headers, body: { type: "error", error: { type: anthropicErrorType(status), message: body.error.message } } };
}
