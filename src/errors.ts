/**
 * The one root of every error this project raises on purpose.
 *
 * Each subclass fixes a stable snake_case `code`, the HTTP `status` it maps
 * to and the OpenAI error `type`. `message` is written for the user and says
 * what to do next; internals go in `cause`. Only the HTTP layers turn these
 * into response bodies; anything that is not a `RunnerError` is a bug and is
 * answered with a generic 500.
 */
export abstract class RunnerError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  readonly type: OpenAIErrorType = "server_error";
  /** Extra top-level fields for the error body (llama-server adds `n_ctx`, ...). */
  readonly extra: Readonly<Record<string, unknown>> = {};

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The `type` values OpenAI-style error bodies use (llama-server adds a few). */
export type OpenAIErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "unavailable_error"
  | "exceed_context_size_error"
  | "not_supported_error"
  | "server_error";

/** A request that is malformed or out of range; `param` names the field. */
export class InvalidRequestError extends RunnerError {
  readonly code: string = "invalid_request";
  readonly status: number = 400;
  override readonly type: OpenAIErrorType = "invalid_request_error";
  constructor(
    message: string,
    readonly param: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Something a user asked for does not exist. */
export class NotFoundError extends RunnerError {
  readonly code: string = "not_found";
  readonly status: number = 404;
  override readonly type: OpenAIErrorType = "not_found_error";
}

/** Wraps anything into a RunnerError-shaped view without losing it. */
export function isRunnerError(error: unknown): error is RunnerError {
  return error instanceof RunnerError;
}

/** The error's message, whatever was thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
