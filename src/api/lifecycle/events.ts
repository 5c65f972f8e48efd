import { messageOf, RunnerError } from "../../errors.ts";
import type { ModelDistribution, ProgressEvent } from "../../distribution/index.ts";
import type { SchedulerEvent } from "../../scheduling/index.ts";
import { configJson } from "../engine-routes.ts";

/**
 * The runner lifecycle and pull progress, as `GET /engines/events` sends
 * them: one SSE event each, `event:` its `type`, `data:` the object. Every
 * event has `type` and `time` (ISO 8601); runner events also `backend`,
 * `model` (as the request named it) and `mode`.
 */
export type LifecycleEvent = { time: string } & (
  | ({
      type: "loading";
      context_size: number;
      parallel: number;
      memory_bytes: number;
      engine: string | null;
      /** How far the load is (0..1): absent on the first event, then on each step the engine reports (the built-in engine's; llama-server reports none). */
      progress?: number;
    } & Labels)
  | ({ type: "ready"; duration_ms: number; pid: number | null } & Labels)
  | ({ type: "load_failed"; error: string; code: string | null } & Labels)
  | ({ type: "evicted"; reason: string } & Labels)
  | ({ type: "crashed"; error: string; code: string | null; in_flight: number } & Labels)
  | ({ type: "configured"; config: ReturnType<typeof configJson>; restarted: boolean } & Labels)
  | {
      type: "pull";
      /** The reference as the pull named it. */
      model: string;
      status: "progress" | "warning" | "success" | "error";
      message?: string;
      /** Bytes done over all layers, and the total (progress only). */
      current?: number;
      total?: number;
      /** The stored model's id (success only). */
      id?: string;
    }
);

interface Labels {
  backend: string;
  model: string;
  mode: string;
}

/** Told of each event as it happens; must not throw. */
export type LifecycleListener = (event: LifecycleEvent) => void;

const codeOf = (error: unknown): string | null => (error instanceof RunnerError ? error.code : null);

/** The fan-out of lifecycle events to whoever follows `GET /engines/events`. Nothing is kept. */
export class LifecycleEvents {
  private readonly listeners = new Set<LifecycleListener>();

  /** Calls `listener` with each event until the returned function is called. */
  subscribe(listener: LifecycleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The scheduler's `onEvent`: runner events are published, queue ones are not (they are in /metrics). */
  fromScheduler(e: SchedulerEvent): void {
    if (this.listeners.size === 0) return;
    const labels = { backend: e.backend, model: e.model, mode: e.mode };
    const time = new Date().toISOString();
    switch (e.type) {
      case "loading":
        return this.publish({ type: "loading", time, ...labels, context_size: e.contextSize, parallel: e.parallel, memory_bytes: e.estimatedBytes, engine: e.engine });
      case "load_progress":
        return this.publish({
          type: "loading",
          time,
          ...labels,
          context_size: e.contextSize,
          parallel: e.parallel,
          memory_bytes: e.estimatedBytes,
          engine: e.engine,
          progress: e.progress,
        });
      case "load":
        return this.publish({ type: "ready", time, ...labels, duration_ms: Math.round(e.durationMs), pid: e.pid });
      case "load_failed":
        return this.publish({ type: "load_failed", time, ...labels, error: messageOf(e.error), code: codeOf(e.error) });
      case "evict":
        return this.publish({ type: "evicted", time, ...labels, reason: e.reason });
      case "crash":
        return this.publish({ type: "crashed", time, ...labels, error: messageOf(e.error), code: codeOf(e.error), in_flight: e.inFlight });
      case "configured":
        return this.publish({ type: "configured", time, ...labels, config: configJson(e.config), restarted: e.restarted });
      default:
        return;
    }
  }

  /** One pull's progress (already rate-limited by the distribution's reporter); its end is pullDone's. */
  pull(reference: string, e: ProgressEvent): void {
    if (this.listeners.size === 0) return;
    const time = new Date().toISOString();
    if (e.type === "progress") this.publish({ type: "pull", time, model: reference, status: "progress", current: e.current, total: e.total });
    else if (e.type === "warning") this.publish({ type: "pull", time, model: reference, status: "warning", message: e.message });
  }

  /** A pull is complete: the model is stored (also when it already was). */
  pullDone(reference: string, id: string, name: string): void {
    if (this.listeners.size === 0) return;
    this.publish({ type: "pull", time: new Date().toISOString(), model: reference, status: "success", message: `Model pulled successfully: ${name}`, id });
  }

  pullFailed(reference: string, error: unknown): void {
    if (this.listeners.size === 0) return;
    this.publish({ type: "pull", time: new Date().toISOString(), model: reference, status: "error", message: messageOf(error) });
  }

  private publish(event: LifecycleEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

/**
 * `distribution` with every pull (`/models/create`, Ollama's `/api/pull`,
 * whichever route asks) also reported to `events`: progress, the end, a failure.
 */
export function observePulls(distribution: ModelDistribution, events: LifecycleEvents): ModelDistribution {
  const pull: ModelDistribution["pull"] = async (reference, opts = {}) => {
    const listener = opts.onProgress;
    try {
      const model = await distribution.pull(reference, {
        ...opts,
        onProgress: (e) => {
          events.pull(reference, e);
          listener?.(e);
        },
      });
      events.pullDone(reference, model.id, model.tags[0] ?? model.id);
      return model;
    } catch (error) {
      events.pullFailed(reference, error);
      throw error;
    }
  };
  return new Proxy(distribution, {
    get(target, property) {
      if (property === "pull") return pull;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
