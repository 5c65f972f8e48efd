import { randomBytes } from "node:crypto";
import { InvalidRequestError } from "../../errors.ts";
import { firstUnknownField, jsonTypeOf } from "../../http/fields.ts";

/**
 * Anthropic Messages ↔ OpenAI chat completions (what the engine speaks).
 * Every field read is checked; a field we cannot honour is a 400 naming it.
 */
type Body = Record<string, unknown>;

export const newMessageId = () => `msg_${randomBytes(12).toString("hex")}`;

/** Fields that change behaviour and that we cannot honour. */
const UNSUPPORTED = ["container", "mcp_servers", "service_tier"] as const;

/** The Messages API's fields we honour; any other is a 400 naming it, as Anthropic answers an extra input. */
const MESSAGE_FIELDS: ReadonlySet<string> = new Set(["model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", ...UNSUPPORTED]);
/** count_tokens takes the prompt's parts only (no `max_tokens`, no sampling): Anthropic refuses the rest. */
const COUNT_FIELDS: ReadonlySet<string> = new Set(["model", "messages", "system", "tools", "tool_choice", "thinking", ...UNSUPPORTED]);

/**
 * Each content block's fields. `cache_control` is accepted: both engines keep
 * the prompt's prefix cached without being asked (docs/compat.md). A text
 * block's `citations` (on an earlier answer) are accepted and, as Anthropic
 * does, not part of the prompt.
 */
const BLOCK_FIELDS: Record<string, ReadonlySet<string>> = {
  text: new Set(["type", "text", "cache_control", "citations"]),
  image: new Set(["type", "source", "cache_control"]),
  tool_use: new Set(["type", "id", "name", "input", "cache_control"]),
  tool_result: new Set(["type", "tool_use_id", "content", "is_error", "cache_control"]),
  thinking: new Set(["type", "thinking", "signature"]),
  redacted_thinking: new Set(["type", "data"]),
};
const MESSAGE_KEYS: ReadonlySet<string> = new Set(["role", "content"]);
const TOOL_KEYS: ReadonlySet<string> = new Set(["name", "description", "input_schema", "type", "cache_control"]);
const TOOL_CHOICE_KEYS: ReadonlySet<string> = new Set(["type", "name", "disable_parallel_tool_use"]);
const THINKING_KEYS: ReadonlySet<string> = new Set(["type", "budget_tokens"]);

/** A 400 naming the first field of `body` not in `known` (`at`: its path), as Anthropic refuses an extra input. */
function checkFields(body: Body, known: ReadonlySet<string>, at = ""): void {
  const key = firstUnknownField(body, known);
  if (key !== undefined) throw new InvalidRequestError(`${at}${key}: Extra inputs are not permitted`, `${at}${key}`);
}

/** checkFields for a value that is an object (other values are checked where they are read). */
function checkObject(value: unknown, known: ReadonlySet<string>, at: string): void {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) checkFields(value as Body, known, at);
}

function textOfSystem(system: unknown): string | null {
  if (system === undefined || system === null) return null;
  if (typeof system === "string") return system;
  if (Array.isArray(system)) {
    return system
      .map((b: { type?: unknown; text?: unknown }, i) => {
        if (b?.type !== "text" || typeof b.text !== "string") throw new InvalidRequestError(`system.${i}: only text blocks are supported.`, `system.${i}`);
        checkFields(b as Body, BLOCK_FIELDS.text!, `system.${i}.`);
        return b.text;
      })
      .join("\n");
  }
  throw new InvalidRequestError("system: must be a string or an array of text blocks.", "system");
}

const IMAGE_SOURCE_KEYS: Record<string, ReadonlySet<string>> = {
  base64: new Set(["type", "media_type", "data"]),
  url: new Set(["type", "url"]),
};
/** The image types Anthropic takes in a base64 source. */
const IMAGE_MEDIA_TYPES: ReadonlySet<string> = new Set(["image/jpeg", "image/png", "image/gif", "image/webp"]);

/** An image block's `source` as the URL an OpenAI `image_url` part carries (a data: URL for base64). */
function imageUrlOf(source: unknown, at: string): string {
  const s = source as Body | null | undefined;
  const known = typeof s?.type === "string" ? IMAGE_SOURCE_KEYS[s.type] : undefined;
  if (s === null || typeof s !== "object" || known === undefined) {
    // A `file` source names an upload to Anthropic's Files API, which nothing here has.
    throw new InvalidRequestError(`${at}: must be a base64 or url image source.`, `${at}.type`);
  }
  checkFields(s, known, `${at}.`);
  if (s.type === "url") {
    if (typeof s.url !== "string") throw new InvalidRequestError(`${at}.url: Field required`, `${at}.url`);
    return s.url;
  }
  if (typeof s.media_type !== "string" || !IMAGE_MEDIA_TYPES.has(s.media_type)) {
    throw new InvalidRequestError(`${at}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`, `${at}.media_type`);
  }
  if (typeof s.data !== "string") throw new InvalidRequestError(`${at}.data: Field required`, `${at}.data`);
  return `data:${s.media_type};base64,${s.data}`;
}

/**
 * A tool_result's `content` as the text of a tool message (OpenAI's tool
 * messages carry text only): a string, or text blocks, joined. An image in a
 * result is a 400 naming it, not a result quietly missing its image.
 */
function toolResultText(content: unknown, at: string): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw new InvalidRequestError(`${at}: must be a string or an array of content blocks.`, at);
  return (content as Body[])
    .map((b, i) => {
      if (b?.type !== "text" || typeof b.text !== "string") {
        throw new InvalidRequestError(`${at}.${i}: only text blocks can be part of a tool result here (a tool message carries text only).`, `${at}.${i}.type`);
      }
      checkFields(b, BLOCK_FIELDS.text!, `${at}.${i}.`);
      return b.text;
    })
    .join("");
}

function openAIContent(content: unknown, where: string): { parts: Body[]; toolCalls: Body[]; toolResults: Body[] } {
  const parts: Body[] = [];
  const toolCalls: Body[] = [];
  const toolResults: Body[] = [];
  if (typeof content === "string") return { parts: [{ type: "text", text: content }], toolCalls, toolResults };
  if (!Array.isArray(content)) throw new InvalidRequestError(`${where}.content: must be a string or an array of content blocks.`, `${where}.content`);
  for (const [j, block] of (content as Body[]).entries()) {
    const at = `${where}.content.${j}`;
    const known = BLOCK_FIELDS[block?.type as string];
    if (known !== undefined && block !== null && typeof block === "object") checkFields(block, known, `${at}.`);
    switch (block?.type) {
      case "text":
        if (typeof block.text !== "string") throw new InvalidRequestError(`${at}.text: Field required`, `${at}.text`);
        parts.push({ type: "text", text: block.text });
        break;
      case "image":
        parts.push({ type: "image_url", image_url: { url: imageUrlOf(block.source, `${at}.source`) } });
        break;
      case "tool_use":
        toolCalls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
        break;
      case "thinking":
      case "redacted_thinking":
        // Earlier thoughts are not shown to the model again (Anthropic drops them from the prompt too).
        break;
      case "tool_result": {
        const text = toolResultText(block.content, `${at}.content`);
        if (block.is_error !== undefined && typeof block.is_error !== "boolean") throw new InvalidRequestError(`${at}.is_error: Input should be a valid boolean`, `${at}.is_error`);
        // A tool message has no error flag: the model is told in the text, which is all it reads.
        toolResults.push({ role: "tool", tool_call_id: block.tool_use_id, content: block.is_error === true ? `Error: ${text}` : text });
        break;
      }
      default:
        throw new InvalidRequestError(`${at}.type: content blocks of type "${String(block?.type)}" are not supported.`, `${at}.type`);
    }
  }
  return { parts, toolCalls, toolResults };
}

const onlyText = (parts: Body[]) => parts.every((p) => p.type === "text");
const joinText = (parts: Body[]) => parts.map((p) => p.text as string).join("");

function openAITools(tools: unknown): Body[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw new InvalidRequestError("tools: must be an array.", "tools");
  return tools.map((t: Body, i) => {
    checkObject(t, TOOL_KEYS, `tools.${i}.`);
    if (typeof t?.name !== "string") throw new InvalidRequestError(`tools.${i}.name: Field required`, `tools.${i}.name`);
    if (t.type !== undefined && t.type !== "custom") throw new InvalidRequestError(`tools.${i}.type: server tools ("${String(t.type)}") are not supported.`, `tools.${i}.type`);
    return { type: "function", function: { name: t.name, description: t.description ?? "", parameters: t.input_schema ?? { type: "object" } } };
  });
}

function openAIToolChoice(choice: unknown): unknown {
  if (choice === undefined || choice === null) return undefined;
  checkObject(choice, TOOL_CHOICE_KEYS, "tool_choice.");
  const c = choice as { type?: string; name?: string };
  if (c.type === "auto") return "auto";
  if (c.type === "any") return "required";
  if (c.type === "none") return "none";
  if (c.type === "tool" && typeof c.name === "string") return { type: "function", function: { name: c.name } };
  throw new InvalidRequestError("tool_choice: must be auto, any, none or {type: tool, name}.", "tool_choice");
}

/** `thinking`: null when off (absent or `disabled`), else the budget for the engine's `thinking_budget_tokens`. */
export function thinkingOf(thinking: unknown): { budgetTokens: number } | null {
  if (thinking === undefined || thinking === null) return null;
  checkObject(thinking, THINKING_KEYS, "thinking.");
  const t = thinking as { type?: unknown; budget_tokens?: unknown };
  if (t.type === "disabled") return null;
  if (t.type !== "enabled") throw new InvalidRequestError('thinking.type: must be "enabled" or "disabled"', "thinking.type");
  if (typeof t.budget_tokens !== "number" || !Number.isInteger(t.budget_tokens) || t.budget_tokens < 1) {
    throw new InvalidRequestError("thinking.budget_tokens: Field required (a positive integer)", "thinking.budget_tokens");
  }
  return { budgetTokens: t.budget_tokens };
}

/** An Anthropic request as the engine's chat completion body (not streaming yet), and its stop sequences. */
export interface EngineRequest {
  engine: Body;
  /**
   * `stop_sequences`, matched by the daemon on the answer's text (not sent
   * as `stop`): llama-server's chat completions do not say which stop string
   * ended an answer, and Anthropic's reply names it.
   */
  stopSequences: string[];
}

/** Validates an Anthropic Messages request and builds the engine's chat completion body. */
export function chatRequestFrom(body: unknown): EngineRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError("The request body must be a JSON object.");
  const b = body as Body;
  checkFields(b, MESSAGE_FIELDS);
  if (b.model === undefined || b.model === null) throw new InvalidRequestError("model: Field required", "model");
  if (typeof b.model !== "string" || b.model === "") throw new InvalidRequestError(`model: must be a non-empty string, got ${jsonTypeOf(b.model)}`, "model");
  if (b.max_tokens === undefined || b.max_tokens === null) throw new InvalidRequestError("max_tokens: Field required", "max_tokens");
  if (typeof b.max_tokens !== "number" || !Number.isInteger(b.max_tokens)) {
    throw new InvalidRequestError(`max_tokens: must be an integer, got ${jsonTypeOf(b.max_tokens)}`, "max_tokens");
  }
  if (b.max_tokens < 1) throw new InvalidRequestError(`max_tokens: must be at least 1, got ${b.max_tokens}`, "max_tokens");
  for (const field of UNSUPPORTED) if (b[field] !== undefined) throw new InvalidRequestError(`${field}: not supported by this server.`, field);
  const thinking = thinkingOf(b.thinking);
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw new InvalidRequestError("messages: at least one message is required", "messages");
  const messages: Body[] = [];
  const system = textOfSystem(b.system);
  if (system !== null && system !== "") messages.push({ role: "system", content: system });
  for (const [i, m] of (b.messages as Body[]).entries()) {
    checkObject(m, MESSAGE_KEYS, `messages.${i}.`);
    if (m?.role !== "user" && m?.role !== "assistant") throw new InvalidRequestError(`messages.${i}.role: must be "user" or "assistant"`, `messages.${i}.role`);
    const { parts, toolCalls, toolResults } = openAIContent(m.content, `messages.${i}`);
    messages.push(...toolResults);
    if (parts.length > 0 || toolCalls.length > 0) {
      const content = onlyText(parts) ? joinText(parts) : parts;
      messages.push({ role: m.role, content, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) });
    }
  }
  const out: Body = { model: b.model, messages, max_tokens: b.max_tokens };
  for (const key of ["temperature", "top_p", "top_k"] as const) {
    if (b[key] !== undefined && b[key] !== null) {
      if (typeof b[key] !== "number") throw new InvalidRequestError(`${key}: must be a number, got ${jsonTypeOf(b[key])}`, key);
      out[key] = b[key];
    }
  }
  let stopSequences: string[] = [];
  if (b.stop_sequences !== undefined && b.stop_sequences !== null) {
    if (!Array.isArray(b.stop_sequences) || !b.stop_sequences.every((s) => typeof s === "string" && s !== "")) {
      throw new InvalidRequestError("stop_sequences: must be an array of non-empty strings", "stop_sequences");
    }
    stopSequences = b.stop_sequences as string[];
  }
  // Thinking is off unless asked for, as in Anthropic's API; its budget bounds the engine's thought
  // (llama-server's field, which our engine reads too).
  if (thinking === null) out.reasoning_effort = "none";
  else out.thinking_budget_tokens = thinking.budgetTokens;
  const tools = openAITools(b.tools);
  if (tools && tools.length > 0) out.tools = tools;
  const toolChoice = openAIToolChoice(b.tool_choice);
  if (toolChoice !== undefined) out.tool_choice = toolChoice;
  const disableParallel = (b.tool_choice as { disable_parallel_tool_use?: unknown } | null | undefined)?.disable_parallel_tool_use;
  if (disableParallel !== undefined && typeof disableParallel !== "boolean") {
    throw new InvalidRequestError("tool_choice.disable_parallel_tool_use: Input should be a valid boolean", "tool_choice.disable_parallel_tool_use");
  }
  // Anthropic's switch is the inverse of OpenAI's parallel_tool_calls.
  if (disableParallel === true) out.parallel_tool_calls = false;
  return { engine: out, stopSequences };
}

/** Anthropic's stop_reason for an OpenAI finish_reason, or for the stop sequence the daemon matched. */
export function stopReasonOf(finish: unknown, stopSequence: string | null = null): string {
  if (typeof stopSequence === "string") return "stop_sequence";
  if (finish === "length") return "max_tokens";
  if (finish === "tool_calls") return "tool_use";
  return "end_turn";
}

/**
 * count_tokens as an engine body: the chat completion the request would be, with
 * `max_tokens: 0`, so the engine templates and tokenizes the prompt exactly as
 * for generation (tools and thinking included) and reports `prompt_tokens`
 * without generating.
 */
export function countRequestFrom(body: unknown): Body {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError("The request body must be a JSON object.");
  const b = body as Body;
  checkFields(b, COUNT_FIELDS);
  if (typeof b.model !== "string" || b.model === "") throw new InvalidRequestError("model: Field required", "model");
  return { ...chatRequestFrom({ ...b, max_tokens: 1 }).engine, max_tokens: 0, stream: false };
}
