import { chmod, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { createMetrics } from "./api/metrics.ts";
import { RequestRecorder } from "./api/recorder/request-recorder.ts";
import { LifecycleEvents, observePulls } from "./api/lifecycle/events.ts";
import { createDaemonApp } from "./api/server.ts";
import { EngineRelay } from "./api/engine/relay.ts";
import { listenTls, type TlsListener } from "./api/tls-listener.ts";
import { listenUnix, type UnixListener } from "./api/unix-listener.ts";
import { isLoopbackAddress, type DaemonConfig } from "./config.ts";
import { createModelDistribution, openStore, type ModelDistribution } from "./distribution/index.ts";
import { InvalidRequestError } from "./errors.ts";
import { BackendRegistry, LlamaCppBackend } from "./inference/index.ts";
import { computeMemoryBudget, createScheduler, type ModelResolver, type ResolvedModel, type Scheduler, type SchedulerEvent } from "./scheduling/index.ts";

/** A running daemon. */
export interface Daemon {
  /** `http://host:port` it listens on. */
  url: string;
  /** `https://host:port` of its TLS listener (MODEL_RUNNER_TLS_ENABLED); null without one. */
  tlsUrl: string | null;
  /** Its Unix socket (MODEL_RUNNER_SOCK); null without one. */
  socketPath: string | null;
  scheduler: Scheduler;
  distribution: ModelDistribution;
  log: Logger;
  /**
   * Stops accepting requests, lets in-flight ones finish within `graceMs`,
   * then stops every engine. Resolves when nothing is left running.
   */
  close(graceMs?: number): Promise<void>;
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/**
 * The model store as the scheduler sees it: a reference (any form the store
 * resolves, partial names included) becomes runnable files. Answers are
 * cached per reference while the store's index is unchanged (one sync stat
 * per request instead of reading and searching the index): a pull, tag or
 * rm, by this daemon or another process, changes the index and so empties
 * the cache. Failures are not cached.
 */
export function storeResolver(distribution: ModelDistribution): ModelResolver {
  let version = "";
  const cache = new Map<string, Promise<ResolvedModel>>();
  const resolve = async (ref: string): Promise<ResolvedModel> => {
    const model = await distribution.resolve(ref);
    const ggufPath = model.files.ggufPath;
    if (ggufPath === null) {
      throw new InvalidRequestError(`Model ${ref} has no GGUF file; the llama.cpp backend cannot run it.`, "model");
    }
    const contextSize = (model.config as { context_size?: unknown }).context_size;
    return {
      id: model.id,
      files: {
        name: model.tags[0] ?? model.id,
        ggufPath,
        chatTemplatePath: model.files.chatTemplatePath ?? undefined,
        mmprojPath: model.files.mmprojPath ?? undefined,
      },
      sizeBytes: model.sizeBytes,
      contextSize: typeof contextSize === "number" && contextSize > 0 ? contextSize : undefined,
    };
  };
  return (ref) => {
    const now = distribution.indexVersion();
    if (now !== version) {
      cache.clear();
      version = now;
    }
    let answer = cache.get(ref);
    if (answer === undefined) {
      answer = resolve(ref);
      cache.set(ref, answer);
      // Bounded: references are user input; a flood of distinct misses must not grow the map.
      if (cache.size > 1024) cache.delete(cache.keys().next().value!);
      answer.catch(() => {
        if (cache.get(ref) === answer) cache.delete(ref);
      });
    }
    return answer;
  };
}

/**
 * Builds every dependency from `config` (the only place real ones are made)
 * and starts the daemon. Engines left by a daemon that was SIGKILLed are
 * stopped first.
 */
export async function startDaemon(
  config: DaemonConfig,
  options: { logToStderr?: boolean; logStream?: NodeJS.WritableStream } = {},
): Promise<Daemon> {
  // Models and logs (prompts, engine output) may be private: the home is the owner's only, logs too.
  await mkdir(config.home, { recursive: true, mode: 0o700 });
  await mkdir(config.logDir, { recursive: true, mode: 0o700 });
  await mkdir(config.configDir, { recursive: true, mode: 0o700 });
  const logFile = join(config.logDir, "model-runner.log");
  const fileStream = pino.destination({ dest: logFile, sync: false, mkdir: true, mode: 0o600 });
  await chmod(logFile, 0o600).catch(() => undefined); // a log written before this rule
  // Work still winding down after close() (a backend install that Ctrl-C cut short) may log: such lines are
  // dropped, not written to the ended file stream (which throws, killing the process).
  let isFileClosed = false;
  const fileSink = { write: (line: string) => (isFileClosed ? true : fileStream.write(line)) };
  const streams: pino.StreamEntry[] = [{ level: config.logLevel, stream: fileSink }];
  // The console copy: stderr as JSON lines, or `logStream` (mr serve renders it for people on a terminal).
  if (options.logStream) streams.push({ level: config.logLevel, stream: options.logStream });
  else if (options.logToStderr ?? true) streams.push({ level: config.logLevel, stream: process.stderr });
  // Each line carries one `component` (a child's binding would repeat the key, not replace it).
  const root = pino({ level: config.logLevel, base: null }, pino.multistream(streams));
  const log = root.child({ component: "daemon" });

  const store = await openStore({ root: config.modelsPath });
  const distribution = createModelDistribution({
    store,
    dockerConfigPath: config.dockerConfigPath,
    insecureRegistries: config.insecureRegistries,
    registryMirrors: config.registryMirrors,
    ...(config.dockerUsername ? { dockerUsername: config.dockerUsername } : {}),
    ...(config.dockerPassword ? { dockerPassword: config.dockerPassword } : {}),
    ...(config.hfEndpoint ? { hfEndpoint: config.hfEndpoint } : {}),
    ...(config.hfToken ? { hfToken: config.hfToken } : {}),
  });
  const removed = await distribution.cleanup({ partials: false });
  if (removed.length > 0) log.info({ removed: removed.length }, "removed leftovers of interrupted store writes");

  const backends = new BackendRegistry([
    new LlamaCppBackend({
      llamaServerPath: config.llamaServerPath,
      defaultEngine: config.llamaCppEngine ?? undefined,
      home: config.home,
      logDir: config.logDir,
    }),
  ]);
  const engineLog = root.child({ component: "engine" });
  let metrics: ReturnType<typeof createMetrics> | null = null;
  const events = new LifecycleEvents();
  const scheduler = await createScheduler({
    backends,
    resolveModel: storeResolver(distribution),
    runDir: config.runDir,
    configPath: join(config.configDir, "runners.json"),
    memoryBudgetBytes: computeMemoryBudget({ overrideBytes: config.memoryBytes }),
    maxRunners: config.maxRunners,
    queueLimit: config.queueLimit,
    engineQueuePerSlot: 1,
    defaultKeepAliveMs: config.keepAliveMs,
    log: root.child({ component: "scheduler" }),
    onEvent: (event: SchedulerEvent) => {
      metrics?.schedulerEvent(event);
      events.fromScheduler(event);
    },
    onEngineLog: (labels, line) => engineLog.info({ model: labels.model, backend: labels.backend, mode: labels.mode }, line),
  });
  metrics = createMetrics({ runners: () => scheduler.ps(), queued: () => scheduler.memory().queued });
  const reaped = await scheduler.reapOrphans();
  if (reaped.length > 0) log.warn({ pids: reaped }, "stopped engines left by a previous daemon");
  for (const backend of backends.all()) {
    backend.install(AbortSignal.timeout(120_000)).catch((error: unknown) => log.error({ err: error, backend: backend.name }, "backend is not usable"));
  }

  const relay = new EngineRelay();
  const app = createDaemonApp({
    version: await packageVersion(),
    apiKey: config.apiKey,
    origins: config.origins,
    allowedHosts: isLoopbackAddress(config.host) ? config.allowedHosts : null,
    // The routes' pulls (whichever API asks) are reported on /engines/events.
    distribution: observePulls(distribution, events),
    scheduler,
    backends,
    relay,
    metrics,
    recorder: config.recordRequests ? new RequestRecorder() : null,
    events,
    log,
    logFile,
  });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  log.info({ url, models: config.modelsPath }, "model runner listening");
  let tls: TlsListener | null = null;
  let unix: UnixListener | null = null;
  try {
    if (config.tls) {
      tls = await listenTls(config.tls, config.host, (socket) => app.fastLane.accept(socket));
      log.info({ url: tls.url }, "model runner listening (TLS)");
    }
    if (config.socketPath) {
      unix = await listenUnix(config.socketPath, (socket) => app.fastLane.accept(socket));
      log.info({ socket: unix.path }, "model runner listening (Unix socket)");
    }
  } catch (error) {
    tls?.destroyAll();
    await tls?.close();
    await app.close();
    await scheduler.shutdown(0);
    throw error;
  }

  let closing: Promise<void> | null = null;
  return {
    url,
    tlsUrl: tls?.url ?? null,
    socketPath: unix?.path ?? null,
    scheduler,
    distribution,
    log,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        // Stop taking connections first, then drain requests and engines.
        const closed = Promise.all([app.close(), tls?.close(), unix?.close()]);
        await scheduler.shutdown(graceMs);
        // Connections that were busy when closing began are keep-alive ones by
        // now; they would hold the servers open until their timeout.
        app.server.closeAllConnections();
        app.fastLane.destroyAll();
        tls?.destroyAll();
        unix?.destroyAll();
        await closed;
        relay.close();
        log.info("model runner stopped");
        isFileClosed = true;
        await new Promise<void>((resolve) => {
          fileStream.once("close", () => resolve());
          fileStream.end();
        });
      })();
      return closing;
    },
  };
}
