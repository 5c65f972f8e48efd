import { RunnerError, type OpenAIErrorType } from "../errors.ts";

/**
 * Errors raised by the distribution layer. Each fixes a stable `code` and the
 * HTTP status the daemon answers with (DMR's statuses, dmr.md §1a).
 */

/** A model reference that cannot be parsed; the message quotes it. */
export class InvalidReferenceError extends RunnerError {
  readonly code = "invalid_reference";
  readonly status = 400;
  override readonly type: OpenAIErrorType = "invalid_request_error";
  constructor(
    readonly reference: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`Invalid model reference "${reference}": ${reason}.`, options);
  }
}

/** The model (or a tag, or an ID prefix) is not in the local store. */
export class ModelNotFoundError extends RunnerError {
  readonly code = "model_not_found";
  readonly status = 404;
  override readonly type: OpenAIErrorType = "not_found_error";
  constructor(
    readonly reference: string,
    options?: ErrorOptions,
  ) {
    super(`Model "${reference}" is not in the local store. Pull it first: mr pull ${reference}`, options);
  }
}

/** The registry or Hugging Face has no such repository, tag or file. */
export class RemoteNotFoundError extends RunnerError {
  readonly code = "remote_model_not_found";
  readonly status = 404;
  override readonly type: OpenAIErrorType = "not_found_error";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The registry refused our credentials (or we had none and it wants some). */
export class RegistryAuthError extends RunnerError {
  readonly code = "registry_unauthorized";
  readonly status = 401;
  override readonly type: OpenAIErrorType = "authentication_error";
  constructor(host: string, detail = "", options?: ErrorOptions) {
    super(
      `Access to ${host} was denied${detail ? ` (${detail})` : ""}. Log in with \`docker login ${host}\`, ` +
        `set DOCKER_USERNAME/DOCKER_PASSWORD, or pass a token.`,
      options,
    );
  }
}

/** The request conflicts with the store's state (several tags and no force, tag exists...). */
export class ModelConflictError extends RunnerError {
  readonly code = "model_conflict";
  readonly status = 409;
  override readonly type: OpenAIErrorType = "invalid_request_error";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The artifact's config media type is not one this runner understands (DMR answers 422). */
export class UnsupportedMediaTypeError extends RunnerError {
  readonly code = "unsupported_media_type";
  readonly status = 422;
  override readonly type: OpenAIErrorType = "not_supported_error";
  constructor(
    readonly mediaType: string,
    options?: ErrorOptions,
  ) {
    super(
      `Config media type "${mediaType}" is not supported. This runner reads Docker model artifacts ` +
        `(application/vnd.docker.ai.model.config.v0.1+json or v0.2+json); upgrade it or pull another tag.`,
      options,
    );
  }
}

/** The registry answered something we cannot use (5xx after retries, protocol violation). */
export class RegistryError extends RunnerError {
  readonly code: string = "registry_error";
  readonly status: number = 502;
  /**
   * Whether the same request may succeed if tried again (a 5xx, 429, reset,
   * short body). Set by whoever raised it; retry loops read only this.
   */
  readonly retryable: boolean;
  constructor(message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * The registry (or Hub) host cannot be dialled: its name does not resolve or
 * it refuses the connection. Not transient (retrying an offline machine only
 * makes the user wait), so it fails at once, quoting the dial error.
 */
export class RegistryUnreachableError extends RegistryError {
  override readonly code = "registry_unreachable";
  constructor(
    readonly host: string,
    cause: unknown,
  ) {
    super(`Cannot reach ${host}: ${(cause as Error).message}${hint(cause)}`, { cause });
  }
}

function hint(cause: unknown): string {
  const code = (cause as { code?: string } | null)?.code;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return " (the name does not resolve: check the network connection and the registry name)";
  if (code === "ECONNREFUSED") return " (nothing is listening there: check the registry address and port)";
  return "";
}

/** Downloaded bytes do not hash to the digest they were asked for; nothing of them is kept. */
export class DigestMismatchError extends RegistryError {
  override readonly code = "digest_mismatch";
  constructor(
    readonly expected: string,
    readonly actual: string,
    options?: ErrorOptions,
  ) {
    super(`Downloaded content for ${expected} hashed to ${actual}; it was discarded. Try the pull again.`, options);
  }
}

/** No bytes arrived for too long; the download is retried from where it stopped. */
export class StalledDownloadError extends RegistryError {
  override readonly code = "download_stalled";
  constructor(url: string, stallMs: number) {
    super(`No data from ${url} for ${stallMs} ms.`);
  }
}

/** A file given to packaging or a tar to load is not what it should be. */
export class InvalidArtifactError extends RunnerError {
  readonly code = "invalid_artifact";
  readonly status = 400;
  override readonly type: OpenAIErrorType = "invalid_request_error";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The store on disk is damaged or was written by an incompatible version. */
export class StoreError extends RunnerError {
  readonly code = "store_error";
  readonly status = 500;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The store's filesystem has no room for what must be written (DMR and
 * WebDAV's 507). Raised before a download starts, when the free space is
 * smaller than the bytes still to fetch (both figures in `extra`), and when
 * a write fails anyway with ENOSPC/EDQUOT ("no space left on device").
 */
export class InsufficientStorageError extends RunnerError {
  readonly code = "insufficient_storage";
  readonly status = 507;
  override readonly extra: Readonly<Record<string, unknown>>;
  constructor(message: string, extra: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.extra = extra;
  }
}
