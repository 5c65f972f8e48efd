import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseByteSize, parseDuration } from "./units.ts";

/**
 * The one place that reads the environment and daemon flags. Everything
 * else receives a frozen `DaemonConfig` (or the values it needs). Precedence:
 * flag > environment > default. Keys are listed in docs/config.md.
 */
/** One place names the daemon's pid file (outside run/, whose *.pid files are engines'). */
const daemonPidFile = (home: string) => join(home, "daemon.pid");

export interface DaemonConfig {
  host: string;
  port: number;
  /** MODEL_RUNNER_HOME: the root of everything the daemon keeps. */
  home: string;
  modelsPath: string;
  /** Engine sockets and pid files; mode 0700. */
  runDir: string;
  logDir: string;
  /** The daemon's pid file (JSON {pid, url, started_at, log_file}), written by `mr serve`. */
  pidFile: string;
  /** Persisted `_configure` settings. */
  configDir: string;
  apiKey: string | null;
  /** Extra CORS origins besides localhost; `*` allows all. */
  origins: readonly string[];
  /** MODEL_RUNNER_ALLOWED_HOSTS: `Host` names answered besides loopback ones while listening on loopback; `*` allows all. */
  allowedHosts: readonly string[];
  /** MODEL_RUNNER_LLAMA_SERVER: the llama-server binary the `llama.cpp` backend runs (wins over one installed under the home). */
  llamaServerPath: string | null;
  /** MODEL_RUNNER_LLAMA_CPP_ENGINE: the engine for models not configured otherwise; null = llama-server when MODEL_RUNNER_LLAMA_SERVER is set, else built-in. */
  llamaCppEngine: "built-in" | "llama-server" | null;
  /** Memory budget for runners; null = total RAM less a reserve. */
  memoryBytes: number | null;
  /** Idle time before a runner is unloaded; Infinity = never. */
  keepAliveMs: number;
  maxRunners: number;
  queueLimit: number;
  logLevel: "error" | "warn" | "info" | "debug";
  insecureRegistries: readonly string[];
  /** MODEL_RUNNER_REGISTRY_MIRRORS: docker.io mirrors tried before registry-1.docker.io. */
  registryMirrors: readonly string[];
  dockerConfigPath: string;
  dockerUsername: string | null;
  dockerPassword: string | null;
  hfEndpoint: string | null;
  hfToken: string | null;
  /** MODEL_RUNNER_RECORD_REQUESTS: keep the last request/response pairs per model for `GET /engines/requests` (default on; `0` turns it off). */
  recordRequests: boolean;
  /** DMR's TLS listener (MODEL_RUNNER_TLS_*), beside the plain one; null when off. */
  tls: DaemonTlsListener | null;
  /** MODEL_RUNNER_SOCK: a Unix socket listener beside the TCP one (mode 0600); null when unset. */
  socketPath: string | null;
}

/** A TLS listener on `port` (same host as the plain one), with the certificate and key read from these files at start. */
export interface DaemonTlsListener {
  port: number;
  certPath: string;
  keyPath: string;
}

export const DEFAULT_PORT = 12434;
/** DMR's TLS port (MODEL_RUNNER_TLS_PORT's default). */
export const DEFAULT_TLS_PORT = 12444;
export const DEFAULT_HOST = "127.0.0.1";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Runs a parser from another module, reporting its failure as a ConfigError naming `what`. */
function checked<T>(what: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new ConfigError(`${what}: ${(error as Error).message}`);
  }
}

function positiveInt(text: string, what: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) throw new ConfigError(`${what} must be a positive integer, got "${text}"`);
  return Number(text);
}

const list = (text: string | undefined) => (text ?? "").split(",").map((s) => s.trim()).filter(Boolean);

/**
 * Splits "host:port", "http://host:port" or ":port" (MODEL_RUNNER_HOST's
 * forms) into a listen address.
 */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const stripped = text.trim().replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const m = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(stripped);
  if (!m) throw new ConfigError(`${what} must look like 127.0.0.1:12434, got "${text}"`);
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "") || DEFAULT_HOST;
  const port = m[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (port > 65535) throw new ConfigError(`${what} has an invalid port in "${text}"`);
  return { host, port };
}

/** Whether a listen address is loopback only (`127.0.0.0/8`, `::1`, `localhost`): the daemon then checks `Host` against DNS rebinding. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** A mirror is `host[:port]` or an http(s) URL without a path; anything else names the variable. */
function mirrorEntry(text: string): string {
  const host = text.replace(/^https?:\/\//i, "").replace(/\/+$/, "");
  if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:]+\](?::\d{1,5})?$/.test(host)) {
    throw new ConfigError(`MODEL_RUNNER_REGISTRY_MIRRORS: "${text}" is not a host[:port] or http(s)://host[:port]`);
  }
  return text.replace(/\/+$/, "");
}

/** A switch variable: unset is `fallback`; 1/true/yes/on and 0/false/no/off; anything else names the variable. */
function onOff(text: string | undefined, what: string, fallback: boolean): boolean {
  const value = text?.trim().toLowerCase() ?? "";
  if (value === "") return fallback;
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new ConfigError(`${what} must be 0 or 1 (also true/false, yes/no, on/off), got "${text}"`);
}

function llamaCppEngine(text: string | undefined): DaemonConfig["llamaCppEngine"] {
  if (!text) return null;
  if (text === "built-in" || text === "llama-server") return text;
  throw new ConfigError(`MODEL_RUNNER_LLAMA_CPP_ENGINE must be built-in or llama-server, got "${text}"`);
}

/** The daemon's configuration from `mr serve` flags and the environment. */
export function loadDaemonConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DaemonConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "models-path": { type: "string" },
      "api-key": { type: "string" },
      "log-level": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const fromEnv = env.MODEL_RUNNER_HOST ? parseHostPort(env.MODEL_RUNNER_HOST, "MODEL_RUNNER_HOST") : null;
  const host = values.host ?? fromEnv?.host ?? DEFAULT_HOST;
  const port = values.port !== undefined ? Number(values.port) : (fromEnv?.port ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port must be 0-65535, got "${values.port}"`);
  const home = resolve(env.MODEL_RUNNER_HOME || join(homedir(), ".model-runner"));
  const logLevel = (values["log-level"] ?? env.MODEL_RUNNER_LOG_LEVEL ?? "info").toLowerCase();
  if (!["error", "warn", "info", "debug"].includes(logLevel)) {
    throw new ConfigError(`log level must be error, warn, info or debug, got "${logLevel}"`);
  }
  const keepAliveText = env.MODEL_RUNNER_KEEP_ALIVE;
  const keepAlive = keepAliveText ? checked("MODEL_RUNNER_KEEP_ALIVE", () => parseDuration(keepAliveText, "MODEL_RUNNER_KEEP_ALIVE")) : 5 * 60_000;
  const memoryText = env.MODEL_RUNNER_MEMORY;
  const dockerConfigDir = env.DOCKER_CONFIG || join(homedir(), ".docker");
  return Object.freeze({
    host,
    port,
    home,
    modelsPath: resolve(values["models-path"] ?? env.MODEL_RUNNER_MODELS_PATH ?? join(home, "models")),
    runDir: join(home, "run"),
    logDir: join(home, "logs"),
    pidFile: daemonPidFile(home),
    configDir: join(home, "config"),
    apiKey: values["api-key"] ?? (env.MODEL_RUNNER_API_KEY || null),
    origins: Object.freeze(list(env.MODEL_RUNNER_ORIGINS)),
    allowedHosts: Object.freeze(list(env.MODEL_RUNNER_ALLOWED_HOSTS).map((h) => h.toLowerCase())),
    llamaServerPath: env.MODEL_RUNNER_LLAMA_SERVER || null,
    llamaCppEngine: llamaCppEngine(env.MODEL_RUNNER_LLAMA_CPP_ENGINE),
    memoryBytes: memoryText ? checked("MODEL_RUNNER_MEMORY", () => parseByteSize(memoryText, "MODEL_RUNNER_MEMORY")) : null,
    keepAliveMs: keepAlive,
    maxRunners: env.MODEL_RUNNER_MAX_RUNNERS ? positiveInt(env.MODEL_RUNNER_MAX_RUNNERS, "MODEL_RUNNER_MAX_RUNNERS") : 8,
    queueLimit: env.MODEL_RUNNER_QUEUE_LIMIT ? positiveInt(env.MODEL_RUNNER_QUEUE_LIMIT, "MODEL_RUNNER_QUEUE_LIMIT") : 512,
    logLevel: logLevel as DaemonConfig["logLevel"],
    insecureRegistries: Object.freeze(list(env.MODEL_RUNNER_INSECURE_REGISTRIES)),
    registryMirrors: Object.freeze(list(env.MODEL_RUNNER_REGISTRY_MIRRORS).map((m) => mirrorEntry(m))),
    dockerConfigPath: join(dockerConfigDir, "config.json"),
    dockerUsername: env.DOCKER_USERNAME || env.DOCKER_HUB_USER || null,
    dockerPassword: env.DOCKER_PASSWORD || env.DOCKER_HUB_PASSWORD || null,
    hfEndpoint: env.HF_ENDPOINT || null,
    hfToken: env.HF_TOKEN || null,
    recordRequests: onOff(env.MODEL_RUNNER_RECORD_REQUESTS, "MODEL_RUNNER_RECORD_REQUESTS", true),
    tls: tlsListener(env),
    socketPath: env.MODEL_RUNNER_SOCK ? resolve(env.MODEL_RUNNER_SOCK) : null,
  });
}

/**
 * DMR's TLS settings: MODEL_RUNNER_TLS_ENABLED turns a second listener on, at
 * MODEL_RUNNER_TLS_PORT (default 12444), with MODEL_RUNNER_TLS_CERT and
 * MODEL_RUNNER_TLS_KEY. DMR makes itself a certificate when none is given
 * (MODEL_RUNNER_TLS_AUTO_CERT, which with both files given has no effect
 * there either); this daemon does not, and says which variables to set
 * rather than start without the listener asked for.
 */
function tlsListener(env: NodeJS.ProcessEnv): DaemonTlsListener | null {
  const given = ["MODEL_RUNNER_TLS_PORT", "MODEL_RUNNER_TLS_CERT", "MODEL_RUNNER_TLS_KEY", "MODEL_RUNNER_TLS_AUTO_CERT"].filter((k) => env[k]);
  if (!onOff(env.MODEL_RUNNER_TLS_ENABLED, "MODEL_RUNNER_TLS_ENABLED", false)) {
    if (given.length > 0) throw new ConfigError(`${given.join(", ")} ${given.length > 1 ? "are" : "is"} set but MODEL_RUNNER_TLS_ENABLED is not: set it to true for the TLS listener`);
    return null;
  }
  const certPath = env.MODEL_RUNNER_TLS_CERT;
  const keyPath = env.MODEL_RUNNER_TLS_KEY;
  if (!certPath || !keyPath) {
    throw new ConfigError("MODEL_RUNNER_TLS_ENABLED needs MODEL_RUNNER_TLS_CERT and MODEL_RUNNER_TLS_KEY (PEM files): this daemon makes no certificate of its own");
  }
  const port = env.MODEL_RUNNER_TLS_PORT ? Number(env.MODEL_RUNNER_TLS_PORT) : DEFAULT_TLS_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`MODEL_RUNNER_TLS_PORT must be 0-65535, got "${env.MODEL_RUNNER_TLS_PORT}"`);
  return Object.freeze({ port, certPath: resolve(certPath), keyPath: resolve(keyPath) });
}

/** How the CLI checks a daemon's TLS certificate. */
export interface DaemonTls {
  /** PEM text of the CA that signed the daemon's certificate; null: the system's CAs. */
  ca: string | null;
  /** Accept any certificate (--tls-skip-verify). */
  skipVerify: boolean;
}

/**
 * What the `mr` client commands need: where the daemon is, where to keep
 * history and logs, and the search endpoints. Read once in src/cli/main.ts
 * and passed down; nothing under src/cli reads `process.env`.
 */
export interface CliConfig {
  /** `http://host:port` of the daemon, no trailing slash. */
  baseUrl: string;
  /**
   * Where a daemon address other than the default came from, for messages:
   * "MODEL_RUNNER_HOST", or `context "lab"` (mr context use). Set: never
   * auto-start a daemon, fail naming the address. Null: the default address.
   */
  hostSource: string | null;
  /** TLS settings of the address (a context's --tls-ca-cert / --tls-skip-verify); null: the platform's defaults. */
  tls: DaemonTls | null;
  home: string;
  logDir: string;
  /** The pid file of the daemon `mr` started for this home (`mr stop-runner`, `mr status`). */
  pidFile: string;
  /** Interactive chat history; null with MODEL_RUNNER_NOHISTORY. */
  historyPath: string | null;
  /** Sent as `Authorization: Bearer` to the daemon (MODEL_RUNNER_API_KEY). */
  apiKey: string | null;
  /** NO_COLOR set (any value): never colour. */
  isColorDisabled: boolean;
  /** Docker Hub API root for `mr search` (MODEL_RUNNER_HUB_URL). */
  hubUrl: string;
  /** Hugging Face root for `mr search` (HF_ENDPOINT). */
  hfEndpoint: string;
  hfToken: string | null;
  /** For `mr package --push`, which pushes from a local temp store. */
  dockerConfigPath: string;
  dockerUsername: string | null;
  dockerPassword: string | null;
  insecureRegistries: readonly string[];
  /** The environment an app started by `mr launch` inherits (its PATH finds the app). */
  appEnv: Readonly<Record<string, string | undefined>>;
}

/** The client configuration from the environment. Throws ConfigError naming a bad variable. */
export function loadCliConfig(env: NodeJS.ProcessEnv): CliConfig {
  const hostText = env.MODEL_RUNNER_HOST?.trim() || "";
  let baseUrl = `http://${DEFAULT_HOST}:${DEFAULT_PORT}`;
  if (hostText) {
    const scheme = /^https:\/\//i.test(hostText) ? "https" : "http";
    const { host, port } = parseHostPort(hostText, "MODEL_RUNNER_HOST");
    baseUrl = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }
  const home = resolve(env.MODEL_RUNNER_HOME || join(homedir(), ".model-runner"));
  const dockerConfigDir = env.DOCKER_CONFIG || join(homedir(), ".docker");
  const url = (text: string | undefined, fallback: string, what: string) => {
    const value = (text?.trim() || fallback).replace(/\/+$/, "");
    if (!/^https?:\/\/[^/]+/.test(value)) throw new ConfigError(`${what} must be an http(s) URL, got "${text}"`);
    return value;
  };
  return Object.freeze({
    baseUrl,
    hostSource: hostText !== "" ? "MODEL_RUNNER_HOST" : null,
    tls: null,
    home,
    logDir: join(home, "logs"),
    pidFile: daemonPidFile(home),
    historyPath: env.MODEL_RUNNER_NOHISTORY ? null : join(home, "history"),
    apiKey: env.MODEL_RUNNER_API_KEY || null,
    isColorDisabled: env.NO_COLOR !== undefined,
    hubUrl: url(env.MODEL_RUNNER_HUB_URL, "https://hub.docker.com", "MODEL_RUNNER_HUB_URL"),
    hfEndpoint: url(env.HF_ENDPOINT, "https://huggingface.co", "HF_ENDPOINT"),
    hfToken: env.HF_TOKEN || null,
    dockerConfigPath: join(dockerConfigDir, "config.json"),
    dockerUsername: env.DOCKER_USERNAME || env.DOCKER_HUB_USER || null,
    dockerPassword: env.DOCKER_PASSWORD || env.DOCKER_HUB_PASSWORD || null,
    insecureRegistries: Object.freeze(list(env.MODEL_RUNNER_INSECURE_REGISTRIES)),
    appEnv: Object.freeze({ ...env }),
  });
}

/**
 * Set by the daemon on every engine it spawns, with the engine's stdin a
 * pipe the daemon holds open: the engine exits when it reads EOF there, which
 * happens as soon as the daemon is gone, however it died (SIGKILL included).
 * Unset (an engine started by hand), stdin is left alone.
 */
export const ENGINE_PARENT_PIPE_ENV = "MODEL_RUNNER_ENGINE_PARENT_PIPE";

/** Whether this engine process must exit when its stdin closes (see ENGINE_PARENT_PIPE_ENV). */
export function engineWatchesParentPipe(env: NodeJS.ProcessEnv): boolean {
  return env[ENGINE_PARENT_PIPE_ENV] === "stdin";
}
