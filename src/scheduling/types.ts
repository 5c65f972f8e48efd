/**
 * The scheduler's public contract: what callers pass in and get back. The
 * behaviour lives in scheduler.ts (facade), admission.ts (queue and memory),
 * runner.ts (one engine's lifecycle) and plan.ts (settings resolution).
 */
import type { BackendMode, BackendRegistry, ModelFiles } from "../inference/index.ts";
import type { RunnerConfig } from "./config-store.ts";
import type { Preset, PresetPatch } from "./preset.ts";

/** A model the store resolved: what a runner needs to start it. */
export interface ResolvedModel {
  /** Stable id (e.g. the manifest digest): runners and configurations are keyed by it. */
  id: string;
  files: ModelFiles;
  /** Total bytes of the weights (all shards). */
  sizeBytes: number;
  /** Context size the model's own packaging asks for, if any. */
  contextSize?: number | undefined;
}

/**
 * Turns a user's model reference into local files. Rejects with the store's
 * error (e.g. a 404 `RunnerError`) when the model is not there. The scheduler
 * never pulls: that is the caller's business.
 */
export type ModelResolver = (ref: string, signal: AbortSignal) => Promise<ResolvedModel>;

/** Time, injectable so tests need not wait for real keep-alives. */
export interface Clock {
  now(): number;
  /** Runs `fn` after `ms`; returns a function that cancels it. Must not keep the process alive. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** pino-compatible subset. */
export interface SchedulerLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Which runner an event or log line is about. */
export interface RunnerLabels {
  backend: string;
  model: string;
  mode: BackendMode;
}

/**
 * What the scheduler reports, for metrics (prom-client counters and
 * histograms) and the lifecycle event stream (`GET /engines/events`):
 * `loading` when an engine is started, `load_progress` as its model loads
 * (engines that report it), `load` once it is ready.
 */
export type SchedulerEvent =
  | ({ type: "loading"; contextSize: number; parallel: number; estimatedBytes: number; engine: string | null } & RunnerLabels)
  /** How far a load is (0..1), when its engine reports it (Backend `RunRequest.onLoadProgress`); after `loading`, before `load`. */
  | ({ type: "load_progress"; progress: number; contextSize: number; parallel: number; estimatedBytes: number; engine: string | null } & RunnerLabels)
  | ({ type: "load"; durationMs: number; pid: number | null } & RunnerLabels)
  | ({ type: "load_failed"; error: unknown } & RunnerLabels)
  | ({ type: "evict"; reason: EvictReason } & RunnerLabels)
  | ({ type: "crash"; error: unknown; inFlight: number } & RunnerLabels)
  | ({ type: "queued"; queueLength: number } & RunnerLabels)
  | ({ type: "dequeued"; waitMs: number; outcome: "admitted" | "aborted" | "rejected" } & RunnerLabels)
  | ({ type: "queue_full" } & RunnerLabels)
  | ({ type: "configured"; config: RunnerConfig; restarted: boolean } & RunnerLabels);

/** Why a runner was stopped. */
export type EvictReason = "memory" | "idle" | "unload" | "reconfigure" | "shutdown" | "unhealthy";

export interface SchedulerOptions {
  backends: BackendRegistry;
  resolveModel: ModelResolver;
  /** Directory for engine sockets and pid files; created with mode 0700. Keep it short: socket paths are limited to ~107 bytes. */
  runDir: string;
  /** JSON file for `_configure` settings; null keeps them in memory only. */
  configPath: string | null;
  /** Bytes all runners together may use (see computeMemoryBudget). */
  memoryBudgetBytes: number;
  /** Default 8. */
  maxRunners?: number | undefined;
  /** Requests that may wait for a runner or a slot before 503. Default 512. */
  queueLimit?: number | undefined;
  /** Default 5 minutes; 0 unloads right after each request; Infinity never. */
  defaultKeepAliveMs?: number | undefined;
  /** Context tokens per request when neither `_configure` nor the model sets one. Default 4096 (capped to the trained length). */
  defaultContextSize?: number | undefined;
  /** Parallel slots per runner when not configured. Default 1. */
  defaultParallel?: number | undefined;
  /** Fixed memory cost of one engine process in the estimate. Default 256 MiB. */
  runnerOverheadBytes?: number | undefined;
  /**
   * After a model fails to load, how long requests for it get that failure
   * (LoadBackoffError) without a new engine being started. Default 30 s.
   * A successful `_configure` or an unload of the model ends it early.
   */
  loadFailureBackoffMs?: number | undefined;
  /** Sent as `Retry-After` with 503 queue-full errors. Default 5. */
  retryAfterSeconds?: number | undefined;
  /**
   * Requests per parallel slot that may wait inside the engine (its own
   * FIFO) rather than in the scheduler. Default 0: at most `parallel` in
   * flight. The daemon uses 1 so an engine never idles between requests.
   */
  engineQueuePerSlot?: number | undefined;
  clock?: Clock | undefined;
  log?: SchedulerLogger | undefined;
  onEvent?: ((event: SchedulerEvent) => void) | undefined;
  /** Engine output, line by line (the daemon writes it to per-engine log files). */
  onEngineLog?: ((runner: RunnerLabels, line: string) => void) | undefined;
}

export interface AcquireOptions {
  /** Backend name; default: the registry's default. */
  backend?: string | undefined;
  /** Aborting gives up waiting (queue, slot or load); it does not stop a load others may use. */
  signal?: AbortSignal | undefined;
  /** A per-request keep-alive (Ollama's `keep_alive`); it sticks to the runner until the next one. */
  keepAliveMs?: number | undefined;
  /**
   * The request carries images: the runner must take them (the model has a
   * projector and its engine serves it), else a 400 that says what to do,
   * before any model is loaded.
   */
  images?: boolean | undefined;
  /** The request wants generated text (chat, completion, infill): an embedding model is a 400 before any load. */
  generatesText?: boolean | undefined;
  /**
   * Called once if the request has to wait for its model to load (it
   * started the engine, or found one starting), before that wait: a
   * streaming answer can say why nothing comes yet.
   */
  onLoading?: (() => void) | undefined;
}

/**
 * One request's hold on a runner slot. The holder sends its request to
 * `socketPath` with `model` set to `modelName`, then calls `release()` (or
 * `fail(error)` if talking to the engine failed). Until then the runner is
 * busy: it is never evicted, unloaded or reconfigured.
 */
export interface Lease {
  readonly backend: string;
  readonly model: string;
  readonly modelId: string;
  readonly mode: BackendMode;
  /** The engine's Unix socket. */
  readonly socketPath: string;
  /** The name the engine serves; requests must carry it in `model` (others get 421). */
  readonly modelName: string;
  /** Context tokens one request may use. */
  readonly contextSize: number;
  /**
   * Aborts when the runner goes away under the request: the engine crashed
   * (reason: the engine's error, with its output tail) or the daemon's
   * shutdown grace period ran out (reason: SchedulerClosedError). Pass it to
   * the proxied request; on abort, end the response with `signal.reason`.
   */
  readonly signal: AbortSignal;
  /** Frees the slot. Idempotent. */
  release(): void;
  /**
   * Frees the slot after a transport failure talking to the engine. The
   * scheduler checks the engine's health and replaces it if it is broken.
   */
  fail(error: unknown): void;
}

/** `_configure` input; the HTTP layer maps DMR's JSON (`context-size`, ...) onto it with parseConfigureBody. */
export interface ConfigureRequest {
  model: string;
  backend?: string | undefined;
  mode?: string | undefined;
  contextSize?: number | undefined;
  runtimeFlags?: readonly string[] | undefined;
  rawRuntimeFlags?: string | undefined;
  keepAlive?: string | number | undefined;
  /** DMR's `llamacpp.reasoning-budget`: stored as the runtime flag `--reasoning-budget`. */
  reasoningBudget?: number | undefined;
  /** The backend engine to run the model with (`llama.cpp`: built-in or llama-server). */
  engine?: string | undefined;
  /** Changes to the model's request defaults (completion mode only); null clears them. Never restarts a runner. */
  preset?: PresetPatch | null | undefined;
  /** DMR's `speculative`: a draft model for speculative decoding; `draftModel` "" turns it off. */
  speculative?: SpeculativeRequest | undefined;
}

/** `_configure`'s `speculative` (DMR's `{draft_model, num_tokens, min_acceptance_rate}`); absent numbers = the engine's defaults. */
export interface SpeculativeRequest {
  draftModel: string;
  numTokens?: number | undefined;
  minAcceptanceRate?: number | undefined;
}

export interface ConfigureResult {
  config: RunnerConfig;
  /** True if an idle runner with the old configuration was stopped; a preload with the new one has been started. */
  restarted: boolean;
}

/** What a registry tells of a model before it is pulled: enough for a memory estimate. */
export interface RemoteModelShape {
  /** Bytes of its GGUF files. */
  weightsBytes: number;
  /** The context size it was packaged with, if any. */
  contextSize: number | null;
  /** Its config's `gguf` map ({} when the artifact has none). */
  gguf: Readonly<Record<string, string>>;
}

/** One row of `GET /engines/ps`. */
export interface RunnerStatus {
  backend: string;
  model: string;
  modelId: string;
  mode: BackendMode;
  state: "loading" | "ready" | "stopping";
  inFlight: number;
  /** Requests waiting for one of this runner's slots. */
  waiting: number;
  lastUsedAt: Date | null;
  keepAlive: string;
  /** When it unloads if it stays idle; null while busy or with keep-alive -1. */
  expiresAt: Date | null;
  estimatedMemoryBytes: number;
  /** Of those, the bytes on a GPU: the estimate × the layers the engine reported offloading (gpu-offload.ts); 0 on CPU. */
  gpuBytes: number;
  /** Context tokens per request (the engine gets `contextSize × parallel`). */
  contextSize: number;
  parallel: number;
  pid: number | null;
  /** The engine's Unix socket (not shown by `ps`): the daemon scrapes its `/metrics` there. */
  socketPath: string;
  /** The backend engine serving it (`built-in`, `llama-server`); null for a backend with one engine. */
  engine: string | null;
}

/** A model whose last load failed; `GET /engines/ps` lists it with state "failed". */
export interface FailedLoadStatus {
  backend: string;
  model: string;
  modelId: string;
  mode: BackendMode;
  /** What the failed load said (for EngineFailedError, with the engine's output tail). */
  error: string;
  /** The failure's stable code, e.g. "engine_failed". */
  code: string;
  failedAt: Date;
  /** Until then requests get the failure; after it the next request loads again. */
  retryAt: Date;
  estimatedMemoryBytes: number;
  contextSize: number;
  parallel: number;
}

/** The settings a runner for a model would run with, whether or not it runs. */
export interface EffectiveSettings {
  contextSize: number;
  parallel: number;
  runtimeFlags: string[];
  keepAliveMs: number;
  estimatedMemoryBytes: number;
  trainedContextSize: number | null;
  /** Image input can be served right now (the model has a projector and the engine its runner gets serves it): Ollama's and the `/v1/models` `vision` capability. */
  vision: boolean;
}

export interface UnloadRequest {
  all?: boolean | undefined;
  models?: readonly string[] | undefined;
  backend?: string | undefined;
}

export interface UnloadResult {
  /** Runners stopped now. */
  unloaded: number;
  /** Busy runners that stop once their requests finish. */
  deferred: number;
}

export interface MemoryStatus {
  budgetBytes: number;
  usedBytes: number;
  runners: number;
  maxRunners: number;
  queued: number;
}

export interface Scheduler {
  /**
   * Gets a slot on the runner for (backend, model, mode), starting one if
   * needed; resolves once the engine is healthy. Concurrent callers share
   * one runner and one load. Throws: the resolver's errors (404),
   * UnknownBackendError (404), ModelCapabilityError (400) if the GGUF header
   * shows the model cannot serve `mode`, ModelTooLargeError (507) if the model can
   * never fit, QueueFullError (503) when too many requests wait,
   * EngineFailedError (500) if the engine fails to start (with its output
   * tail), LoadBackoffError (that failure's status and code) without starting
   * an engine while the model is in its failed-load back-off, SchedulerClosedError (503) during shutdown, `signal.reason` on abort.
   */
  acquire(ref: string, mode: BackendMode, options?: AcquireOptions): Promise<Lease>;
  /** Loads a model without using it (`X-Preload-Only`, `_configure`). Same errors as acquire. */
  preload(ref: string, mode: BackendMode, options?: AcquireOptions): Promise<RunnerStatus | null>;
  /**
   * Validates and persists a configuration. An idle runner with a different
   * one is restarted; a busy or loading one makes this throw RunnerBusyError
   * (409) and nothing is stored. Absent fields keep their stored values.
   * Throws RuntimeFlagError / InvalidRequestError (400) naming the bad input.
   */
  configure(request: ConfigureRequest, signal?: AbortSignal): Promise<ConfigureResult>;
  /**
   * The request defaults stored for a model (by its id, as a lease carries
   * it): read on every request, so a change applies to the next request
   * without reloading the model.
   */
  presetOf(backend: string, modelId: string): Preset | undefined;
  /** Stored configurations, optionally for one model (reference or id). */
  getConfigs(model?: string): RunnerConfig[];
  /** The settings a request for this model would get now (for `/v1/models` and `ps`). */
  effectiveSettings(ref: string, mode: BackendMode, options?: { backend?: string; signal?: AbortSignal }): Promise<EffectiveSettings>;
  /**
   * Before a pull: throws PullWouldNotFitError (507) when a model of this
   * size and GGUF metadata could never fit the memory budget with the
   * default configuration (its packaged context size, else the default).
   */
  checkPullFits(ref: string, model: RemoteModelShape): void;
  ps(): RunnerStatus[];
  /** Models in their failed-load back-off (see SchedulerOptions.loadFailureBackoffMs). */
  failedLoads(): FailedLoadStatus[];
  memory(): MemoryStatus;
  /** Stops idle runners now; busy ones stop once their requests are done. */
  unload(request: UnloadRequest): Promise<UnloadResult>;
  /**
   * Stops accepting work, rejects queued requests, lets in-flight ones run
   * for up to `graceMs`, then stops every engine. Resolves when no engine
   * process is left. Idempotent.
   */
  shutdown(graceMs: number): Promise<void>;
  /** Stops engines a previous (killed) daemon left in `runDir`; resolves with their pids. Call once at startup. */
  reapOrphans(): Promise<number[]>;
}
