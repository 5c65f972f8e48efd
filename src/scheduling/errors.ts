import { formatBytes } from "../format-bytes.ts";
import { InvalidRequestError, RunnerError, type OpenAIErrorType } from "../errors.ts";

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

export { formatBytes } from "../format-bytes.ts";
