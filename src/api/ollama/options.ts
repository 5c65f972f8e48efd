import { InvalidRequestError } from "../../errors.ts";
import { firstUnknownField } from "../../http/fields.ts";
import { parseDuration, PRESET_PARAMETERS } from "../../scheduling/index.ts";

/** Ollama `options` → OpenAI/llama-server request fields; `num_ctx` and the runner options are returned apart (they configure the runner). */
export interface MappedOptions {
  fields: Record<string, unknown>;
  numCtx: number | null;
  /** Runner options given (RUNNER_OPTIONS' names) and their values. */
  runner: Partial<Record<RunnerOption, number | boolean>>;
}

/**
 * Ollama's runner options: they set how the model's engine runs (Ollama
 * reloads the model for a change), so they become the model's runtime
 * flags (every spelling of the flag each sets is listed, to replace it).
 * A value that means Ollama's default (`num_thread` 0, `num_gpu` -1,
 * `use_mmap` true) removes the flag.
 */
export const RUNNER_OPTIONS = {
  num_thread: { flags: ["-t", "--threads"], type: "integer", flagsFor: (v: number | boolean) => ((v as number) > 0 ? ["--threads", String(v)] : []) },
  num_batch: { flags: ["-b", "--batch-size"], type: "integer", flagsFor: (v: number | boolean) => ((v as number) > 0 ? ["--batch-size", String(v)] : []) },
  num_gpu: { flags: ["-ngl", "--gpu-layers", "--n-gpu-layers"], type: "integer", flagsFor: (v: number | boolean) => ((v as number) >= 0 ? ["--n-gpu-layers", String(v)] : []) },
  main_gpu: { flags: ["-mg", "--main-gpu"], type: "integer", flagsFor: (v: number | boolean) => ["--main-gpu", String(v)] },
  use_mmap: { flags: ["--mmap", "--no-mmap"], type: "boolean", flagsFor: (v: number | boolean) => (v === false ? ["--no-mmap"] : []) },
} as const;
export type RunnerOption = keyof typeof RUNNER_OPTIONS;

/** Ollama's numeric options and the engine fields they fill: the preset parameters' one table (`stop` is read apart). */
const NUMBER_OPTIONS: Record<string, string> = Object.fromEntries(
  Object.entries(PRESET_PARAMETERS).flatMap(([name, spec]) => (spec.kind === "strings" ? [] : [[name, spec.field]])),
);

/**
 * Options Ollama itself accepts and ignores (its runner dropped them; it
 * logs "invalid option provided"): accepted and ignored here too, so that
 * clients sending them work as they do with Ollama. All were booleans.
 */
const IGNORED_OPTIONS = new Set(["use_mlock", "low_vram", "vocab_only", "f16_kv", "logits_all", "penalize_newline"]);

export function mapOptions(options: unknown): MappedOptions {
  const fields: Record<string, unknown> = {};
  let numCtx: number | null = null;
  const runner: MappedOptions["runner"] = {};
  if (options === undefined || options === null) return { fields, numCtx, runner };
  if (typeof options !== "object" || Array.isArray(options)) throw new InvalidRequestError("'options' must be an object.", "options");
  for (const [key, value] of Object.entries(options as Record<string, unknown>)) {
    if (value === null || value === undefined) continue;
    if (key === "stop") {
      if (!Array.isArray(value) || !value.every((s) => typeof s === "string")) {
        throw new InvalidRequestError("'options.stop' must be an array of strings.", "options.stop");
      }
      fields.stop = value;
    } else if (key === "num_ctx") {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
        throw new InvalidRequestError("'options.num_ctx' must be a positive integer.", "options.num_ctx");
      }
      numCtx = value;
    } else if (key in RUNNER_OPTIONS) {
      const spec = RUNNER_OPTIONS[key as RunnerOption];
      const ok = spec.type === "boolean" ? typeof value === "boolean" : typeof value === "number" && Number.isInteger(value);
      if (!ok) throw new InvalidRequestError(`'options.${key}' must be ${spec.type === "boolean" ? "a boolean" : "an integer"}.`, `options.${key}`);
      runner[key as RunnerOption] = value as number | boolean;
    } else if (key === "num_keep") {
      // Ollama's tokens kept when the context shifts: llama-server's `n_keep` (-1 = all).
      if (typeof value !== "number" || !Number.isInteger(value) || value < -1) throw new InvalidRequestError("'options.num_keep' must be an integer of at least -1.", "options.num_keep");
      fields.n_keep = value;
    } else if (key === "numa") {
      if (value !== false) throw new InvalidRequestError("'options.numa' is not supported: the engines run without NUMA placement.", "options.numa");
    } else if (key in NUMBER_OPTIONS) {
      if (typeof value !== "number") throw new InvalidRequestError(`'options.${key}' must be a number.`, `options.${key}`);
      // Ollama: num_predict -1 = until the model stops, -2 = fill the context; both are the engine's -1.
      fields[NUMBER_OPTIONS[key]!] = key === "num_predict" && value < 0 ? -1 : value;
    } else if (IGNORED_OPTIONS.has(key)) {
      // Ignored, but still of the type Ollama once read: a string here is a client's mistake worth naming.
      if (typeof value !== "boolean") throw new InvalidRequestError(`'options.${key}' must be a boolean.`, `options.${key}`);
    } else {
      throw new InvalidRequestError(`Option '${key}' is not supported.`, `options.${key}`);
    }
  }
  return { fields, numCtx, runner };
}

/** Ollama `format`: `"json"` or a JSON schema → OpenAI `response_format`, passed to the engine. */
export function mapFormat(format: unknown): Record<string, unknown> | null {
  if (format === undefined || format === null || format === "") return null;
  if (format === "json") return { type: "json_object" };
  if (typeof format === "object" && !Array.isArray(format)) {
    return { type: "json_schema", json_schema: { name: "format", schema: format, strict: true } };
  }
  throw new InvalidRequestError(`'format' must be "json" or a JSON schema object.`, "format");
}

/**
 * Ollama `think` → the engine's reasoning controls: `false` prefills an empty
 * thought (`reasoning_effort: "none"`), `true` and the levels leave the
 * engine's budget (the levels are passed as `reasoning_effort`). Absent: the
 * engine's default. The thought comes back as `thinking` either way.
 */
export function mapThink(think: unknown): Record<string, unknown> {
  if (think === undefined || think === null || think === true) return {};
  if (think === false) return { reasoning_effort: "none" };
  if (think === "low" || think === "medium" || think === "high") return { reasoning_effort: think };
  throw new InvalidRequestError(`'think' must be true, false, "low", "medium" or "high".`, "think");
}

/** Ollama `keep_alive`: a duration string or seconds; undefined when absent. */
export function keepAliveOf(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" && typeof value !== "number") throw new InvalidRequestError("'keep_alive' must be a duration or a number of seconds.", "keep_alive");
  return parseDuration(value, "keep_alive");
}

/** Ollama's `model` (newer) or `name` (older clients); required. */
export function modelOf(body: unknown): string {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError("The request body must be a JSON object.");
  const b = body as { model?: unknown; name?: unknown };
  const model = typeof b.model === "string" && b.model.trim() !== "" ? b.model : b.name;
  if (typeof model !== "string" || model.trim() === "") throw new InvalidRequestError("model is required", "model");
  return model.trim();
}

/** A nanosecond duration from milliseconds (Ollama reports durations in ns). */
export const ns = (ms: number): number => Math.max(0, Math.round(ms * 1e6));

/**
 * `tool_choice` on `/api/chat` and `/api/generate`: not Ollama's (Ollama
 * ignores it), but clients send it to force or forbid calls, so the shapes
 * with a meaning in OpenAI's APIs take effect as there: `"auto"`, `"none"`,
 * `"required"`, OpenAI's `{"type":"function","function":{"name"}}` and the
 * Responses shape `{"type":"function","name"}` (the AI SDK's Ollama
 * provider sends that one). Any other value is ignored, as Ollama ignores
 * every `tool_choice`, rather than failing a request Ollama would serve.
 * Undefined: nothing to send to the engine.
 */
export function mapToolChoice(choice: unknown): unknown {
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  if (choice === null || typeof choice !== "object" || Array.isArray(choice)) return undefined;
  const c = choice as { type?: unknown; name?: unknown; function?: { name?: unknown } | null };
  if (c.type !== "function") return undefined;
  const name = typeof c.function?.name === "string" ? c.function.name : c.name;
  return typeof name === "string" && name !== "" ? { type: "function", function: { name } } : undefined;
}

/**
 * The top-level fields of each Ollama request we serve (Ollama's own, as of
 * the API level /api/version names, with the deprecated `name` for `model`,
 * and ours: `tool_choice`, `tools` on generate; docs/compat.md).
 * Ollama drops a field it does not know; we answer 400 naming it, so that
 * a setting sent in the wrong place (`temperature` beside `options`, an
 * OpenAI field) is never silently without effect.
 */
const OLLAMA_FIELDS = {
  "/api/chat": new Set(["model", "name", "messages", "stream", "format", "keep_alive", "tools", "tool_choice", "options", "think", "logprobs", "top_logprobs"]),
  "/api/generate": new Set(["model", "name", "prompt", "suffix", "system", "template", "context", "stream", "raw", "format", "keep_alive", "images", "options", "think", "tools", "tool_choice", "logprobs", "top_logprobs"]),
  "/api/embed": new Set(["model", "name", "input", "truncate", "options", "keep_alive", "dimensions"]),
  "/api/embeddings": new Set(["model", "name", "prompt", "options", "keep_alive"]),
  "/api/show": new Set(["model", "name", "verbose"]),
  "/api/pull": new Set(["model", "name", "insecure", "stream"]),
  "/api/push": new Set(["model", "name", "insecure", "stream"]),
  "/api/delete": new Set(["model", "name"]),
  "/api/copy": new Set(["source", "destination"]),
} as const;

/** A 400 naming the first field of `body` that `route` does not take. */
export function checkOllamaFields(route: keyof typeof OLLAMA_FIELDS, body: unknown): void {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return;
  const key = firstUnknownField(body as Record<string, unknown>, OLLAMA_FIELDS[route]);
  if (key === undefined) return;
  const hint = key in NUMBER_OPTIONS || key === "stop" || key === "num_ctx" ? ` (Ollama takes it in 'options')` : "";
  throw new InvalidRequestError(`Unknown field '${key}' in ${route}${hint}.`, key);
}
