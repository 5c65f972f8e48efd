import { PRESET_PARAMETERS, PRESET_PARAMETER_NAMES, type Preset } from "../../scheduling/index.ts";
import type { EngineEndpoint } from "./call.ts";

/** Request fields that already say what a preset parameter would (`max_completion_tokens` is OpenAI's newer `max_tokens`). */
const SAME_AS: Record<string, readonly string[]> = {
  max_tokens: ["max_tokens", "max_completion_tokens", "n_predict"],
};

/** The endpoints a preset's sampling parameters apply to; its system prompt and messages need a chat. */
const GENERATING: ReadonlySet<EngineEndpoint> = new Set(["/v1/chat/completions", "/v1/completions", "/completion", "/infill"]);

const isSystem = (m: unknown) => {
  const role = (m as { role?: unknown } | null)?.role;
  return role === "system" || role === "developer";
};

/**
 * The engine body with a model's preset filled in, for every dialect alike
 * (they all reach the engine in OpenAI's shape through runInference). What
 * the request says always wins: a parameter only fills a field the body
 * lacks; the preset's system prompt only goes in when the conversation has
 * none of its own. The preset's messages (Modelfile `MESSAGE`) go after the
 * system prompt, before the request's turns, as Ollama puts them. A raw
 * completion (`/v1/completions`, Ollama's `raw`) gets the parameters only:
 * there is no conversation to put a system prompt in (Ollama's raw mode
 * skips it too). Returns `body` itself when nothing applies.
 */
export function applyPreset(endpoint: EngineEndpoint, body: Record<string, unknown>, preset: Preset | undefined): Record<string, unknown> {
  if (!preset || !GENERATING.has(endpoint)) return body;
  const out: Record<string, unknown> = { ...body };
  for (const name of PRESET_PARAMETER_NAMES) {
    const value = preset.parameters?.[name];
    if (value === undefined) continue;
    const field = PRESET_PARAMETERS[name].field;
    if ((SAME_AS[field] ?? [field]).some((f) => out[f] !== undefined && out[f] !== null)) continue;
    out[field] = name === "num_predict" && typeof value === "number" && value < 0 ? -1 : value;
  }
  if (endpoint === "/v1/chat/completions" && Array.isArray(body.messages) && (preset.system || preset.messages)) {
    const messages = body.messages as unknown[];
    let leading = 0;
    while (leading < messages.length && isSystem(messages[leading])) leading++;
    out.messages = [
      ...(leading === 0 && preset.system ? [{ role: "system", content: preset.system }] : messages.slice(0, leading)),
      ...(preset.messages ?? []),
      ...messages.slice(leading),
    ];
  }
  return out;
}
