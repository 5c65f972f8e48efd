/**
 * Settings resolution: which context size, slots, flags and keep-alive a
 * runner gets, and how `_configure` merges into the stored configuration.
 * Pure functions of (defaults, model, GGUF shape, configuration), so they are
 * unit-tested without starting an engine.
 */
import { InvalidRequestError } from "../errors.ts";
import { parseBackendMode, type Backend, type BackendMode } from "../inference/index.ts";
import { formatDuration, parseDuration } from "../units.ts";
import { configKey, type RunnerConfig, type SpeculativeConfig } from "./config-store.ts";
import { ModelCapabilityError } from "./errors.ts";
import { mergePreset, type PresetPatch } from "./preset.ts";
import { estimateRunnerMemory, type GgufShape, type MemoryEstimate } from "./memory-estimate.ts";
import { shellSplit, validateRuntimeFlags, withReasoningBudget, type ParsedRuntimeFlags } from "./runtime-flags.ts";
import type { ConfigureRequest, ResolvedModel, RunnerLabels, SpeculativeRequest } from "./types.ts";

/** What applies when neither `_configure` nor the model's packaging says. */
export interface PlanDefaults {
  /** Context tokens per request; capped to the model's trained length. */
  contextSize: number;
  parallel: number;
  keepAliveMs: number;
  /** Fixed memory cost of one engine process in the estimate. */
  overheadBytes: number;
}

/** Everything needed to start a runner, computed before admission. */
export interface Plan {
  key: string;
  backend: Backend;
  ref: string;
  model: ResolvedModel;
  mode: BackendMode;
  contextSize: number;
  parallel: number;
  runtimeFlags: string[];
  /** The backend engine: the one `_configure` set, else the backend's choice for this model; undefined = the backend's default. */
  engine: string | undefined;
  /** Null when the runner takes image input; otherwise why not, for users (an image request is then a 400 with it). */
  imageRefusal: string | null;
  keepAliveMs: number;
  memory: MemoryEstimate;
  shape: GgufShape | null;
  /** The configuration fields that require a restart when they change. */
  engineConfig: string;
  /** The speculative-decoding draft model, resolved in the store; null = none. */
  draft: DraftPlan | null;
}

/** A draft model as a runner starts it: the store's files and the configured limits. */
export interface DraftPlan {
  /** The reference `_configure` was given. */
  ref: string;
  model: ResolvedModel;
  shape: GgufShape | null;
  numTokens: number | undefined;
  minAcceptanceRate: number | undefined;
}

/**
 * The plan for running `model` with `config` (the stored configuration, or a
 * candidate `_configure` has not stored yet). Context size: configured, else
 * the model's packaged one, else the default capped to the trained length;
 * 0 means the trained length.
 */
export function planRunner(
  defaults: PlanDefaults,
  backend: Backend,
  ref: string,
  model: ResolvedModel,
  mode: BackendMode,
  shape: GgufShape | null,
  config: RunnerConfig | undefined,
  choice: { engine?: string | undefined; imageRefusal?: string | null } = {},
  draft: DraftPlan | null = null,
): Plan {
  const contextSize = contextSizeFor(defaults, config?.contextSize ?? model.contextSize, shape?.contextLength ?? null);
  const parallel = config?.parallel ?? defaults.parallel;
  const runtimeFlags = config?.runtimeFlags ?? [];
  return {
    key: configKey(backend.name, model.id, mode),
    backend,
    ref,
    model,
    mode,
    contextSize,
    parallel,
    runtimeFlags,
    engine: config?.engine ?? choice.engine,
    imageRefusal: choice.imageRefusal !== undefined ? choice.imageRefusal : `has no multimodal projector; it accepts only text.`,
    keepAliveMs: config?.keepAlive !== undefined ? parseDuration(config.keepAlive) : defaults.keepAliveMs,
    shape,
    memory: estimateRunnerMemory({
      weightsBytes: model.sizeBytes,
      shape,
      contextTokens: contextSize * parallel,
      overheadBytes: defaults.overheadBytes,
      draft: draft ? { weightsBytes: draft.model.sizeBytes, shape: draft.shape } : null,
    }),
    engineConfig: engineConfigOf(config),
    draft,
  };
}

/**
 * The context size a runner gets: the configured or packaged one, else the
 * default capped to the trained length; 0 means the trained length.
 */
export function contextSizeFor(defaults: PlanDefaults, chosen: number | null | undefined, trained: number | null): number {
  const size = chosen ?? Math.min(defaults.contextSize, trained ?? Infinity);
  return size === 0 ? (trained ?? defaults.contextSize) : size;
}

/** The configuration fields whose change needs a restarted engine, as a comparable string. */
export function engineConfigOf(config: RunnerConfig | undefined): string {
  return JSON.stringify([config?.contextSize ?? null, config?.parallel ?? null, config?.runtimeFlags ?? [], config?.engine ?? null, config?.speculative ?? null]);
}

/** The largest context size `_configure` takes: DMR's field is an int32. */
export const MAX_CONTEXT_SIZE = 2 ** 31 - 1;

/** A `_configure` request, checked: nothing here can be rejected later for its form. */
export interface CheckedConfigure {
  backend: string;
  mode: BackendMode;
  contextSize: number | undefined;
  keepAliveMs: number | undefined;
  flags: ParsedRuntimeFlags;
  /** The request gave runtime flags (possibly none): they replace the stored ones. */
  hasFlags: boolean;
  /** DMR's `llamacpp.reasoning-budget`, stored as `--reasoning-budget`. */
  reasoningBudget: number | undefined;
  /** The engine `_configure` chose (checked against the backend by the scheduler). */
  engine: string | undefined;
  /** Changes to the request defaults (undefined: none). */
  preset: PresetPatch | null | undefined;
  /** `speculative` as given; `draftModel` "" turns it off. */
  speculative: SpeculativeRequest | undefined;
}

/**
 * Validates a `_configure` request for `backend` before the model is even
 * resolved. Throws InvalidRequestError / RuntimeFlagError (400) naming the
 * bad input.
 */
export function checkConfigure(request: ConfigureRequest, backend: string): CheckedConfigure {
  const mode = request.mode !== undefined && request.mode !== "" ? parseBackendMode(request.mode) : "completion";
  // DMR reads context-size as an int32; 0 is ours: the model's trained length.
  const size = request.contextSize;
  if (size !== undefined && (!Number.isInteger(size) || size < 0 || size > MAX_CONTEXT_SIZE)) {
    throw new InvalidRequestError(
      `context-size must be an integer from 0 to ${MAX_CONTEXT_SIZE} (0: the model's trained length; -1: unset), got ${size}.`,
      "context-size",
    );
  }
  const keepAliveMs = request.keepAlive !== undefined ? parseDuration(request.keepAlive, "keep_alive") : undefined;
  const hasFlags = request.runtimeFlags !== undefined || request.rawRuntimeFlags !== undefined;
  const flags = validateRuntimeFlags(backend, [
    ...(request.runtimeFlags ?? []),
    ...(request.rawRuntimeFlags ? shellSplit(request.rawRuntimeFlags) : []),
  ]);
  if (request.contextSize !== undefined && flags.contextSize !== undefined && flags.contextSize !== request.contextSize) {
    throw new InvalidRequestError(
      `context-size (${request.contextSize}) and the runtime flag --ctx-size (${flags.contextSize}) disagree; give one.`,
      "context-size",
    );
  }
  if (request.preset !== undefined && mode !== "completion") {
    throw new InvalidRequestError(`A preset (system prompt, parameters, messages) applies to the completion mode, not "${mode}".`, "preset");
  }
  if (request.speculative !== undefined && request.speculative.draftModel !== "" && mode !== "completion") {
    throw new InvalidRequestError(`speculative decoding is for generation; a model in ${mode} mode cannot have a draft model.`, "speculative");
  }
  return {
    backend,
    mode,
    contextSize: request.contextSize,
    keepAliveMs,
    flags,
    hasFlags,
    reasoningBudget: request.reasoningBudget,
    engine: request.engine,
    preset: request.preset,
    speculative: request.speculative,
  };
}

/**
 * The configuration to store: the checked request over the `previous` one.
 * Absent fields keep their stored values; runtime flags given (even none)
 * replace the stored flags and the parallel count they implied.
 */
export function mergeConfigure(checked: CheckedConfigure, ref: string, modelId: string, previous: RunnerConfig | undefined): RunnerConfig {
  const { flags, hasFlags } = checked;
  const config: RunnerConfig = {
    backend: checked.backend,
    model: ref,
    modelId,
    mode: checked.mode,
    contextSize: checked.contextSize ?? flags.contextSize ?? previous?.contextSize,
    parallel: flags.parallel ?? (hasFlags ? undefined : previous?.parallel),
    runtimeFlags: withReasoningBudget(hasFlags ? flags.passThrough : (previous?.runtimeFlags ?? []), checked.reasoningBudget),
    keepAlive: checked.keepAliveMs !== undefined ? formatDuration(checked.keepAliveMs) : previous?.keepAlive,
    engine: checked.engine ?? previous?.engine,
    preset: mergePreset(previous?.preset, checked.preset),
    speculative: mergeSpeculative(checked.speculative, previous?.speculative),
  };
  if (config.preset === undefined) delete config.preset;
  if (config.engine === undefined) delete config.engine;
  if (config.speculative === undefined) delete config.speculative;
  if (config.contextSize === undefined) delete config.contextSize;
  if (config.parallel === undefined) delete config.parallel;
  if (config.keepAlive === undefined) delete config.keepAlive;
  return config;
}

/** A `speculative` given replaces the stored one (`draftModel` "" removes it); absent keeps it. */
function mergeSpeculative(given: SpeculativeRequest | undefined, previous: SpeculativeConfig | undefined): SpeculativeConfig | undefined {
  if (given === undefined) return previous;
  if (given.draftModel === "") return undefined;
  return {
    draftModel: given.draftModel,
    ...(given.numTokens !== undefined ? { numTokens: given.numTokens } : {}),
    ...(given.minAcceptanceRate !== undefined ? { minAcceptanceRate: given.minAcceptanceRate } : {}),
  };
}

/**
 * Throws ModelCapabilityError (400) if the GGUF header shows the model
 * cannot serve `plan.mode`. Only what the header decides: an unreadable
 * header, or a mode any model can serve, passes (the engine then decides).
 */
export function checkCapability(plan: Plan): void {
  if (plan.mode === "reranking" && plan.shape?.hasRankingHead === false) {
    throw new ModelCapabilityError(
      plan.ref,
      "cannot rerank: it has no ranking head (no cls.output.weight or cls.weight tensor, which reranker models such as " +
        "bge-reranker or Qwen3-Reranker have). Use a reranking model.",
    );
  }
}

/**
 * A 400 before any load when a request wants text from an embedding model
 * (Ollama answers "does not support chat/generate"): an encoder cannot
 * generate, and a pooled decoder's vectors, not its text, are what it is for.
 */
export function checkTextGeneration(plan: Plan): void {
  if (plan.shape?.isEmbeddingModel) {
    throw new ModelCapabilityError(plan.ref, "is an embedding model: it makes vectors (/v1/embeddings, Ollama's /api/embed), not text.");
  }
}

/** A 400 when the plan's runner cannot take the images a request carries. */
export function checkImageInput(plan: Plan): void {
  if (plan.imageRefusal !== null) throw new ModelCapabilityError(plan.ref, plan.imageRefusal);
}

export function labels(plan: Plan): RunnerLabels {
  return { backend: plan.backend.name, model: plan.ref, mode: plan.mode };
}
