/**
 * Model presets: a model's request defaults (Ollama's Modelfile `SYSTEM`,
 * `PARAMETER`, `MESSAGE`), stored with its `_configure` configuration and
 * filled into every request that does not set them (api/engine/preset.ts).
 * The context size and keep-alive of a preset are the configuration's own
 * `contextSize` and `keepAlive`: they belong to the runner, not the request.
 */
import { InvalidRequestError } from "../errors.ts";

/** How one preset parameter is checked, and the engine (OpenAI/llama-server) request field it fills. */
interface ParameterSpec {
  /** The engine body field. */
  field: string;
  kind: "number" | "integer" | "strings";
  min?: number;
  max?: number;
}

/**
 * The parameters a preset may hold, by Ollama's names (what Modelfiles and
 * `/api/create` use), with the engine field each fills. `num_ctx` is not
 * here: it is the configuration's context size. Ollama's `options` of
 * `/api/chat` and `/api/generate` map through this same table.
 */
export const PRESET_PARAMETERS = {
  temperature: { field: "temperature", kind: "number", min: 0 },
  top_k: { field: "top_k", kind: "integer", min: 0 },
  top_p: { field: "top_p", kind: "number", min: 0, max: 1 },
  min_p: { field: "min_p", kind: "number", min: 0, max: 1 },
  typical_p: { field: "typical_p", kind: "number", min: 0, max: 1 },
  seed: { field: "seed", kind: "integer" },
  // Ollama: -1 = until the model stops, -2 = fill the context; both are the engine's -1.
  num_predict: { field: "max_tokens", kind: "integer", min: -2 },
  repeat_penalty: { field: "repeat_penalty", kind: "number", min: 0 },
  repeat_last_n: { field: "repeat_last_n", kind: "integer", min: -1 },
  presence_penalty: { field: "presence_penalty", kind: "number" },
  frequency_penalty: { field: "frequency_penalty", kind: "number" },
  mirostat: { field: "mirostat", kind: "integer", min: 0, max: 2 },
  mirostat_tau: { field: "mirostat_tau", kind: "number", min: 0 },
  mirostat_eta: { field: "mirostat_eta", kind: "number", min: 0 },
  stop: { field: "stop", kind: "strings" },
} as const satisfies Record<string, ParameterSpec>;

export type PresetParameterName = keyof typeof PRESET_PARAMETERS;
export type PresetParameterValue = number | string[];
export type PresetParameters = Partial<Record<PresetParameterName, PresetParameterValue>>;

/** A few-shot turn of the preset (Modelfile `MESSAGE`), put before the request's own turns. */
export interface PresetMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A model's stored request defaults; every part optional. */
export interface Preset {
  system?: string | undefined;
  parameters?: PresetParameters | undefined;
  messages?: PresetMessage[] | undefined;
}

/**
 * A change to a stored preset: absent parts stay as they are; `null` (or
 * `""` for `system`, `[]` for `messages`) clears a part; a parameter set to
 * `null` is removed, the others are set. The whole patch `null` clears the
 * preset.
 */
export interface PresetPatch {
  system?: string | null | undefined;
  parameters?: Partial<Record<PresetParameterName, PresetParameterValue | null>> | null | undefined;
  messages?: PresetMessage[] | null | undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

export const isPresetParameter = (name: string): name is PresetParameterName => Object.hasOwn(PRESET_PARAMETERS, name);

/** The parameter names, for messages and help. */
export const PRESET_PARAMETER_NAMES = Object.keys(PRESET_PARAMETERS) as PresetParameterName[];

/**
 * Checks one parameter's value. Numbers may come as JSON numbers or as the
 * text a Modelfile line carries ("0.2"); `stop` as a string or strings.
 * Throws InvalidRequestError naming `param` (`parameters.top_k`).
 */
export function parsePresetParameter(name: string, value: unknown, param = `parameters.${name}`): PresetParameterValue {
  if (!isPresetParameter(name)) {
    throw new InvalidRequestError(`Unknown parameter '${name}'. Known: ${[...PRESET_PARAMETER_NAMES, "num_ctx"].join(", ")}.`, param);
  }
  const spec: ParameterSpec = PRESET_PARAMETERS[name];
  if (spec.kind === "strings") {
    const list = typeof value === "string" ? [value] : value;
    if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === "string" && s !== "")) {
      throw new InvalidRequestError(`'${param}' must be a non-empty string or a list of them.`, param);
    }
    return [...list] as string[];
  }
  const n = typeof value === "string" && value.trim() !== "" ? Number(value.trim()) : value;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new InvalidRequestError(`'${param}' must be a number, got ${JSON.stringify(value)}.`, param);
  if (spec.kind === "integer" && !Number.isInteger(n)) throw new InvalidRequestError(`'${param}' must be a whole number, got ${n}.`, param);
  if (spec.min !== undefined && n < spec.min) throw new InvalidRequestError(`'${param}' must be at least ${spec.min}, got ${n}.`, param);
  if (spec.max !== undefined && n > spec.max) throw new InvalidRequestError(`'${param}' must be at most ${spec.max}, got ${n}.`, param);
  return n;
}

/** Checks preset messages (`MESSAGE` / `/api/create` `messages`). */
export function parsePresetMessages(value: unknown, param = "messages"): PresetMessage[] {
  if (!Array.isArray(value)) throw new InvalidRequestError(`'${param}' must be an array of {role, content}.`, param);
  return value.map((m, i) => {
    if (!isObject(m)) throw new InvalidRequestError(`'${param}[${i}]' must be an object with role and content.`, `${param}.${i}`);
    for (const key of Object.keys(m)) {
      if (key !== "role" && key !== "content") throw new InvalidRequestError(`Unknown field '${param}[${i}].${key}': a preset message has only role and content.`, `${param}.${i}.${key}`);
    }
    if (m.role !== "system" && m.role !== "user" && m.role !== "assistant") {
      throw new InvalidRequestError(`'${param}[${i}].role' must be system, user or assistant.`, `${param}.${i}.role`);
    }
    if (typeof m.content !== "string") throw new InvalidRequestError(`'${param}[${i}].content' must be a string.`, `${param}.${i}.content`);
    return { role: m.role, content: m.content };
  });
}

/** Checks a `_configure` `preset` field (strict: an unknown key is a 400 naming it). */
export function parsePresetPatch(value: unknown, param = "preset"): PresetPatch | null {
  if (value === null) return null;
  if (!isObject(value)) throw new InvalidRequestError(`'${param}' must be an object with system, parameters and/or messages.`, param);
  const patch: PresetPatch = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === "system") {
      if (v !== null && typeof v !== "string") throw new InvalidRequestError(`'${param}.system' must be a string.`, `${param}.system`);
      patch.system = v;
    } else if (key === "parameters") {
      if (v === null) patch.parameters = null;
      else {
        if (!isObject(v)) throw new InvalidRequestError(`'${param}.parameters' must be an object.`, `${param}.parameters`);
        const parameters: NonNullable<PresetPatch["parameters"]> = {};
        for (const [name, pv] of Object.entries(v)) {
          if (name === "num_ctx") {
            throw new InvalidRequestError(`'${param}.parameters.num_ctx' is the model's context size: set it with "context-size".`, `${param}.parameters.num_ctx`);
          }
          const checked = pv === null ? null : parsePresetParameter(name, pv, `${param}.parameters.${name}`);
          parameters[name as PresetParameterName] = checked;
        }
        patch.parameters = parameters;
      }
    } else if (key === "messages") {
      patch.messages = v === null ? null : parsePresetMessages(v, `${param}.messages`);
    } else {
      throw new InvalidRequestError(`Unknown field "${param}.${key}": a preset has system, parameters and messages.`, `${param}.${key}`);
    }
  }
  return patch;
}

/** `previous` with `patch` applied; undefined when nothing is left. */
export function mergePreset(previous: Preset | undefined, patch: PresetPatch | null | undefined): Preset | undefined {
  if (patch === undefined) return previous;
  if (patch === null) return undefined;
  const next: Preset = { ...previous };
  if (patch.system !== undefined) next.system = patch.system === null || patch.system === "" ? undefined : patch.system;
  if (patch.parameters !== undefined) {
    const parameters: PresetParameters = patch.parameters === null ? {} : { ...previous?.parameters };
    for (const [name, v] of Object.entries(patch.parameters ?? {})) {
      if (v === null) delete parameters[name as PresetParameterName];
      else parameters[name as PresetParameterName] = v;
    }
    next.parameters = parameters;
  }
  if (patch.messages !== undefined) next.messages = patch.messages === null || patch.messages.length === 0 ? undefined : patch.messages;
  return normalizePreset(next);
}

/** Drops empty parts; undefined for an empty preset. */
export function normalizePreset(preset: Preset | undefined): Preset | undefined {
  if (!preset) return undefined;
  const out: Preset = {};
  if (preset.system) out.system = preset.system;
  if (preset.parameters && Object.keys(preset.parameters).length > 0) out.parameters = preset.parameters;
  if (preset.messages && preset.messages.length > 0) out.messages = preset.messages;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A parameter value as a Modelfile line writes it (`PARAMETER stop "<|end|>"` per stop word). */
export function parameterLines(parameters: PresetParameters): Array<[string, string]> {
  const lines: Array<[string, string]> = [];
  for (const name of PRESET_PARAMETER_NAMES) {
    const v = parameters[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const s of v) lines.push([name, JSON.stringify(s)]);
    else lines.push([name, String(v)]);
  }
  return lines;
}
