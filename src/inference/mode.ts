import { InvalidRequestError } from "../errors.ts";

/**
 * The mode a backend runs a model in. `completion` serves chat and text
 * completions; `embedding` serves `/v1/embeddings`; `reranking` serves
 * `/rerank` and `/score`. Every switch over a mode must handle all of them.
 */
export const BACKEND_MODES = ["completion", "embedding", "reranking"] as const;
export type BackendMode = (typeof BACKEND_MODES)[number];

export class UnknownBackendModeError extends InvalidRequestError {
  override readonly code = "unknown_backend_mode";
  constructor(given: string) {
    super(`Unknown backend mode "${given}": use one of ${BACKEND_MODES.join(", ")}.`, "mode");
  }
}

/** Parses a mode name (case-insensitive, trimmed); throws UnknownBackendModeError otherwise. */
export function parseBackendMode(text: string): BackendMode {
  const normalized = text.trim().toLowerCase();
  const mode = BACKEND_MODES.find((m) => m === normalized);
  if (!mode) throw new UnknownBackendModeError(text);
  return mode;
}

/** The mode's canonical name, as used in APIs, logs and configuration files. */
export function formatBackendMode(mode: BackendMode): string {
  return mode;
}
