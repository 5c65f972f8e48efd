import { z } from "zod";
import { InvalidRequestError } from "../errors.ts";
import { jsonTypeOf } from "../http/fields.ts";
import { DEFAULT_SAMPLING, type SamplingParams } from "./generate.ts";
import type { ChatMessage } from "./chat-prompt.ts";
import { EngineUsageError, FLAGS, type SamplingDefaults } from "./options.ts";

/**
 * Request bodies of the engine's OpenAI endpoints. Unknown fields are
 * accepted (clients send many), but every field we read is type- and
 * range-checked, and a bad one is a 400 that names it.
 */

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const content = z.union([z.string(), z.array(z.union([textPart, z.looseObject({ type: z.string() })]))]);

const toolCall = z.looseObject({
  id: z.string(),
  type: z.literal("function").optional(),
  function: z.looseObject({ name: z.string().min(1), arguments: z.string() }),
});

const message = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: content.nullish(),
  tool_calls: z.array(toolCall).nullish(),
  tool_call_id: z.string().nullish(),
});

const responseFormat = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({ type: z.literal("json_object"), schema: z.unknown().optional() }),
  z.looseObject({
    type: z.literal("json_schema"),
    json_schema: z.looseObject({ name: z.string().optional(), schema: z.unknown(), strict: z.boolean().nullish() }),
  }),
]);

const tool = z.looseObject({
  type: z.literal("function"),
  function: z.looseObject({
    name: z.string(),
    description: z.string().nullish(),
    parameters: z.unknown().optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union([
  z.enum(["auto", "none", "required"]),
  z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string() }) }),
]);

const stop = z.union([z.string(), z.array(z.string()).max(16)]).nullish();

const sampling = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(0).nullish(),
  temperature: z.number().min(0).max(100).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  n: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
};

export const chatCompletionRequest = z.looseObject({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(0).nullish(),
  response_format: responseFormat.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  /** OpenAI's knob; "none" turns thinking off, the others leave the engine's budget. */
  reasoning_effort: z.enum(["none", "minimal", "low", "medium", "high"]).nullish(),
  /** Per-request `--reasoning-budget`: -1 unlimited, 0 off, N tokens. */
  reasoning_budget: z.number().int().min(-1).nullish(),
  /** llama-server's: "none" leaves the thought in `content`. */
  reasoning_format: z.enum(["none", "auto", "deepseek"]).nullish(),
  chat_template_kwargs: z.looseObject({ enable_thinking: z.boolean().optional() }).nullish(),
});

export const completionRequest = z.looseObject({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1)]),
  /** llama-server's structured output on completions: a JSON schema or GBNF text. */
  json_schema: z.unknown().optional(),
  grammar: z.string().nullish(),
  response_format: responseFormat.nullish(),
});

const tokenArray = z.array(z.number().int().min(0));
export const embeddingRequest = z.looseObject({
  model: z.string().optional(),
  input: z.union([z.string(), z.array(z.string()).min(1), tokenArray.min(1), z.array(tokenArray.min(1)).min(1)]),
  encoding_format: z.enum(["float", "base64"]).optional(),
});

export const rankRequest = z.looseObject({
  model: z.string().optional(),
  query: z.string(),
  documents: z.array(z.union([z.string(), z.looseObject({ text: z.string() })])).min(1),
  top_n: z.number().int().min(1).nullish(),
  return_documents: z.boolean().nullish(),
});

const oneOrMany = z.union([z.string(), z.array(z.string()).min(1)]);
export const scoreRequest = z.looseObject({
  model: z.string().optional(),
  text_1: oneOrMany,
  text_2: oneOrMany,
});

export const tokenizeRequest = z.looseObject({
  content: z.string(),
  add_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});

export const detokenizeRequest = z.looseObject({ tokens: tokenArray });

/** Parses `body` with `schema`, or throws a 400 naming the first bad field. */
export function parseRequest<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  // reportInput: without it zod leaves `input` out of issues, and every wrong type read as "is required".
  const result = schema.safeParse(body, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.map(String).join(".") || null;
  const what =
    issue.code === "invalid_type"
      ? issue.input === undefined
        ? "is required"
        : `must be ${issue.expected === "int" ? "an integer" : /^[aeiou]/.test(issue.expected) ? `an ${issue.expected}` : `a ${issue.expected}`}, got ${jsonTypeOf(issue.input)}`
      : `is invalid: ${issue.message}`;
  throw new InvalidRequestError(`'${param ?? "body"}' ${what}`, param);
}

type Sampling = {
  [K in keyof typeof sampling]?: z.infer<(typeof sampling)[K]>;
};

/** Sampling settings from a request, llama-server's defaults where absent. */
export function samplingFrom(req: Sampling, maxTokens: number | null | undefined): SamplingParams {
  if (req.n !== undefined && req.n !== null && req.n !== 1) {
    throw new InvalidRequestError("Only n=1 is supported.", "n");
  }
  const stops = req.stop === undefined || req.stop === null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
  return {
    temperature: req.temperature ?? DEFAULT_SAMPLING.temperature,
    topP: req.top_p ?? DEFAULT_SAMPLING.topP,
    topK: req.top_k ?? DEFAULT_SAMPLING.topK,
    minP: req.min_p ?? DEFAULT_SAMPLING.minP,
    seed: req.seed ?? null,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    maxTokens: maxTokens ?? null,
    stop: stops.filter((s) => s !== ""),
  };
}

/** Flattens OpenAI message content (string or text parts) into plain text, keeping tool calls and results. */
export function chatMessagesFrom(messages: z.infer<typeof chatCompletionRequest>["messages"]): ChatMessage[] {
  return messages.map((m, i): ChatMessage => {
    let text = "";
    if (typeof m.content === "string") text = m.content;
    else if (Array.isArray(m.content)) {
      for (const [j, part] of m.content.entries()) {
        if (part.type !== "text" || typeof (part as { text?: unknown }).text !== "string") {
          throw new InvalidRequestError(
            `messages[${i}].content[${j}] has type "${part.type}"; this model accepts only text content.`,
            `messages.${i}.content.${j}.type`,
          );
        }
        text += (part as { text: string }).text;
      }
    }
    if (m.role === "tool") {
      if (!m.tool_call_id) throw new InvalidRequestError(`messages[${i}] has role "tool" but no tool_call_id`, `messages.${i}.tool_call_id`);
      return { role: "tool", content: text, toolCallId: m.tool_call_id };
    }
    if (m.role === "assistant" && m.tool_calls && m.tool_calls.length > 0) {
      const toolCalls = m.tool_calls.map((c, j) => {
        let args: unknown;
        try {
          args = c.function.arguments.trim() === "" ? {} : JSON.parse(c.function.arguments);
        } catch {
          throw new InvalidRequestError(
            `messages[${i}].tool_calls[${j}].function.arguments is not valid JSON`,
            `messages.${i}.tool_calls.${j}.function.arguments`,
          );
        }
        return { id: c.id, name: c.function.name, arguments: args };
      });
      return { role: "assistant", content: text, toolCalls };
    }
    return { role: m.role, content: text };
  });
}

/**
 * The engine's default generation settings (sampling flags such as `--temp`,
 * `-n`, `--repeat-penalty`) merged under a request body before it is parsed:
 * a field the request gives (not null) wins, as in llama-server, where the
 * flags set `params_base` and the request's fields override it. `n_predict`
 * stands in only when the request has none of `n_predict`, `max_tokens`,
 * `max_completion_tokens` (llama-server's precedence), and is given as
 * `max_tokens` so both names' handling sees it.
 */
export function withSamplingDefaults(body: unknown, defaults: SamplingDefaults): unknown {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return body;
  const given = body as Record<string, unknown>;
  const has = (field: string) => given[field] !== undefined && given[field] !== null;
  const merged: Record<string, unknown> = { ...given };
  for (const [field, value] of Object.entries(defaults)) {
    if (field === "n_predict") {
      if (!has("n_predict") && !has("max_tokens") && !has("max_completion_tokens")) merged.max_tokens = value;
    } else if (!has(field)) merged[field] = value;
  }
  return merged;
}

/**
 * Refuses a sampling-default flag whose request field the request schemas
 * do not know: such a default would be dropped without effect. Throws
 * EngineUsageError naming the flag.
 */
export function checkSamplingDefaults(defaults: SamplingDefaults): void {
  for (const field of Object.keys(defaults)) {
    if (field === "n_predict") continue;
    if (field in chatCompletionRequest.shape && field in completionRequest.shape) continue;
    const flag = FLAGS.find((f) => f.samplingField === field)?.names.at(-1) ?? field;
    throw new EngineUsageError(`${flag} is not supported yet: the engine does not apply the request field "${field}"`);
  }
}
