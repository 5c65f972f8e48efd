import { availableParallelism } from "node:os";

/**
 * The engine's command line. Flag names are llama.cpp's `llama-server` ones,
 * so that the `llama.cpp` backend can drive either this engine or a real
 * `llama-server` binary with one argument list. Unknown flags are refused:
 * silently ignoring a flag is how context sizes get lost.
 */
export interface EngineOptions {
  modelPath: string;
  /** Where to listen: a Unix socket path or a TCP address. */
  listen: { kind: "socket"; path: string } | { kind: "tcp"; host: string; port: number };
  /** Total context across all parallel slots; 0 = the model's trained length. */
  contextSize: number;
  parallel: number;
  embeddings: boolean;
  alias: string | null;
  threads: number;
  /** GPU layers: a count, or "auto"/"all" as llama-server accepts. */
  gpuLayers: number | "auto" | "all";
  batchSize: number | null;
  chatTemplateFile: string | null;
  apiKey: string | null;
  /** Serve `/rerank` and `/score` on a ranking context (`--reranking`, or `--embeddings --pooling rank`). */
  reranking: boolean;
  /** Tokens a thought may use before it is closed: -1 unlimited, 0 thinking off. */
  reasoningBudget: number;
  /** "none" leaves thoughts in `content`; "deepseek"/"auto" return them as `reasoning_content`. */
  reasoningFormat: "none" | "deepseek" | "auto";
  /** Serve Prometheus metrics on `/metrics` (`--metrics`; off by default, as in llama-server). */
  metrics: boolean;
  /** Serve `/slots` (`--slots`/`--no-slots`; on by default, as in llama-server). */
  slots: boolean;
}

export class EngineUsageError extends Error {
  override readonly name = "EngineUsageError";
}

type FlagSpec =
  | { key: keyof EngineOptions | "host" | "port"; kind: "string" | "int" | "gpuLayers" }
  | { key: "embeddings" | "jinja" | "reranking" | "metrics" | "slots"; kind: "bool"; value?: boolean }
  | { key: "pooling" | "reasoningFormat"; kind: "string" };

const FLAGS: Record<string, FlagSpec> = {
  "-m": { key: "modelPath", kind: "string" },
  "--model": { key: "modelPath", kind: "string" },
  "--host": { key: "host", kind: "string" },
  "--port": { key: "port", kind: "int" },
  "-c": { key: "contextSize", kind: "int" },
  "--ctx-size": { key: "contextSize", kind: "int" },
  "-np": { key: "parallel", kind: "int" },
  "--parallel": { key: "parallel", kind: "int" },
  "--embedding": { key: "embeddings", kind: "bool" },
  "--embeddings": { key: "embeddings", kind: "bool" },
  "-a": { key: "alias", kind: "string" },
  "--alias": { key: "alias", kind: "string" },
  "-t": { key: "threads", kind: "int" },
  "--threads": { key: "threads", kind: "int" },
  "-ngl": { key: "gpuLayers", kind: "gpuLayers" },
  "--gpu-layers": { key: "gpuLayers", kind: "gpuLayers" },
  "--n-gpu-layers": { key: "gpuLayers", kind: "gpuLayers" },
  "-b": { key: "batchSize", kind: "int" },
  "--batch-size": { key: "batchSize", kind: "int" },
  "--chat-template-file": { key: "chatTemplateFile", kind: "string" },
  "--api-key": { key: "apiKey", kind: "string" },
  "--reranking": { key: "reranking", kind: "bool" },
  "--rerank": { key: "reranking", kind: "bool" },
  "--pooling": { key: "pooling", kind: "string" },
  "--reasoning-budget": { key: "reasoningBudget", kind: "int" },
  "--reasoning-format": { key: "reasoningFormat", kind: "string" },
  // The model's own Jinja template is always used, so --jinja changes nothing.
  "--jinja": { key: "jinja", kind: "bool" },
  "--metrics": { key: "metrics", kind: "bool" },
  "--slots": { key: "slots", kind: "bool" },
  "--no-slots": { key: "slots", kind: "bool", value: false },
};

/**
 * CPU threads that use the machine without oversubscribing it. ggml's worker
 * threads spin-wait: with as many threads as cores, the event loop and the
 * workers fight for the cores and decoding runs 10-50x slower (measured on a
 * 2-core machine: 1 thread ~2,500 tokens/s, 2 threads ~60 on a tiny model).
 * So one core is always left for everything else.
 */
export function defaultThreads(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

export const DEFAULT_CONTEXT_SIZE = 4096;

function closest(flag: string): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of Object.keys(FLAGS)) {
    const d = editDistance(flag, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= 3 ? best : null;
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** Parses llama-server-style arguments; throws EngineUsageError naming the bad flag. */
export function parseEngineArgs(argv: readonly string[]): EngineOptions {
  const values: Record<string, string | number | boolean> = {};
  const flagOf: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const spec = FLAGS[flag];
    if (!spec) {
      const hint = closest(flag);
      throw new EngineUsageError(`unknown argument: ${flag}${hint ? ` (did you mean ${hint}?)` : ""}`);
    }
    flagOf[spec.key] = flag;
    if (spec.kind === "bool") {
      values[spec.key] = spec.value ?? true;
      continue;
    }
    const value = eq > 0 ? raw.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new EngineUsageError(`${flag} needs a value`);
    if (spec.kind === "int" || (spec.kind === "gpuLayers" && value !== "auto" && value !== "all")) {
      if (!/^-?\d+$/.test(value)) throw new EngineUsageError(`${flag} needs an integer, got "${value}"`);
      values[spec.key] = Number(value);
    } else {
      values[spec.key] = value;
    }
  }
  const modelPath = values.modelPath;
  if (typeof modelPath !== "string" || modelPath === "") throw new EngineUsageError("-m/--model is required");
  const host = typeof values.host === "string" ? values.host : "127.0.0.1";
  const port = typeof values.port === "number" ? values.port : 8080;
  if (port < 0 || port > 65535) throw new EngineUsageError(`--port must be 0-65535, got ${port}`);
  const int = (key: string, fallback: number, min: number): number => {
    const v = values[key];
    if (v === undefined) return fallback;
    if (typeof v !== "number" || v < min) throw new EngineUsageError(`${flagOf[key]} must be at least ${min}, got ${v}`);
    return v;
  };
  const gpuLayers = values.gpuLayers;
  const pooling = values.pooling;
  const POOLINGS = ["none", "mean", "cls", "last", "rank"];
  if (pooling !== undefined && !POOLINGS.includes(String(pooling))) {
    throw new EngineUsageError(`--pooling must be one of ${POOLINGS.join(", ")}, got "${String(pooling)}"`);
  }
  const reranking = values.reranking === true || pooling === "rank";
  const reasoningFormat = values.reasoningFormat ?? "auto";
  if (reasoningFormat !== "none" && reasoningFormat !== "deepseek" && reasoningFormat !== "auto") {
    throw new EngineUsageError(`--reasoning-format must be none, deepseek or auto, got "${String(reasoningFormat)}"`);
  }
  return {
    modelPath,
    listen: host.endsWith(".sock") ? { kind: "socket", path: host } : { kind: "tcp", host, port },
    contextSize: int("contextSize", DEFAULT_CONTEXT_SIZE, 0),
    parallel: int("parallel", 1, 1),
    embeddings: values.embeddings === true || reranking,
    reranking,
    reasoningBudget: int("reasoningBudget", -1, -1),
    reasoningFormat,
    alias: typeof values.alias === "string" ? values.alias : null,
    threads: values.threads === undefined || values.threads === -1 ? defaultThreads() : int("threads", 1, 1),
    gpuLayers: typeof gpuLayers === "number" || gpuLayers === "auto" || gpuLayers === "all" ? gpuLayers : "auto",
    batchSize: values.batchSize === undefined ? null : int("batchSize", 512, 1),
    chatTemplateFile: typeof values.chatTemplateFile === "string" ? values.chatTemplateFile : null,
    apiKey: typeof values.apiKey === "string" ? values.apiKey : null,
    metrics: values.metrics === true,
    slots: values.slots !== false,
  };
}
