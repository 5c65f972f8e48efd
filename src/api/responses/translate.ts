import { randomBytes } from "node:crypto";
import { InvalidRequestError } from "../../errors.ts";
import { firstUnknownField, optionalBoolean, optionalField } from "../../http/fields.ts";

type Body = Record<string, unknown>;

export const newId = (prefix: string) => `${prefix}_${randomBytes(16).toString("hex")}`;

/** Request fields we honour (or that change nothing); anything else is a 400 naming it. */
const KNOWN = new Set([
  "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "text", "stream", "previous_response_id",
  "store", "metadata", "tools", "tool_choice", "parallel_tool_calls", "user", "truncation", "background", "include", "reasoning",
]);

/**
 * The fields of each nested object we read; any other is a 400 naming its
 * path, as OpenAI answers (`Unknown parameter: 'input[0].extra'.`). `status`,
 * `id` and an output part's `annotations` and `logprobs` are what clients
 * echo back from earlier responses; `text.verbosity` is accepted and changes
 * nothing, as on chat completions (docs/engine.md).
 */
const ITEM_FIELDS: Record<string, ReadonlySet<string>> = {
  message: new Set(["type", "role", "content", "id", "status"]),
  function_call: new Set(["type", "id", "call_id", "name", "arguments", "status"]),
  function_call_output: new Set(["type", "id", "call_id", "output", "status"]),
};
const PART_FIELDS: Record<string, ReadonlySet<string>> = {
  input_text: new Set(["type", "text"]),
  text: new Set(["type", "text"]),
  output_text: new Set(["type", "text", "annotations", "logprobs"]),
  input_image: new Set(["type", "image_url", "detail", "file_id"]),
};
const FORMAT_FIELDS: Record<string, ReadonlySet<string>> = {
  text: new Set(["type"]),
  json_object: new Set(["type"]),
  json_schema: new Set(["type", "name", "schema", "strict", "description"]),
};
const TEXT_FIELDS: ReadonlySet<string> = new Set(["format", "verbosity"]);
const TOOL_FIELDS: ReadonlySet<string> = new Set(["type", "name", "description", "parameters", "strict"]);
const TOOL_CHOICE_FIELDS: ReadonlySet<string> = new Set(["type", "name"]);

/** A 400 naming the first field of `value` (an object at `at`) that `known` does not list. */
function checkKeys(value: unknown, known: ReadonlySet<string> | undefined, at: string): void {
  if (known === undefined || value === null || typeof value !== "object" || Array.isArray(value)) return;
  const key = firstUnknownField(value as Body, known);
  if (key !== undefined) throw new InvalidRequestError(`Unknown parameter: '${at}.${key}'.`, `${at}.${key}`);
}

export interface ParsedResponsesRequest {
  model: string;
  stream: boolean;
  store: boolean;
  instructions: string | null;
  previousResponseId: string | null;
  /** This turn's input as items with ids (for input_items). */
  inputItems: Body[];
  /** This turn's input as chat messages. */
  inputMessages: Body[];
  /** Engine body fields besides model/messages/stream. */
  engine: Body;
  /** Echoed in the response object. */
  echo: Body;
}

function textOf(content: unknown, where: string): { text: string | null; parts: Body[] } {
  if (typeof content === "string") return { text: content, parts: [{ type: "input_text", text: content }] };
  if (!Array.isArray(content)) throw new InvalidRequestError(`'${where}' must be a string or an array of content parts.`, where);
  const parts: Body[] = [];
  const chat: Body[] = [];
  for (const [i, p] of (content as Body[]).entries()) {
    checkKeys(p, PART_FIELDS[p?.type as string], `${where}[${i}]`);
    if ((p.type === "input_text" || p.type === "output_text" || p.type === "text") && typeof p.text === "string") {
      parts.push({ type: p.type === "text" ? "input_text" : p.type, text: p.text });
      chat.push({ type: "text", text: p.text });
    } else if (p.type === "input_image") {
      // The daemon's image check (src/api/engine/images.ts) takes it from here, `detail` included.
      if (typeof p.image_url !== "string") throw new InvalidRequestError(`${where}[${i}].image_url: input_image needs an image_url (a data: URI); file_id is not supported.`, `${where}.${i}.image_url`);
      parts.push(p);
      chat.push({ type: "image_url", image_url: { url: p.image_url, ...(p.detail !== undefined ? { detail: p.detail } : {}) } });
    } else {
      throw new InvalidRequestError(`Unsupported content part type '${String(p.type)}' at ${where}[${i}].`, `${where}.${i}.type`);
    }
  }
  const isText = chat.every((c) => c.type === "text");
  return { text: isText ? chat.map((c) => c.text as string).join("") : null, parts: isText ? parts : parts.concat([{ _chat: chat }]) };
}

/**
 * A function_call_output's `output` (a string, or content parts) as the text
 * of a tool message, which carries text only: an image in it is a 400 naming
 * it rather than an output quietly missing it.
 */
function outputText(output: unknown, where: string): string {
  if (typeof output === "string") return output;
  const param = where.replace(/\[(\d+)\]/g, ".$1");
  if (!Array.isArray(output)) throw new InvalidRequestError(`'${where}' must be a string or an array of content parts.`, param);
  const { text } = textOf(output, where);
  if (text === null) throw new InvalidRequestError(`'${where}' has an image: a tool's output can only be text here (a tool message carries text only).`, param);
  return text;
}

/** Response `input` (string or items) → input items with ids and chat messages. */
function inputOf(input: unknown): { items: Body[]; messages: Body[] } {
  if (typeof input === "string") {
    return { items: [{ id: newId("msg"), type: "message", role: "user", status: "completed", content: [{ type: "input_text", text: input }] }], messages: [{ role: "user", content: input }] };
  }
  if (!Array.isArray(input) || input.length === 0) throw new InvalidRequestError("'input' must be a string or a non-empty array of items.", "input");
  const items: Body[] = [];
  const messages: Body[] = [];
  for (const [i, item] of (input as Body[]).entries()) {
    const type = item.type ?? "message";
    checkKeys(item, ITEM_FIELDS[type as string], `input[${i}]`);
    if (type === "message") {
      const role = item.role;
      if (!["user", "assistant", "system", "developer"].includes(role as string)) throw new InvalidRequestError(`'input[${i}].role' must be user, assistant, system or developer.`, `input.${i}.role`);
      const { text, parts } = textOf(item.content, `input[${i}].content`);
      const chatParts = parts.find((p) => p._chat)?._chat;
      items.push({ id: (item.id as string) ?? newId("msg"), type: "message", role, status: "completed", content: parts.filter((p) => !p._chat) });
      messages.push({ role: role === "developer" ? "system" : role, content: text ?? chatParts });
    } else if (type === "function_call") {
      items.push({ id: (item.id as string) ?? newId("fc"), type, call_id: item.call_id, name: item.name, arguments: item.arguments, status: "completed" });
      messages.push({ role: "assistant", content: null, tool_calls: [{ id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } }] });
    } else if (type === "function_call_output") {
      items.push({ id: (item.id as string) ?? newId("fco"), type, call_id: item.call_id, output: item.output });
      messages.push({ role: "tool", tool_call_id: item.call_id, content: outputText(item.output, `input[${i}].output`) });
    } else {
      throw new InvalidRequestError(`Unsupported input item type '${String(type)}' at input[${i}].`, `input.${i}.type`);
    }
  }
  return { items, messages };
}

/** `text.format` → the engine's `response_format`. */
function responseFormatOf(text: unknown): Body | null {
  if (text === undefined || text === null) return null;
  checkKeys(text, TEXT_FIELDS, "text");
  const format = (text as { format?: Body }).format;
  checkKeys(format, FORMAT_FIELDS[format?.type as string], "text.format");
  if (format === undefined || format === null || format.type === "text") return null;
  if (format.type === "json_object") return { type: "json_object" };
  if (format.type === "json_schema") {
    if (typeof format.name !== "string" || format.schema === undefined) throw new InvalidRequestError("'text.format' json_schema needs 'name' and 'schema'.", "text.format");
    return { type: "json_schema", json_schema: { name: format.name, schema: format.schema, strict: format.strict ?? false, ...(format.description ? { description: format.description } : {}) } };
  }
  throw new InvalidRequestError(`Unsupported text.format type '${String(format.type)}'.`, "text.format.type");
}

function toolsOf(tools: unknown): Body[] | null {
  if (tools === undefined || tools === null) return null;
  if (!Array.isArray(tools)) throw new InvalidRequestError("'tools' must be an array.", "tools");
  if (tools.length === 0) return null;
  return tools.map((t: Body, i) => {
    checkKeys(t, TOOL_FIELDS, `tools[${i}]`);
    if (t.type !== "function") throw new InvalidRequestError(`Unsupported tool type '${String(t.type)}' at tools[${i}]: only function tools are supported.`, `tools.${i}.type`);
    return { type: "function", function: { name: t.name, description: t.description ?? "", parameters: t.parameters ?? { type: "object" }, ...(t.strict !== undefined ? { strict: t.strict } : {}) } };
  });
}

function toolChoiceOf(choice: unknown): unknown {
  if (choice === undefined || choice === null) return undefined;
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  checkKeys(choice, TOOL_CHOICE_FIELDS, "tool_choice");
  const c = choice as { type?: string; name?: string };
  if (c.type === "function" && typeof c.name === "string") return { type: "function", function: { name: c.name } };
  throw new InvalidRequestError("Unsupported 'tool_choice'.", "tool_choice");
}

function numberField(b: Body, key: string, min: number, max: number): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || v < min || v > max) throw new InvalidRequestError(`'${key}' must be a number between ${min} and ${max}.`, key);
  return v;
}

/** Validates a create request; unsupported fields and values are 400s naming them. */
export function parseResponsesRequest(body: unknown): ParsedResponsesRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError("The request body must be a JSON object.");
  const b = body as Body;
  for (const key of Object.keys(b)) {
    if (!KNOWN.has(key) && b[key] !== undefined) throw new InvalidRequestError(`Unsupported parameter: '${key}' is not supported by this server.`, key);
  }
  if (b.model === undefined || b.model === null) throw new InvalidRequestError("'model' is required.", "model");
  if (typeof b.model !== "string" || b.model === "") throw new InvalidRequestError("'model' must be a non-empty string.", "model");
  const stream = optionalBoolean(b.stream, "stream") === true;
  const store = optionalBoolean(b.store, "store") !== false;
  optionalBoolean(b.parallel_tool_calls, "parallel_tool_calls");
  optionalField(b.previous_response_id, "string", "previous_response_id");
  optionalField(b.metadata, "object", "metadata");
  if (b.background === true) throw new InvalidRequestError("Unsupported parameter: 'background' responses are not supported.", "background");
  if (Array.isArray(b.include) && b.include.length > 0) throw new InvalidRequestError("Unsupported parameter: 'include' is not supported.", "include");
  if (b.truncation !== undefined && b.truncation !== null && b.truncation !== "disabled") throw new InvalidRequestError("Unsupported value: 'truncation' must be \"disabled\".", "truncation");
  const reasoning = b.reasoning as Body | null | undefined;
  if (reasoning && Object.values(reasoning).some((v) => v !== null && v !== undefined)) throw new InvalidRequestError("Unsupported parameter: 'reasoning' is not supported.", "reasoning");
  if (b.instructions !== undefined && b.instructions !== null && typeof b.instructions !== "string") throw new InvalidRequestError("'instructions' must be a string.", "instructions");
  const maxOutput = b.max_output_tokens;
  if (maxOutput !== undefined && maxOutput !== null && (typeof maxOutput !== "number" || !Number.isInteger(maxOutput) || maxOutput < 1)) {
    throw new InvalidRequestError("'max_output_tokens' must be a positive integer.", "max_output_tokens");
  }
  const { items, messages } = inputOf(b.input);
  const engine: Body = {};
  const temperature = numberField(b, "temperature", 0, 2);
  const topP = numberField(b, "top_p", 0, 1);
  if (temperature !== undefined) engine.temperature = temperature;
  if (topP !== undefined) engine.top_p = topP;
  if (typeof maxOutput === "number") engine.max_tokens = maxOutput;
  const format = responseFormatOf(b.text);
  if (format) engine.response_format = format;
  const tools = toolsOf(b.tools);
  if (tools) engine.tools = tools;
  const toolChoice = toolChoiceOf(b.tool_choice);
  if (toolChoice !== undefined) engine.tool_choice = toolChoice;
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null) engine.parallel_tool_calls = b.parallel_tool_calls;
  const textFormat = (b.text as { format?: unknown } | undefined)?.format ?? { type: "text" };
  return {
    model: b.model,
    stream,
    store,
    instructions: typeof b.instructions === "string" ? b.instructions : null,
    previousResponseId: typeof b.previous_response_id === "string" && b.previous_response_id !== "" ? b.previous_response_id : null,
    inputItems: items,
    inputMessages: messages,
    engine,
    echo: {
      instructions: b.instructions ?? null,
      max_output_tokens: maxOutput ?? null,
      metadata: b.metadata ?? {},
      parallel_tool_calls: b.parallel_tool_calls ?? true,
      temperature: temperature ?? 1,
      top_p: topP ?? 1,
      text: { format: textFormat },
      tool_choice: b.tool_choice ?? "auto",
      tools: b.tools ?? [],
      truncation: "disabled",
      user: b.user ?? null,
      reasoning: { effort: null, summary: null },
    },
  };
}
