import { once } from "node:events";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { InvalidRequestError, messageOf, RunnerError } from "../errors.ts";
import type { BackendMode } from "../inference/index.ts";
import type { Lease, Scheduler } from "../scheduling/index.ts";
import type { EngineClients } from "./engine-client.ts";

/** The engine endpoints the daemon forwards to, and the mode each needs. */
export const ENGINE_ENDPOINTS = {
  "/v1/chat/completions": "completion",
  "/v1/completions": "completion",
  "/v1/embeddings": "embedding",
  "/rerank": "reranking",
  "/v1/rerank": "reranking",
  "/score": "reranking",
} as const satisfies Record<string, BackendMode>;
/**
 * Engine endpoints only the daemon itself calls (the compat layers), never
 * exposed as routes: `/tokenize` gives Anthropic's count_tokens the model's
 * real tokenizer without loading the model in the daemon.
 */
export const INTERNAL_ENGINE_ENDPOINTS = {
  "/tokenize": "completion",
} as const satisfies Record<string, BackendMode>;
/** The endpoints served as OpenAI routes. */
export type OpenAIEndpoint = keyof typeof ENGINE_ENDPOINTS;
export type EngineEndpoint = keyof typeof ENGINE_ENDPOINTS | keyof typeof INTERNAL_ENGINE_ENDPOINTS;

const MODE_OF: Record<EngineEndpoint, BackendMode> = { ...ENGINE_ENDPOINTS, ...INTERNAL_ENGINE_ENDPOINTS };

export interface InferenceRequest {
  endpoint: EngineEndpoint;
  /** The parsed request body; its `model` is the user's reference. */
  body: Record<string, unknown>;
  backend?: string | undefined;
  /** Aborts when the client goes away; the engine then stops generating. */
  signal: AbortSignal;
  /** Which API the request came through, for metrics and logs. */
  api: string;
  /** A per-request keep-alive (Ollama's `keep_alive`); it sticks to the runner. */
  keepAliveMs?: number | undefined;
  /** Overrides the endpoint's mode (`/tokenize` on an embedding runner). */
  mode?: BackendMode | undefined;
}

/** An engine's answer, streaming. `done()` must be called once the body is consumed or abandoned. */
export interface InferenceResponse {
  status: number;
  contentType: string;
  body: Readable;
  lease: Lease;
  /** Resolves the body's consumption: frees the runner's slot (with the failure, if any). */
  done(error?: unknown): void;
  /** Aborts when the engine dies under the request (reason: the engine's error). */
  engineSignal: AbortSignal;
  /** Measured time spent getting the runner: queueing plus loading the model (Ollama's `load_duration`). */
  acquireMs: number;
}

/** Facts about a finished request, for metrics. */
export interface InferenceObservation {
  api: string;
  endpoint: string;
  model: string;
  status: number;
  durationMs: number;
  /** Time from the request to the first body byte of a stream. */
  firstByteMs: number | null;
  promptTokens: number | null;
  completionTokens: number | null;
  /** Engine-measured generation time, for tokens/s. */
  generationMs: number | null;
}

export class EngineUnreachableError extends RunnerError {
  readonly code = "engine_unreachable";
  readonly status = 502;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Why an engine's answer broke off mid-way, the same on every API: the
 * engine's own failure (its exit and last output, from the scheduler) when
 * it died, else an EngineUnreachableError. The socket usually closes a
 * moment before the scheduler sees the exit, so this waits briefly for it.
 */
export async function midAnswerFailure(res: Pick<InferenceResponse, "engineSignal">, failure: unknown): Promise<unknown> {
  if (!res.engineSignal.aborted) {
    const waited = new AbortController();
    await Promise.race([once(res.engineSignal, "abort", { signal: waited.signal }), delay(1000, undefined, { signal: waited.signal })]).catch(() => undefined);
    waited.abort();
  }
  return res.engineSignal.aborted
    ? res.engineSignal.reason
    : new EngineUnreachableError(`The engine closed the connection mid-answer: ${messageOf(failure)}`, { cause: failure });
}

/** The `model` field of a request body, or a 400 that says it is missing. */
export function requireModel(body: unknown): string {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  const model = (body as { model?: unknown }).model;
  if (typeof model !== "string" || model.trim() === "") throw new InvalidRequestError("'model' is required.", "model");
  return model.trim();
}

/**
 * The daemon's one inference path, shared by the OpenAI, Ollama, Anthropic
 * and Responses routes (none of them makes an HTTP hop to the daemon itself):
 * schedule a runner for the model, forward the body to its engine over the
 * Unix socket with `model` rewritten to the name the engine serves, and hand
 * back the streaming answer. The caller consumes `body` and calls `done()`.
 */
export async function runInference(
  deps: { scheduler: Scheduler; engines: EngineClients },
  request: InferenceRequest,
): Promise<InferenceResponse> {
  const model = requireModel(request.body);
  const mode = request.mode ?? MODE_OF[request.endpoint];
  const acquireStarted = performance.now();
  const lease = await deps.scheduler.acquire(model, mode, {
    backend: request.backend,
    signal: request.signal,
    ...(request.keepAliveMs !== undefined ? { keepAliveMs: request.keepAliveMs } : {}),
  });
  const acquireMs = performance.now() - acquireStarted;
  const combined = AbortSignal.any([request.signal, lease.signal]);
  let settled = false;
  const done = (error?: unknown) => {
    if (settled) return;
    settled = true;
    if (error !== undefined && !request.signal.aborted && !lease.signal.aborted) lease.fail(error);
    else lease.release();
  };
  try {
    const response = await deps.engines.request(lease.socketPath, {
      method: "POST",
      path: request.endpoint,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...request.body, model: lease.modelName }),
      signal: combined,
    });
    const contentType = String(response.headers["content-type"] ?? "application/json");
    return { status: response.statusCode, contentType, body: response.body, lease, done, engineSignal: lease.signal, acquireMs };
  } catch (error) {
    if (lease.signal.aborted) {
      done();
      deps.engines.forget(lease.socketPath);
      throw lease.signal.reason;
    }
    if (request.signal.aborted) {
      done();
      throw request.signal.reason;
    }
    done(error);
    deps.engines.forget(lease.socketPath);
    throw new EngineUnreachableError(`The engine for ${model} did not answer: ${(error as Error).message}`, { cause: error });
  }
}
