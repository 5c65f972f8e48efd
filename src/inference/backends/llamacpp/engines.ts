import { InvalidRequestError } from "../../../errors.ts";

/**
 * The engines the `llama.cpp` backend can run a model with: our built-in
 * engine (node-llama-cpp, `mr engine`) or a real `llama-server` binary.
 * Both take llama-server's flags and speak its API on a Unix socket.
 */
export const LLAMACPP_ENGINES = ["built-in", "llama-server"] as const;
export type LlamaCppEngine = (typeof LLAMACPP_ENGINES)[number];

export class UnknownEngineError extends InvalidRequestError {
  override readonly code = "unknown_engine";
  constructor(given: string, field: string) {
    super(`Unknown engine "${given}" for ${field}: use one of ${LLAMACPP_ENGINES.join(", ")}.`, field);
  }
}

/** Parses an engine name exactly (they are lowercase); `field` names where it came from in the error. */
export function parseLlamaCppEngine(text: string, field = "engine"): LlamaCppEngine {
  const engine = LLAMACPP_ENGINES.find((e) => e === text.trim());
  if (!engine) throw new UnknownEngineError(text, field);
  return engine;
}
