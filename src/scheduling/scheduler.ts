import { randomBytes } from "node:crypto";
import { chmod, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { InvalidRequestError, RunnerError, messageOf, type OpenAIErrorType } from "../errors.ts";
import {
  getStatusOverSocket,
  parseBackendMode,
  type Backend,
  type BackendMode,
  type BackendRegistry,
  type ModelFiles,
} from "../inference/index.ts";
import { ConfigStore, configKey, type RunnerConfig } from "./config-store.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { ModelTooLargeError, QueueFullError, RunnerBusyError, SchedulerClosedError } from "./errors.ts";
import {
  DEFAULT_RUNNER_OVERHEAD_BYTES,
  estimateRunnerMemory,
  readGgufShape,
  type GgufShape,
  type MemoryEstimate,
} from "./memory-estimate.ts";
import { pidFilePath, reapOrphans, writePidFile } from "./pid-files.ts";
import { shellSplit, validateRuntimeFlags } from "./runtime-flags.ts";

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

const silentLogger: SchedulerLogger = { debug() {}, info() {}, warn() {}, error() {} };

interface RunnerLabels {
  backend: string;
  model: string;
  mode: BackendMode;
}

/** What the scheduler reports for metrics (prom-client counters and histograms). */
export type SchedulerEvent =
  | ({ type: "load"; durationMs: number } & RunnerLabels)
  | ({ type: "load_failed"; error: unknown } & RunnerLabels)
  | ({ type: "evict"; reason: EvictReason } & RunnerLabels)
  | ({ type: "crash"; error: unknown; inFlight: number } & RunnerLabels)
  | ({ type: "queued"; queueLength: number } & RunnerLabels)
  | ({ type: "dequeued"; waitMs: number; outcome: "admitted" | "aborted" | "rejected" } & RunnerLabels)
  | ({ type: "queue_full" } & RunnerLabels);

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
  /** The backend engine to run the model with (`llama.cpp`: built-in or llama-server). */
  engine?: string | undefined;
}

export interface ConfigureResult {
  config: RunnerConfig;
  /** True if an idle runner with the old configuration was stopped; a preload with the new one has been started. */
  restarted: boolean;
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
  /** Context tokens per request (the engine gets `contextSize × parallel`). */
  contextSize: number;
  parallel: number;
  pid: number | null;
  /** The backend engine serving it (`built-in`, `llama-server`); null for a backend with one engine. */
  engine: string | null;
}

/** The settings a runner for a model would run with, whether or not it runs. */
export interface EffectiveSettings {
  contextSize: number;
  parallel: number;
  runtimeFlags: string[];
  keepAliveMs: number;
  estimatedMemoryBytes: number;
  trainedContextSize: number | null;
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
   * UnknownBackendError (404), ModelTooLargeError (507) if the model can
   * never fit, QueueFullError (503) when too many requests wait,
   * EngineFailedError (500) if the engine fails to start (with its output
   * tail), SchedulerClosedError (503) during shutdown, `signal.reason` on abort.
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
  /** Stored configurations, optionally for one model (reference or id). */
  getConfigs(model?: string): RunnerConfig[];
  /** The settings a request for this model would get now (for `/v1/models` and `ps`). */
  effectiveSettings(ref: string, mode: BackendMode, options?: { backend?: string; signal?: AbortSignal }): Promise<EffectiveSettings>;
  ps(): RunnerStatus[];
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

/** Stopped while a request still waited for it or used it (unload during load, reconfiguration). */
export class RunnerStoppedError extends RunnerError {
  readonly code = "runner_stopped";
  readonly status = 503;
  override readonly type: OpenAIErrorType = "unavailable_error";
  constructor(model: string) {
    super(`The runner for ${model} was stopped before the request could be served. Retry the request.`);
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // rejections are delivered to whoever awaits; none may
  return { promise, resolve, reject };
}

/** Everything needed to start a runner, computed before admission. */
interface Plan {
  key: string;
  backend: Backend;
  ref: string;
  model: ResolvedModel;
  mode: BackendMode;
  contextSize: number;
  parallel: number;
  runtimeFlags: string[];
  /** The backend engine `_configure` chose; undefined = the backend's default. */
  engine: string | undefined;
  keepAliveMs: number;
  memory: MemoryEstimate;
  shape: GgufShape | null;
  /** The configuration fields that require a restart when they change. */
  engineConfig: string;
}

interface SlotWaiter {
  resolve(lease: LeaseImpl): void;
  reject(error: unknown): void;
}

interface QueueEntry {
  plan: Plan;
  enqueuedMs: number;
  admit(runner: Runner): void;
  reject(error: unknown): void;
}

interface Runner {
  id: string;
  plan: Plan;
  socket: string;
  pid: number | null;
  pidFileWrite: Promise<void>;
  state: "loading" | "ready" | "stopping";
  inFlight: number;
  leases: Set<LeaseImpl>;
  slotWaiters: SlotWaiter[];
  lastUsedMs: number | null;
  /** Orders runners by last use where the clock cannot (same millisecond). */
  lastUseSeq: number;
  keepAliveMs: number;
  idleDeadlineMs: number | null;
  cancelIdle: (() => void) | null;
  unloadWhenIdle: boolean;
  abort: AbortController;
  /** Why we stopped it, delivered to anyone still waiting on or using it. */
  stopReason: unknown;
  ready: Deferred<void>;
  /** Settles once the engine is gone and the runner removed. */
  done: Deferred<void>;
  startedMs: number;
}

class LeaseImpl implements Lease {
  readonly controller = new AbortController();
  private isReleased = false;

  constructor(
    private readonly owner: SchedulerImpl,
    readonly runner: Runner,
  ) {}

  get backend() { return this.runner.plan.backend.name; }
  get model() { return this.runner.plan.ref; }
  get modelId() { return this.runner.plan.model.id; }
  get mode() { return this.runner.plan.mode; }
  get socketPath() { return this.runner.socket; }
  get modelName() { return this.runner.plan.model.files.name; }
  get contextSize() { return this.runner.plan.contextSize; }
  get signal() { return this.controller.signal; }

  release(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    this.owner.releaseSlot(this);
  }

  fail(error: unknown): void {
    if (this.isReleased) return;
    this.owner.checkAfterFailure(this.runner, error);
    this.release();
  }
}

const NEVER = new AbortController().signal;

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
  private readonly runners = new Set<Runner>();
  private readonly queue: QueueEntry[] = [];
  private readonly shapes = new Map<string, Promise<GgufShape | null>>();
  private readonly clock: Clock;
  private readonly log: SchedulerLogger;
  private readonly maxRunners: number;
  private readonly queueLimit: number;
  private readonly engineQueuePerSlot: number;
  private readonly defaultKeepAliveMs: number;
  private readonly defaultContextSize: number;
  private readonly defaultParallel: number;
  private readonly overheadBytes: number;
  private readonly retryAfterSeconds: number;
  private isClosed = false;
  private shuttingDown: Promise<void> | null = null;
  private isPumping = false;
  private useSeq = 0;
  private onAllIdle: (() => void) | null = null;

  constructor(
    private readonly options: SchedulerOptions,
    private readonly configs: ConfigStore,
  ) {
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLogger;
    this.maxRunners = options.maxRunners ?? 8;
    this.queueLimit = options.queueLimit ?? 512;
    this.engineQueuePerSlot = options.engineQueuePerSlot ?? 0;
    this.defaultKeepAliveMs = options.defaultKeepAliveMs ?? 5 * 60_000;
    this.defaultContextSize = options.defaultContextSize ?? 4096;
    this.defaultParallel = options.defaultParallel ?? 1;
    this.overheadBytes = options.runnerOverheadBytes ?? DEFAULT_RUNNER_OVERHEAD_BYTES;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 5;
  }

  // ---- requests -----------------------------------------------------------

  async acquire(ref: string, mode: BackendMode, options: AcquireOptions = {}): Promise<Lease> {
    const signal = options.signal ?? NEVER;
    signal.throwIfAborted();
    if (this.isClosed) throw new SchedulerClosedError();
    const backend = this.options.backends.get(options.backend);
    const model = await this.options.resolveModel(ref, signal);
    const key = configKey(backend.name, model.id, mode);
    let runner = this.liveRunner(key);
    let plan: Plan | null = null;
    if (!runner) {
      plan = await this.plan(backend, ref, model, mode);
      if (plan.memory.totalBytes > this.options.memoryBudgetBytes) {
        throw new ModelTooLargeError(ref, plan.memory.totalBytes, this.options.memoryBudgetBytes);
      }
      signal.throwIfAborted();
      if (this.isClosed) throw new SchedulerClosedError();
      // Another caller may have started it while we read the GGUF header.
      runner = this.liveRunner(key);
    }
    let lease: LeaseImpl;
    if (runner) {
      lease = await this.attach(runner, signal, plan ?? runner.plan);
    } else {
      lease = await this.enqueue(plan!, signal);
    }
    if (options.keepAliveMs !== undefined) lease.runner.keepAliveMs = options.keepAliveMs;
    try {
      await raceAbort(lease.runner.ready.promise, signal);
    } catch (error) {
      lease.release();
      throw error;
    }
    return lease;
  }

  async preload(ref: string, mode: BackendMode, options: AcquireOptions = {}): Promise<RunnerStatus | null> {
    const lease = (await this.acquire(ref, mode, options)) as LeaseImpl;
    const status = this.status(lease.runner);
    lease.release();
    return status;
  }

  /**
   * Whether `runner` takes another request now. Besides its parallel slots it
   * may take `engineQueuePerSlot` more per slot, which wait in the engine's
   * own FIFO: the engine then starts the next request the moment one ends,
   * instead of idling while the daemon hands the slot over.
   */
  private hasRoom(runner: Runner): boolean {
    return runner.inFlight < runner.plan.parallel * (1 + this.engineQueuePerSlot) && runner.slotWaiters.length === 0;
  }

  /** Takes a slot on `runner` now, or waits for one (counted against the queue limit). */
  private attach(runner: Runner, signal: AbortSignal, plan: Plan): Promise<LeaseImpl> {
    if (this.hasRoom(runner)) {
      return Promise.resolve(this.grant(runner));
    }
    if (this.pendingCount() >= this.queueLimit) return Promise.reject(this.queueFull(plan));
    return this.waitForSlot(runner, signal);
  }

  private waitForSlot(runner: Runner, signal: AbortSignal): Promise<LeaseImpl> {
    return new Promise<LeaseImpl>((resolve, reject) => {
      const onAbort = () => {
        const at = runner.slotWaiters.indexOf(waiter);
        if (at >= 0) runner.slotWaiters.splice(at, 1);
        reject(signal.reason);
        // The runner may now be idle (it only had waiters).
        if (runner.inFlight === 0) this.becameIdle(runner);
      };
      const waiter: SlotWaiter = {
        resolve: (lease) => {
          signal.removeEventListener("abort", onAbort);
          resolve(lease);
        },
        reject: (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      runner.slotWaiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private grant(runner: Runner): LeaseImpl {
    const lease = new LeaseImpl(this, runner);
    runner.inFlight++;
    runner.leases.add(lease);
    this.cancelIdleTimer(runner);
    return lease;
  }

  /** Waits in the FIFO admission queue until the runner for `plan` exists, then attaches to it. */
  private enqueue(plan: Plan, signal: AbortSignal): Promise<LeaseImpl> {
    return new Promise<LeaseImpl>((resolve, reject) => {
      // Metrics count only requests that really waited, not ones admitted at once.
      let hasWaited = false;
      const onAbort = () => {
        const at = this.queue.indexOf(entry);
        if (at < 0) return;
        this.queue.splice(at, 1);
        this.emit({ type: "dequeued", ...labels(plan), waitMs: this.clock.now() - entry.enqueuedMs, outcome: "aborted" });
        reject(signal.reason);
        this.pump(); // the head may have been what blocked the rest
      };
      const entry: QueueEntry = {
        plan,
        enqueuedMs: this.clock.now(),
        admit: (runner) => {
          signal.removeEventListener("abort", onAbort);
          if (hasWaited) this.emit({ type: "dequeued", ...labels(plan), waitMs: this.clock.now() - entry.enqueuedMs, outcome: "admitted" });
          // The queue already counted this request: it may wait for a slot without a second check.
          if (this.hasRoom(runner)) resolve(this.grant(runner));
          else this.waitForSlot(runner, signal).then(resolve, reject);
        },
        reject: (error) => {
          signal.removeEventListener("abort", onAbort);
          this.emit({ type: "dequeued", ...labels(plan), waitMs: this.clock.now() - entry.enqueuedMs, outcome: "rejected" });
          reject(error);
        },
      };
      this.queue.push(entry);
      signal.addEventListener("abort", onAbort, { once: true });
      this.pump();
      if (!this.queue.includes(entry)) return;
      // Only a request that really has to wait counts against the limit.
      if (this.pendingCount() > this.queueLimit) {
        this.queue.splice(this.queue.indexOf(entry), 1);
        signal.removeEventListener("abort", onAbort);
        reject(this.queueFull(plan));
        return;
      }
      {
        hasWaited = true;
        this.emit({ type: "queued", ...labels(plan), queueLength: this.queue.length });
        this.log.info({ model: plan.ref, mode: plan.mode, queueLength: this.queue.length }, "request waits for memory or a runner slot");
      }
    });
  }

  private pendingCount(): number {
    let n = this.queue.length;
    for (const r of this.runners) n += r.slotWaiters.length;
    return n;
  }

  private queueFull(plan: Plan): QueueFullError {
    this.emit({ type: "queue_full", ...labels(plan) });
    return new QueueFullError(this.queueLimit, this.retryAfterSeconds);
  }

  /**
   * Admits queued requests in order. Synchronous, so no other decision can
   * interleave. A head that does not fit blocks the ones behind it: strict
   * FIFO, so a large model is not starved by a stream of small ones.
   */
  private pump(): void {
    if (this.isPumping) return;
    this.isPumping = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0]!;
        let runner = this.liveRunner(head.plan.key);
        if (!runner) {
          if (!this.makeRoom(head.plan.memory.totalBytes)) break;
          runner = this.start(head.plan);
        }
        // Everyone queued for this key shares the runner: one load, not one per caller.
        for (const entry of this.queue.filter((e) => e.plan.key === head.plan.key)) {
          this.queue.splice(this.queue.indexOf(entry), 1);
          entry.admit(runner);
        }
      }
    } finally {
      this.isPumping = false;
    }
  }

  /**
   * True if a runner needing `bytes` can start now. Otherwise evicts idle
   * runners, least recently used first, but only if that is enough to make
   * it fit once they have exited (their memory counts until then); returns
   * false and the caller waits for the next pump.
   */
  private makeRoom(bytes: number): boolean {
    const budget = this.options.memoryBudgetBytes;
    const all = [...this.runners];
    const fits = (used: number, count: number) => used + bytes <= budget && count < this.maxRunners;
    if (fits(sum(all), all.length)) return true;
    const live = all.filter((r) => r.state !== "stopping");
    let used = sum(live);
    let count = live.length;
    const victims: Runner[] = [];
    const idle = live.filter((r) => this.isIdle(r)).sort((a, b) => a.lastUseSeq - b.lastUseSeq);
    for (const r of idle) {
      if (fits(used, count)) break;
      victims.push(r);
      used -= r.plan.memory.totalBytes;
      count--;
    }
    // Evicting without then fitting would only throw away warm runners.
    if (fits(used, count)) for (const v of victims) this.stop(v, "memory");
    return false;
  }

  private isIdle(runner: Runner): boolean {
    return runner.state === "ready" && runner.inFlight === 0 && runner.slotWaiters.length === 0;
  }

  private liveRunner(key: string): Runner | undefined {
    for (const r of this.runners) if (r.plan.key === key && r.state !== "stopping") return r;
    return undefined;
  }

  // ---- runner lifecycle ---------------------------------------------------

  private start(plan: Plan): Runner {
    const id = randomBytes(4).toString("hex");
    const runner: Runner = {
      id,
      plan,
      socket: join(this.options.runDir, `r-${id}.sock`),
      pid: null,
      pidFileWrite: Promise.resolve(),
      state: "loading",
      inFlight: 0,
      leases: new Set(),
      slotWaiters: [],
      lastUsedMs: null,
      lastUseSeq: ++this.useSeq,
      keepAliveMs: plan.keepAliveMs,
      idleDeadlineMs: null,
      cancelIdle: null,
      unloadWhenIdle: false,
      abort: new AbortController(),
      stopReason: null,
      ready: deferred(),
      done: deferred(),
      startedMs: this.clock.now(),
    };
    this.runners.add(runner);
    const { backend, model, mode } = plan;
    const runnerLabels = labels(plan);
    this.log.info({ ...runnerLabels, contextSize: plan.contextSize, parallel: plan.parallel, estimatedBytes: plan.memory.totalBytes }, "loading model");
    const run = (async () => {
      await backend.install(runner.abort.signal, { engine: plan.engine });
      await backend.run(
        {
          socket: runner.socket,
          model: model.files,
          mode,
          config: { contextSize: plan.contextSize * plan.parallel, parallel: plan.parallel, runtimeFlags: plan.runtimeFlags, engine: plan.engine },
          onSpawn: (pid) => {
            runner.pid = pid;
            runner.pidFileWrite = writePidFile(pidFilePath(runner.socket), {
              pid,
              socket: runner.socket,
              backend: backend.name,
              model: plan.ref,
              startedAt: new Date(this.clock.now()).toISOString(),
            }).catch((error: unknown) => this.log.warn({ err: error, pid }, "could not write the engine's pid file"));
          },
          onReady: () => this.onReady(runner),
          onLog: this.options.onEngineLog ? (line) => this.options.onEngineLog!(runnerLabels, line) : undefined,
        },
        runner.abort.signal,
      );
    })();
    run.then(
      () => this.settle(runner, null),
      (error: unknown) => this.settle(runner, error),
    );
    return runner;
  }

  private onReady(runner: Runner): void {
    if (runner.state !== "loading") return;
    runner.state = "ready";
    runner.lastUsedMs ??= this.clock.now();
    const durationMs = this.clock.now() - runner.startedMs;
    this.emit({ type: "load", ...labels(runner.plan), durationMs });
    this.log.info({ ...labels(runner.plan), durationMs, pid: runner.pid }, "model loaded");
    runner.ready.resolve();
    if (runner.inFlight === 0 && runner.slotWaiters.length === 0) this.becameIdle(runner);
  }

  /** The engine is gone: remove the runner and tell everyone who depended on it. */
  private async settle(runner: Runner, error: unknown): Promise<void> {
    const stoppedByUs = runner.abort.signal.aborted;
    const wasLoading = runner.state === "loading";
    const inFlight = runner.inFlight;
    this.cancelIdleTimer(runner);
    runner.state = "stopping";
    const reason = stoppedByUs ? runner.stopReason : error;
    if (!stoppedByUs) {
      if (wasLoading) {
        this.emit({ type: "load_failed", ...labels(runner.plan), error });
        this.log.error({ ...labels(runner.plan), err: error }, "model failed to load");
      } else {
        this.emit({ type: "crash", ...labels(runner.plan), error, inFlight });
        this.log.error({ ...labels(runner.plan), err: error, inFlight }, "engine died");
      }
    } else if (error) {
      this.log.warn({ ...labels(runner.plan), err: error }, "engine failed while stopping");
    }
    runner.ready.reject(reason);
    for (const lease of runner.leases) lease.controller.abort(reason);
    for (const waiter of runner.slotWaiters.splice(0)) waiter.reject(reason);
    await runner.pidFileWrite;
    await rm(pidFilePath(runner.socket), { force: true }).catch(() => undefined);
    this.runners.delete(runner);
    runner.done.resolve();
    this.notifyIfAllIdle();
    this.pump();
  }

  /**
   * Stops a runner (SIGTERM, then SIGKILL, by the backend). Its memory counts
   * until the process has exited. Anyone still waiting on it gets `reason`.
   */
  private stop(runner: Runner, why: EvictReason, reason: unknown = new RunnerStoppedError(runner.plan.ref)): void {
    if (runner.abort.signal.aborted) return;
    this.cancelIdleTimer(runner);
    runner.state = "stopping";
    runner.stopReason = reason;
    this.emit({ type: "evict", ...labels(runner.plan), reason: why });
    this.log.info({ ...labels(runner.plan), reason: why }, "unloading model");
    runner.abort.abort(reason);
  }

  /** @internal called by LeaseImpl.release */
  releaseSlot(lease: LeaseImpl): void {
    const runner = lease.runner;
    if (!runner.leases.delete(lease)) return;
    runner.inFlight--;
    runner.lastUsedMs = this.clock.now();
    runner.lastUseSeq = ++this.useSeq;
    if (runner.state === "stopping") {
      this.notifyIfAllIdle();
      return;
    }
    const next = runner.slotWaiters.shift();
    if (next) {
      next.resolve(this.grant(runner));
      return;
    }
    if (runner.inFlight === 0) this.becameIdle(runner);
    this.notifyIfAllIdle();
  }

  /** @internal called by LeaseImpl.fail: a broken engine is replaced rather than failing every request. */
  checkAfterFailure(runner: Runner, error: unknown): void {
    if (runner.state !== "ready") return;
    this.log.warn({ ...labels(runner.plan), err: messageOf(error) }, "request to the engine failed; checking its health");
    getStatusOverSocket(runner.socket, "/health", AbortSignal.timeout(2000)).then(
      (status) => {
        if (status !== 200) this.stop(runner, "unhealthy");
      },
      () => this.stop(runner, "unhealthy"),
    );
  }

  private becameIdle(runner: Runner): void {
    if (!this.isIdle(runner)) return;
    if (runner.unloadWhenIdle || this.isClosed) {
      this.stop(runner, this.isClosed ? "shutdown" : "unload");
    } else if (runner.keepAliveMs <= 0) {
      this.stop(runner, "idle");
    } else if (Number.isFinite(runner.keepAliveMs)) {
      this.cancelIdleTimer(runner);
      runner.idleDeadlineMs = (runner.lastUsedMs ?? this.clock.now()) + runner.keepAliveMs;
      runner.cancelIdle = this.clock.setTimer(() => {
        runner.cancelIdle = null;
        if (this.isIdle(runner)) this.stop(runner, "idle");
      }, Math.max(0, runner.idleDeadlineMs - this.clock.now()));
    }
    this.pump(); // a queued request may be waiting to evict it
  }

  private cancelIdleTimer(runner: Runner): void {
    runner.cancelIdle?.();
    runner.cancelIdle = null;
    runner.idleDeadlineMs = null;
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
    const trained = shape?.contextLength ?? null;
    let contextSize = config?.contextSize ?? model.contextSize ?? Math.min(this.defaultContextSize, trained ?? Infinity);
    if (contextSize === 0) contextSize = trained ?? this.defaultContextSize; // 0 = the model's trained length
    const parallel = config?.parallel ?? this.defaultParallel;
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
      engine: config?.engine,
      keepAliveMs: config?.keepAlive !== undefined ? parseDuration(config.keepAlive) : this.defaultKeepAliveMs,
      shape,
      memory: estimateRunnerMemory({
        weightsBytes: model.sizeBytes,
        shape,
        contextTokens: contextSize * parallel,
        overheadBytes: this.overheadBytes,
      }),
      engineConfig: engineConfigOf(config),
    };
  }

  async effectiveSettings(ref: string, mode: BackendMode, options: { backend?: string; signal?: AbortSignal } = {}): Promise<EffectiveSettings> {
    const backend = this.options.backends.get(options.backend);
    const model = await this.options.resolveModel(ref, options.signal ?? NEVER);
    const running = this.liveRunner(configKey(backend.name, model.id, mode));
    const plan = running?.plan ?? (await this.plan(backend, ref, model, mode));
    return {
      contextSize: plan.contextSize,
      parallel: plan.parallel,
      runtimeFlags: plan.runtimeFlags,
      keepAliveMs: running?.keepAliveMs ?? plan.keepAliveMs,
      estimatedMemoryBytes: plan.memory.totalBytes,
      trainedContextSize: plan.shape?.contextLength ?? null,
    };
  }

  // ---- configuration ------------------------------------------------------

  async configure(request: ConfigureRequest, signal: AbortSignal = NEVER): Promise<ConfigureResult> {
    if (this.isClosed) throw new SchedulerClosedError();
    const backend = this.options.backends.get(request.backend);
    const mode = request.mode !== undefined && request.mode !== "" ? parseBackendMode(request.mode) : "completion";
    if (request.contextSize !== undefined && (!Number.isInteger(request.contextSize) || request.contextSize < 0)) {
      throw new InvalidRequestError(`context-size must be a non-negative integer, got ${request.contextSize}.`, "context-size");
    }
    const keepAliveMs = request.keepAlive !== undefined ? parseDuration(request.keepAlive, "keep_alive") : undefined;
    const hasFlags = request.runtimeFlags !== undefined || request.rawRuntimeFlags !== undefined;
    const flags = validateRuntimeFlags(backend.name, [
      ...(request.runtimeFlags ?? []),
      ...(request.rawRuntimeFlags ? shellSplit(request.rawRuntimeFlags) : []),
    ]);
    if (request.contextSize !== undefined && flags.contextSize !== undefined && flags.contextSize !== request.contextSize) {
      throw new InvalidRequestError(
        `context-size (${request.contextSize}) and the runtime flag --ctx-size (${flags.contextSize}) disagree; give one.`,
        "context-size",
      );
    }
    if (request.engine !== undefined) {
      if (!backend.engineFor) throw new InvalidRequestError(`Backend "${backend.name}" has one engine; "engine" cannot be set.`, "engine");
      backend.engineFor({ engine: request.engine }); // throws naming the choices
    }
    const model = await this.options.resolveModel(request.model, signal);
    const previous = this.configs.get(backend.name, model.id, mode);
    const config: RunnerConfig = {
      backend: backend.name,
      model: request.model,
      modelId: model.id,
      mode,
      contextSize: request.contextSize ?? flags.contextSize ?? previous?.contextSize,
      parallel: flags.parallel ?? (hasFlags ? undefined : previous?.parallel),
      runtimeFlags: hasFlags ? flags.passThrough : (previous?.runtimeFlags ?? []),
      keepAlive: keepAliveMs !== undefined ? formatDuration(keepAliveMs) : previous?.keepAlive,
      engine: request.engine ?? previous?.engine,
    };
    if (config.engine === undefined) delete config.engine;
    if (config.contextSize === undefined) delete config.contextSize;
    if (config.parallel === undefined) delete config.parallel;
    if (config.keepAlive === undefined) delete config.keepAlive;
    // Reject before storing: a setting that cannot load must not persist.
    const plan = await this.plan(backend, request.model, model, mode, config);
    if (plan.memory.totalBytes > this.options.memoryBudgetBytes) {
      throw new ModelTooLargeError(request.model, plan.memory.totalBytes, this.options.memoryBudgetBytes);
    }
    let restarted = false;
    const runner = this.liveRunner(plan.key);
    if (runner && runner.plan.engineConfig !== plan.engineConfig) {
      if (!this.isIdle(runner)) throw new RunnerBusyError(request.model, mode);
      this.stop(runner, "reconfigure");
      restarted = true;
    } else if (runner && keepAliveMs !== undefined) {
      runner.keepAliveMs = keepAliveMs;
      if (this.isIdle(runner)) this.becameIdle(runner); // re-arm with the new value
    }
    await this.configs.set(config);
    this.log.info({ backend: backend.name, model: request.model, mode, config }, "model configured");
    if (restarted) {
      // Docker Model Runner answers 202 and loads in the background; so do we.
      this.preload(request.model, mode, { backend: backend.name }).catch((error: unknown) =>
        this.log.warn({ model: request.model, err: messageOf(error) }, "preload after reconfiguration failed"),
      );
    }
    return { config, restarted };
  }

  getConfigs(model?: string): RunnerConfig[] {
    const all = this.configs.all();
    return model === undefined ? all : all.filter((c) => c.model === model || c.modelId === model);
  }

  // ---- operations ---------------------------------------------------------

  ps(): RunnerStatus[] {
    return [...this.runners].map((r) => this.status(r));
  }

  private status(r: Runner): RunnerStatus {
    return {
      backend: r.plan.backend.name,
      model: r.plan.ref,
      modelId: r.plan.model.id,
      mode: r.plan.mode,
      state: r.state,
      inFlight: r.inFlight,
      waiting: r.slotWaiters.length,
      lastUsedAt: r.lastUsedMs === null ? null : new Date(r.lastUsedMs),
      keepAlive: formatDuration(r.keepAliveMs),
      expiresAt: r.idleDeadlineMs === null ? null : new Date(r.idleDeadlineMs),
      estimatedMemoryBytes: r.plan.memory.totalBytes,
      contextSize: r.plan.contextSize,
      parallel: r.plan.parallel,
      pid: r.pid,
      engine: r.plan.backend.engineFor?.({ engine: r.plan.engine }) ?? null,
    };
  }

  memory(): MemoryStatus {
    return {
      budgetBytes: this.options.memoryBudgetBytes,
      usedBytes: sum([...this.runners]),
      runners: this.runners.size,
      maxRunners: this.maxRunners,
      queued: this.pendingCount(),
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
    for (const r of this.runners) {
      if (r.state === "stopping") continue;
      if (request.backend && r.plan.backend.name !== request.backend) continue;
      if (ids && !ids.has(r.plan.model.id) && !ids.has(r.plan.ref)) continue;
      if (this.isIdle(r)) {
        this.stop(r, "unload");
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
    this.isClosed = true;
    const closed = new SchedulerClosedError();
    for (const entry of this.queue.splice(0)) entry.reject(closed);
    for (const r of this.runners) {
      for (const waiter of r.slotWaiters.splice(0)) waiter.reject(closed);
      // A load that has not finished serves nobody in time: stop it now.
      if (r.state === "loading" || this.isIdle(r)) this.stop(r, "shutdown", closed);
    }
    const busy = () => [...this.runners].some((r) => r.inFlight > 0 && r.state !== "stopping");
    if (busy()) {
      this.log.info({ graceMs }, "waiting for in-flight requests before stopping engines");
      await new Promise<void>((resolve) => {
        const cancel = this.clock.setTimer(done, graceMs);
        this.onAllIdle = done;
        function done() {
          cancel();
          resolve();
        }
      });
      this.onAllIdle = null;
    }
    for (const r of this.runners) this.stop(r, "shutdown", closed);
    await Promise.all([...this.runners].map((r) => r.done.promise));
  }

  private notifyIfAllIdle(): void {
    if (this.onAllIdle && ![...this.runners].some((r) => r.inFlight > 0 && r.state !== "stopping")) this.onAllIdle();
  }

  reapOrphans(): Promise<number[]> {
    if (this.runners.size > 0) return Promise.reject(new Error("reapOrphans must run before any engine is started"));
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

function engineConfigOf(config: RunnerConfig | undefined): string {
  return JSON.stringify([config?.contextSize ?? null, config?.parallel ?? null, config?.runtimeFlags ?? [], config?.engine ?? null]);
}

function labels(plan: Plan): RunnerLabels {
  return { backend: plan.backend.name, model: plan.ref, mode: plan.mode };
}

function sum(runners: readonly Runner[]): number {
  return runners.reduce((n, r) => n + r.plan.memory.totalBytes, 0);
}

/** Awaits `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal === NEVER) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
