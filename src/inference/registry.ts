import { NotFoundError } from "../errors.ts";
import type { Backend } from "./backend.ts";

export class UnknownBackendError extends NotFoundError {
  override readonly code = "backend_not_found";
  constructor(name: string, known: readonly string[]) {
    super(`Unknown backend "${name}". Available: ${known.join(", ")}.`);
  }
}

/** The backends a daemon offers, by name; the first one added is the default. */
export class BackendRegistry {
  private readonly backends = new Map<string, Backend>();

  constructor(backends: readonly Backend[]) {
    for (const b of backends) {
      if (b.name !== b.name.toLowerCase() || !/^[a-z0-9][a-z0-9._-]*$/.test(b.name)) {
        throw new Error(`backend name "${b.name}" must be lowercase and usable as a path component`);
      }
      if (this.backends.has(b.name)) throw new Error(`backend "${b.name}" registered twice`);
      this.backends.set(b.name, b);
    }
    if (this.backends.size === 0) throw new Error("at least one backend is required");
  }

  get default(): Backend {
    return this.backends.values().next().value!;
  }

  get names(): string[] {
    return [...this.backends.keys()];
  }

  /** The backend called `name`, or the default when `name` is undefined. Throws UnknownBackendError. */
  get(name?: string): Backend {
    if (name === undefined) return this.default;
    const backend = this.backends.get(name);
    if (!backend) throw new UnknownBackendError(name, this.names);
    return backend;
  }

  all(): Backend[] {
    return [...this.backends.values()];
  }
}
