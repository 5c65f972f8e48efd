import type { FastifyInstance } from "fastify";
import type { ModelDistribution } from "../distribution/index.ts";
import type { BackendRegistry } from "../inference/index.ts";
import { parseConfigureBody, parseUnloadBody, type RunnerConfig, type RunnerStatus, type Scheduler } from "../scheduling/index.ts";

export interface EngineRouteDeps {
  scheduler: Scheduler;
  backends: BackendRegistry;
  distribution: ModelDistribution;
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
  };
}

/** The scheduler's management routes under `/engines`. */
export function registerEngineRoutes(app: FastifyInstance, deps: EngineRouteDeps): void {
  const { scheduler, backends } = deps;

  app.get("/engines/status", async () => Object.fromEntries(backends.all().map((b) => [b.name, b.status()])));

  app.get("/engines/ps", async () => scheduler.ps().map(runnerJson));

  app.get("/engines/df", async () => {
    const { modelsBytes } = await deps.distribution.diskUsage();
    // The built-in engine ships inside this package: it takes no separate disk space.
    return { models_disk_usage: modelsBytes, default_backend_disk_usage: 0 };
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
