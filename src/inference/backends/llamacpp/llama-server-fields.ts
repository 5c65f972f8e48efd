import { z } from "zod";
import { InvalidRequestError } from "../../../errors.ts";
import { refuseChatFields, refuseCompletionFields, type ChatBody, type CompletionBody } from "../../../engine/request-fields.ts";
import { chatCompletionRequest, completionRequest, embeddingRequest, parseRequest } from "../../../engine/requests.ts";

type Json = Record<string, unknown>;

/**
 * Fields of llama-server's completion schema (server-schema.cpp of the
 * bundled release) that the built-in engine does not take and llama-server
 * honours on its OpenAI routes: they reach it unchanged (`response_fields`
 * shapes only its native `/completion` answers, so it is not here). Its internal ones (`chat_format`,
 * `chat_parser`, `generation_prompt`, `parse_tool_calls`, which its chat
 * handler sets from the template) are not among them.
 */
const LLAMA_SERVER_ONLY = Object.fromEntries(
  [
    "adaptive_decay",
    "adaptive_target",
    "backend_sampling",
    "continue_final_message",
    "grammar_lazy",
    "grammar_triggers",
    "lora",
    "n_cache_reuse",
    "n_discard",
    "n_indent",
    "preserved_tokens",
    "reasoning_budget_end_tags",
    "reasoning_budget_message",
    "reasoning_budget_start_tag",
    "reasoning_control",
    "return_progress",
    "sse_ping_interval",
    "t_max_prompt_ms",
    "verbose",
  ].map((name) => [name, z.unknown().optional()]),
);

const chat = chatCompletionRequest.extend(LLAMA_SERVER_ONLY);
const completion = completionRequest.extend(LLAMA_SERVER_ONLY);
const CHECKS: Record<string, (body: Json) => void> = {
  "/v1/chat/completions": (body) => refuseChatFields(parseRequest(chat, body) as ChatBody),
  "/chat/completions": (body) => refuseChatFields(parseRequest(chat, body) as ChatBody),
  "/v1/completions": (body) => refuseCompletionFields(parseRequest(completion, body) as CompletionBody),
  "/completions": (body) => refuseCompletionFields(parseRequest(completion, body) as CompletionBody),
  "/v1/embeddings": (body) => void parseRequest(embeddingRequest, body),
  "/embeddings": (body) => void parseRequest(embeddingRequest, body),
};

/**
 * llama-server reads the fields it knows and drops the rest without a word,
 * so a request that the built-in engine refuses (a misspelt or unsupported
 * field, a wrong type, `best_of`) would be answered as if the field had not
 * been sent. This checks an OpenAI request body as the built-in engine does:
 * its schemas and refusals, the same 400s naming the field, with
 * llama-server's own extra fields allowed, and `return_tokens`, which only
 * the built-in engine honours there, and `top_logprobs: 0`, for which
 * llama-server returns no log probabilities, refused. The engine's older
 * `reasoning_budget` is passed on as llama-server's `reasoning_budget_tokens`.
 * Returns the error message and the field it names, or the body to send (changed or not).
 */
export function checkOpenAIFields(path: string, body: Json): { error: string; param: string | null } | { body: Json; changed: boolean } {
  const check = CHECKS[path.split("?")[0]!];
  if (check === undefined) return { body, changed: false };
  try {
    check(body);
  } catch (error) {
    return { error: (error as Error).message, param: error instanceof InvalidRequestError ? error.param : null };
  }
  if (body.return_tokens === true) {
    return {
      error: "'return_tokens': llama-server returns the generated token ids on its own /completion route only, not on the OpenAI routes. Use /completion, or the built-in engine (it returns them on both).",
      param: "return_tokens",
    };
  }
  if (body.logprobs === true && body.top_logprobs === 0) {
    return {
      error: "'top_logprobs': 0 with 'logprobs': true makes llama-server return no log probabilities at all (OpenAI returns each token's own). Ask for 1 or more alternatives, or use the built-in engine.",
      param: "top_logprobs",
    };
  }
  if (body.reasoning_budget !== undefined && body.reasoning_budget !== null) {
    const { reasoning_budget: budget, ...rest } = body;
    if (rest.reasoning_budget_tokens == null && rest.thinking_budget_tokens == null) rest.reasoning_budget_tokens = budget;
    return { body: rest, changed: true };
  }
  return { body, changed: false };
}
