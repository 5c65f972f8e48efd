import { z } from "zod";
import { InvalidRequestError } from "../errors.ts";
import { jsonTypeOf } from "../http/fields.ts";
import type { ChatMessage } from "./chat-prompt.ts";
import { EngineUsageError, FLAGS, type SamplingDefaults } from "./options.ts";

/**
 * Request bodies of the engine's OpenAI and llama-server endpoints. Every
 * schema is strict: a field the engine does not know is a 400 that names it
 * (silently dropping a setting the user believes took effect is the worst
 * answer a server can give). Fields OpenAI defines that mean nothing for a
 * local model are listed in `OPENAI_ONLY` and accepted; docs/engine.md lists
 * every field and what the engine does with it.
 */

const textPart = z.strictObject({ type: z.literal("text"), text: z.string() });
/** Other part types are read so that chatMessagesFrom can refuse them by name. */
const otherPart = z.object({ type: z.string() }).catchall(z.unknown());
const content = z.union([z.string(), z.array(z.union([textPart, otherPart]))]);

const toolCall = z.strictObject({
  id: z.string(),
  type: z.literal("function").optional(),
  function: z.strictObject({ name: z.string().min(1), arguments: z.string() }),
  /** Streaming deltas number their calls; clients echo it back. */
  index: z.number().int().optional(),
});

const message = z.strictObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: content.nullish(),
  tool_calls: z.array(toolCall).nullish(),
  tool_call_id: z.string().nullish(),
  /** Accepted on tool messages only, where it repeats the answered call's name (checked in chatMessagesFrom). */
  name: z.string().nullish(),
});

const responseFormat = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text") }),
  z.strictObject({ type: z.literal("json_object"), schema: z.unknown().optional() }),
  z.strictObject({
    type: z.literal("json_schema"),
    json_schema: z.strictObject({
      name: z.string().optional(),
      description: z.string().optional(),
      schema: z.unknown(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

const tool = z.strictObject({
  type: z.literal("function"),
  function: z.strictObject({
    name: z.string(),
    description: z.string().nullish(),
    parameters: z.unknown().optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union([
  z.enum(["auto", "none", "required"]),
  z.strictObject({ type: z.literal("function"), function: z.strictObject({ name: z.string() }) }),
]);

const stop = z.union([z.string(), z.array(z.string()).max(16)]).nullish();
const finite = z.number().refine(Number.isFinite, "must be a finite number");
const int = z.number().int();

/** llama-server's `logit_bias`: OpenAI's object (token id or text → bias) or `[[id | "text", bias | false], ...]`. */
const biasValue = z.union([finite, z.literal(false)]);
export const logitBiasField = z
  .union([z.record(z.string(), biasValue), z.array(z.tuple([z.union([int, z.string()]), biasValue]))])
  .nullish();

/**
 * Fields OpenAI defines that have no meaning for a local model. They are
 * accepted so OpenAI clients work, and they change nothing (docs/engine.md
 * says so). Nothing else is accepted without effect.
 */
const OPENAI_ONLY = {
  user: z.string().nullish(),
  store: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  service_tier: z.string().nullish(),
  prediction: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
  verbosity: z.enum(["low", "medium", "high"]).nullish(),
};

/** Sampling and generation fields common to chat and completions (llama-server's names beside OpenAI's). */
const sampling = {
  model: z.string().optional(),
  /** -1 = until a stop or the end of the context (llama-server); `n_predict` wins over both OpenAI names. */
  max_tokens: int.min(-1).nullish(),
  n_predict: int.min(-1).nullish(),
  temperature: finite.min(0).nullish(),
  top_p: finite.min(0).max(1).nullish(),
  top_k: int.nullish(),
  min_p: finite.min(0).max(1).nullish(),
  /** -1 = a random seed, as llama-server. */
  seed: int.nullish(),
  stop,
  presence_penalty: finite.nullish(),
  frequency_penalty: finite.nullish(),
  repeat_penalty: finite.positive().nullish(),
  repeat_last_n: int.min(0).nullish(),
  typical_p: finite.nullish(),
  min_keep: int.min(0).nullish(),
  top_n_sigma: finite.nullish(),
  xtc_probability: finite.min(0).max(1).nullish(),
  xtc_threshold: finite.min(0).max(1).nullish(),
  dynatemp_range: finite.nullish(),
  dynatemp_exponent: finite.nullish(),
  mirostat: int.min(0).max(2).nullish(),
  mirostat_tau: finite.nullish(),
  mirostat_eta: finite.nullish(),
  dry_multiplier: finite.nullish(),
  dry_base: finite.nullish(),
  dry_allowed_length: int.min(0).nullish(),
  dry_penalty_last_n: int.min(0).nullish(),
  dry_sequence_breakers: z.array(z.string()).min(1).nullish(),
  samplers: z.union([z.array(z.string()), z.string()]).nullish(),
  logit_bias: logitBiasField,
  ignore_eos: z.boolean().nullish(),
  n_keep: int.min(-1).nullish(),
  t_max_predict_ms: int.min(-1).nullish(),
  cache_prompt: z.boolean().nullish(),
  id_slot: int.min(-1).nullish(),
  timings_per_token: z.boolean().nullish(),
  return_tokens: z.boolean().nullish(),
  n_probs: int.min(0).nullish(),
  post_sampling_probs: z.boolean().nullish(),
  /** llama-server's structured output: GBNF text, or a JSON schema. */
  grammar: z.string().nullish(),
  json_schema: z.unknown().optional(),
  n: int.min(1).nullish(),
  n_cmpl: int.min(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().nullish() }).nullish(),
  ...OPENAI_ONLY,
};

export const chatCompletionRequest = z.strictObject({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: int.min(-1).nullish(),
  response_format: responseFormat.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  /** OpenAI's: per-token log probabilities; `top_logprobs` alternatives each (llama-server's default 20). */
  logprobs: z.boolean().nullish(),
  top_logprobs: int.min(0).nullish(),
  /** OpenAI's knob; "none" turns thinking off, the others leave the engine's budget. */
  reasoning_effort: z.enum(["none", "minimal", "low", "medium", "high"]).nullish(),
  /**
   * Per-request `--reasoning-budget`: -1 unlimited (the engine's flag), 0 off, N tokens.
   * `reasoning_budget_tokens` and `thinking_budget_tokens` are llama-server's names (it
   * reads them in that order); `reasoning_budget` is this engine's older spelling.
   */
  reasoning_budget_tokens: int.min(-1).nullish(),
  thinking_budget_tokens: int.min(-1).nullish(),
  reasoning_budget: int.min(-1).nullish(),
  /** llama-server's values: "none" leaves the thought in `content`. */
  reasoning_format: z.enum(["none", "auto", "deepseek", "deepseek-legacy"]).nullish(),
  /** Every key reaches the chat template, as in llama-server. */
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  /** Output modalities: only text (an audio answer is refused). */
  modalities: z.array(z.enum(["text", "audio"])).nullish(),
  audio: z.unknown().optional(),
});

/**
 * `/v1/completions` prompts, as llama-server takes them: a string, token ids,
 * a mix of both (one prompt), or a list of those (one choice each).
 */
const onePrompt = z.union([z.string(), z.array(z.union([z.string(), int.min(0)])).min(1)]);
export const promptField = z.union([onePrompt, z.array(z.union([z.string(), z.array(z.union([z.string(), int.min(0)])).min(1)])).min(1)]);

export const completionRequest = z.strictObject({
  ...sampling,
  prompt: promptField,
  response_format: responseFormat.nullish(),
  /** OpenAI's legacy field: the number of alternatives per token (llama-server reads it as `n_probs`). */
  logprobs: int.min(0).nullish(),
  /** Refused: llama-server answers "Only no echo is supported". */
  echo: z.boolean().nullish(),
  /** Refused as in llama-server ("Unsupported param"). */
  best_of: z.unknown().optional(),
  suffix: z.unknown().optional(),
});

const tokenArray = z.array(z.number().int().min(0));
export const embeddingRequest = z.strictObject({
  model: z.string().optional(),
  input: z.union([z.string(), z.array(z.string()).min(1), tokenArray.min(1), z.array(tokenArray.min(1)).min(1)]),
  encoding_format: z.enum(["float", "base64"]).optional(),
  /** Only the model's own size can be honoured (checked by the route). */
  dimensions: z.number().int().min(1).nullish(),
  user: OPENAI_ONLY.user,
});

export const rankRequest = z.strictObject({
  model: z.string().optional(),
  query: z.string(),
  documents: z.array(z.union([z.string(), z.strictObject({ text: z.string() })])).min(1),
  top_n: z.number().int().min(1).nullish(),
  return_documents: z.boolean().nullish(),
});

const oneOrMany = z.union([z.string(), z.array(z.string()).min(1)]);
export const scoreRequest = z.strictObject({
  model: z.string().optional(),
  text_1: oneOrMany,
  text_2: oneOrMany,
});

/** llama-server's `/tokenize`; `model` is read by the daemon, which routes by it. */
export const tokenizeRequest = z.strictObject({
  model: z.string().optional(),
  content: z.string(),
  add_special: z.boolean().optional(),
  /** false: special-token text is tokenized as plain text (llama-server's default is true). */
  parse_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});

export const detokenizeRequest = z.strictObject({ model: z.string().optional(), tokens: tokenArray });

/** Parses `body` with `schema`, or throws a 400 naming the first bad field. */
export function parseRequest<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  // reportInput: without it zod leaves `input` out of issues, and every wrong type read as "is required".
  const result = schema.safeParse(body, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    // A strict schema: name the field, so a setting is never dropped unnoticed.
    const param = [...issue.path.map(String), issue.keys[0]!].join(".");
    throw new InvalidRequestError(`'${param}' is not supported by this engine.`, param);
  }
  const param = issue.path.map(String).join(".") || null;
  const what =
    issue.code === "invalid_type"
      ? issue.input === undefined
        ? "is required"
        : `must be ${issue.expected === "int" ? "an integer" : /^[aeiou]/.test(issue.expected) ? `an ${issue.expected}` : `a ${issue.expected}`}, got ${jsonTypeOf(issue.input)}`
      : `is invalid: ${issue.message}`;
  throw new InvalidRequestError(`'${param ?? "body"}' ${what}`, param);
}

/** Flattens OpenAI message content (string or text parts) into plain text, keeping tool calls and results. */
export function chatMessagesFrom(messages: z.infer<typeof chatCompletionRequest>["messages"]): ChatMessage[] {
  return messages.map((m, i): ChatMessage => {
    if (m.name != null && m.role !== "tool") {
      throw new InvalidRequestError(`messages[${i}].name is not supported: the chat template receives no participant names.`, `messages.${i}.name`);
    }
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
