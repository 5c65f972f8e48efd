/**
 * One runner: an engine process serving one (backend, model, mode), its
 * slots, leases and keep-alive timer, from start to the engine's exit. What
 * to do when it becomes idle or goes away is its owner's (admission.ts)
 * decision, reached through RunnerHost.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "../errors.ts";
import { getStatusOverSocket } from "../inference/index.ts";
import { formatDuration } from "../units.ts";
import { RunnerStoppedError } from "./errors.ts";
import { pidFilePath, writePidFile } from "./pid-files.ts";
import { labels, type Plan } from "./plan.ts";
import { deferred, type Deferred } from "./promises.ts";
import { gpuBytes, parseOffloadLine, type GpuOffload } from "./gpu-offload.ts";
import type { Clock, EvictReason, Lease, RunnerLabels, RunnerStatus, SchedulerEvent, SchedulerLogger } from "./types.ts";

/** What a runner needs from its owner. */
export interface RunnerHost {
  readonly runDir: string;
  readonly clock: Clock;
  readonly log: SchedulerLogger;
  /** Requests per slot that may wait in the engine's own FIFO (see SchedulerOptions). */
  readonly engineQueuePerSlot: number;
  readonly onEngineLog?: ((runner: RunnerLabels, line: string) => void) | undefined;
  emit(event: SchedulerEvent): void;
  /** A number that orders uses across runners where the clock cannot (same millisecond). */
  nextUseSeq(): number;
  /** The runner is ready with nothing in flight or waiting (it may already have been so). */
  onIdle(runner: Runner): void;
  /** A slot was released. */
  onSlotFreed(): void;
  /**
   * It failed to load on its own (not stopped by us). Called before anyone
   * waiting for it hears of the failure, so a retry can already see it.
   */
  onLoadFailed(runner: Runner, error: unknown): void;
  /** The engine has exited and nobody depends on the runner any more: forget it. */
  onGone(runner: Runner): void;
}

interface SlotWaiter {
  resolve(lease: LeaseImpl): void;
  reject(error: unknown): void;
}

export class Runner {
  readonly id = randomBytes(4).toString("hex");
  readonly socket: string;
  pid: number | null = null;
  private pidFileWrite: Promise<void> = Promise.resolve();
  state: "loading" | "ready" | "stopping" = "loading";
  inFlight = 0;
  private readonly leases = new Set<LeaseImpl>();
  /**
   * Every lease's signal: it aborts once, when the engine is gone (a runner
   * never restarts). One per runner rather than one per lease: making an
   * AbortController for each request was a measurable part of the fast
   * lane's cost. Each request in flight listens on it, so it takes any number.
   */
  readonly gone = unlimitedController();
  private readonly slotWaiters: SlotWaiter[] = [];
  lastUsedMs: number | null = null;
  /** Orders runners by last use where the clock cannot (same millisecond). */
  lastUseSeq: number;
  keepAliveMs: number;
  private idleDeadlineMs: number | null = null;
  private cancelIdle: (() => void) | null = null;
  /** Stop once the requests in flight are done (an unload that found it busy). */
  unloadWhenIdle = false;
  private readonly abort = new AbortController();
  /** Why we stopped it, delivered to anyone still waiting on or using it. */
  private stopReason: unknown = null;
  /** Resolves when the engine is healthy; rejects if it goes away first. */
  readonly ready: Deferred<void> = deferred();
  /** Settles once the engine is gone and the runner removed. */
  readonly done: Deferred<void> = deferred();
  private readonly startedMs: number;
  /** What the engine's load log said about GPU offload (gpu-offload.ts); null until it says anything. */
  private offload: GpuOffload | null = null;

  constructor(
    private readonly host: RunnerHost,
    readonly plan: Plan,
  ) {
    this.socket = join(host.runDir, `r-${this.id}.sock`);
    this.lastUseSeq = host.nextUseSeq();
    this.keepAliveMs = plan.keepAliveMs;
    this.startedMs = host.clock.now();
  }

  get memoryBytes(): number {
    return this.plan.memory.totalBytes;
  }

  get stopping(): boolean {
    return this.state === "stopping";
  }

  /** Ready, with nothing in flight and nobody waiting for a slot. */
  get idle(): boolean {
    return this.state === "ready" && this.inFlight === 0 && this.slotWaiters.length === 0;
  }

  get waiting(): number {
    return this.slotWaiters.length;
  }

  /** Starts the engine. The runner settles (onGone) when it exits, however that happens. */
  launch(): void {
    const { backend, model, mode } = this.plan;
    const plan = this.plan;
    const runnerLabels = labels(plan);
    const { log, onEngineLog } = this.host;
    log.info({ ...runnerLabels, contextSize: plan.contextSize, parallel: plan.parallel, estimatedBytes: plan.memory.totalBytes }, "loading model");
    const facts = {
      contextSize: plan.contextSize,
      parallel: plan.parallel,
      estimatedBytes: plan.memory.totalBytes,
      engine: backend.engineFor?.({ engine: plan.engine }) ?? null,
    };
    this.host.emit({ type: "loading", ...runnerLabels, ...facts });
    const run = (async () => {
      await backend.install(this.abort.signal, { engine: plan.engine });
      await backend.run(
        {
          socket: this.socket,
          model: model.files,
          mode,
          config: {
            contextSize: plan.contextSize * plan.parallel,
            parallel: plan.parallel,
            runtimeFlags: plan.runtimeFlags,
            engine: plan.engine,
            ...(plan.draft
              ? { speculative: { draftPath: plan.draft.model.files.ggufPath, numTokens: plan.draft.numTokens, minAcceptanceRate: plan.draft.minAcceptanceRate } }
              : {}),
          },
          onSpawn: (pid) => {
            this.pid = pid;
            this.pidFileWrite = writePidFile(pidFilePath(this.socket), {
              pid,
              socket: this.socket,
              backend: backend.name,
              model: plan.ref,
              startedAt: new Date(this.host.clock.now()).toISOString(),
            }).catch((error: unknown) => log.warn({ err: error, pid }, "could not write the engine's pid file"));
          },
          onReady: () => this.onReady(),
          onLoadProgress: (progress) => {
            if (this.state === "loading") this.host.emit({ type: "load_progress", ...runnerLabels, ...facts, progress });
          },
          onLog: (line) => {
            this.offload = parseOffloadLine(line) ?? this.offload;
            onEngineLog?.(runnerLabels, line);
          },
        },
        this.abort.signal,
      );
    })();
    run.then(
      () => this.settle(null),
      (error: unknown) => this.settle(error),
    );
  }

  private onReady(): void {
    if (this.state !== "loading") return;
    this.state = "ready";
    this.lastUsedMs ??= this.host.clock.now();
    const durationMs = this.host.clock.now() - this.startedMs;
    this.host.emit({ type: "load", ...labels(this.plan), durationMs, pid: this.pid });
    this.host.log.info({ ...labels(this.plan), durationMs, pid: this.pid }, "model loaded");
    this.ready.resolve();
    if (this.inFlight === 0 && this.slotWaiters.length === 0) this.host.onIdle(this);
  }

  /** The engine is gone: tell everyone who depended on it, then the owner. */
  private async settle(error: unknown): Promise<void> {
    const stoppedByUs = this.abort.signal.aborted;
    const wasLoading = this.state === "loading";
    const inFlight = this.inFlight;
    this.cancelIdleTimer();
    this.state = "stopping";
    const reason = stoppedByUs ? this.stopReason : error;
    const { log } = this.host;
    if (!stoppedByUs) {
      if (wasLoading) {
        this.host.emit({ type: "load_failed", ...labels(this.plan), error });
        log.error({ ...labels(this.plan), err: error }, "model failed to load");
        this.host.onLoadFailed(this, error);
      } else {
        this.host.emit({ type: "crash", ...labels(this.plan), error, inFlight });
        log.error({ ...labels(this.plan), err: error, inFlight }, "engine died");
      }
    } else if (error) {
      log.warn({ ...labels(this.plan), err: error }, "engine failed while stopping");
    }
    this.ready.reject(reason);
    this.gone.abort(reason);
    for (const waiter of this.slotWaiters.splice(0)) waiter.reject(reason);
    await this.pidFileWrite;
    await rm(pidFilePath(this.socket), { force: true }).catch(() => undefined);
    this.host.onGone(this);
    this.done.resolve();
  }

  /**
   * Stops the engine (SIGTERM, then SIGKILL, by the backend). Its memory
   * counts until the process has exited. Anyone still waiting on it gets
   * `reason`. Idempotent.
   */
  stop(why: EvictReason, reason: unknown = new RunnerStoppedError(this.plan.ref)): void {
    if (this.abort.signal.aborted) return;
    this.cancelIdleTimer();
    this.state = "stopping";
    this.stopReason = reason;
    this.host.emit({ type: "evict", ...labels(this.plan), reason: why });
    this.host.log.info({ ...labels(this.plan), reason: why }, "unloading model");
    this.abort.abort(reason);
  }

  /**
   * Whether it takes another request now. Besides its parallel slots it
   * may take `engineQueuePerSlot` more per slot, which wait in the engine's
   * own FIFO: the engine then starts the next request the moment one ends,
   * instead of idling while the daemon hands the slot over.
   */
  hasRoom(): boolean {
    return this.inFlight < this.plan.parallel * (1 + this.host.engineQueuePerSlot) && this.slotWaiters.length === 0;
  }

  /** Takes a slot now (the caller checked hasRoom or was handed the slot). */
  grant(): LeaseImpl {
    const lease = new LeaseImpl(this);
    this.inFlight++;
    this.leases.add(lease);
    this.cancelIdleTimer();
    return lease;
  }

  /** Waits for a slot, in order; rejects with `signal.reason` on abort or the runner's end. */
  waitForSlot(signal: AbortSignal): Promise<LeaseImpl> {
    return new Promise<LeaseImpl>((resolve, reject) => {
      const onAbort = () => {
        const at = this.slotWaiters.indexOf(waiter);
        if (at >= 0) this.slotWaiters.splice(at, 1);
        reject(signal.reason);
        // It may now be idle (it only had waiters).
        if (this.inFlight === 0) this.host.onIdle(this);
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
      this.slotWaiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Rejects everyone waiting for a slot (shutdown). */
  rejectWaiters(error: unknown): void {
    for (const waiter of this.slotWaiters.splice(0)) waiter.reject(error);
  }

  /** Frees a lease's slot: hands it to the next waiter, or tells the owner the runner is idle. */
  release(lease: LeaseImpl): void {
    if (!this.leases.delete(lease)) return;
    this.inFlight--;
    this.lastUsedMs = this.host.clock.now();
    this.lastUseSeq = this.host.nextUseSeq();
    if (this.state === "stopping") {
      this.host.onSlotFreed();
      return;
    }
    const next = this.slotWaiters.shift();
    if (next) {
      next.resolve(this.grant());
      return;
    }
    if (this.inFlight === 0) this.host.onIdle(this);
    this.host.onSlotFreed();
  }

  /** After a transport failure: a broken engine is replaced rather than failing every request. */
  checkAfterFailure(error: unknown): void {
    if (this.state !== "ready") return;
    this.host.log.warn({ ...labels(this.plan), err: messageOf(error) }, "request to the engine failed; checking its health");
    getStatusOverSocket(this.socket, "/health", AbortSignal.timeout(2000)).then(
      (status) => {
        if (status !== 200) this.stop("unhealthy");
      },
      () => this.stop("unhealthy"),
    );
  }

  /** Arms the keep-alive timer from the last use; it stops the runner if it is still idle then. */
  armIdleTimer(): void {
    this.cancelIdleTimer();
    const { clock } = this.host;
    this.idleDeadlineMs = (this.lastUsedMs ?? clock.now()) + this.keepAliveMs;
    this.cancelIdle = clock.setTimer(() => {
      this.cancelIdle = null;
      if (this.idle) this.stop("idle");
    }, Math.max(0, this.idleDeadlineMs - clock.now()));
  }

  private cancelIdleTimer(): void {
    this.cancelIdle?.();
    this.cancelIdle = null;
    this.idleDeadlineMs = null;
  }

  status(): RunnerStatus {
    return {
      backend: this.plan.backend.name,
      model: this.plan.ref,
      modelId: this.plan.model.id,
      mode: this.plan.mode,
      state: this.state,
      inFlight: this.inFlight,
      waiting: this.slotWaiters.length,
      lastUsedAt: this.lastUsedMs === null ? null : new Date(this.lastUsedMs),
      keepAlive: formatDuration(this.keepAliveMs),
      expiresAt: this.idleDeadlineMs === null ? null : new Date(this.idleDeadlineMs),
      estimatedMemoryBytes: this.plan.memory.totalBytes,
      gpuBytes: gpuBytes(this.plan.memory.totalBytes, this.offload),
      contextSize: this.plan.contextSize,
      parallel: this.plan.parallel,
      pid: this.pid,
      socketPath: this.socket,
      engine: this.plan.backend.engineFor?.({ engine: this.plan.engine }) ?? null,
    };
  }
}

/** One request's hold on a runner slot (see Lease). */
export class LeaseImpl implements Lease {
  private isReleased = false;

  constructor(readonly runner: Runner) {}

  get backend() { return this.runner.plan.backend.name; }
  get model() { return this.runner.plan.ref; }
  get modelId() { return this.runner.plan.model.id; }
  get mode() { return this.runner.plan.mode; }
  get socketPath() { return this.runner.socket; }
  get modelName() { return this.runner.plan.model.files.name; }
  get contextSize() { return this.runner.plan.contextSize; }
  get signal() { return this.runner.gone.signal; }

  release(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    this.runner.release(this);
  }

  fail(error: unknown): void {
    if (this.isReleased) return;
    this.runner.checkAfterFailure(error);
    this.release();
  }
}

/** An AbortController whose signal takes any number of listeners without Node's leak warning. */
function unlimitedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
