import { createReadStream } from "node:fs";
import type { Socket } from "node:net";
import { stat } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { ModelDistribution } from "../distribution/index.ts";
import type { BackendRegistry } from "../inference/index.ts";
import type { Scheduler } from "../scheduling/index.ts";
import type { EngineRelay } from "./engine/relay.ts";
import { FastLane } from "./fast-lane.ts";
import { isOriginAllowed } from "./origin-check.ts";
import { hasApiKey } from "./api-key.ts";
import { engineMetrics } from "./engine-metrics.ts";
import { registerEngineRoutes } from "./engine-routes.ts";
import { installRequestSignal } from "./request-signal.ts";
import { dialectOf, sendError, writeClientError } from "./error-reply.ts";
import { BODY_LIMIT_BYTES, ForbiddenOriginError, InvalidApiKeyError, RouteNotFoundError } from "./errors.ts";
import { hostChecker, HostNotAllowedError } from "./host-check.ts";
import type { DaemonMetrics } from "./metrics.ts";
import { isTrue, registerModelRoutes } from "./model-routes.ts";
import { registerAnthropicRoutes } from "./anthropic/index.ts";
import { registerOllamaRoutes } from "./ollama/index.ts";
import { registerOpenAIRoutes } from "./openai-routes.ts";
import { registerResponsesRoutes } from "./responses/index.ts";
import type { RequestRecorder } from "./recorder/request-recorder.ts";
import { registerRecorderRoutes } from "./recorder/routes.ts";
import type { LifecycleEvents } from "./lifecycle/events.ts";
import { registerLifecycleRoutes } from "./lifecycle/routes.ts";
import { acceptJsonBodies, JSON_BODY_TYPES } from "../http/json-body.ts";
import { writeWithBackpressure } from "../http/streaming.ts";

/** Everything the daemon's HTTP surface needs, built by src/main.ts. */
export interface DaemonAppDeps {
  version: string;
  apiKey: string | null;
  /** Extra allowed CORS origins; `*` allows every origin. */
  origins: readonly string[];
  /**
   * Host names (besides localhost, 127.0.0.1 and [::1]) that requests may
   * name in their `Host` header, against DNS rebinding; `*` allows all. Null
   * when the daemon listens beyond loopback, where any Host is accepted.
   */
  allowedHosts: readonly string[] | null;
  distribution: ModelDistribution;
  scheduler: Scheduler;
  backends: BackendRegistry;
  /** The connections to engines (engine/relay.ts), for every inference request and the engines' /metrics. */
  relay: EngineRelay;
  metrics: DaemonMetrics;
  /** Request/response pairs for `GET /engines/requests`; null when MODEL_RUNNER_RECORD_REQUESTS=0. */
  recorder: RequestRecorder | null;
  /** Runner and pull events for `GET /engines/events` (the scheduler and the distribution feed it). */
  events: LifecycleEvents;
  log: Logger;
  /** The combined daemon + engine log file served by `GET /logs`. */
  logFile: string;
}

export { BODY_LIMIT_BYTES } from "./errors.ts";

declare module "fastify" {
  interface FastifyInstance {
    /** The daemon's fast lane (fast-lane.ts): its connections are not Node's server's, so a shutdown ends them itself. */
    fastLane: FastLane;
  }
}

/** Routes reachable without the API key. */
const OPEN_ROUTES = new Set(["/", "/health"]);

/**
 * Builds the daemon's HTTP app. The caller listens and closes it. Errors
 * everywhere, fastify's own included, become the error body of the API the
 * path belongs to (error-reply.ts), with their status.
 */
export function createDaemonApp(deps: DaemonAppDeps): FastifyInstance {
  const logError = (error: unknown) => deps.log.error({ err: error }, "unexpected error");
  const app = Fastify({
    bodyLimit: BODY_LIMIT_BYTES,
    logger: false,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    // A bad percent-encoding or an over-long path parameter, found before routing.
    frameworkErrors: (error, request, reply) => {
      sendError(dialectOf(request.url), error, request, reply, logError).catch(logError);
    },
    // What Node's HTTP parser refuses (a URL or headers over 16 KiB), in the same shapes.
    clientErrorHandler: writeClientError,
  });

  // JSON bodies whatever the Content-Type says (curl defaults to form encoding).
  app.removeContentTypeParser(["application/json", "text/plain"]);
  acceptJsonBodies(app, [...JSON_BODY_TYPES]);

  // The root scope holds the DMR and OpenAI routes; what reaches it unrouted may belong to another API.
  app.setErrorHandler((error, request, reply) => sendError(dialectOf(request.url), error, request, reply, logError));
  app.setNotFoundHandler((request, reply) =>
    sendError(dialectOf(request.url), new RouteNotFoundError(request.method, request.url.split("?")[0]!), request, reply, logError),
  );

  installRequestSignal(app);
  const hostAllowed = deps.allowedHosts === null ? null : hostChecker(deps.allowedHosts);

  // Every connection meets the fast lane first; what it does not serve goes on to Node's HTTP server (fastify).
  const server = app.server;
  const httpListeners = server.listeners("connection") as Array<(socket: Socket) => void>;
  server.removeAllListeners("connection");
  const lane = new FastLane(
    { ...deps, logError, hostAllowed, keepAliveTimeoutMs: server.keepAliveTimeout },
    (socket) => {
      for (const listener of httpListeners) listener.call(server, socket);
    },
  );
  server.on("connection", (socket: Socket) => lane.accept(socket));
  app.decorate("fastLane", lane);
  app.addHook("preClose", (done) => {
    lane.close();
    done();
  });
  // Callback-style hooks: they run on every request, and an async hook costs a promise and a microtask each.
  app.addHook("onRequest", (request, reply, done) => {
    // Against DNS rebinding: a page on evil.example resolved to 127.0.0.1 still sends `Host: evil.example`.
    const host = request.headers.host;
    if (hostAllowed !== null && host !== undefined && !hostAllowed(host)) return done(new HostNotAllowedError(host));
    const origin = request.headers.origin;
    if (origin !== undefined) {
      if (!isOriginAllowed(origin, deps.origins)) return done(new ForbiddenOriginError(origin));
      reply.header("access-control-allow-origin", origin).header("vary", "Origin");
      if (request.method === "OPTIONS") {
        reply
          .code(204)
          .header("access-control-allow-methods", "GET, POST, DELETE, HEAD, OPTIONS")
          .header("access-control-allow-headers", request.headers["access-control-request-headers"] ?? "*")
          .header("access-control-max-age", "600")
          .send();
        return;
      }
    }
    if (deps.apiKey !== null && !OPEN_ROUTES.has(request.url.split("?")[0]!) && !hasKey(request, deps.apiKey)) {
      return done(new InvalidApiKeyError());
    }
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    deps.metrics.request(request.routeOptions.url ?? "unmatched", request.method, reply.statusCode, reply.elapsedTime);
    done();
  });

  app.get("/", async (_req, reply) => reply.type("text/plain").send("Model Runner is running"));
  app.get("/health", async () => ({ status: "ok" }));
  app.get("/version", async () => ({ version: deps.version }));
  // The daemon's own series, then every running engine's, relabelled (as Docker Model Runner's aggregated /metrics).
  app.get("/metrics", async (_req, reply) => {
    const [own, engines] = await Promise.all([deps.metrics.registry.metrics(), engineMetrics(deps.scheduler.ps(), deps.relay)]);
    return reply.type(deps.metrics.registry.contentType).send(own.endsWith("\n") || own === "" ? own + engines : `${own}\n${engines}`);
  });
  app.get("/logs", async (request, reply) => {
    const query = request.query as { follow?: string; "no-engines"?: string };
    await streamLogs(reply, deps.logFile, isTrue(query.follow), isTrue(query["no-engines"]));
  });

  registerModelRoutes(app, {
    distribution: deps.distribution,
    scheduler: deps.scheduler,
    logError,
    // A removed model's runners would keep serving deleted files: stop them.
    onRemoved: async (ids) => {
      // DMR forgets a removed model's records too.
      if (ids === "all") deps.recorder?.clear();
      else for (const id of ids) deps.recorder?.forget(id);
      await deps.scheduler.unload(ids === "all" ? { all: true } : { models: ids }).catch(() => undefined);
    },
  });
  registerEngineRoutes(app, deps);
  registerRecorderRoutes(app, deps);
  registerLifecycleRoutes(app, deps);
  registerOpenAIRoutes(app, { ...deps, logError });
  // The compat dialects: each in its own scope with its own error shape, all on runInference.
  registerOllamaRoutes(app, { ...deps, logError });
  registerAnthropicRoutes(app, { ...deps, logError });
  registerResponsesRoutes(app, { ...deps, logError });
  return app;
}

function hasKey(request: FastifyRequest, key: string): boolean {
  return hasApiKey(request.headers.authorization, request.headers["x-api-key"], key);
}

/** Sends the log file, then (with `follow`) what is appended until the client leaves. */
async function streamLogs(reply: import("fastify").FastifyReply, file: string, follow: boolean, noEngines: boolean): Promise<void> {
  const client = { signal: reply.request.clientSignal };
  reply.hijack();
  reply.raw.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache" });
  let offset = 0;
  let partial = "";
  try {
    for (;;) {
      const size = await stat(file).then((s) => s.size, () => 0);
      if (size < offset) offset = 0; // rotated or truncated
      if (size > offset) {
        for await (const chunk of createReadStream(file, { start: offset, end: size - 1 })) {
          const text = partial + (chunk as Buffer).toString("utf8");
          const lines = text.split("\n");
          partial = lines.pop()!;
          const kept = noEngines ? lines.filter((l) => !l.includes('"component":"engine"')) : lines;
          if (kept.length > 0) await writeWithBackpressure(reply.raw, `${kept.join("\n")}\n`);
        }
        offset = size;
      }
      if (!follow) break;
      await delay(250, undefined, { signal: client.signal });
    }
  } catch {
    // The client left while following.
  } finally {
    reply.raw.end();
  }
}
