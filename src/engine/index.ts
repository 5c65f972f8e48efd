export { runEngine } from "./run-engine.ts";
export { parseEngineArgs, defaultThreads, EngineUsageError, type EngineOptions } from "./options.ts";
export { createEngineApp } from "./server.ts";
