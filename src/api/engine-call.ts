import { RunnerError, type OpenAIErrorType } from "../errors.ts";
import type { BackendMode } from "../inference/index.ts";
import type { Lease, Scheduler } from "../scheduling/index.ts";
import type { EngineClients } from "./engine-client.ts";
import { errorResponse } from "./errors.ts";
import { midAnswerFailure, runInference, type EngineEndpoint, type InferenceObservation, type InferenceResponse } from "./inference.ts";
import type { DaemonMetrics } from "./metrics.ts";

/**
 * The compat layers' (Ollama, Anthropic, Responses) view of the one
 * inference path: they translate a request into an engine body, then read
 * the engine's answer as parsed JSON (or parsed SSE events) to translate it
 * back. Same scheduler, same runners, same metrics (labelled with `api`) as
 * the OpenAI routes, which pass bytes through instead.
 */
export interface EngineCallDeps {
  scheduler: Scheduler;
  engines: EngineClients;
  metrics: DaemonMetrics;
}

export interface EngineCallRequest {
  endpoint: EngineEndpoint;
  /** The engine body (OpenAI shape); its `model` is the user's reference. */
  body: Record<string, unknown>;
  /** `ollama`, `anthropic`, `responses`: the metrics label. */
  api: string;
  /** The client's signal: aborting stops generation. */
  signal: AbortSignal;
  backend?: string | undefined;
  keepAliveMs?: number | undefined;
  mode?: BackendMode | undefined;
}

/** llama-server's measured `timings` (milliseconds). */
export interface EngineTimings {
  prompt_n: number;
  prompt_ms: number;
  predicted_n: number;
  predicted_ms: number;
  cache_n: number;
}

/** An error the engine answered with (its status, type and message), to re-shape per dialect. */
export class EngineAnswerError extends RunnerError {
  readonly code: string;
  readonly status: number;
  override readonly type: OpenAIErrorType;
  constructor(status: number, body: unknown) {
    const e = (body as { error?: { message?: unknown; type?: unknown; code?: unknown } } | null)?.error;
    super(typeof e?.message === "string" ? e.message : `The engine answered with status ${status}.`);
    this.status = status >= 400 ? status : 500;
    this.type = (typeof e?.type === "string" ? e.type : this.status < 500 ? "invalid_request_error" : "server_error") as OpenAIErrorType;
    this.code = typeof e?.code === "string" ? e.code : this.status < 500 ? "invalid_request" : "engine_error";
  }
}

/**
 * One request in flight on a runner. Read it with `json()` or `events()`,
 * then call `finish()` exactly once (also on failure): it frees the runner
 * slot and records the request's metrics.
 */
export class EngineCall {
  /** Token counts and timings seen in the answer so far. */
  promptTokens: number | null = null;
  completionTokens: number | null = null;
  timings: EngineTimings | null = null;
  private firstByteMs: number | null = null;
  private finished = false;

  constructor(
    private readonly deps: EngineCallDeps,
    private readonly request: EngineCallRequest,
    private readonly res: InferenceResponse,
    /** `performance.now()` when the request arrived. */
    readonly startedMs: number,
  ) {}

  get lease(): Lease {
    return this.res.lease;
  }

  /** Time spent queueing for and loading the runner. */
  get acquireMs(): number {
    return this.res.acquireMs;
  }

  /** The whole (non-streaming) answer, parsed. */
  async json<T = Record<string, unknown>>(): Promise<T> {
    let text: string;
    try {
      text = await this.res.body.setEncoding("utf8").toArray().then((parts) => parts.join(""));
    } catch (error) {
      throw await this.failure(error);
    }
    const parsed = JSON.parse(text) as T;
    this.observe(parsed as Record<string, unknown>);
    return parsed;
  }

  /**
   * The `data:` events of a streaming answer, parsed, up to `[DONE]`. An
   * `{"error":...}` event (the engine failed mid-stream) is thrown as an
   * EngineAnswerError; an engine that dies throws its error.
   */
  async *events(): AsyncGenerator<Record<string, unknown>> {
    let buffer = "";
    try {
      for await (const chunk of this.res.body.setEncoding("utf8")) {
        this.firstByteMs ??= performance.now() - this.startedMs;
        buffer += chunk as string;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart())
            .join("\n");
          if (data === "" || data === "[DONE]") continue;
          const parsed = JSON.parse(data) as Record<string, unknown>;
          if (parsed.error !== undefined && parsed.choices === undefined) throw new EngineAnswerError(500, parsed);
          this.observe(parsed);
          yield parsed;
        }
      }
    } catch (error) {
      throw await this.failure(error);
    }
  }

  /** What to report for a read that failed: the client's leaving and the engine's own errors as they are, a broken answer as the engine's failure. */
  private async failure(error: unknown): Promise<unknown> {
    if (this.request.signal.aborted || error instanceof EngineAnswerError) return error;
    // A malformed event from a live engine is a bug to log, not a connection problem.
    if (error instanceof SyntaxError && !this.res.engineSignal.aborted) return error;
    return midAnswerFailure(this.res, error);
  }

  /** Frees the runner slot and records metrics. Idempotent. */
  finish(error?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    const aborted = this.request.signal.aborted;
    if (!this.res.body.destroyed) this.res.body.destroy();
    this.res.done(error !== undefined && !aborted && !this.res.engineSignal.aborted && !(error instanceof EngineAnswerError) ? error : undefined);
    this.deps.metrics.inference({
      api: this.request.api,
      endpoint: this.request.endpoint,
      model: this.res.lease.modelName,
      status: error === undefined ? this.res.status : aborted ? 499 : errorResponse(error, () => undefined).status,
      durationMs: performance.now() - this.startedMs,
      firstByteMs: this.firstByteMs,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      generationMs: this.timings?.predicted_ms ?? null,
    });
  }

  private observe(parsed: Record<string, unknown>): void {
    // Our engine's first stream chunk carries the prompt's size (llama-server's does not).
    if (typeof parsed.prompt_tokens === "number") this.promptTokens = parsed.prompt_tokens;
    const usage = parsed.usage as { prompt_tokens?: number; completion_tokens?: number } | undefined;
    if (usage && typeof usage === "object") {
      if (typeof usage.prompt_tokens === "number") this.promptTokens = usage.prompt_tokens;
      if (typeof usage.completion_tokens === "number") this.completionTokens = usage.completion_tokens;
    }
    const timings = parsed.timings as EngineTimings | undefined;
    if (timings && typeof timings === "object") {
      this.timings = timings;
      this.completionTokens ??= timings.predicted_n;
      this.promptTokens ??= timings.prompt_n + (timings.cache_n ?? 0);
    }
  }
}

/**
 * Schedules a runner and sends `request.body` to its engine. Resolves once
 * the engine answered with a success status; an error status is read and
 * thrown as EngineAnswerError (metrics recorded, slot freed). Scheduler
 * errors (404 model, 503 queue full, ...) are thrown as they are.
 */
export async function openEngineCall(deps: EngineCallDeps, request: EngineCallRequest): Promise<EngineCall> {
  const startedMs = performance.now();
  let res: InferenceResponse;
  try {
    res = await runInference(deps, {
      endpoint: request.endpoint,
      body: request.body,
      backend: request.backend,
      signal: request.signal,
      api: request.api,
      keepAliveMs: request.keepAliveMs,
      mode: request.mode,
    });
  } catch (error) {
    const observation: InferenceObservation = {
      api: request.api,
      endpoint: request.endpoint,
      model: String(request.body.model ?? ""),
      status: request.signal.aborted ? 499 : errorResponse(error, () => undefined).status,
      durationMs: performance.now() - startedMs,
      firstByteMs: null,
      promptTokens: null,
      completionTokens: null,
      generationMs: null,
    };
    deps.metrics.inference(observation);
    throw error;
  }
  const call = new EngineCall(deps, request, res, startedMs);
  if (res.status >= 400) {
    let body: unknown = null;
    try {
      body = JSON.parse(await res.body.setEncoding("utf8").toArray().then((p) => p.join("")));
    } catch {
      // Not JSON: the status says enough.
    }
    const error = new EngineAnswerError(res.status, body);
    call.finish(error);
    throw error;
  }
  return call;
}
