export type { Backend, BackendConfig, InstallOptions, ModelFiles, RunRequest } from "./backend.ts";
export { BACKEND_MODES, parseBackendMode, formatBackendMode, UnknownBackendModeError, type BackendMode } from "./mode.ts";
export { BackendRegistry, UnknownBackendError } from "./registry.ts";
export { EngineFailedError, getStatusOverSocket } from "./engine-process.ts";
export { LlamaCppBackend, LLAMACPP_NAME, EngineNotInstalledError, type LlamaCppBackendOptions } from "./backends/llamacpp/llamacpp-backend.ts";
export { LLAMACPP_ENGINES, parseLlamaCppEngine, UnknownEngineError, type LlamaCppEngine } from "./backends/llamacpp/engines.ts";
