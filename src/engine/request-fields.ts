import type { Token } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import type { z } from "zod";
import type { chatCompletionRequest, completionRequest, promptField } from "./requests.ts";
import { samplingFrom, type SamplingParams, type Vocabulary } from "./sampling.ts";

/**
 * How llama-server reads the generation fields of a chat or completion
 * request (server-common.cpp, server-schema.cpp of the bundled release),
 * turned into the engine's settings, and the 400s for what it refuses.
 */

export type ChatBody = z.infer<typeof chatCompletionRequest>;
export type CompletionBody = z.infer<typeof completionRequest>;

/** What a request asks of generation, besides its prompt. */
export interface GenerationPlan {
  params: SamplingParams;
  /** Choices per prompt (`n`, llama-server's `n_cmpl`). */
  choices: number;
  /** llama-server's `id_slot`; null = any free slot. */
  slot: number | null;
  timingsPerToken: boolean;
  returnTokens: boolean;
}

/**
 * llama-server's precedence for the generation limit: `n_predict`, then
 * `max_completion_tokens`, then `max_tokens`; -1 = none. `fallback` applies
 * when none is given.
 */
export function generationLimit(body: { n_predict?: number | null; max_completion_tokens?: number | null; max_tokens?: number | null }, fallback: number | null): number | null {
  const limit = body.n_predict ?? body.max_completion_tokens ?? body.max_tokens;
  if (limit === undefined || limit === null) return fallback;
  return limit < 0 ? null : limit;
}

/**
 * The 400s for a chat request that need nothing but its body: what neither
 * engine can honour (an audio answer), what llama-server refuses (a grammar
 * with tools), and what it would let pass without effect (a grammar and a
 * JSON schema at once). The llama-server wrapper refuses the same.
 */
export function refuseChatFields(body: ChatBody): void {
  if (body.modalities?.includes("audio")) {
    throw new InvalidRequestError("'modalities' asks for audio output; this engine generates text only.", "modalities");
  }
  if (body.audio != null) throw new InvalidRequestError("'audio' output is not supported: this engine generates text only.", "audio");
  structuredOutputChecks(body);
  const enableThinking = body.chat_template_kwargs?.enable_thinking;
  if (enableThinking !== undefined && typeof enableThinking !== "boolean") {
    throw new InvalidRequestError(`invalid type for "enable_thinking" (expected boolean, got ${typeof enableThinking})`, "chat_template_kwargs.enable_thinking");
  }
  if (body.grammar != null && body.grammar !== "" && (body.tools?.length ?? 0) > 0 && body.tool_choice !== "none") {
    throw new InvalidRequestError("Cannot use custom grammar constraints with tools.", "grammar");
  }
}

/** The same for a `/v1/completions` request: llama-server's refusals of `echo`, `best_of` and `suffix`. */
export function refuseCompletionFields(body: CompletionBody): void {
  if (body.echo === true) throw new InvalidRequestError("Only no echo is supported", "echo");
  for (const param of ["best_of", "suffix"] as const) {
    if (body[param] !== undefined) throw new InvalidRequestError(`Unsupported param: ${param}`, param);
  }
  structuredOutputChecks(body);
}

/** The plan for a chat request. `slots` is the engine's slot count. */
export function chatPlan(body: ChatBody, vocab: Vocabulary, slots: number): GenerationPlan {
  refuseChatFields(body);
  // llama-server: `logprobs: true` asks for `top_logprobs` alternatives (20 by default); `n_probs` otherwise.
  let logprobs: SamplingParams["logprobs"] = null;
  const post = body.post_sampling_probs ?? false;
  if (body.logprobs === true) logprobs = { top: body.top_logprobs ?? 20, postSampling: post };
  else if (body.top_logprobs != null) throw new InvalidRequestError("top_logprobs requires logprobs to be set to true", "top_logprobs");
  else if (body.n_probs != null && body.n_probs > 0) logprobs = { top: body.n_probs, postSampling: post };
  return plan(body, generationLimit(body, null), logprobs, vocab, slots);
}

/**
 * The plan for a `/v1/completions` request (16 tokens by default, OpenAI's),
 * or for llama-server's `/completion` and `/infill` (`defaultLimit` null: until a stop).
 */
export function completionPlan(body: CompletionBody, vocab: Vocabulary, slots: number, defaultLimit: number | null = 16): GenerationPlan {
  refuseCompletionFields(body);
  // llama-server reads OpenAI's legacy `logprobs: N` as `n_probs` when `n_probs` is absent.
  const top = body.n_probs ?? body.logprobs;
  const logprobs = top != null && top > 0 ? { top, postSampling: body.post_sampling_probs ?? false } : null;
  return plan(body, generationLimit(body, defaultLimit), logprobs, vocab, slots);
}

function structuredOutputChecks(body: { grammar?: string | null; json_schema?: unknown }): void {
  if (body.json_schema != null && body.grammar != null && body.grammar !== "") {
    throw new InvalidRequestError("Cannot use both json_schema and grammar", "grammar");
  }
}

function plan(body: ChatBody | CompletionBody, limit: number | null, logprobs: SamplingParams["logprobs"], vocab: Vocabulary, slots: number): GenerationPlan {
  const choices = body.n_cmpl ?? body.n ?? 1;
  if (choices > slots) {
    const param = body.n_cmpl != null ? "n_cmpl" : "n";
    throw new InvalidRequestError(`'${param}' is ${choices}, but this engine has ${slots} slot${slots === 1 ? "" : "s"} (start it with --parallel ${choices} or more).`, param);
  }
  if (body.id_slot != null && body.id_slot >= slots) {
    throw new InvalidRequestError(`'id_slot' is ${body.id_slot}, but this engine has ${slots} slots (0-${slots - 1}).`, "id_slot");
  }
  if (body.id_slot != null && body.id_slot >= 0 && choices > 1) {
    throw new InvalidRequestError(`'id_slot' names one slot, but '${body.n_cmpl != null ? "n_cmpl" : "n"}' asks for ${choices} choices, which run on ${choices} slots.`, "id_slot");
  }
  return {
    params: samplingFrom(body, limit, logprobs, vocab),
    choices,
    slot: body.id_slot != null && body.id_slot >= 0 ? body.id_slot : null,
    timingsPerToken: body.timings_per_token ?? false,
    returnTokens: body.return_tokens ?? false,
  };
}

/**
 * llama-server's `/v1/completions` (and `/completion`) prompt forms: a
 * string; token ids; a mix of strings and ids (one prompt, strings tokenized
 * in place, only a leading string gets BOS); or a list of strings, id lists
 * and mixed lists (one prompt each). `tokenize(text, addSpecial)`.
 */
export function promptsOf(prompt: z.infer<typeof promptField>, tokenize: (text: string, addSpecial: boolean) => Token[], vocabSize: number): Token[][] {
  const isList = (p: unknown): p is Array<string | number> => Array.isArray(p);
  const one = (p: string | ReadonlyArray<string | number>, index: number | null): Token[] => {
    if (typeof p === "string") return tokenize(p, true);
    const out: Token[] = [];
    p.forEach((part, j) => {
      if (typeof part === "string") out.push(...tokenize(part, j === 0));
      else {
        if (part >= vocabSize) {
          const param = index === null ? `prompt.${j}` : `prompt.${index}.${j}`;
          throw new InvalidRequestError(`Token ${part} in the prompt is not in the vocabulary (size ${vocabSize}).`, param);
        }
        out.push(part as Token);
      }
    });
    return out;
  };
  // An array with a number in it is one prompt (ids, or ids mixed with text); otherwise each element is one.
  if (typeof prompt === "string") return [one(prompt, null)];
  if (prompt.some((p) => typeof p === "number")) return [one(prompt as Array<string | number>, null)];
  return (prompt as Array<string | Array<string | number>>).map((p, i) => one(isList(p) ? p : p, i));
}
