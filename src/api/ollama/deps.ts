import type { ModelDistribution } from "../../distribution/index.ts";
import type { EngineCallDeps } from "../engine/call.ts";
import type { ErrorLogger } from "../errors.ts";

/** What the Ollama routes need; built in server.ts from the daemon's deps. */
export interface OllamaDeps extends EngineCallDeps {
  distribution: ModelDistribution;
  logError: ErrorLogger;
}
