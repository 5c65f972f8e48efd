import { once } from "node:events";
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { InvalidRequestError, messageOf, RunnerError, type OpenAIErrorType } from "../../errors.ts";
import type { BackendMode } from "../../inference/index.ts";
import type { Lease, Scheduler } from "../../scheduling/index.ts";
import type { EngineRelay } from "./relay.ts";
import type { ResponseHead } from "../../http/response-framer.ts";
import { errorResponse, type ErrorLogger } from "../errors.ts";
import { ClientClosedError, writeWithBackpressure } from "../../http/streaming.ts";
import type { DaemonMetrics } from "../metrics.ts";
import { sseEvent } from "../sse.ts";
import { SseReader } from "../../http/sse-reader.ts";
import { checkChatImages, withImageGuard } from "./images.ts";
import type { RecordingTap, RequestRecorder } from "../recorder/request-recorder.ts";
import { applyPreset } from "./preset.ts";
import { answerAsEvent, CallLedger, USAGE_WINDOW_BYTES, UsageTail, type EngineTimings } from "./ledger.ts";

export type { EngineTimings } from "./ledger.ts";

/**
 * The engine endpoints the daemon forwards to, and the mode of the runner
 * each needs. Besides OpenAI's, llama-server's own (`/tokenize`,
 * `/detokenize`, `/apply-template`, `/completion`, `/infill`, `/embedding`)
 * go to the runner of the body's `model`, as llama-server answers them for
 * its one model; `/tokenize` also gives Anthropic's count_tokens and
 * Ollama's embed the model's real tokenizer.
 */
export const ENGINE_ENDPOINTS = {
  "/v1/chat/completions": "completion",
  "/v1/completions": "completion",
  "/v1/embeddings": "embedding",
  "/rerank": "reranking",
  "/v1/rerank": "reranking",
  "/score": "reranking",
  "/tokenize": "completion",
  "/detokenize": "completion",
  "/apply-template": "completion",
  "/completion": "completion",
  "/infill": "completion",
  "/embedding": "embedding",
} as const satisfies Record<string, BackendMode>;
/** The endpoints served as routes. */
export type OpenAIEndpoint = keyof typeof ENGINE_ENDPOINTS;
export type EngineEndpoint = OpenAIEndpoint;

const MODE_OF: Record<EngineEndpoint, BackendMode> = ENGINE_ENDPOINTS;

/** The endpoints that answer with generated text: an embedding model is refused there (the tokenizer utilities take it). */
export const GENERATES_TEXT: ReadonlySet<EngineEndpoint> = new Set(["/v1/chat/completions", "/v1/completions", "/completion", "/infill"]);

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
  /** Called once if the request has to wait for its model to load (see AcquireOptions). */
  onLoading?: (() => void) | undefined;
}

/** An engine's answer, streaming. `done()` must be called once the body is consumed or abandoned. */
export interface InferenceResponse {
  status: number;
  contentType: string;
  /** The engine's Content-Length, when it sent one (a JSON answer). */
  contentLength: number | null;
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
 * The model's preset (its stored request defaults) is filled in here, once
 * the model is resolved, so every dialect gets it (engine/preset.ts).
 */
export async function runInference(deps: { scheduler: Scheduler; relay: EngineRelay }, request: InferenceRequest): Promise<InferenceResponse> {
  const prepared = await prepareInference(deps, request);
  const { lease } = prepared;
  const exchange = deps.relay.send(lease.socketPath, "POST", request.endpoint, prepared.body);
  // The client leaving, or the engine dying, cuts the exchange (the engine sees its connection close and stops).
  const onAbort = (event: Event) => exchange.abort((event.target as AbortSignal).reason);
  request.signal.addEventListener("abort", onAbort, { once: true });
  lease.signal.addEventListener("abort", onAbort, { once: true });
  const detach = () => {
    request.signal.removeEventListener("abort", onAbort);
    lease.signal.removeEventListener("abort", onAbort);
  };
  exchange.finished.then(detach, detach);
  let head: ResponseHead;
  try {
    if (request.signal.aborted) exchange.abort(request.signal.reason);
    head = await exchange.head;
  } catch (error) {
    throw unanswered(prepared, request.signal, error, () => deps.relay.forget(lease.socketPath));
  }
  return {
    status: head.status,
    contentType: head.contentType,
    contentLength: head.contentLength,
    body: exchange.body(),
    lease,
    done: prepared.done,
    engineSignal: lease.signal,
    acquireMs: prepared.acquireMs,
  };
}

/** A request with its runner: what remains is to send `body` to the engine on `lease.socketPath`. */
export interface PreparedInference {
  /** The user's model reference. */
  model: string;
  lease: Lease;
  /** The engine body, as JSON text: the preset filled in, `model` the name the engine serves. */
  body: string;
  acquireMs: number;
  /** Frees the runner's slot (failing the runner with `error`, unless the client or the engine ended it). Idempotent. */
  done(error?: unknown): void;
}

/**
 * The first half of the one inference path: checks what needs the model,
 * schedules its runner and builds the engine body. The caller sends it
 * (runInference, whose callers read the answer's content, or the fast lane,
 * which sends its bytes on) and must
 * call `done` once the answer is over.
 */
export async function prepareInference(deps: { scheduler: Scheduler }, request: InferenceRequest): Promise<PreparedInference> {
  const model = requireModel(request.body);
  const mode = request.mode ?? MODE_OF[request.endpoint];
  const images = request.endpoint === "/v1/chat/completions" ? checkChatImages(request.body) : 0;
  const body = images > 0 ? withImageGuard(request.body) : request.body;
  const acquireStarted = performance.now();
  const lease = await deps.scheduler.acquire(model, mode, {
    backend: request.backend,
    signal: request.signal,
    images: images > 0,
    generatesText: GENERATES_TEXT.has(request.endpoint),
    ...(request.keepAliveMs !== undefined ? { keepAliveMs: request.keepAliveMs } : {}),
    ...(request.onLoading !== undefined ? { onLoading: request.onLoading } : {}),
  });
  const acquireMs = performance.now() - acquireStarted;
  let settled = false;
  const done = (error?: unknown) => {
    if (settled) return;
    settled = true;
    if (error !== undefined && !request.signal.aborted && !lease.signal.aborted) lease.fail(error);
    else lease.release();
  };
  let text: string;
  try {
    text = JSON.stringify({ ...applyPreset(request.endpoint, body, deps.scheduler.presetOf(lease.backend, lease.modelId)), model: lease.modelName });
  } catch (error) {
    done();
    throw error;
  }
  return { model, lease, body: text, acquireMs, done };
}

/**
 * What to throw when the engine did not answer a prepared request (frees
 * its slot; `forget` drops the connections to an engine that is gone): the
 * engine's own failure when it died, the client's reason when it left,
 * else an EngineUnreachableError.
 */
export function unanswered(prepared: PreparedInference, clientSignal: AbortSignal, error: unknown, forget: () => void): unknown {
  const { lease, done } = prepared;
  if (lease.signal.aborted) {
    done();
    forget();
    return lease.signal.reason;
  }
  if (clientSignal.aborted) {
    done();
    return clientSignal.reason;
  }
  done(error);
  forget();
  return new EngineUnreachableError(`The engine for ${prepared.model} did not answer: ${(error as Error).message}`, { cause: error });
}

/**
 * The compat layers' (Ollama, Anthropic, Responses) view of the one
 * inference path: they translate a request into an engine body, then read
 * the engine's answer as parsed JSON (or parsed SSE events) to translate it
 * back. Same scheduler, same runners, same metrics (labelled with `api`) as
 * the OpenAI routes, which pass bytes through instead.
 */
export interface EngineCallDeps {
  scheduler: Scheduler;
  relay: EngineRelay;
  metrics: DaemonMetrics;
  /** Keeps request/response pairs for `GET /engines/requests`; absent or null: not recorded. */
  recorder?: RequestRecorder | null | undefined;
}

/** llama-server's tokenizer utilities are not inference: the recorder leaves them out (they also serve count_tokens). */
const UNRECORDED: ReadonlySet<EngineEndpoint> = new Set(["/tokenize", "/detokenize", "/apply-template"]);

/** Whether the request recorder keeps exchanges with `endpoint`. */
export function isRecorded(endpoint: EngineEndpoint): boolean {
  return !UNRECORDED.has(endpoint);
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
  /**
   * Pass-through (`pipe`): an engine's error answer is returned like any
   * other, to be sent on as the engine wrote it, instead of thrown.
   */
  passErrors?: boolean | undefined;
  /** Called once if the request has to wait for its model to load (see AcquireOptions). */
  onLoading?: (() => void) | undefined;
  /** How the client asked, for the request recorder; default `POST`, the engine endpoint and the engine body. */
  recordAs?: RecordAs | undefined;
}

/**
 * The client's side of an exchange, for the request recorder. The OpenAI
 * routes give method, path and user agent: their body and answer are the
 * engine's. A translating dialect (Ollama, Anthropic, Responses) also gives
 * the `body` it received: the record then holds that body, and, instead of
 * the engine's answer, what the dialect hands to `EngineCall.recordAnswer`
 * (the answer the client got, a stream's as the one object it adds up to).
 */
export interface RecordAs {
  method: string;
  url: string;
  userAgent?: string | undefined;
  /** The body as the client sent it. */
  body?: unknown;
  /** The error body as the client gets it (the dialect's shape); default OpenAI's. */
  errorBody?: ((error: unknown) => unknown) | undefined;
  /** A failure the daemon retries (Ollama's embed, truncated): not recorded; the retry is. */
  skipFailure?: ((error: unknown) => boolean) | undefined;
}

/** `recordAs` for a translating dialect: the client's method, path (no query), user agent and body as received. */
export function clientRecordAs(
  request: { method: string; url: string; headers: { "user-agent"?: string | undefined }; body: unknown },
  errorBody?: (error: unknown) => unknown,
): RecordAs {
  return { method: request.method, url: request.url.split("?")[0]!, userAgent: request.headers["user-agent"], body: request.body ?? null, errorBody };
}

/** Up to this size, a JSON answer of known length is sent on whole (pipeWhole). */
const WHOLE_ANSWER_BYTES = 1024 * 1024;

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
 * The status an engine's error event stands for: llama-server's (and our
 * engine's) `error.code` is the HTTP status it would have answered with (400
 * for a prompt over the context), else 500.
 */
function statusOfEvent(event: Record<string, unknown>): number {
  const code = (event.error as { code?: unknown } | null)?.code;
  return typeof code === "number" && Number.isInteger(code) && code >= 400 && code <= 599 ? code : 500;
}

/**
 * One request in flight on a runner. Read it with `json()` or `events()`,
 * then call `finish()` exactly once (also on failure): it frees the runner
 * slot and records the request's metrics.
 */
export class EngineCall {
  private finished = false;
  private readonly ledger: CallLedger;

  constructor(
    deps: EngineCallDeps,
    private readonly request: EngineCallRequest,
    private readonly res: InferenceResponse,
    /** `performance.now()` when the request arrived. */
    readonly startedMs: number,
    /** The request recorder's tap, when this exchange is recorded. */
    recording: RecordingTap | null = null,
  ) {
    // A translating dialect (`recordAs.body`) records the client's answer (recordAnswer), not the engine's.
    const view = request.recordAs?.body !== undefined ? "client" : "engine";
    const as = request.recordAs;
    this.ledger = new CallLedger(
      deps.metrics,
      { api: request.api, endpoint: request.endpoint, model: res.lease.modelName },
      startedMs,
      recording === null ? null : { tap: recording, view, errorBody: as?.errorBody, skipFailure: as?.skipFailure },
    );
  }

  /** Token counts and timings seen in the answer so far. */
  get promptTokens(): number | null {
    return this.ledger.promptTokens;
  }

  get completionTokens(): number | null {
    return this.ledger.completionTokens;
  }

  get timings(): EngineTimings | null {
    return this.ledger.timings;
  }

  /** Whether this exchange's answer goes to the recorder through `recordAnswer`: only then is it worth building. */
  get recordsAnswer(): boolean {
    return this.ledger.recordsClientAnswer;
  }

  /** The answer the client got (a stream's assembled), recorded for this exchange; call before `finish`. */
  recordAnswer(answer: unknown): void {
    this.ledger.clientAnswer(answer);
  }

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
    this.ledger.chunk(text);
    const parsed = JSON.parse(text) as T;
    this.ledger.observe(parsed as Record<string, unknown>);
    return parsed;
  }

  /**
   * The `data:` events of a streaming answer, parsed, up to `[DONE]`. An
   * `{"error":...}` event (the engine failed mid-stream) is thrown as an
   * EngineAnswerError; an engine that dies throws its error.
   */
  async *events(): AsyncGenerator<Record<string, unknown>> {
    const reader = new SseReader();
    try {
      for await (const chunk of this.res.body.setEncoding("utf8")) {
        this.ledger.firstByte();
        this.ledger.chunk(chunk as string);
        for (const { data } of reader.push(chunk as string)) {
          if (data === "[DONE]") continue;
          const parsed = JSON.parse(data) as Record<string, unknown>;
          if (parsed.error !== undefined && parsed.choices === undefined) throw new EngineAnswerError(statusOfEvent(parsed), parsed);
          this.ledger.observe(parsed);
          yield parsed;
        }
      }
    } catch (error) {
      throw await this.failure(error);
    }
  }

  /**
   * Sends the answer on to `raw` as the engine writes it (status, content
   * type, bytes, with backpressure): the OpenAI routes' pass-through. Token
   * usage is read from the answer's last 16 KiB, once it is complete. An
   * engine that dies mid-stream gets a final `data: {"error":...}` event
   * (a JSON body cannot be repaired). Calls `finish()`.
   */
  async pipe(raw: ServerResponse, logError: ErrorLogger, extraHeaders: Record<string, string | number | string[] | undefined> = {}): Promise<void> {
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(extraHeaders)) if (value !== undefined) headers[name] = value;
    const isStream = this.res.contentType.includes("text/event-stream");
    const length = this.res.contentLength;
    // An SSE answer already begun (`: loading` comments while the model loaded) takes a JSON answer as one event.
    if (raw.headersSent && !isStream) return this.pipeAsEvent(raw, logError);
    if (!isStream && length !== null && length <= WHOLE_ANSWER_BYTES) return this.pipeWhole(raw, logError, headers);
    if (!raw.headersSent) {
      raw.writeHead(this.res.status, {
        ...headers,
        "content-type": this.res.contentType,
        ...(isStream ? { "cache-control": "no-cache", "x-accel-buffering": "no" } : {}),
      });
    }
    const tail = MODE_OF[this.request.endpoint] !== "embedding" ? new UsageTail() : null;
    let failure: unknown;
    try {
      for await (const chunk of this.res.body) {
        if (isStream) this.ledger.firstByte();
        await writeWithBackpressure(raw, chunk as Buffer);
        this.ledger.chunk(chunk as Buffer);
        tail?.push(chunk as Buffer);
      }
    } catch (error) {
      failure = error;
    }
    const clientLeft = this.request.signal.aborted || raw.destroyed;
    if (failure !== undefined && !clientLeft && isStream) {
      const { body } = errorResponse(await midAnswerFailure(this.res, failure), logError);
      raw.write(sseEvent(null, body));
    }
    raw.end();
    const tailText = tail?.text();
    if (tailText) this.ledger.observeTail(tailText);
    this.finish(failure === undefined ? undefined : clientLeft ? new ClientClosedError() : failure);
  }

  /**
   * A small answer of known length, read whole and sent with one write
   * (headers, Content-Length and body together: no chunked framing, one
   * syscall). Nothing is sent before it is complete, so an engine that dies
   * mid-answer still gets a proper error status and body.
   */
  private async pipeWhole(raw: ServerResponse, logError: ErrorLogger, headers: OutgoingHttpHeaders): Promise<void> {
    let body: Buffer;
    try {
      const chunks = (await this.res.body.toArray()) as Buffer[];
      body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    } catch (error) {
      const clientLeft = this.request.signal.aborted || raw.destroyed;
      if (!clientLeft) {
        const answer = errorResponse(await midAnswerFailure(this.res, error), logError);
        const text = JSON.stringify(answer.body);
        raw.writeHead(answer.status, { ...headers, ...answer.headers, "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        raw.end(text);
      } else raw.end();
      this.finish(clientLeft ? new ClientClosedError() : error);
      return;
    }
    raw.writeHead(this.res.status, { ...headers, "content-type": this.res.contentType, "content-length": body.length });
    raw.end(body);
    this.ledger.chunk(body);
    if (MODE_OF[this.request.endpoint] !== "embedding" && body.length <= USAGE_WINDOW_BYTES) this.ledger.observeTail(body.toString("utf8"));
    this.finish();
  }

  /**
   * A JSON answer (the engine's error) to a request whose SSE stream is
   * already open: sent as one `data:` event, as an engine failing
   * mid-stream does, then the stream ends.
   */
  private async pipeAsEvent(raw: ServerResponse, logError: ErrorLogger): Promise<void> {
    let failure: unknown;
    let event: string;
    try {
      const text = Buffer.concat((await this.res.body.toArray()) as Buffer[]).toString("utf8");
      this.ledger.chunk(text);
      event = answerAsEvent(this.res.status, text);
    } catch (error) {
      failure = error;
      event = sseEvent(null, errorResponse(await midAnswerFailure(this.res, error), logError).body);
    }
    if (!raw.destroyed) raw.end(event);
    this.finish(failure);
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
    const aborted = this.request.signal.aborted || error instanceof ClientClosedError;
    if (!this.res.body.destroyed) this.res.body.destroy();
    this.res.done(error !== undefined && !aborted && !this.res.engineSignal.aborted && !(error instanceof EngineAnswerError) ? error : undefined);
    this.ledger.close(this.res.status, error, aborted);
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
      onLoading: request.onLoading,
    });
  } catch (error) {
    // The scheduler's refusals (404 model, 503 queue full, a failed load) are counted too.
    new CallLedger(deps.metrics, { api: request.api, endpoint: request.endpoint, model: String(request.body.model ?? "") }, startedMs, null).close(0, error, request.signal.aborted);
    throw error;
  }
  const recording = deps.recorder && isRecorded(request.endpoint) ? startRecording(deps.recorder, request, res.lease) : null;
  const call = new EngineCall(deps, request, res, startedMs, recording);
  // A translating dialect records the client's answer, not the engine's.
  const tap = request.recordAs?.body !== undefined ? null : recording;
  if (res.status >= 400 && !request.passErrors) {
    let body: unknown = null;
    try {
      const text = await res.body.setEncoding("utf8").toArray().then((p) => p.join(""));
      tap?.chunk(text);
      body = JSON.parse(text);
    } catch {
      // Not JSON: the status says enough.
    }
    const error = new EngineAnswerError(res.status, body);
    call.finish(error);
    throw error;
  }
  return call;
}

/** Starts the recorder's record of an exchange, as the client made it (`recordAs`). */
export function startRecording(
  recorder: RequestRecorder,
  request: Pick<EngineCallRequest, "endpoint" | "body" | "api" | "recordAs">,
  lease: Lease,
  /** The body's text as the client sent it, when the caller has it (the fast lane). */
  text?: string,
): RecordingTap {
  return recorder.begin({
    modelId: lease.modelId,
    modelName: lease.modelName,
    body: request.recordAs?.body ?? request.body,
    text: request.recordAs?.body === undefined ? text : undefined,
    model: typeof request.body.model === "string" ? request.body.model : undefined,
    method: request.recordAs?.method ?? "POST",
    url: request.recordAs?.url ?? request.endpoint,
    userAgent: request.recordAs?.userAgent,
    origin: request.api,
    contextSize: lease.contextSize,
  });
}
