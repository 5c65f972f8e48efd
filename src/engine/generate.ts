import {
  LlamaGrammarEvaluationState,
  LlamaText,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type SequenceEvaluateOptions,
  type Token,
} from "node-llama-cpp";
import type { StepGate } from "./step-gate.ts";
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
  /** The request's stop sequence that ended generation (llama-server's `stopping_word`); null otherwise. */
  stopSequence: string | null;
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
  /** Constrains sampling; its stop triggers end the output (and are not emitted). */
  grammar?: LlamaGrammar | null;
  /** Bounds a thinking block (`<think>`…`</think>`) in the output; absent = no tracking. */
  reasoning?: ReasoningControl | null;
  /** Shared by the sequences of one context so their tokens are decoded in one batch. */
  gate?: StepGate | null;
}

/**
 * How generate() bounds a thought. Once `budgetTokens` tokens were generated
 * inside the thought, `closeTokens` (the tokens of `close`) are injected and
 * generation goes on with the answer, as llama-server's `--reasoning-budget`.
 */
export interface ReasoningControl {
  open: string;
  close: string;
  closeTokens: readonly Token[];
  /** True when the prompt already opened the thought (the template prefills `<think>`). */
  startsInside: boolean;
  /** null = unlimited. */
  budgetTokens: number | null;
}

/** The plain-text stop triggers of a grammar (e.g. the JSON grammars' four newlines). */
function grammarStops(grammar: LlamaGrammar): string[] {
  const stops: string[] = [];
  for (const trigger of grammar.stopGenerationTriggers) {
    const text = typeof trigger === "string" ? trigger : LlamaText(trigger as never).toString();
    if (text !== "") stops.push(text);
  }
  return stops;
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
  const room = sequence.contextSize - prompt.length;
  const limit = params.maxTokens === null ? room : Math.min(params.maxTokens, room);
  if (limit <= 0) {
    // Nothing to generate (max_tokens 0 counts the prompt): leave the slot's cache as it is.
    return { finishReason: "length", promptTokens: prompt.length, promptTokensEvaluated: 0, completionTokens: 0, promptMs: 0, generationMs: 0, stopSequence: null };
  }
  // At least one prompt token must be evaluated to get logits for the next one.
  const reuse = Math.min(cachedPrefixLength(sequence, prompt), prompt.length - 1);
  if (sequence.nextTokenIndex > reuse) {
    await sequence.eraseContextTokenRanges([{ start: reuse, end: sequence.nextTokenIndex }]);
  }
  const generated: Token[] = [];
  const grammar = req.grammar ?? null;
  const matcher = new StopMatcher(grammar ? [...params.stop, ...grammarStops(grammar)] : params.stop);
  let pending: Token[] = [];
  let finishReason: FinishReason = "stop";
  let firstTokenAt: number | null = null;

  const options: SequenceEvaluateOptions = {
    temperature: params.temperature,
    topK: params.topK,
    topP: params.topP,
    minP: params.minP,
    ...(params.seed !== null ? { seed: params.seed } : {}),
    ...(grammar ? { grammarEvaluationState: new LlamaGrammarEvaluationState({ model, grammar }) } : {}),
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

  let stopSequence: string | null = null;
  const emit = async (text: string): Promise<boolean> => {
    const { emit: safe, stopped } = matcher.push(text);
    if (safe !== "") await req.onText(safe);
    // A grammar's own stop triggers end the document; only the request's stops are reported.
    if (stopped !== null && params.stop.includes(stopped)) stopSequence = stopped;
    return stopped !== null;
  };

  const reasoning = req.reasoning ?? null;
  let thinking = reasoning?.startsInside ?? false;
  let thoughtTokens = 0;
  let sawContent = false;
  let recent = "";
  /** Follows the raw text to know whether generation is inside a thought. */
  const track = (text: string) => {
    if (!reasoning) return;
    recent = (recent + text).slice(-64);
    if (thinking) {
      if (recent.includes(reasoning.close)) {
        thinking = false;
        recent = "";
      }
    } else if (!sawContent) {
      const trimmed = recent.trimStart();
      if (trimmed.startsWith(reasoning.open)) {
        thinking = true;
        recent = "";
      } else if (trimmed.length > 0 && !reasoning.open.startsWith(trimmed)) sawContent = true;
    }
  };

  const decode = (): string => {
    const context = generated.slice(Math.max(0, generated.length - pending.length - DETOKENIZE_CONTEXT), -pending.length);
    return model.detokenize(pending, false, context);
  };

  let stoppedByText = false;
  let toEvaluate = prompt.slice(reuse) as Token[];
  const gate = req.gate ?? null;
  // A reasoning budget decides from this token's text whether the next token
  // is the model's or an injected one, so only without one is the next token
  // asked for before this one's text is handled.
  const askEarly = reasoning?.budgetTokens == null;
  generation: for (;;) {
    let inject: readonly Token[] | null = null;
    const iterator = sequence.evaluate(toEvaluate, options);
    let inStep = false;
    let next: Promise<IteratorResult<Token, void>> | null = iterator.next();
    /** Asks for the next token (with every sequence of the step, under a gate). */
    const askNext = async () => {
      if (gate) {
        if (!inStep) gate.join();
        inStep = true;
        await gate.arrive();
      }
      next = iterator.next();
      // It may be abandoned when this token ends the reply; its error then matters to no one.
      next.catch(() => {});
    };
    try {
      while (next !== null) {
        const step = await next;
        next = null;
        if (step.done) break;
        const token = step.value;
        firstTokenAt ??= performance.now();
        if (signal.aborted) throw signal.reason;
        if (req.stopTokens.has(token)) break generation;
        generated.push(token);
        pending.push(token);
        if (thinking) thoughtTokens++;
        const last = generated.length >= limit;
        // The decode of the next token overlaps the handling of this one.
        if (askEarly && !last) await askNext();
        gate?.stepAway();
        let stopped = false;
        try {
          const text = decode();
          // A multi-byte character split across tokens decodes to U+FFFD until complete.
          if (!text.endsWith("\uFFFD") || pending.length >= 4) {
            pending = [];
            track(text);
            stopped = await emit(text);
          }
        } finally {
          gate?.stepBack();
        }
        if (stopped) {
          stoppedByText = true;
          break generation;
        }
        if (last) {
          finishReason = "length";
          break generation;
        }
        if (thinking && reasoning?.budgetTokens != null && thoughtTokens >= reasoning.budgetTokens) {
          inject = reasoning.closeTokens;
          break;
        }
        if (!askEarly) await askNext();
      }
    } finally {
      if (inStep) gate!.leave();
      await iterator.return();
    }
    if (!inject) break;
    // The thought used its budget: close it as if the model had, and go on.
    // The last sampled token is not in the sequence yet, so it goes first.
    const inSequence = sequence.nextTokenIndex - prompt.length;
    const room = limit - generated.length;
    const forced = inject.slice(0, room);
    toEvaluate = [...generated.slice(Math.max(0, inSequence)), ...forced];
    generated.push(...forced);
    pending.push(...forced);
    const text = decode();
    pending = [];
    track(text);
    if (await emit(text)) {
      stoppedByText = true;
      break;
    }
    if (generated.length >= limit) {
      finishReason = "length";
      break;
    }
  }
  if (signal.aborted) throw signal.reason;
  if (!stoppedByText) {
    if (pending.length > 0) {
      if (await emit(decode())) stoppedByText = true;
    }
    let rest = matcher.flush();
    // A grammar's trailing whitespace is padding before its stop trigger, not output.
    if (grammar?.trimWhitespaceSuffix || (grammar && grammarStops(grammar).length > 0)) rest = rest.trimEnd();
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
    stopSequence,
  };
}
