/**
 * The scheduler facade: resolves models, plans runners (plan.ts), admits
 * requests (admission.ts) onto runners (runner.ts), and implements the
 * operations (`_configure`, ps, unload, shutdown). The contract is in
 * types.ts.
 */
import { chmod, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { InvalidRequestError, RunnerError, messageOf } from "../errors.ts";
import type { Backend, BackendMode } from "../inference/index.ts";
import { Admission } from "./admission.ts";
import { ConfigStore, configKey, type RunnerConfig } from "./config-store.ts";
import { DraftModelNotFoundError, DraftVocabularyMismatchError, LoadBackoffError, ModelTooLargeError, PullWouldNotFitError, RunnerBusyError, SchedulerClosedError } from "./errors.ts";
import { readVocabulary, vocabularyMismatch } from "../engine/draft-vocabulary.ts";
import { DEFAULT_RUNNER_OVERHEAD_BYTES, estimateRunnerMemory, readGgufShape, shapeFromConfigMap, type GgufShape } from "./memory-estimate.ts";
import { reapOrphans } from "./pid-files.ts";
import { checkCapability, checkImageInput, checkTextGeneration, checkConfigure, contextSizeFor, mergeConfigure, planRunner, type DraftPlan, type Plan, type PlanDefaults } from "./plan.ts";
import { NEVER, raceAbort } from "./promises.ts";
import type { LeaseImpl } from "./runner.ts";
import type {
  AcquireOptions,
  ConfigureRequest,
  ConfigureResult,
  Clock,
  EffectiveSettings,
  FailedLoadStatus,
  Lease,
  MemoryStatus,
  RemoteModelShape,
  ResolvedModel,
  RunnerStatus,
  Scheduler,
  SchedulerEvent,
  SchedulerLogger,
  SchedulerOptions,
  UnloadRequest,
  UnloadResult,
} from "./types.ts";
import { systemClock } from "./types.ts";

export * from "./types.ts";
export { RunnerStoppedError } from "./errors.ts";

const silentLogger: SchedulerLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Builds the scheduler: loads persisted configurations and prepares `runDir`.
 * It starts no engine; call `reapOrphans()` once before serving.
 */
export async function createScheduler(options: SchedulerOptions): Promise<Scheduler> {
  // A socket path over ~107 bytes cannot be bound; fail here rather than at the first load.
  if (Buffer.byteLength(join(options.runDir, "r-00000000.sock")) > 100) {
    throw new Error(`run directory ${options.runDir} is too long for Unix socket paths; use a shorter one`);
  }
  await mkdir(options.runDir, { recursive: true, mode: 0o700 });
  await chmod(options.runDir, 0o700); // mkdir leaves an existing directory's mode alone
  const configs = await ConfigStore.open(options.configPath);
  return new SchedulerImpl(options, configs);
}

class SchedulerImpl implements Scheduler {
  private readonly admission: Admission;
  private readonly shapes = new Map<string, Promise<GgufShape | null>>();
  /** Vocabulary checks of (model file, draft file) pairs: null = compatible, else why not. */
  private readonly vocabularyChecks = new Map<string, Promise<string | null>>();
  private readonly log: SchedulerLogger;
  private readonly defaults: PlanDefaults;
  private shuttingDown: Promise<void> | null = null;
  /** Recent load failures by runner key, each until its back-off ends. */
  private readonly failures = new Map<string, { plan: Plan; error: unknown; failedAtMs: number; retryAtMs: number }>();
  private readonly clock: Clock;
  private readonly loadFailureBackoffMs: number;

  constructor(
    private readonly options: SchedulerOptions,
    private readonly configs: ConfigStore,
  ) {
    this.log = options.log ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.loadFailureBackoffMs = options.loadFailureBackoffMs ?? 30_000;
    this.defaults = {
      contextSize: options.defaultContextSize ?? 4096,
      parallel: options.defaultParallel ?? 1,
      keepAliveMs: options.defaultKeepAliveMs ?? 5 * 60_000,
      overheadBytes: options.runnerOverheadBytes ?? DEFAULT_RUNNER_OVERHEAD_BYTES,
    };
    this.admission = new Admission({
      runDir: options.runDir,
      clock: this.clock,
      log: this.log,
      memoryBudgetBytes: options.memoryBudgetBytes,
      maxRunners: options.maxRunners ?? 8,
      queueLimit: options.queueLimit ?? 512,
      retryAfterSeconds: options.retryAfterSeconds ?? 5,
      engineQueuePerSlot: options.engineQueuePerSlot ?? 0,
      emit: (event) => this.emit(event),
      onEngineLog: options.onEngineLog,
      onLoadFailed: (plan, error) => {
        if (this.loadFailureBackoffMs <= 0) return;
        const now = this.clock.now();
        this.failures.set(plan.key, { plan, error, failedAtMs: now, retryAtMs: now + this.loadFailureBackoffMs });
      },
    });
  }

  private get isClosed(): boolean {
    return this.admission.isClosed;
  }

  // ---- requests -----------------------------------------------------------

  async acquire(ref: string, mode: BackendMode, options: AcquireOptions = {}): Promise<Lease> {
    const signal = options.signal ?? NEVER;
    signal.throwIfAborted();
    if (this.isClosed) throw new SchedulerClosedError();
    const backend = this.options.backends.get(options.backend);
    const model = await this.options.resolveModel(ref, signal);
    const key = configKey(backend.name, model.id, mode);
    let runner = this.admission.liveRunner(key);
    let plan: Plan | null = null;
    if (!runner) {
      this.throwIfBackingOff(key, ref);
      plan = await this.plan(backend, ref, model, mode);
      checkCapability(plan);
      if (options.generatesText) checkTextGeneration(plan);
      if (options.images) checkImageInput(plan);
      if (plan.memory.totalBytes > this.options.memoryBudgetBytes) {
        throw new ModelTooLargeError(ref, plan.memory.totalBytes, this.options.memoryBudgetBytes);
      }
      signal.throwIfAborted();
      if (this.isClosed) throw new SchedulerClosedError();
      // Another caller may have started it while we read the GGUF header.
      runner = this.admission.liveRunner(key);
    }
    if (runner && options.images && runner.plan.imageRefusal !== null && runner.idle) {
      // The engine that takes images (llama-server, for a projector) may have been installed since this runner
      // started on another one: an idle runner then gives way to one on the engine a fresh plan picks.
      const fresh = await this.plan(backend, ref, model, mode);
      if (fresh.imageRefusal === null && fresh.memory.totalBytes <= this.options.memoryBudgetBytes && runner.idle && !runner.stopping) {
        runner.stop("reconfigure");
        this.log.info({ model: ref, mode, engine: fresh.engine }, "restarting the model on the engine that takes images");
        runner = undefined;
        plan = fresh;
      }
    }
    if (runner && options.generatesText) checkTextGeneration(runner.plan);
    if (runner && options.images) checkImageInput(runner.plan);
    let lease: LeaseImpl;
    if (runner) {
      lease = await this.admission.attach(runner, signal, plan ?? runner.plan);
    } else {
      lease = await this.admission.enqueue(plan!, signal);
    }
    if (options.keepAliveMs !== undefined) lease.runner.keepAliveMs = options.keepAliveMs;
    // A runner that is ready needs no wait (the common case: no abort listener to add and remove).
    if (lease.runner.state === "ready") return lease;
    if (lease.runner.state === "loading") options.onLoading?.();
    try {
      await raceAbort(lease.runner.ready.promise, signal);
    } catch (error) {
      lease.release();
      throw error;
    }
    return lease;
  }

  /** A model that failed to load moments ago fails again the same way, without a new engine. */
  private throwIfBackingOff(key: string, ref: string): void {
    const failure = this.failures.get(key);
    if (!failure) return;
    const now = this.clock.now();
    if (now >= failure.retryAtMs) {
      this.failures.delete(key);
      return;
    }
    throw new LoadBackoffError(ref, failure.error, Math.round((now - failure.failedAtMs) / 1000), Math.ceil((failure.retryAtMs - now) / 1000));
  }

  async preload(ref: string, mode: BackendMode, options: AcquireOptions = {}): Promise<RunnerStatus | null> {
    const lease = (await this.acquire(ref, mode, options)) as LeaseImpl;
    const status = lease.runner.status();
    lease.release();
    return status;
  }

  // ---- planning -----------------------------------------------------------

  private shapeOf(path: string): Promise<GgufShape | null> {
    let shape = this.shapes.get(path);
    if (!shape) {
      shape = readGgufShape(path).catch((error: unknown) => {
        this.shapes.delete(path);
        this.log.warn({ path, err: messageOf(error) }, "could not read the GGUF header; estimating without a KV cache");
        return null;
      });
      this.shapes.set(path, shape);
    }
    return shape;
  }

  /** `config`: the stored configuration, or a candidate that is not stored yet (configure). */
  private async plan(
    backend: Backend,
    ref: string,
    model: ResolvedModel,
    mode: BackendMode,
    config: RunnerConfig | undefined = this.configs.get(backend.name, model.id, mode),
  ): Promise<Plan> {
    const shape = await this.shapeOf(model.files.ggufPath);
    const engine = config?.engine ?? (await backend.chooseEngine?.(model.files, undefined));
    let imageRefusal: string | null;
    if (mode !== "completion" || !model.files.mmprojPath) imageRefusal = "has no multimodal projector; it accepts only text.";
    else {
      const refusal = backend.imageInputRefusal ? backend.imageInputRefusal(engine, config?.engine !== undefined) : `runs on the ${backend.name} backend, which takes no image input.`;
      imageRefusal = refusal === null ? null : `cannot take images here: ${refusal}`;
    }
    const draft = config?.speculative ? await this.draftPlan(ref, model, config.speculative) : null;
    return planRunner(this.defaults, backend, ref, model, mode, shape, config, { engine, imageRefusal }, draft);
  }

  /**
   * Resolves a configuration's draft model in the store and checks that it
   * can draft for `model` (llama.cpp's vocabulary rule, on the GGUF headers):
   * DraftModelNotFoundError (404), DraftVocabularyMismatchError (400).
   */
  private async draftPlan(ref: string, model: ResolvedModel, speculative: NonNullable<RunnerConfig["speculative"]>): Promise<DraftPlan> {
    const draft = await this.options.resolveModel(speculative.draftModel, NEVER).catch((error: unknown) => {
      throw error instanceof RunnerError && error.status === 404 ? new DraftModelNotFoundError(ref, speculative.draftModel, error) : error;
    });
    const key = `${model.files.ggufPath}\u0000${draft.files.ggufPath}`;
    let check = this.vocabularyChecks.get(key);
    if (!check) {
      check = Promise.all([readVocabulary(model.files.ggufPath), readVocabulary(draft.files.ggufPath)]).then(([a, b]) => vocabularyMismatch(a, b));
      check.catch(() => this.vocabularyChecks.delete(key));
      this.vocabularyChecks.set(key, check);
    }
    const why = await check;
    if (why !== null) throw new DraftVocabularyMismatchError(ref, speculative.draftModel, why);
    return {
      ref: speculative.draftModel,
      model: draft,
      shape: await this.shapeOf(draft.files.ggufPath),
      numTokens: speculative.numTokens,
      minAcceptanceRate: speculative.minAcceptanceRate,
    };
  }

  async effectiveSettings(ref: string, mode: BackendMode, options: { backend?: string; signal?: AbortSignal } = {}): Promise<EffectiveSettings> {
    const backend = this.options.backends.get(options.backend);
    const model = await this.options.resolveModel(ref, options.signal ?? NEVER);
    const running = this.admission.liveRunner(configKey(backend.name, model.id, mode));
    const plan = running?.plan ?? (await this.plan(backend, ref, model, mode));
    // A runner started before the engine that takes images was installed gives way to an image request (acquire).
    const vision = plan.imageRefusal === null || (running !== undefined && Boolean(model.files.mmprojPath) && (await this.plan(backend, ref, model, mode)).imageRefusal === null);
    return {
      contextSize: plan.contextSize,
      parallel: plan.parallel,
      runtimeFlags: plan.runtimeFlags,
      keepAliveMs: running?.keepAliveMs ?? plan.keepAliveMs,
      estimatedMemoryBytes: plan.memory.totalBytes,
      trainedContextSize: plan.shape?.contextLength ?? null,
      vision,
    };
  }

  // ---- configuration ------------------------------------------------------

  async configure(request: ConfigureRequest, signal: AbortSignal = NEVER): Promise<ConfigureResult> {
    if (this.isClosed) throw new SchedulerClosedError();
    const backend = this.options.backends.get(request.backend);
    const checked = checkConfigure(request, backend.name);
    if (request.engine !== undefined) {
      if (!backend.engineFor) throw new InvalidRequestError(`Backend "${backend.name}" has one engine; "engine" cannot be set.`, "engine");
      backend.engineFor({ engine: request.engine }); // throws naming the choices
    }
    const { mode, keepAliveMs } = checked;
    const model = await this.options.resolveModel(request.model, signal);
    const config = mergeConfigure(checked, request.model, model.id, this.configs.get(backend.name, model.id, mode));
    // Reject before storing: a setting that cannot load must not persist.
    const plan = await this.plan(backend, request.model, model, mode, config);
    checkCapability(plan);
    if (plan.memory.totalBytes > this.options.memoryBudgetBytes) {
      throw new ModelTooLargeError(request.model, plan.memory.totalBytes, this.options.memoryBudgetBytes);
    }
    let restarted = false;
    const runner = this.admission.liveRunner(plan.key);
    if (runner && runner.plan.engineConfig !== plan.engineConfig) {
      if (!runner.idle) throw new RunnerBusyError(request.model, mode);
      runner.stop("reconfigure");
      restarted = true;
    } else if (runner && keepAliveMs !== undefined) {
      runner.keepAliveMs = keepAliveMs;
      if (runner.idle) this.admission.onIdle(runner); // re-arm with the new value
    }
    await this.configs.set(config);
    this.failures.delete(plan.key); // the new settings deserve a fresh try
    this.log.info({ backend: backend.name, model: request.model, mode, config }, "model configured");
    this.emit({ type: "configured", backend: backend.name, model: request.model, mode, config, restarted });
    if (restarted) {
      // Docker Model Runner answers 202 and loads in the background; so do we.
      this.preload(request.model, mode, { backend: backend.name }).catch((error: unknown) =>
        this.log.warn({ model: request.model, err: messageOf(error) }, "preload after reconfiguration failed"),
      );
    }
    return { config, restarted };
  }

  presetOf(backend: string, modelId: string) {
    return this.configs.get(backend, modelId, "completion")?.preset;
  }

  getConfigs(model?: string): RunnerConfig[] {
    const all = this.configs.all();
    return model === undefined ? all : all.filter((c) => c.model === model || c.modelId === model);
  }

  // ---- operations ---------------------------------------------------------

  checkPullFits(ref: string, model: RemoteModelShape): void {
    const shape = shapeFromConfigMap(model.gguf);
    const contextSize = contextSizeFor(this.defaults, model.contextSize, shape?.contextLength ?? null);
    const { totalBytes } = estimateRunnerMemory({
      weightsBytes: model.weightsBytes,
      shape,
      contextTokens: contextSize * this.defaults.parallel,
      overheadBytes: this.defaults.overheadBytes,
      draft: null,
    });
    if (totalBytes > this.options.memoryBudgetBytes) throw new PullWouldNotFitError(ref, totalBytes, this.options.memoryBudgetBytes, contextSize);
  }

  ps(): RunnerStatus[] {
    return [...this.admission.runners].map((r) => r.status());
  }

  failedLoads(): FailedLoadStatus[] {
    const now = this.clock.now();
    const rows: FailedLoadStatus[] = [];
    for (const [key, f] of this.failures) {
      if (now >= f.retryAtMs) {
        this.failures.delete(key);
        continue;
      }
      rows.push({
        backend: f.plan.backend.name,
        model: f.plan.ref,
        modelId: f.plan.model.id,
        mode: f.plan.mode,
        error: messageOf(f.error),
        code: f.error instanceof RunnerError ? f.error.code : "engine_failed",
        failedAt: new Date(f.failedAtMs),
        retryAt: new Date(f.retryAtMs),
        estimatedMemoryBytes: f.plan.memory.totalBytes,
        contextSize: f.plan.contextSize,
        parallel: f.plan.parallel,
      });
    }
    return rows;
  }

  memory(): MemoryStatus {
    return {
      budgetBytes: this.options.memoryBudgetBytes,
      usedBytes: this.admission.usedBytes(),
      runners: this.admission.runners.size,
      maxRunners: this.options.maxRunners ?? 8,
      queued: this.admission.pendingCount(),
    };
  }

  async unload(request: UnloadRequest): Promise<UnloadResult> {
    let ids: Set<string> | null = null;
    if (!request.all) {
      ids = new Set<string>();
      for (const ref of request.models ?? []) {
        ids.add(ref);
        try {
          ids.add((await this.options.resolveModel(ref, NEVER)).id);
        } catch {
          // Not in the store (any more): match running runners by the name they were started with.
        }
      }
    }
    const result: UnloadResult = { unloaded: 0, deferred: 0 };
    // Unloading a model also ends its failed-load back-off: the user wants a fresh start.
    for (const [key, f] of this.failures) {
      if (request.backend && f.plan.backend.name !== request.backend) continue;
      if (ids && !ids.has(f.plan.model.id) && !ids.has(f.plan.ref)) continue;
      this.failures.delete(key);
    }
    for (const r of this.admission.runners) {
      if (r.stopping) continue;
      if (request.backend && r.plan.backend.name !== request.backend) continue;
      if (ids && !ids.has(r.plan.model.id) && !ids.has(r.plan.ref)) continue;
      if (r.idle) {
        r.stop("unload");
        result.unloaded++;
      } else {
        r.unloadWhenIdle = true;
        result.deferred++;
      }
    }
    return result;
  }

  shutdown(graceMs: number): Promise<void> {
    this.shuttingDown ??= this.doShutdown(graceMs);
    return this.shuttingDown;
  }

  private async doShutdown(graceMs: number): Promise<void> {
    this.admission.isClosed = true;
    const closed = new SchedulerClosedError();
    this.admission.rejectQueued(closed);
    for (const r of this.admission.runners) {
      r.rejectWaiters(closed);
      // A load that has not finished serves nobody in time: stop it now.
      if (r.state === "loading" || r.idle) r.stop("shutdown", closed);
    }
    if (this.admission.hasBusyRunners()) {
      this.log.info({ graceMs }, "waiting for in-flight requests before stopping engines");
      await this.admission.waitUntilIdle(graceMs);
    }
    for (const r of this.admission.runners) r.stop("shutdown", closed);
    await Promise.all([...this.admission.runners].map((r) => r.done.promise));
  }

  reapOrphans(): Promise<number[]> {
    if (this.admission.runners.size > 0) return Promise.reject(new Error("reapOrphans must run before any engine is started"));
    return reapOrphans(this.options.runDir).then((pids) => {
      if (pids.length > 0) this.log.warn({ pids }, "stopped engines left behind by a previous run");
      return pids;
    });
  }

  private emit(event: SchedulerEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      this.log.warn({ err: error, event: event.type }, "scheduler event listener threw");
    }
  }
}
