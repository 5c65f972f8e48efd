import type { LlamaContextSequence, LlamaModel, SequenceEvaluateOptions, Token } from "node-llama-cpp";
import { StopMatcher } from "./stop-matcher.ts";

/** Sampling settings after defaults are applied (llama-server's defaults). */
export interface SamplingParams {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  /** `null` lets the engine pick one (then output is not reproducible unless temperature is 0). */
  seed: number | null;
  presencePenalty: number;
  frequencyPenalty: number;
  /** `null` = until the context is full or the model stops. */
  maxTokens: number | null;
  stop: readonly string[];
}

export const DEFAULT_SAMPLING: Omit<SamplingParams, "stop" | "maxTokens"> = {
  temperature: 0.8,
  topP: 0.95,
  topK: 40,
  minP: 0.05,
  seed: null,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

export type FinishReason = "stop" | "length";

export interface GenerationResult {
  finishReason: FinishReason;
  promptTokens: number;
  /** Prompt tokens that were actually evaluated (the rest came from the slot's cache). */
  promptTokensEvaluated: number;
  completionTokens: number;
  promptMs: number;
  generationMs: number;
}

export interface GenerateRequest {
  sequence: LlamaContextSequence;
  model: LlamaModel;
  prompt: readonly Token[];
  params: SamplingParams;
  /** Tokens that end the turn besides end-of-generation ones (e.g. ChatML's `<|im_end|>`). */
  stopTokens: ReadonlySet<Token>;
  /** Receives text as it becomes final; awaited, so a slow client slows generation. */
  onText: (text: string) => Promise<void> | void;
  signal: AbortSignal;
}

/** Tokens of context history passed to detokenize so SentencePiece spacing is right. */
const DETOKENIZE_CONTEXT = 4;

function commonPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** How many leading tokens of `prompt` the sequence already holds in its KV cache. */
export function cachedPrefixLength(sequence: LlamaContextSequence, prompt: readonly Token[]): number {
  return commonPrefixLength(sequence.contextTokens, prompt);
}

/**
 * Generates a completion for `prompt` on one sequence and streams its text.
 *
 * The sequence keeps its KV cache between requests: the longest common
 * prefix with the previous prompt is reused and only the rest is evaluated
 * (llama-server's `cache_prompt`). The caller guarantees the prompt fits the
 * sequence's context. Rejects with `signal.reason` when aborted; generation
 * stops at the next token.
 */
export async function generate(req: GenerateRequest): Promise<GenerationResult> {
  const { sequence, model, prompt, params, signal } = req;
  signal.throwIfAborted();
  const started = performance.now();
  // At least one prompt token must be evaluated to get logits for the next one.
  const reuse = Math.min(cachedPrefixLength(sequence, prompt), prompt.length - 1);
  if (sequence.nextTokenIndex > reuse) {
    await sequence.eraseContextTokenRanges([{ start: reuse, end: sequence.nextTokenIndex }]);
  }
  const room = sequence.contextSize - prompt.length;
  const limit = params.maxTokens === null ? room : Math.min(params.maxTokens, room);
  const generated: Token[] = [];
  const matcher = new StopMatcher(params.stop);
  let pending: Token[] = [];
  let finishReason: FinishReason = "stop";
  let firstTokenAt: number | null = null;

  const options: SequenceEvaluateOptions = {
    temperature: params.temperature,
    topK: params.topK,
    topP: params.topP,
    minP: params.minP,
    ...(params.seed !== null ? { seed: params.seed } : {}),
    ...(params.presencePenalty !== 0 || params.frequencyPenalty !== 0
      ? {
          repeatPenalty: {
            punishTokens: () => generated,
            penalty: 1,
            presencePenalty: params.presencePenalty,
            frequencyPenalty: params.frequencyPenalty,
          },
        }
      : {}),
  };

  const emit = async (text: string): Promise<boolean> => {
    const { emit: safe, stopped } = matcher.push(text);
    if (safe !== "") await req.onText(safe);
    return stopped !== null;
  };

  let stoppedByText = false;
  if (limit <= 0) {
    finishReason = "length";
  } else {
    const iterator = sequence.evaluate(prompt.slice(reuse) as Token[], options);
    try {
      for await (const token of iterator) {
        firstTokenAt ??= performance.now();
        if (signal.aborted) throw signal.reason;
        if (req.stopTokens.has(token)) break;
        generated.push(token);
        pending.push(token);
        const context = generated.slice(Math.max(0, generated.length - pending.length - DETOKENIZE_CONTEXT), -pending.length);
        const text = model.detokenize(pending, false, context);
        // A multi-byte character split across tokens decodes to U+FFFD until complete.
        if (!text.endsWith("\uFFFD") || pending.length >= 4) {
          pending = [];
          if (await emit(text)) {
            stoppedByText = true;
            break;
          }
        }
        if (generated.length >= limit) {
          finishReason = "length";
          break;
        }
      }
    } finally {
      await iterator.return();
    }
  }
  if (signal.aborted) throw signal.reason;
  if (!stoppedByText) {
    if (pending.length > 0) {
      const context = generated.slice(Math.max(0, generated.length - pending.length - DETOKENIZE_CONTEXT), -pending.length);
      if (await emit(model.detokenize(pending, false, context))) stoppedByText = true;
    }
    const rest = matcher.flush();
    if (!stoppedByText && rest !== "") await req.onText(rest);
  }
  if (stoppedByText) finishReason = "stop";
  const ended = performance.now();
  firstTokenAt ??= ended;
  return {
    finishReason,
    promptTokens: prompt.length,
    promptTokensEvaluated: prompt.length - reuse,
    completionTokens: generated.length,
    promptMs: firstTokenAt - started,
    generationMs: ended - firstTokenAt,
  };
}
