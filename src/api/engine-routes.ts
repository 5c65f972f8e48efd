import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ModelDistribution } from "../distribution/index.ts";
import { InvalidRequestError } from "../errors.ts";
import type { Backend, BackendRegistry } from "../inference/index.ts";
import { streamProgressLines } from "./progress-stream.ts";
import { parseConfigureBody, parseUnloadBody, type FailedLoadStatus, type RunnerConfig, type RunnerStatus, type Scheduler } from "../scheduling/index.ts";

export interface EngineRouteDeps {
  scheduler: Scheduler;
  backends: BackendRegistry;
  distribution: ModelDistribution;
  /** The HTTP client backends download with (`POST /engines/install-backend`). Default: global fetch. */
  fetch?: typeof fetch | undefined;
}

/** DMR's install/uninstall body, plus our `engine`. Unknown fields are a 400, as everywhere. */
function parseInstallBody(body: unknown): { backend: string | undefined; engine: string | undefined; gpu: string | undefined } {
  if (body === undefined || body === null) return { backend: undefined, engine: undefined, gpu: undefined };
  if (typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError("The body must be a JSON object.", null);
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (key === "version") {
      // DMR picks a llama-server image version; we run the llama.cpp release node-llama-cpp bundles.
      throw new InvalidRequestError('"version" cannot be chosen: the llama.cpp backend installs the release bundled with this model runner.', "version");
    }
    if (key !== "backend" && key !== "engine" && key !== "gpu") throw new InvalidRequestError(`Unknown field "${key}": use "backend", "engine" and "gpu".`, key);
  }
  for (const key of ["backend", "engine", "gpu"] as const) {
    if (fields[key] !== undefined && (typeof fields[key] !== "string" || fields[key] === "")) {
      throw new InvalidRequestError(`"${key}" must be a non-empty string.`, key);
    }
  }
  return { backend: fields.backend as string | undefined, engine: fields.engine as string | undefined, gpu: fields.gpu as string | undefined };
}

/**
 * Runs an install, streaming `{type:"progress"|"success"|"error", message}`
 * NDJSON lines when the client accepts `application/x-ndjson` (a build
 * takes minutes), else answering once with JSON. An error before the first
 * line is a plain error response with its status.
 */
async function install(
  request: FastifyRequest,
  reply: FastifyReply,
  backend: Backend,
  { engine, gpu }: { engine: string | undefined; gpu: string | undefined },
  fetchFn: typeof fetch,
) {
  const engineName = backend.engineFor?.({ engine }) ?? null;
  const done = { type: "success", backend: backend.name, engine: engineName, message: `${backend.name}${engineName ? ` (${engineName})` : ""} is installed` };
  if (!String(request.headers.accept ?? "").includes("application/x-ndjson")) {
    await backend.install(request.clientSignal, { engine, gpu, acquire: true, fetch: fetchFn });
    return reply.send({ ...done, status: backend.status() });
  }
  await streamProgressLines(
    reply,
    { contentType: "application/x-ndjson", encode: (line) => `${JSON.stringify(line)}\n`, logError: () => undefined },
    async (send, signal) => {
      await backend.install(signal, { engine, gpu, acquire: true, fetch: fetchFn, onProgress: (message) => send({ type: "progress", message }) });
      return { ...done, status: backend.status() };
    },
  );
  return reply;
}

/** A runner in `/engines/ps` form: DMR's field names plus what users asked for (memory, expiry, context). */
export function runnerJson(r: RunnerStatus) {
  return {
    backend_name: r.backend,
    model_name: r.model,
    model_id: r.modelId,
    mode: r.mode,
    state: r.state,
    loading: r.state === "loading",
    in_use: r.inFlight > 0,
    in_flight: r.inFlight,
    waiting: r.waiting,
    last_used: r.lastUsedAt ? Math.floor(r.lastUsedAt.getTime() / 1000) : null,
    keep_alive: r.keepAlive,
    expires_at: r.expiresAt ? r.expiresAt.toISOString() : null,
    memory_bytes: r.estimatedMemoryBytes,
    context_size: r.contextSize,
    parallel: r.parallel,
    pid: r.pid,
    engine: r.engine,
  };
}

/**
 * A model in its failed-load back-off, in `/engines/ps` form: state "failed",
 * `error` the cause requests get, `retry_at` when the next request loads again.
 */
export function failedLoadJson(f: FailedLoadStatus) {
  return {
    backend_name: f.backend,
    model_name: f.model,
    model_id: f.modelId,
    mode: f.mode,
    state: "failed" as const,
    loading: false,
    in_use: false,
    in_flight: 0,
    waiting: 0,
    last_used: null,
    keep_alive: null,
    expires_at: null,
    memory_bytes: f.estimatedMemoryBytes,
    context_size: f.contextSize,
    parallel: f.parallel,
    pid: null,
    error: f.error,
    error_code: f.code,
    failed_at: f.failedAt.toISOString(),
    retry_at: f.retryAt.toISOString(),
  };
}

/** A stored configuration in `GET /engines/_configure` form. */
export function configJson(c: RunnerConfig) {
  return {
    backend: c.backend,
    model: c.model,
    model_id: c.modelId,
    mode: c.mode,
    context_size: c.contextSize ?? null,
    parallel: c.parallel ?? null,
    runtime_flags: c.runtimeFlags,
    keep_alive: c.keepAlive ?? null,
    engine: c.engine ?? null,
    // Ours: the model's request defaults (system prompt, Ollama-named parameters, few-shot messages).
    preset: c.preset ?? null,
    // DMR's SpeculativeDecodingConfig field names; 0 = the engine's default, as `_configure` takes it.
    speculative: c.speculative
      ? { draft_model: c.speculative.draftModel, num_tokens: c.speculative.numTokens ?? 0, min_acceptance_rate: c.speculative.minAcceptanceRate ?? 0 }
      : null,
  };
}

/** The scheduler's management routes under `/engines`. */
export function registerEngineRoutes(app: FastifyInstance, deps: EngineRouteDeps): void {
  const { scheduler, backends } = deps;

  app.get("/engines/status", async () => Object.fromEntries(backends.all().map((b) => [b.name, b.status()])));

  app.get("/engines/ps", async () => [...scheduler.ps().map(runnerJson), ...scheduler.failedLoads().map(failedLoadJson)]);

  // DMR's routes (`docker model install-runner` / `uninstall-runner --backend`).
  app.post("/engines/install-backend", async (request, reply) => {
    const body = parseInstallBody(request.body);
    return install(request, reply, backends.get(body.backend), body, deps.fetch ?? fetch);
  });
  app.post("/engines/uninstall-backend", async (request) => {
    const body = parseInstallBody(request.body);
    const backend = backends.get(body.backend);
    if (body.engine !== undefined) backend.engineFor?.({ engine: body.engine }); // an unknown engine is a 400
    const engine = body.engine ?? null;
    const removed = backend.uninstall ? await backend.uninstall(body.engine) : false;
    return { backend: backend.name, engine, removed, status: backend.status() };
  });

  app.get("/engines/df", async () => {
    const { modelsBytes, partialBytes } = await deps.distribution.diskUsage();
    // The built-in engine ships inside this package: it takes no separate disk space.
    // Partial downloads (interrupted pulls, kept to resume) are ours: DMR has no such field.
    return { models_disk_usage: modelsBytes, default_backend_disk_usage: 0, partial_downloads_disk_usage: partialBytes };
  });

  app.post("/engines/unload", async (request) => {
    const result = await scheduler.unload(await parseUnloadBody(request.body));
    return { unloaded_runners: result.unloaded, deferred_runners: result.deferred };
  });

  const configure = async (backend: string | undefined, body: unknown) => {
    if (backend !== undefined) backends.get(backend);
    const result = await scheduler.configure(await parseConfigureBody(body, backend));
    return { ...configJson(result.config), restarted: result.restarted };
  };
  app.post("/engines/_configure", async (request, reply) => reply.code(202).send(await configure(undefined, request.body)));
  app.post("/engines/:backend/_configure", async (request, reply) =>
    reply.code(202).send(await configure((request.params as { backend: string }).backend, request.body)),
  );
  app.get("/engines/_configure", async (request) => {
    const model = (request.query as { model?: string }).model;
    return scheduler.getConfigs(model || undefined).map(configJson);
  });
}
