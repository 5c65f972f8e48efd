import { InvalidRequestError, RunnerError, type OpenAIErrorType } from "../errors.ts";

/**
 * The engine's errors. Bodies follow llama-server's OpenAI-style shape,
 * `{"error":{"code":<status>,"message","type",...}}`, so that clients see the
 * same thing from this engine and from a real llama-server.
 */

/** The prompt does not fit the slot's context; never truncated silently. */
export class ContextSizeExceededError extends RunnerError {
  readonly code = "exceed_context_size";
  readonly status = 400;
  override readonly type = "exceed_context_size_error";
  override readonly extra: Readonly<Record<string, unknown>>;
  constructor(promptTokens: number, contextSize: number) {
    super(
      `request (${promptTokens} tokens) exceeds the available context size (${contextSize} tokens), try increasing it`,
    );
    this.extra = { n_prompt_tokens: promptTokens, n_ctx: contextSize };
  }
}

/** A request named a model this engine does not serve (the Backend contract's 421). */
export class WrongModelError extends RunnerError {
  readonly code = "model_mismatch";
  readonly status = 421;
  override readonly type = "invalid_request_error";
  constructor(requested: string, served: string) {
    super(`This engine serves only "${served}", not "${requested}". Send the request for "${requested}" to its own engine.`);
  }
}

export class ModelLoadingError extends RunnerError {
  readonly code = "loading";
  readonly status = 503;
  override readonly type = "unavailable_error";
  constructor() {
    super("Loading model");
  }
}

/** The endpoint needs another mode (completion, embedding or reranking). */
export class WrongModeError extends InvalidRequestError {
  override readonly code = "wrong_mode";
  constructor(endpoint: string, needed: "embedding" | "completion" | "reranking") {
    super(
      needed === "embedding"
        ? `${endpoint} needs an engine started in embedding mode: start it with --embeddings (or configure the model with mode "embedding").`
        : needed === "reranking"
          ? `${endpoint} needs an engine started in reranking mode: start it with --reranking (or configure the model with mode "reranking").`
          : `${endpoint} is not served by an engine in embedding mode or reranking mode: start it without --embeddings/--reranking.`,
    );
  }
}

/** The engine was started with an API key and the request did not carry it. */
export class EngineApiKeyError extends RunnerError {
  readonly code = "engine_invalid_api_key";
  readonly status = 401;
  override readonly type = "authentication_error";
  constructor() {
    super("Invalid API Key");
  }
}

/** The engine's JSON error body for any thrown value. */
export function engineErrorBody(error: unknown): { status: number; body: unknown } {
  if (error instanceof RunnerError) {
    const param = error instanceof InvalidRequestError && error.param !== null ? { param: error.param } : {};
    return {
      status: error.status,
      body: { error: { code: error.status, message: error.message, type: error.type, ...param, ...error.extra } },
    };
  }
  const type: OpenAIErrorType = "server_error";
  return { status: 500, body: { error: { code: 500, message: "Internal server error", type } } };
}

/** Sampling failed in the binding (sampling-guard.ts); llama-server answers the same failure with a 500 naming it. */
export class SamplingFailedError extends RunnerError {
  readonly code = "sampling_failed";
  readonly status = 500;
  override readonly type = "server_error";
}

/** An endpoint this engine was not started to serve (llama-server's 501 `not_supported_error`). */
export class NotSupportedError extends RunnerError {
  readonly code = "not_supported";
  readonly status = 501;
  override readonly type = "not_supported_error";
}
