import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

/**
 * The one place that reads the environment and daemon flags. Everything
 * else receives a frozen `DaemonConfig` (or the values it needs). Precedence:
 * flag > environment > default. Keys are listed in docs/config.md.
 */
export interface DaemonConfig {
  host: string;
  port: number;
  /** MODEL_RUNNER_HOME: the root of everything the daemon keeps. */
  home: string;
  modelsPath: string;
  /** Engine sockets and pid files; mode 0700. */
  runDir: string;
  logDir: string;
  /** Persisted `_configure` settings. */
  configDir: string;
  apiKey: string | null;
  /** Extra CORS origins besides localhost; `*` allows all. */
  origins: readonly string[];
  llamaServerPath: string | null;
  /** Memory budget for runners; null = total RAM less a reserve. */
  memoryBytes: number | null;
  /** Idle time before a runner is unloaded; -1 = never. */
  keepAliveMs: number;
  maxRunners: number;
  queueLimit: number;
  logLevel: "error" | "warn" | "info" | "debug";
  insecureRegistries: readonly string[];
  dockerConfigPath: string;
  dockerUsername: string | null;
  dockerPassword: string | null;
  hfEndpoint: string | null;
  hfToken: string | null;
}

export const DEFAULT_PORT = 12434;
export const DEFAULT_HOST = "127.0.0.1";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** "8GiB", "512MB", "1073741824" → bytes. */
export function parseBytes(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError(`${what} must be a size like 8GiB or 512MB, got "${text}"`);
  return Math.floor(Number(m[1]) * unit);
}

/**
 * Keep-alive durations as Ollama and Docker Model Runner accept them: Go-style
 * "5m", "1h30m", "300ms", plain seconds ("300"), "0" (unload at once) and any
 * negative value ("-1", "-1s": never). Returns milliseconds, -1 for never.
 */
export function parseDuration(text: string | number, what: string): number {
  if (typeof text === "number") {
    if (!Number.isFinite(text)) throw new ConfigError(`${what} must be a finite number of seconds`);
    return text < 0 ? -1 : Math.round(text * 1000);
  }
  const s = text.trim();
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseDuration(Number(s), what);
  if (s.startsWith("-") && /^-(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) return -1;
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const scale: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (let m = part.exec(s); m; m = part.exec(s)) {
    total += Number(m[1]) * scale[m[2]!]!;
    consumed = part.lastIndex;
  }
  if (s === "" || consumed !== s.length) {
    throw new ConfigError(`${what} must be a duration like 5m, 30s, 1h, 0 or -1, got "${text}"`);
  }
  return Math.round(total);
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
  const keepAlive = env.MODEL_RUNNER_KEEP_ALIVE ? parseDuration(env.MODEL_RUNNER_KEEP_ALIVE, "MODEL_RUNNER_KEEP_ALIVE") : 5 * 60_000;
  const dockerConfigDir = env.DOCKER_CONFIG || join(homedir(), ".docker");
  return Object.freeze({
    host,
    port,
    home,
    modelsPath: resolve(values["models-path"] ?? env.MODEL_RUNNER_MODELS_PATH ?? join(home, "models")),
    runDir: join(home, "run"),
    logDir: join(home, "logs"),
    configDir: join(home, "config"),
    apiKey: values["api-key"] ?? (env.MODEL_RUNNER_API_KEY || null),
    origins: Object.freeze(list(env.MODEL_RUNNER_ORIGINS)),
    llamaServerPath: env.MODEL_RUNNER_LLAMA_SERVER || null,
    memoryBytes: env.MODEL_RUNNER_MEMORY ? parseBytes(env.MODEL_RUNNER_MEMORY, "MODEL_RUNNER_MEMORY") : null,
    keepAliveMs: keepAlive,
    maxRunners: env.MODEL_RUNNER_MAX_RUNNERS ? positiveInt(env.MODEL_RUNNER_MAX_RUNNERS, "MODEL_RUNNER_MAX_RUNNERS") : 8,
    queueLimit: env.MODEL_RUNNER_QUEUE_LIMIT ? positiveInt(env.MODEL_RUNNER_QUEUE_LIMIT, "MODEL_RUNNER_QUEUE_LIMIT") : 512,
    logLevel: logLevel as DaemonConfig["logLevel"],
    insecureRegistries: Object.freeze(list(env.MODEL_RUNNER_INSECURE_REGISTRIES)),
    dockerConfigPath: join(dockerConfigDir, "config.json"),
    dockerUsername: env.DOCKER_USERNAME || env.DOCKER_HUB_USER || null,
    dockerPassword: env.DOCKER_PASSWORD || env.DOCKER_HUB_PASSWORD || null,
    hfEndpoint: env.HF_ENDPOINT || null,
    hfToken: env.HF_TOKEN || null,
  });
}
