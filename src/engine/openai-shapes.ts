import { randomBytes } from "node:crypto";
import type { GenerationResult, LiveStats } from "./generate.ts";
import { llamaTimings } from "./llama-shapes.ts";
import type { ReasoningSplitter } from "./reasoning.ts";
import type { ToolCallOut } from "./tools.ts";

/**
 * The JSON shapes of the engine's OpenAI-compatible replies (llama-server's,
 * extensions included), so every route writes them the same way.
 */

/** An id as OpenAI writes them: `prefix-` and 16 random characters. */
export const newId = (prefix: string): string => `${prefix}-${randomBytes(12).toString("base64url")}`;

/** What every response object and stream chunk of one request repeats. */
export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
}

export function responseMeta(idPrefix: string, model: string): ResponseMeta {
  return { id: newId(idPrefix), created: Math.floor(Date.now() / 1000), model };
}

/** One `chat.completion.chunk` with a single choice. */
export function chatChunk(meta: ResponseMeta, delta: object, finish: string | null, extra: object = {}) {
  return {
    id: meta.id,
    object: "chat.completion.chunk",
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
  };
}

/** One `text_completion` stream chunk for the choice at `index`. */
export function completionChunk(meta: ResponseMeta, index: number, text: string, finish: string | null, extra: object = {}) {
  return {
    id: meta.id,
    object: "text_completion",
    created: meta.created,
    model: meta.model,
    choices: [{ index, text, logprobs: null, finish_reason: finish, ...extra }],
  };
}

/** The last chunk of a stream with `stream_options.include_usage`: no choices, the usage. */
export function usageChunk(meta: ResponseMeta, object: "chat.completion.chunk" | "text_completion", usage: Usage) {
  return { id: meta.id, object, created: meta.created, model: meta.model, choices: [], usage };
}

/**
 * The request's stop sequence that ended generation, on the choice (an extension, like
 * llama-server's `stopping_word`); absent otherwise, so OpenAI shapes are unchanged.
 */
export function stopSequenceOf(r: GenerationResult): { stop_sequence?: string } {
  return r.stopSequence !== null ? { stop_sequence: r.stopSequence } : {};
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(r: GenerationResult): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

/** The usage of several generations of one request (a prompt array). */
export function sumUsage(results: readonly GenerationResult[]): Usage {
  const prompt = results.reduce((n, r) => n + r.promptTokens, 0);
  const completion = results.reduce((n, r) => n + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * The usage of a request's choices, grouped by prompt: each prompt counts
 * once however many choices (`n`) it had, each choice's tokens count.
 */
export function usageOfChoices(groups: ReadonlyArray<readonly GenerationResult[]>): Usage {
  const prompt = groups.reduce((n, g) => n + (g[0]?.promptTokens ?? 0), 0);
  const completion = groups.reduce((n, g) => n + g.reduce((m, r) => m + r.completionTokens, 0), 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function newLiveStats(): LiveStats {
  return { promptTokens: 0, promptTokensEvaluated: 0, completionTokens: 0, promptMs: 0, generationMs: 0 };
}

/** llama-server's `timings` while generation goes on (`timings_per_token`). */
export function liveTimings(s: LiveStats) {
  return llamaTimings(s);
}

/** llama-server's `timings` object on OpenAI replies too (the same as on its own endpoints). */
export { llamaTimings as timingsOf } from "./llama-shapes.ts";

/** A chat choice's `finish_reason`: "tool_calls" when the turn ended after calls. */
export function chatFinishReason(r: GenerationResult, calls: number): string {
  return calls > 0 && r.finishReason === "stop" ? "tool_calls" : r.finishReason;
}

/**
 * The assistant message of a whole (not streamed) chat reply: the thought
 * split off into `reasoning_content` when a splitter is given, calls as
 * `tool_calls`.
 */
export function chatMessage(text: string, splitter: ReasoningSplitter | null, calls: readonly ToolCallOut[]) {
  let content: string | null = text;
  let reasoningContent = "";
  if (splitter) {
    const a = splitter.push(text);
    const b = splitter.flush();
    content = a.content + b.content;
    reasoningContent = (a.reasoning + b.reasoning).trim();
  }
  // Before calls, whitespace alone is no content (OpenAI sends null).
  if (calls.length > 0 && content.trim() === "") content = null;
  return {
    role: "assistant",
    content,
    ...(reasoningContent !== "" ? { reasoning_content: reasoningContent } : {}),
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
  };
}
