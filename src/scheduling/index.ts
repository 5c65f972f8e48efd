export {
  createScheduler,
  systemClock,
  RunnerStoppedError,
  type Scheduler,
  type SchedulerOptions,
  type SchedulerEvent,
  type SchedulerLogger,
  type EvictReason,
  type Lease,
  type AcquireOptions,
  type ConfigureRequest,
  type ConfigureResult,
  type RunnerStatus,
  type FailedLoadStatus,
  type EffectiveSettings,
  type UnloadRequest,
  type UnloadResult,
  type MemoryStatus,
  type ModelResolver,
  type ResolvedModel,
  type Clock,
} from "./scheduler.ts";
export { parseConfigureBody, parseUnloadBody } from "./requests.ts";
export type { RunnerConfig } from "./config-store.ts";
export { parseDuration, formatDuration, InvalidDurationError, parseByteSize, type KeepAliveMs } from "../units.ts";
export { LoadBackoffError, ModelCapabilityError, ModelTooLargeError, QueueFullError, RunnerBusyError, RuntimeFlagError, SchedulerClosedError, formatBytes } from "./errors.ts";
export {
  computeMemoryBudget,
  estimateRunnerMemory,
  readGgufShape,
  DEFAULT_RUNNER_OVERHEAD_BYTES,
  type GgufShape,
  type MemoryEstimate,
} from "./memory-estimate.ts";
export { shellSplit, validateRuntimeFlags, type ParsedRuntimeFlags } from "./runtime-flags.ts";
export { reapOrphans } from "./pid-files.ts";
export {
  PRESET_PARAMETERS,
  PRESET_PARAMETER_NAMES,
  isPresetParameter,
  mergePreset,
  normalizePreset,
  parameterLines,
  parsePresetMessages,
  parsePresetParameter,
  parsePresetPatch,
  type Preset,
  type PresetMessage,
  type PresetParameterName,
  type PresetParameters,
  type PresetParameterValue,
  type PresetPatch,
} from "./preset.ts";
