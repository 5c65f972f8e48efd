import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { SeriesCounter, SeriesHistogram } from "./metric-series.ts";
import type { RunnerStatus, SchedulerEvent } from "../scheduling/index.ts";
import type { InferenceObservation } from "./engine/call.ts";

/**
 * The daemon's Prometheus metrics (`GET /metrics`). One registry per daemon,
 * never prom-client's global one, so several daemons in one process (tests)
 * do not share counters.
 */
export interface DaemonMetrics {
  readonly registry: Registry;
  /** Records one HTTP request (every route). */
  request(route: string, method: string, status: number, durationMs: number): void;
  /** Records one inference request with its tokens and timings. */
  inference(observation: InferenceObservation): void;
  /** Feeds scheduler events: loads, evictions, crashes, queueing. */
  schedulerEvent(event: SchedulerEvent): void;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export function createMetrics(source: { runners: () => RunnerStatus[]; queued: () => number }): DaemonMetrics {
  const runners = source.runners;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "model_runner_" });
  const httpRequests = new SeriesCounter("model_runner_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"], registry);
  const httpDuration = new SeriesHistogram("model_runner_http_request_duration_seconds", "HTTP request duration by route.", ["route", "method"], LATENCY_BUCKETS, registry);
  const inferenceRequests = new SeriesCounter("model_runner_inference_requests_total", "Inference requests by API, endpoint, model and status.", ["api", "endpoint", "model", "status"], registry);
  const inferenceDuration = new SeriesHistogram("model_runner_inference_duration_seconds", "Inference request duration, from arrival to the last byte.", ["api", "model"], LATENCY_BUCKETS, registry);
  const ttft = new SeriesHistogram("model_runner_time_to_first_token_seconds", "Time from a streaming request's arrival to its first token.", ["api", "model"], LATENCY_BUCKETS, registry);
  const promptTokens = new SeriesCounter("model_runner_prompt_tokens_total", "Prompt tokens processed.", ["model"], registry);
  const generatedTokens = new SeriesCounter("model_runner_generated_tokens_total", "Tokens generated.", ["model"], registry);
  const tokensPerSecond = new SeriesHistogram("model_runner_generation_tokens_per_second", "Generation speed of each request, as measured by the engine.", ["model"], [1, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120], registry);
  new Gauge({
    name: "model_runner_queue_depth",
    help: "Requests waiting for memory or a runner slot.",
    registers: [registry],
    collect() {
      this.set(source.queued());
    },
  });
  const queueWait = new Histogram({
    name: "model_runner_queue_wait_seconds",
    help: "Time requests spent waiting in the scheduler's queue.",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const queueRejected = new Counter({
    name: "model_runner_queue_rejections_total",
    help: "Requests refused because the queue was full.",
    registers: [registry],
  });
  const loads = new Counter({
    name: "model_runner_runner_loads_total",
    help: "Runner (engine) loads by backend, model and mode.",
    labelNames: ["backend", "model", "mode", "outcome"],
    registers: [registry],
  });
  const loadDuration = new Histogram({
    name: "model_runner_runner_load_duration_seconds",
    help: "Time from starting an engine to its first healthy answer.",
    labelNames: ["backend", "model"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const evictions = new Counter({
    name: "model_runner_runner_evictions_total",
    help: "Runners stopped, by reason.",
    labelNames: ["backend", "model", "reason"],
    registers: [registry],
  });
  const crashes = new Counter({
    name: "model_runner_runner_crashes_total",
    help: "Engines that died on their own.",
    labelNames: ["backend", "model"],
    registers: [registry],
  });
  new Gauge({
    name: "model_runner_runner_memory_bytes",
    help: "Estimated memory of each running runner.",
    labelNames: ["backend", "model", "mode"],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runners()) this.set({ backend: r.backend, model: r.model, mode: r.mode }, r.estimatedMemoryBytes);
    },
  });
  new Gauge({
    name: "model_runner_runner_in_flight",
    help: "Requests being served by each runner.",
    labelNames: ["backend", "model", "mode"],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runners()) this.set({ backend: r.backend, model: r.model, mode: r.mode }, r.inFlight);
    },
  });

  // The per-request series, bound once per label set (metric-series.ts: an update is then a few additions).
  const httpSeries = new Bound((route: string, method: string, status: number) => ({
    count: httpRequests.series(route, method, String(status)),
    duration: httpDuration.series(route, method),
  }));
  const inferenceSeries = new Bound((api: string, endpoint: string, model: string, status: number) => ({
    count: inferenceRequests.series(api, endpoint, model, String(status)),
    duration: inferenceDuration.series(api, model),
    ttft: ttft.series(api, model),
    promptTokens: promptTokens.series(model),
    generatedTokens: generatedTokens.series(model),
    tokensPerSecond: tokensPerSecond.series(model),
  }));

  return {
    registry,
    request(route, method, status, durationMs) {
      const series = httpSeries.get(route, method, status);
      series.count.inc();
      series.duration.observe(durationMs / 1000);
    },
    inference(o) {
      const series = inferenceSeries.get(o.api, o.endpoint, o.model, o.status);
      series.count.inc();
      series.duration.observe(o.durationMs / 1000);
      if (o.firstByteMs !== null) series.ttft.observe(o.firstByteMs / 1000);
      if (o.promptTokens !== null) series.promptTokens.inc(o.promptTokens);
      if (o.completionTokens !== null) series.generatedTokens.inc(o.completionTokens);
      if (o.completionTokens && o.generationMs) series.tokensPerSecond.observe(o.completionTokens / (o.generationMs / 1000));
    },
    schedulerEvent(e) {
      switch (e.type) {
        case "load":
          loads.inc({ backend: e.backend, model: e.model, mode: e.mode, outcome: "ok" });
          loadDuration.observe({ backend: e.backend, model: e.model }, e.durationMs / 1000);
          break;
        case "load_failed":
          loads.inc({ backend: e.backend, model: e.model, mode: e.mode, outcome: "failed" });
          break;
        case "evict":
          evictions.inc({ backend: e.backend, model: e.model, reason: e.reason });
          break;
        case "crash":
          crashes.inc({ backend: e.backend, model: e.model });
          break;
        case "queued":
          break;
        case "dequeued":
          queueWait.observe({ outcome: e.outcome }, e.waitMs / 1000);
          break;
        case "queue_full":
          queueRejected.inc();
          break;
      }
    },
  };
}

/**
 * Child metrics bound to one label set, made on first use. Bounded like the
 * label sets themselves are (routes, APIs, statuses, models in the store);
 * past the bound it starts over rather than growing.
 */
class Bound<A extends Array<string | number>, T> {
  private readonly children = new Map<string, T>();
  constructor(private readonly make: (...labels: A) => T) {}

  get(...labels: A): T {
    const key = labels.join("\u0000");
    let child = this.children.get(key);
    if (child === undefined) {
      if (this.children.size >= 4096) this.children.clear();
      child = this.make(...labels);
      this.children.set(key, child);
    }
    return child;
  }
}
