import { formatBytes } from "../format-bytes.ts";
import { InvalidRequestError, RunnerError, messageOf, type OpenAIErrorType } from "../errors.ts";

/** The request queue is full; the client should retry later (`Retry-After`). */
export class QueueFullError extends RunnerError {
  readonly code = "queue_full";
  readonly status = 503;
  override readonly type: OpenAIErrorType = "unavailable_error";
  /** Response headers the HTTP layer must send with this error. */
  readonly headers: Readonly<Record<string, string>>;
  constructor(readonly queueLimit: number, readonly retryAfterSeconds: number) {
    super(`Server busy: ${queueLimit} requests are already waiting for a model to load. Retry in ${retryAfterSeconds} s.`);
    this.headers = { "retry-after": String(retryAfterSeconds) };
  }
}

/**
 * A model that could never be loaded here, found before pulling it (DMR's
 * runtime memory check on `POST /models/create`): the download would be wasted.
 */
export class PullWouldNotFitError extends RunnerError {
  readonly code = "model_would_not_fit";
  readonly status = 507;
  override readonly extra: Readonly<Record<string, unknown>>;
  constructor(model: string, readonly requiredBytes: number, readonly budgetBytes: number, contextSize: number) {
    super(
      `Model ${model} would need about ${formatBytes(requiredBytes)} to run (weights + KV cache for a context of ${contextSize} + overhead, estimated) ` +
        `but the memory budget is ${formatBytes(budgetBytes)}, so it could never be loaded here. ` +
        `Pull it anyway with --ignore-runtime-memory-check ("ignore-runtime-memory-check": true), or raise MODEL_RUNNER_MEMORY.`,
    );
    this.extra = { required_bytes: requiredBytes, budget_bytes: budgetBytes };
  }
}

/** A runner that could never fit the memory budget, even with nothing else loaded. */
export class ModelTooLargeError extends RunnerError {
  readonly code = "insufficient_memory";
  readonly status = 507;
  override readonly extra: Readonly<Record<string, unknown>>;
  constructor(model: string, readonly requiredBytes: number, readonly budgetBytes: number) {
    super(
      `Model ${model} needs about ${formatBytes(requiredBytes)} (weights + KV cache + overhead, estimated) but the memory budget is ${formatBytes(budgetBytes)}. ` +
        "Use a smaller context size or parallel count, a smaller quantization, or raise MODEL_RUNNER_MEMORY.",
    );
    this.extra = { required_bytes: requiredBytes, budget_bytes: budgetBytes };
  }
}

/** `_configure` asked to change a runner that is serving or loading. */
export class RunnerBusyError extends RunnerError {
  readonly code = "runner_busy";
  readonly status = 409;
  override readonly type: OpenAIErrorType = "invalid_request_error";
  constructor(model: string, mode: string) {
    super(`Model ${model} (${mode}) is running with a different configuration and is busy. Retry when its requests have finished, or unload it first.`);
  }
}

/** A runtime flag that is not on the backend's allowlist, or carries a path. */
export class RuntimeFlagError extends InvalidRequestError {
  override readonly code = "runtime_flag_not_allowed";
  constructor(message: string, readonly flag: string) {
    super(message, "runtime-flags");
  }
}

/** The scheduler is shutting down and takes no new work. */
export class SchedulerClosedError extends RunnerError {
  readonly code = "shutting_down";
  readonly status = 503;
  override readonly type: OpenAIErrorType = "unavailable_error";
  constructor() {
    super("The model runner is shutting down and accepts no new requests.");
  }
}

/** Stopped while a request still waited for it or used it (unload during load, reconfiguration). */
export class RunnerStoppedError extends RunnerError {
  readonly code = "runner_stopped";
  readonly status = 503;
  override readonly type: OpenAIErrorType = "unavailable_error";
  constructor(model: string) {
    super(`The runner for ${model} was stopped before the request could be served. Retry the request.`);
  }
}

/**
 * The model failed to load a moment ago and is in its back-off: the request
 * gets that failure again (same status and code, the cause in the message)
 * rather than starting one more engine that would fail the same way.
 */
export class LoadBackoffError extends RunnerError {
  readonly code: string;
  readonly status: number;
  override readonly type: OpenAIErrorType;
  override readonly extra: Readonly<Record<string, unknown>>;
  constructor(model: string, readonly failure: unknown, failedSecondsAgo: number, retryInSeconds: number) {
    super(
      `${model} failed to load ${failedSecondsAgo} s ago; it is not retried for another ${retryInSeconds} s ` +
        `(unload it or change its configuration to retry now). The failure: ${messageOf(failure)}`,
      { cause: failure },
    );
    this.code = failure instanceof RunnerError ? failure.code : "engine_failed";
    this.status = failure instanceof RunnerError ? failure.status : 500;
    this.type = failure instanceof RunnerError ? failure.type : "server_error";
    this.extra = { retry_after_seconds: retryInSeconds };
    this.headers = { "retry-after": String(retryInSeconds) };
  }
  /** Response headers the HTTP layer must send with this error. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The model cannot do what the route asks, as its GGUF header shows (e.g.
 * reranking without a ranking head): decided before any engine starts.
 */
export class ModelCapabilityError extends InvalidRequestError {
  override readonly code = "model_not_capable";
  constructor(model: string, message: string) {
    super(`Model ${model} ${message}`, "model");
  }
}

export { formatBytes } from "../format-bytes.ts";

/** A speculative-decoding draft whose vocabulary is not the model's: it cannot draft for it. */
export class DraftVocabularyMismatchError extends InvalidRequestError {
  override readonly code = "draft_vocabulary_mismatch";
  constructor(model: string, draft: string, why: string) {
    super(`The draft model ${draft} cannot be used for speculative decoding with ${model}: their vocabularies do not match (${why}). Use a draft of the same model family.`, "speculative.draft_model");
  }
}

/** The draft model a configuration names is not in the store (any more). */
export class DraftModelNotFoundError extends RunnerError {
  readonly code = "draft_model_not_found";
  readonly status = 404;
  override readonly type: OpenAIErrorType = "not_found_error";
  constructor(model: string, draft: string, cause: unknown) {
    super(`The draft model ${draft} configured for ${model} is not in the store (${messageOf(cause)}). Pull it, or turn speculative decoding off with: mr configure --speculative-draft-model "" ${model}`, { cause });
  }
}
