/**
 * Errors the CLI turns into exit codes (main.ts): a UsageError exits 2, a
 * CancelledError 130 (Ctrl-C), anything else 1. Messages are one line,
 * written for the user; `--debug` adds the cause.
 */
export class CliError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags or arguments; `help` names the command whose usage to point at. */
export class UsageError extends CliError {
  constructor(
    message: string,
    readonly command: string | null = null,
  ) {
    super(message);
  }
}

/** The user pressed Ctrl-C. */
export class CancelledError extends CliError {
  constructor() {
    super("cancelled");
  }
}

/** The daemon answered with an error status; `message` is its own. */
export class DaemonError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/**
 * Nothing answered at the daemon's address. The message names
 * MODEL_RUNNER_HOST only when that is where the address came from.
 */
export class DaemonUnreachableError extends CliError {
  constructor(
    readonly baseUrl: string,
    /** Where the address came from ("MODEL_RUNNER_HOST", a context); null: the default address. */
    readonly hostSource: string | null,
    options?: ErrorOptions,
  ) {
    super(
      hostSource !== null
        ? `cannot reach the model runner at ${baseUrl} (${hostSource}): is 'mr serve' running there?`
        : `cannot reach the model runner at ${baseUrl}: start it with 'mr start-runner' (or 'mr serve' in the foreground)`,
      options,
    );
  }
}

/** True for an abort (our signal or undici's AbortError). */
export function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error instanceof CancelledError);
}
