import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { BackendMode, BackendRegistry } from "../inference/index.ts";
import type { ModelDistribution, StoredModel } from "../distribution/index.ts";
import type { Scheduler } from "../scheduling/index.ts";
import type { EngineClients } from "./engine-client.ts";
import { errorResponse, type ErrorLogger } from "./errors.ts";
import { ENGINE_ENDPOINTS, midAnswerFailure, requireModel, runInference, type OpenAIEndpoint, type InferenceObservation } from "./inference.ts";
import type { DaemonMetrics } from "./metrics.ts";
import { checkOpenAIBody } from "./openai-checks.ts";
import { clientSignal, writeWithBackpressure } from "./streaming.ts";

export interface OpenAIRouteDeps {
  scheduler: Scheduler;
  backends: BackendRegistry;
  engines: EngineClients;
  distribution: ModelDistribution;
  metrics: DaemonMetrics;
  logError: ErrorLogger;
}

/** How much of a response is kept to read its usage: the tail of a stream, or a whole small JSON body. */
const USAGE_WINDOW_BYTES = 16 * 1024;

/**
 * OpenAI-compatible routes, in Docker Model Runner's three forms:
 * `/engines/v1/...` (default backend), `/engines/{backend}/v1/...` and `/v1/...`.
 */
export function registerOpenAIRoutes(app: FastifyInstance, deps: OpenAIRouteDeps): void {
  for (const prefix of ["/engines", "/engines/:backend", ""]) {
    for (const endpoint of Object.keys(ENGINE_ENDPOINTS) as OpenAIEndpoint[]) {
      app.post(`${prefix}${endpoint}`, (request, reply) => forward(deps, request, reply, endpoint));
    }
    app.get(`${prefix}/v1/models`, async (request) => {
      const backend = backendOf(request);
      if (backend !== undefined) deps.backends.get(backend); // 404 for an unknown backend
      const models = await deps.distribution.list();
      return { object: "list", data: await Promise.all(models.map((m) => openAIModel(deps, m, backend))) };
    });
    app.get(`${prefix}/v1/models/*`, async (request) => {
      const backend = backendOf(request);
      if (backend !== undefined) deps.backends.get(backend);
      const id = (request.params as { "*": string })["*"];
      // fastify has already decoded the path once; decoding again would misread a literal "%".
      const model = await deps.distribution.resolve(id);
      return openAIModel(deps, model, backend);
    });
  }
}

function backendOf(request: FastifyRequest): string | undefined {
  return (request.params as { backend?: string }).backend;
}

/** One model in OpenAI's list shape, with Docker Model Runner's `dmr` facts and the context size it will really run with. */
async function openAIModel(deps: OpenAIRouteDeps, model: StoredModel, backend: string | undefined) {
  const id = model.tags[0] ?? model.id;
  let contextWindow: number | null = null;
  try {
    contextWindow = (await deps.scheduler.effectiveSettings(id, "completion", { backend })).contextSize;
  } catch {
    // A model without a GGUF (or an unknown backend) has no runnable context.
  }
  const c = model.config;
  return {
    id,
    object: "model",
    created: model.created,
    owned_by: "model-runner",
    dmr: {
      context_window: contextWindow,
      architecture: c.architecture ?? null,
      parameters: c.parameters ?? null,
      quantization: c.quantization ?? null,
      size: c.size ?? null,
    },
  };
}

async function forward(deps: OpenAIRouteDeps, request: FastifyRequest, reply: FastifyReply, endpoint: OpenAIEndpoint) {
  const started = performance.now();
  const backend = backendOf(request);
  const body = request.body as Record<string, unknown>;
  const model = requireModel(body);
  if (String(request.headers["x-preload-only"]).toLowerCase() === "true") {
    const mode: BackendMode = ENGINE_ENDPOINTS[endpoint];
    const status = await deps.scheduler.preload(model, mode, { backend });
    return { status: "loaded", model, context_size: status?.contextSize ?? null };
  }
  if (backend !== undefined) deps.backends.get(backend); // an unknown backend is a 404 whatever the body says
  checkOpenAIBody(endpoint, body);
  const client = clientSignal(reply);
  const observation: InferenceObservation = {
    api: "openai",
    endpoint,
    model,
    status: 0,
    durationMs: 0,
    firstByteMs: null,
    promptTokens: null,
    completionTokens: null,
    generationMs: null,
  };
  let res;
  try {
    res = await runInference(deps, { endpoint, body, backend, signal: client.signal, api: "openai" });
  } catch (error) {
    client.dispose();
    observation.status = errorResponse(error, () => undefined).status;
    observation.durationMs = performance.now() - started;
    deps.metrics.inference(observation);
    throw error;
  }
  const isStream = res.contentType.includes("text/event-stream");
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(res.status, {
    "content-type": res.contentType,
    ...(isStream ? { "cache-control": "no-cache", "x-accel-buffering": "no" } : {}),
  });
  let window = "";
  let failure: unknown;
  try {
    for await (const chunk of res.body) {
      observation.firstByteMs ??= performance.now() - started;
      await writeWithBackpressure(raw, chunk as Buffer);
      if (endpoint !== "/v1/embeddings") window = (window + (chunk as Buffer).toString("utf8")).slice(-USAGE_WINDOW_BYTES);
    }
  } catch (error) {
    failure = error;
  }
  if (failure !== undefined && !client.signal.aborted && !raw.destroyed) {
    // The engine died mid-answer: a stream gets a final error event; a JSON body cannot be repaired.
    const cause = await midAnswerFailure(res, failure);
    const { body: errBody } = errorResponse(cause, deps.logError);
    if (isStream) raw.write(`data: ${JSON.stringify(errBody)}\n\n`);
  }
  raw.end();
  res.done(failure !== undefined && !client.signal.aborted && !res.engineSignal.aborted ? failure : undefined);
  client.dispose();
  observation.model = res.lease.modelName;
  observation.status = failure === undefined ? res.status : client.signal.aborted ? 499 : 500;
  observation.durationMs = performance.now() - started;
  if (!isStream) observation.firstByteMs = null;
  readUsage(window, observation);
  deps.metrics.inference(observation);
}

/** Fills token counts from the engine's `usage` / llama-server `timings` in the last part of the answer. */
function readUsage(text: string, o: InferenceObservation): void {
  const candidates = text.includes("data: ") ? text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => l.slice(6)) : [text];
  for (const candidate of candidates.reverse()) {
    let parsed: { usage?: { prompt_tokens?: number; completion_tokens?: number }; timings?: { predicted_n?: number; predicted_ms?: number; prompt_n?: number; cache_n?: number } };
    try {
      parsed = JSON.parse(candidate);
    } catch {
      continue;
    }
    if (parsed.usage && o.promptTokens === null) {
      o.promptTokens = parsed.usage.prompt_tokens ?? null;
      o.completionTokens = parsed.usage.completion_tokens ?? null;
    }
    if (parsed.timings && o.generationMs === null) {
      o.generationMs = parsed.timings.predicted_ms ?? null;
      o.completionTokens ??= parsed.timings.predicted_n ?? null;
      if (o.promptTokens === null && parsed.timings.prompt_n !== undefined) o.promptTokens = parsed.timings.prompt_n + (parsed.timings.cache_n ?? 0);
    }
    if (o.promptTokens !== null && o.generationMs !== null) return;
  }
}
