import type { ChatModelFunctions, GbnfJsonSchema } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import { checkJsonSchema } from "./structured.ts";

/**
 * Tool calling. Tools are presented to the model through its chat template
 * (node-llama-cpp's function syntax for that template). When a call is
 * forced (`tool_choice: "required"` or a named function), the reply is
 * sampled under a grammar for the envelope `{"name": …, "arguments": {…}}`,
 * so the arguments always match the declared schema, even from a
 * random-weight model.
 */

/** An OpenAI-style function tool after validation. */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** Already checked with `checkJsonSchema`. */
  parameters: GbnfJsonSchema;
}

export interface ToolPlan {
  /** Functions to present in the prompt; undefined when none are. */
  functions: ChatModelFunctions | undefined;
  /** The grammar schema of a forced call's envelope, or null when the model may answer in text. */
  forcedSchema: GbnfJsonSchema | null;
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type ToolInput = { type: "function"; function: { name: string; description?: string | null; parameters?: unknown } };
type ToolChoiceInput = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/**
 * Validates OpenAI `tools` (names, parameter schemas) and turns them into
 * node-llama-cpp function definitions. Throws a 400 naming the bad field
 * (e.g. `tools.1.function.parameters.properties.x.pattern`).
 */
export function checkTools(tools: readonly ToolInput[], param = "tools"): ToolDefinition[] {
  const seen = new Set<string>();
  return tools.map((t, i) => {
    const name = t.function.name;
    if (!NAME.test(name)) {
      throw new InvalidRequestError(
        `${param}[${i}].function.name "${name}" must be 1-64 letters, digits, underscores or dashes`,
        `${param}.${i}.function.name`,
      );
    }
    if (seen.has(name)) throw new InvalidRequestError(`${param}[${i}].function.name "${name}" is defined twice`, `${param}.${i}.function.name`);
    seen.add(name);
    const where = `${param}.${i}.function.parameters`;
    const raw = t.function.parameters ?? { type: "object", properties: {} };
    const parameters = checkJsonSchema(raw, where);
    if ((parameters as { type?: unknown }).type !== "object") {
      throw new InvalidRequestError(`${where} must be a JSON schema of type "object"`, `${where}.type`);
    }
    return { name, ...(t.function.description ? { description: t.function.description } : {}), parameters };
  });
}

/** Decides what the prompt shows and whether a call is forced. Throws a 400 for a choice that names no tool. */
export function planTools(tools: readonly ToolDefinition[], choice: ToolChoiceInput | null | undefined): ToolPlan {
  const mode = choice ?? "auto";
  if (tools.length === 0) {
    if (mode === "required" || typeof mode === "object") {
      throw new InvalidRequestError("tool_choice requires a tool call but no tools were given", "tool_choice");
    }
    return { functions: undefined, forcedSchema: null };
  }
  if (mode === "none") return { functions: undefined, forcedSchema: null };
  const functions: Record<string, { description?: string; params: GbnfJsonSchema }> = {};
  for (const t of tools) functions[t.name] = { ...(t.description ? { description: t.description } : {}), params: t.parameters };
  if (mode === "auto") return { functions, forcedSchema: null };
  let callable = tools;
  if (typeof mode === "object") {
    callable = tools.filter((t) => t.name === mode.function.name);
    if (callable.length === 0) {
      throw new InvalidRequestError(`tool_choice names "${mode.function.name}", which is not in tools`, "tool_choice.function.name");
    }
  }
  const envelopes = callable.map((t) => ({
    type: "object",
    properties: { name: { const: t.name }, arguments: t.parameters },
    required: ["name", "arguments"],
  }));
  const forcedSchema = (envelopes.length === 1 ? envelopes[0] : { oneOf: envelopes }) as unknown as GbnfJsonSchema;
  return { functions, forcedSchema };
}

/** One call as OpenAI returns it. */
export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** Parses a forced call's envelope; the grammar guarantees its shape. */
export function parseForcedCall(text: string, id: string): ToolCallOut {
  const parsed = JSON.parse(text) as { name: string; arguments: unknown };
  return { id, type: "function", function: { name: parsed.name, arguments: JSON.stringify(parsed.arguments) } };
}

const HEADER = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*/;

/**
 * Streams a forced call's envelope as OpenAI `delta.tool_calls` pieces: the
 * name once it is complete, then the arguments text as it grows. The
 * envelope's closing brace (and whitespace) is held back until more text
 * shows it was not the last one.
 */
export class ToolCallStreamer {
  private buffer = "";
  private started = false;
  private sent = 0;

  constructor(private readonly id: string) {}

  /** Feeds generated text; returns the deltas to send now. */
  push(text: string): object[] {
    this.buffer += text;
    const out: object[] = [];
    if (!this.started) {
      const m = HEADER.exec(this.buffer);
      if (!m) return out;
      this.started = true;
      this.buffer = this.buffer.slice(m[0].length);
      out.push({ index: 0, id: this.id, type: "function", function: { name: JSON.parse(`"${m[1]}"`) as string, arguments: "" } });
    }
    const safe = this.buffer.replace(/\}\s*$/, "").length;
    if (safe > this.sent) {
      out.push({ index: 0, function: { arguments: this.buffer.slice(this.sent, safe) } });
      this.sent = safe;
    }
    return out;
  }

  /** The arguments text not yet sent, once generation has ended. */
  finish(): object[] {
    const args = this.buffer.replace(/\}\s*$/, "");
    if (!this.started || args.length <= this.sent) return [];
    const rest = args.slice(this.sent);
    this.sent = args.length;
    return [{ index: 0, function: { arguments: rest } }];
  }
}

const TOOL_CALL_BLOCK = /<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g;

/**
 * Finds calls a model wrote on its own (`tool_choice: "auto"`): Hermes/Qwen
 * `<tool_call>{"name","arguments"}</tool_call>` blocks, or a reply that is
 * exactly a `{"name","arguments"}` envelope. Only names in `functions` count.
 * Returns null when there is none. These calls are not grammar-constrained.
 */
export function findToolCalls(
  text: string,
  newId: () => string,
  functions: ChatModelFunctions,
): { content: string | null; calls: ToolCallOut[] } | null {
  const calls: ToolCallOut[] = [];
  const asCall = (json: string): ToolCallOut | null => {
    try {
      const v = JSON.parse(json) as { name?: unknown; arguments?: unknown; parameters?: unknown };
      const args = v.arguments ?? v.parameters ?? {};
      if (typeof v.name !== "string" || !(v.name in functions)) return null;
      return { id: newId(), type: "function", function: { name: v.name, arguments: typeof args === "string" ? args : JSON.stringify(args) } };
    } catch {
      return null;
    }
  };
  const rest = text.replace(TOOL_CALL_BLOCK, (whole, json: string) => {
    const call = asCall(json);
    if (!call) return whole;
    calls.push(call);
    return "";
  });
  if (calls.length === 0) {
    const call = text.trim().startsWith("{") ? asCall(text.trim()) : null;
    return call ? { content: null, calls: [call] } : null;
  }
  const content = rest.trim();
  return { content: content === "" ? null : content, calls };
}
