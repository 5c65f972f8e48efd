import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { BackendMode, BackendRegistry } from "../inference/index.ts";
import type { ModelDistribution, StoredModel } from "../distribution/index.ts";
import type { Scheduler } from "../scheduling/index.ts";
import { errorResponse, type ErrorLogger } from "./errors.ts";
import { ENGINE_ENDPOINTS, GENERATES_TEXT, openEngineCall, requireModel, type EngineCall, type OpenAIEndpoint } from "./engine/call.ts";
import { LoadingComments } from "./load-wait.ts";
import { sseEvent } from "./sse.ts";
import type { DaemonMetrics } from "./metrics.ts";
import type { EngineRelay } from "./engine/relay.ts";
import { checkOpenAIBody } from "./openai-checks.ts";

export interface OpenAIRouteDeps {
  scheduler: Scheduler;
  relay: EngineRelay;
  backends: BackendRegistry;
  distribution: ModelDistribution;
  metrics: DaemonMetrics;
  logError: ErrorLogger;
}

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

/** One model in OpenAI's list shape, with Docker Model Runner's `dmr` facts, the context size it will really run with and whether it takes images now. */
async function openAIModel(deps: OpenAIRouteDeps, model: StoredModel, backend: string | undefined) {
  const id = model.tags[0] ?? model.id;
  let contextWindow: number | null = null;
  let vision = false;
  try {
    const settings = await deps.scheduler.effectiveSettings(id, "completion", { backend });
    contextWindow = settings.contextSize;
    vision = settings.vision;
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
      // Image input can be served right now: the model has a projector and its engine (llama-server) is installed.
      vision,
    },
  };
}

async function forward(deps: OpenAIRouteDeps, request: FastifyRequest, reply: FastifyReply, endpoint: OpenAIEndpoint) {
  const backend = backendOf(request);
  const body = request.body as Record<string, unknown>;
  const model = requireModel(body);
  if (String(request.headers["x-preload-only"]).toLowerCase() === "true") {
    const mode: BackendMode = ENGINE_ENDPOINTS[endpoint];
    const status = await deps.scheduler.preload(model, mode, { backend, generatesText: GENERATES_TEXT.has(endpoint) });
    return { status: "loaded", model, context_size: status?.contextSize ?? null };
  }
  if (backend !== undefined) deps.backends.get(backend); // an unknown backend is a 404 whatever the body says
  checkOpenAIBody(endpoint, body);
  const client = { signal: reply.request.clientSignal };
  const recordAs = { method: request.method, url: request.url.split("?")[0]!, userAgent: request.headers["user-agent"] };
  // A stream that waits for a cold load says so in SSE comments, which OpenAI clients skip.
  const loading = body.stream === true ? new LoadingComments(reply, model) : null;
  let call: EngineCall;
  try {
    call = await openEngineCall(deps, { endpoint, body, backend, signal: client.signal, api: "openai", passErrors: true, recordAs, onLoading: loading?.start });
  } catch (error) {
    if (!loading?.started) throw error;
    // The stream is open: the failure (the load's, most likely) is its one event.
    if (client.signal.aborted || reply.raw.destroyed) reply.raw.end();
    else reply.raw.end(sseEvent(null, errorResponse(error, deps.logError).body));
    return reply;
  } finally {
    loading?.stop();
  }
  if (!loading?.started) reply.hijack();
  // Headers set by the hooks (CORS) go out with the engine's answer.
  await call.pipe(reply.raw, deps.logError, reply.getHeaders());
}
