/**
 * Admission: the set of runners and the FIFO queue of requests waiting for
 * memory or a runner, kept together because every decision about them is
 * made synchronously in `pump`, so no other decision can interleave.
 */
import { QueueFullError } from "./errors.ts";
import { labels, type Plan } from "./plan.ts";
import { LeaseImpl, Runner, type RunnerHost } from "./runner.ts";
import type { Clock, RunnerLabels, SchedulerEvent, SchedulerLogger } from "./types.ts";

/** What victim choice needs to know about a runner. */
export interface EvictionCandidate {
  readonly memoryBytes: number;
  /** Already stopping: its memory counts until it exits, but it cannot be evicted again. */
  readonly stopping: boolean;
  /** Ready with nothing in flight or waiting: the only kind that may be evicted. */
  readonly idle: boolean;
  /** Larger is more recent. */
  readonly lastUseSeq: number;
}

/**
 * Whether a runner needing `bytes` can start beside `runners`, within
 * `budget` bytes and `max` runners. Returns null if it fits now. Otherwise
 * the idle runners to evict, least recently used first, that make it fit
 * once they have exited (stopping runners' memory counts until then), or []
 * if evicting every idle runner would still not be enough: evicting without
 * then fitting would only throw away warm runners.
 */
export function chooseVictims<T extends EvictionCandidate>(runners: readonly T[], bytes: number, budget: number, max: number): T[] | null {
  const fits = (used: number, count: number) => used + bytes <= budget && count < max;
  if (fits(sumBytes(runners), runners.length)) return null;
  const live = runners.filter((r) => !r.stopping);
  let used = sumBytes(live);
  let count = live.length;
  const victims: T[] = [];
  const idle = live.filter((r) => r.idle).sort((a, b) => a.lastUseSeq - b.lastUseSeq);
  for (const r of idle) {
    if (fits(used, count)) break;
    victims.push(r);
    used -= r.memoryBytes;
    count--;
  }
  return fits(used, count) ? victims : [];
}

function sumBytes(runners: readonly EvictionCandidate[]): number {
  return runners.reduce((n, r) => n + r.memoryBytes, 0);
}

interface QueueEntry {
  plan: Plan;
  enqueuedMs: number;
  admit(runner: Runner): void;
  reject(error: unknown): void;
}

export interface AdmissionOptions {
  runDir: string;
  clock: Clock;
  log: SchedulerLogger;
  memoryBudgetBytes: number;
  maxRunners: number;
  queueLimit: number;
  retryAfterSeconds: number;
  engineQueuePerSlot: number;
  emit(event: SchedulerEvent): void;
  onEngineLog?: ((runner: RunnerLabels, line: string) => void) | undefined;
  /** A runner failed to load on its own (see RunnerHost.onLoadFailed). */
  onLoadFailed?: ((plan: Plan, error: unknown) => void) | undefined;
}

export class Admission implements RunnerHost {
  readonly runners = new Set<Runner>();
  private readonly queue: QueueEntry[] = [];
  private isPumping = false;
  private useSeq = 0;
  private onAllIdle: (() => void) | null = null;
  /** Set by shutdown: idle runners stop instead of waiting out their keep-alive. */
  isClosed = false;
  readonly runDir: string;
  readonly clock: Clock;
  readonly log: SchedulerLogger;
  readonly engineQueuePerSlot: number;
  readonly onEngineLog: ((runner: RunnerLabels, line: string) => void) | undefined;

  constructor(private readonly options: AdmissionOptions) {
    this.runDir = options.runDir;
    this.clock = options.clock;
    this.log = options.log;
    this.engineQueuePerSlot = options.engineQueuePerSlot;
    this.onEngineLog = options.onEngineLog;
  }

  emit(event: SchedulerEvent): void {
    this.options.emit(event);
  }

  nextUseSeq(): number {
    return ++this.useSeq;
  }

  liveRunner(key: string): Runner | undefined {
    for (const r of this.runners) if (r.plan.key === key && !r.stopping) return r;
    return undefined;
  }

  /** Takes a slot on `runner` now, or waits for one (counted against the queue limit). */
  attach(runner: Runner, signal: AbortSignal, plan: Plan): Promise<LeaseImpl> {
    if (runner.hasRoom()) return Promise.resolve(runner.grant());
    if (this.pendingCount() >= this.options.queueLimit) return Promise.reject(this.queueFull(plan));
    return runner.waitForSlot(signal);
  }

  /** Waits in the FIFO admission queue until the runner for `plan` exists, then attaches to it. */
  enqueue(plan: Plan, signal: AbortSignal): Promise<LeaseImpl> {
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
          if (runner.hasRoom()) resolve(runner.grant());
          else runner.waitForSlot(signal).then(resolve, reject);
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
      if (this.pendingCount() > this.options.queueLimit) {
        this.queue.splice(this.queue.indexOf(entry), 1);
        signal.removeEventListener("abort", onAbort);
        reject(this.queueFull(plan));
        return;
      }
      hasWaited = true;
      this.emit({ type: "queued", ...labels(plan), queueLength: this.queue.length });
      this.log.info({ model: plan.ref, mode: plan.mode, queueLength: this.queue.length }, "request waits for memory or a runner slot");
    });
  }

  /** Requests waiting: in the queue and for a runner's slot. */
  pendingCount(): number {
    let n = this.queue.length;
    for (const r of this.runners) n += r.waiting;
    return n;
  }

  usedBytes(): number {
    return sumBytes([...this.runners]);
  }

  /** Rejects every queued request (shutdown). */
  rejectQueued(error: unknown): void {
    for (const entry of this.queue.splice(0)) entry.reject(error);
  }

  private queueFull(plan: Plan): QueueFullError {
    this.emit({ type: "queue_full", ...labels(plan) });
    return new QueueFullError(this.options.queueLimit, this.options.retryAfterSeconds);
  }

  /**
   * Admits queued requests in order. Synchronous, so no other decision can
   * interleave. A head that does not fit blocks the ones behind it: strict
   * FIFO, so a large model is not starved by a stream of small ones.
   */
  pump(): void {
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

  /** True if a runner needing `bytes` can start now; otherwise evicts what would make it fit and returns false. */
  private makeRoom(bytes: number): boolean {
    const victims = chooseVictims([...this.runners], bytes, this.options.memoryBudgetBytes, this.options.maxRunners);
    if (victims === null) return true;
    for (const v of victims) v.stop("memory");
    return false;
  }

  private start(plan: Plan): Runner {
    const runner = new Runner(this, plan);
    this.runners.add(runner);
    runner.launch();
    return runner;
  }

  onIdle(runner: Runner): void {
    if (!runner.idle) return;
    if (runner.unloadWhenIdle || this.isClosed) {
      runner.stop(this.isClosed ? "shutdown" : "unload");
    } else if (runner.keepAliveMs <= 0) {
      runner.stop("idle");
    } else if (Number.isFinite(runner.keepAliveMs)) {
      runner.armIdleTimer();
    }
    this.pump(); // a queued request may be waiting to evict it
  }

  onSlotFreed(): void {
    this.notifyIfAllIdle();
  }

  onLoadFailed(runner: Runner, error: unknown): void {
    this.options.onLoadFailed?.(runner.plan, error);
  }

  onGone(runner: Runner): void {
    this.runners.delete(runner);
    this.notifyIfAllIdle();
    this.pump();
  }

  /** Whether a request is still being served by a runner that is not stopping. */
  private isBusy(): boolean {
    return [...this.runners].some((r) => r.inFlight > 0 && !r.stopping);
  }

  /** Resolves when no runner serves a request any more, or after `graceMs`. */
  async waitUntilIdle(graceMs: number): Promise<void> {
    if (!this.isBusy()) return;
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

  hasBusyRunners(): boolean {
    return this.isBusy();
  }

  private notifyIfAllIdle(): void {
    if (this.onAllIdle && !this.isBusy()) this.onAllIdle();
  }
}
