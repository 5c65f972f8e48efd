import {
  LlamaGrammarEvaluationState,
  LlamaText,
  TokenBias,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type SequenceEvaluateOptions,
  type Token,
} from "node-llama-cpp";
import { slotPriority } from "./batch-order.ts";
import type { TokenProbabilities } from "./logprobs.ts";
import { SamplerChain } from "./sampler-chain.ts";
import { dryBreakers } from "./dry.ts";
import { dryActive, penaltiesActive, randomSeed, samplesNatively, uses, type SamplingParams } from "./sampling.ts";
import type { StepGate } from "./step-gate.ts";
import type { DraftCounts, DraftSlot, EvaluatedToken, TokenStream } from "./speculative.ts";
import { StopMatcher } from "./stop-matcher.ts";
import { acceptOnGrammar, grammarOnlyEnds } from "./grammar-state.ts";
import { samplingError } from "./sampling-guard.ts";

export type { SamplingParams } from "./sampling.ts";
export { DEFAULT_SAMPLING } from "./sampling.ts";

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
  /** Generation went on under the tool-call grammar (the trigger appeared, or the call was forced). */
  calledTools: boolean;
  /** The generated token ids (llama-server's `return_tokens`). */
  tokens: readonly Token[];
  /** Speculative decoding: tokens the draft model proposed, and how many of them the model accepted (llama-server's `draft_n`, `draft_n_accepted`). */
  draftTokens: number;
  draftAccepted: number;
  /** Speculative decoding: verification steps, each a batch of the model with a draft (llama-server's `n_draft_verif_steps`). */
  draftSteps: number;
  /** Speculative decoding under a grammar: verified positions decoded again with the grammar (speculative.ts; not a llama-server figure). */
  draftRedecodes: number;
}

/** Counts and times of a generation in progress, updated after each token. */
export interface LiveStats {
  promptTokens: number;
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
  /** Told the number of tokens generated so far, after each one (llama-server's `n_decoded`). */
  onToken?: (generated: number) => void;
  signal: AbortSignal;
  /** Constrains sampling; its stop triggers end the output (and are not emitted). */
  grammar?: LlamaGrammar | null;
  /** Bounds a thinking block (`<think>`…`</think>`) in the output; absent = no tracking. */
  reasoning?: ReasoningControl | null;
  /** Shared by the sequences of one context so their tokens are decoded in one batch. */
  gate?: StepGate | null;
  /** The sequence's slot number, which orders it within a batch (see batch-order.ts). */
  slot?: number;
  /** Tool calls: detected in free text and then grammar-constrained, or forced from the start. */
  toolCalls?: ToolCallControl | null;
  /**
   * llama-server's `--context-shift`: when the sequence is full, the tokens
   * after the first `keep` (-1 = the whole prompt) are halved and generation
   * goes on, up to `maxTokens` (none = until the model stops). Absent or
   * null: generation ends with "length" when the sequence is full.
   */
  contextShift?: { keep: number } | null;
  /** Receives each sampled token's probabilities when `params.logprobs` asks for them, before its text. */
  onProbabilities?: ((probabilities: TokenProbabilities) => void) | null;
  /** Updated as tokens come (the reply's `timings` so far). */
  stats?: LiveStats | null;
  /**
   * The slot's draft (speculative decoding, `-md`), or none. A request with
   * penalties, or a step under a grammar on the sampler-chain path, is decoded
   * without it (see docs/engine.md).
   */
  draft?: DraftSlot | null;
}

/**
 * How generate() produces tool calls. With a `trigger`, the model writes
 * free text (sent to `onText`) until the trigger appears; generation then
 * goes on under `grammar` and its text goes to `onCallText` instead. Without
 * one, the whole output is under `grammar` (a forced call). Text that may be
 * the start of the trigger is held back until it is known not to be.
 */
export interface ToolCallControl {
  trigger: string | null;
  /** Constrains what follows the trigger, or the whole output when `trigger` is null. */
  grammar: LlamaGrammar;
  /** Receives the call text (the trigger excluded); returns true once the calls are complete. */
  onCallText: (text: string) => Promise<boolean> | boolean;
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
  const tokensOut: Token[] = [];
  const shift = req.contextShift ?? null;
  const limit = shift ? (params.maxTokens ?? Infinity) : params.maxTokens === null ? room : Math.min(params.maxTokens, room);
  /** Tokens dropped from the sequence by context shifts; positions after the kept ones move down by this. */
  let discarded = 0;
  const contextShift: SequenceEvaluateOptions["contextShift"] = shift
    ? {
        strategy: ({ sequence: s }) => {
          // llama-server's (server-context.cpp, pre_decode): keep n_keep (+1 for BOS), drop half of the rest.
          let keep = shift.keep < 0 ? prompt.length : shift.keep;
          if (model.tokens.shouldPrependBosToken) keep += 1;
          keep = Math.min(s.contextSize - 4, keep);
          const left = s.nextTokenIndex - keep;
          const discard = Math.max(0, Math.min(Math.floor(left / 2), left - 1));
          discarded += discard;
          return [{ start: keep, end: keep + discard }];
        },
      }
    : undefined;
  /** Generated tokens evaluated into the sequence so far (a shift may have dropped some of them since). */
  const generatedInSequence = () => sequence.nextTokenIndex + discarded - prompt.length;
  if (limit <= 0) {
    // Nothing to generate (max_tokens 0 counts the prompt): leave the slot's cache as it is.
    return { finishReason: "length", promptTokens: prompt.length, promptTokensEvaluated: 0, completionTokens: 0, promptMs: 0, generationMs: 0, stopSequence: null, calledTools: false, tokens: [], draftTokens: 0, draftAccepted: 0, draftSteps: 0, draftRedecodes: 0 };
  }
  // At least one prompt token must be evaluated to get logits for the next one.
  // Without `cache_prompt` the whole prompt is evaluated again (llama-server).
  const reuse = params.cachePrompt ? Math.min(cachedPrefixLength(sequence, prompt), prompt.length - 1) : 0;
  if (sequence.nextTokenIndex > reuse) {
    await sequence.eraseContextTokenRanges([{ start: reuse, end: sequence.nextTokenIndex }]);
  }
  const generated: Token[] = [];
  const grammar = req.grammar ?? null;
  const matcher = new StopMatcher(grammar ? [...params.stop, ...grammarStops(grammar)] : params.stop);
  let pending: Token[] = [];
  let finishReason: FinishReason = "stop";
  let firstTokenAt: number | null = null;

  const tools = req.toolCalls ?? null;
  const bias = effectiveBias(model, params);
  const native = samplesNatively(params);
  // With penalties, each position's history must include the tokens drafted
  // before it, which the positions of one verification batch do not see: such
  // a request is decoded without the draft.
  const draft = req.draft && !penaltiesActive(params) ? req.draft : null;
  const draftCounts: DraftCounts = { drafted: 0, accepted: 0, steps: 0, redecodes: 0 };
  const seed = params.seed ?? randomSeed();
  /** The last n tokens of the prompt and the reply: llama-server feeds both to the penalties and DRY. */
  const lastTokens = (n: number): Token[] => {
    if (n <= 0) return [];
    return generated.length >= n ? generated.slice(-n) : [...prompt.slice(Math.max(0, prompt.length - (n - generated.length))), ...generated];
  };
  const tokenBias = bias.size > 0 ? biasFor(model, bias) : undefined;
  const repeatPenalty = penaltiesActive(params)
    ? {
        punishTokens: () => lastTokens(params.repeatLastN),
        maxPunishTokens: params.repeatLastN,
        penalty: params.repeatPenalty,
        presencePenalty: params.presencePenalty,
        frequencyPenalty: params.frequencyPenalty,
      }
    : undefined;
  // repeat_penalty scales raw logits by their sign, which the chain's log-probabilities do not keep: the binding
  // applies the biases and penalties (its greedy chain runs them first, as llama-server's chain does when
  // `penalties` leads the request's samplers) and reports the distribution after them. Listed later, they stay
  // the chain's, on log-probabilities. Mirostat replaces the chain, penalties included, as in llama-server.
  const bindingPenalizes = !native && repeatPenalty !== undefined && params.mirostat === 0 && params.samplers[0] === "penalties";
  const base: SequenceEvaluateOptions = {
    ...(req.slot !== undefined ? { evaluationPriority: slotPriority(req.slot) } : {}),
    ...(contextShift ? { contextShift } : {}),
    ...(native
      ? {
          // Samplers left out of the request's `samplers` are turned off (llama-server builds only those listed).
          temperature: uses(params, "temperature") ? params.temperature : 1,
          topK: uses(params, "top_k") ? params.topK : 0,
          topP: uses(params, "top_p") ? params.topP : 1,
          minP: uses(params, "min_p") ? params.minP : 0,
          seed,
          ...(uses(params, "xtc") && params.xtcProbability > 0 ? { xtc: { probability: params.xtcProbability, threshold: params.xtcThreshold } } : {}),
          ...(tokenBias ? { tokenBias } : {}),
          ...(repeatPenalty ? { repeatPenalty } : {}),
        }
      : // The chain path: the binding reports the model's whole distribution (greedy), sampler-chain.ts chooses.
        { temperature: 0, yieldEogToken: true, ...(bindingPenalizes ? { ...(tokenBias ? { tokenBias } : {}), repeatPenalty } : {}) }),
  };
  const dry = dryActive(params)
    ? { multiplier: params.dryMultiplier, base: params.dryBase, allowedLength: params.dryAllowedLength, breakers: dryBreakers(model, params.drySequenceBreakers, vocabSizeOf(model)) }
    : null;
  const chain = native ? null : new SamplerChain(params, bias, vocabSizeOf(model), seed, dry, bindingPenalizes);
  const wanted = params.logprobs;
  /** On the chain path, the grammar state the chosen tokens are accepted into (the binding gets a copy per step). */
  let grammarState: LlamaGrammarEvaluationState | null = null;
  /** The grammar state generation is under now, on either path (it holds every token yielded so far). */
  let activeGrammar: LlamaGrammarEvaluationState | null = null;
  const withGrammar = (g: LlamaGrammar): SequenceEvaluateOptions => {
    const state = new LlamaGrammarEvaluationState({ model, grammar: g });
    activeGrammar = state;
    if (native) return { ...base, grammarEvaluationState: state };
    grammarState = state;
    return { ...base, grammarEvaluationState: () => state.clone() };
  };
  /** Under the tool-call grammar; text goes to `tools.onCallText`. */
  let inCall = tools !== null && tools.trigger === null;
  let options: SequenceEvaluateOptions = inCall ? withGrammar(tools!.grammar) : grammar ? withGrammar(grammar) : base;
  const triggerMatcher = tools?.trigger ? new StopMatcher([tools.trigger]) : null;
  // With every end-of-generation token banned (`ignore_eos`), a grammar that is complete allows no token: the reply
  // ends there, with "stop" (the grammar's end). Sampling on would fail inside the binding and end the process.
  const eog = eogTokensOf(model);
  const grammarComplete = () =>
    activeGrammar !== null && grammarOnlyEnds(model, activeGrammar, eog, vocabSizeOf(model), (t) => bias.get(t) !== -Infinity);

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

  // With tools, special tokens are decoded as text: a call syntax may contain them.
  const specialText = tools !== null;
  const decode = (): string => {
    // The context reaches into the prompt for the first tokens: without it SentencePiece drops the first token's
    // leading space (" world" → "world"), which llama-server keeps; the reply then re-tokenizes differently in the
    // next turn, and that turn re-evaluates the whole previous reply instead of reusing it from the cache.
    const context = lastTokens(pending.length + DETOKENIZE_CONTEXT).slice(0, -pending.length);
    return model.detokenize(pending, specialText, context);
  };

  /**
   * Routes decoded text: content (through the trigger and stop matchers) or
   * call text. "stop" ends generation, "call" switches to the call grammar
   * with `afterTrigger` the text generated past the trigger.
   */
  let afterTrigger = "";
  const handle = async (text: string): Promise<"stop" | "call" | null> => {
    if (inCall) {
      return (await tools!.onCallText(text)) ? "stop" : null;
    }
    track(text);
    if (!triggerMatcher || thinking) return (await emit(text)) ? "stop" : null;
    const { emit: before, stopped } = triggerMatcher.push(text);
    if (before !== "" && (await emit(before))) return "stop";
    if (stopped === null) return null;
    // Content held back as a possible stop sequence is content after all.
    const held = matcher.flush();
    if (held !== "") await req.onText(held);
    afterTrigger = triggerMatcher.after;
    return "call";
  };

  let stoppedByText = false;
  let timedOut = false;
  let toEvaluate = prompt.slice(reuse) as Token[];
  const gate = req.gate ?? null;
  // A reasoning budget decides from this token's text whether the next token
  // is the model's or an injected one, so only without one is the next token
  // asked for before this one's text is handled.
  const askEarly = reasoning?.budgetTokens == null;
  generation: for (;;) {
    let inject: readonly Token[] | null = null;
    let startCall = false;
    // Under a grammar the draft verifies by llama.cpp's grammar-based rejection sampling (speculative.ts) on the
    // native path. On the sampler-chain path the binding reports the distribution masked by the grammar, which it
    // cannot inside a verification batch: there steps under a grammar are decoded without the draft.
    const iterator: TokenStream =
      draft && (native || options.grammarEvaluationState === undefined)
        ? draft.evaluate(sequence, toEvaluate, options, { probabilities: !native, bias, maxDraft: () => limit - generated.length - 1, counts: draftCounts })
        : sequence.evaluateWithMetadata(toEvaluate, { probabilities: !native }, options);
    let inStep = false;
    /** The token fed back for the next step: the chain's choice (the binding's greedy one is replaced). */
    let chosen: Token | undefined;
    let next: Promise<IteratorResult<EvaluatedToken, void>> | null = iterator.next();
    /** Asks for the next token (with every sequence of the step, under a gate). */
    const askNext = async () => {
      if (gate) {
        if (!inStep) gate.join();
        inStep = true;
        await gate.arrive();
      }
      next = iterator.next(chosen);
      // It may be abandoned when this token ends the reply; its error then matters to no one.
      next.catch(() => {});
    };
    try {
      while (next !== null) {
        const step = await (next as Promise<IteratorResult<EvaluatedToken, void>>).catch((error: unknown) => {
          throw samplingError(error, sequence.context);
        });
        next = null;
        if (step.done) break;
        let token = step.value.token;
        if (chain) {
          const distribution = step.value.probabilities!;
          const picked = chain.sample(distribution, lastTokens);
          token = picked.token;
          chosen = token;
          if (grammarState && !model.isEogToken(token)) acceptOnGrammar(model, grammarState, token);
          if (wanted && req.onProbabilities) {
            req.onProbabilities(
              wanted.postSampling
                ? { token, probability: picked.probability, top: picked.candidates.slice(0, wanted.top) }
                : { token, probability: distribution.get(token) ?? 0, top: topOf(distribution, wanted.top) },
            );
          }
          if (model.isEogToken(token)) break;
        }
        firstTokenAt ??= performance.now();
        if (signal.aborted) throw signal.reason;
        if (req.stopTokens.has(token) || (inCall && model.isEogToken(token))) break generation;
        generated.push(token);
        tokensOut.push(token);
        req.onToken?.(generated.length);
        pending.push(token);
        if (req.stats) {
          const now = performance.now();
          Object.assign(req.stats, {
            promptTokens: prompt.length,
            promptTokensEvaluated: prompt.length - reuse,
            completionTokens: generated.length,
            promptMs: firstTokenAt - started,
            generationMs: now - firstTokenAt,
          });
        }
        if (thinking) thoughtTokens++;
        const last = generated.length >= limit;
        const complete = grammarComplete();
        // The decode of the next token overlaps the handling of this one: once
        // it is queued, yield a turn of the event loop so node-llama-cpp
        // dispatches it (on setImmediate) before this token's text is handled.
        // Not for the first token: its text goes out first, as soon as it can
        // (time to first token), and the second decode waits for it this once.
        const early = askEarly && generated.length > 1;
        if (early && !last && !complete) {
          await askNext();
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        // Only a sequence in the step can hold the others up.
        const away = gate !== null && inStep;
        if (away) gate.stepAway();
        let outcome: "stop" | "call" | null = null;
        try {
          const text = decode();
          // A multi-byte character split across tokens decodes to U+FFFD until complete.
          if (!text.endsWith("\uFFFD") || pending.length >= 4) {
            pending = [];
            outcome = await handle(text);
            // llama-server's t_max_predict_ms: checked when a newline is generated, from the first token.
            if (outcome === null && params.maxPredictMs !== null && text.includes("\n") && performance.now() - firstTokenAt! > params.maxPredictMs) {
              timedOut = true;
            }
          }
        } finally {
          if (away) gate.stepBack();
        }
        if (outcome === "stop") {
          stoppedByText = true;
          break generation;
        }
        if (outcome === "call") {
          startCall = true;
          break;
        }
        if (complete) break generation;
        if (last || timedOut) {
          finishReason = "length";
          break generation;
        }
        if (thinking && reasoning?.budgetTokens != null && thoughtTokens >= reasoning.budgetTokens) {
          inject = reasoning.closeTokens;
          break;
        }
        if (!early) await askNext();
      }
    } finally {
      if (inStep) gate!.leave();
      await iterator.return();
    }
    if (startCall) {
      // The trigger appeared: go on under the call grammar, which begins right
      // after the trigger. Tokens that went past it are replaced by the text
      // up to its end.
      inCall = true;
      options = withGrammar(tools!.grammar);
      toEvaluate = await rewindPast(afterTrigger);
      if (generated.length >= limit) {
        finishReason = "length";
        break;
      }
      continue;
    }
    if (!inject) break;
    // The thought used its budget: close it as if the model had, and go on.
    // The last sampled token is not in the sequence yet, so it goes first.
    const inSequence = generatedInSequence();
    const room = limit - generated.length;
    const forced = inject.slice(0, room);
    toEvaluate = [...generated.slice(Math.max(0, inSequence)), ...forced];
    generated.push(...forced);
    req.onToken?.(generated.length);
    pending.push(...forced);
    const text = decode();
    pending = [];
    if ((await handle(text)) === "stop") {
      stoppedByText = true;
      break;
    }
    if (generated.length >= limit) {
      finishReason = "length";
      break;
    }
  }

  /**
   * Drops the generated tokens whose text reaches into `extra` (erasing those
   * already in the sequence), puts back tokens for the part before it, and
   * returns what must be evaluated next.
   */
  async function rewindPast(extra: string): Promise<Token[]> {
    let drop = 0;
    let keep: Token[] = [];
    if (extra !== "") {
      for (drop = 1; drop <= generated.length; drop++) {
        const tail = model.detokenize(generated.slice(-drop), true, generated.slice(Math.max(0, generated.length - drop - DETOKENIZE_CONTEXT), -drop));
        if (tail.length >= extra.length) {
          keep = model.tokenize(tail.slice(0, tail.length - extra.length), true, "trimLeadingSpace");
          break;
        }
      }
    }
    const kept = generated.length - Math.min(drop, generated.length);
    let inSequence = generatedInSequence();
    if (inSequence > kept) {
      await sequence.eraseContextTokenRanges([{ start: Math.max(0, prompt.length - discarded + kept), end: sequence.nextTokenIndex }]);
      inSequence = kept;
    }
    generated.length = kept;
    generated.push(...keep);
    let next = generated.slice(Math.max(0, inSequence));
    if (next.length === 0) {
      // Logits are needed for the next token: evaluate the last one again.
      const last = sequence.contextTokens.at(-1)!;
      await sequence.eraseContextTokenRanges([{ start: sequence.nextTokenIndex - 1, end: sequence.nextTokenIndex }]);
      next = [last];
    }
    return next;
  }

  if (signal.aborted) throw signal.reason;
  if (!stoppedByText) {
    if (pending.length > 0) {
      const text = decode();
      pending = [];
      if ((await handle(text)) === "stop") stoppedByText = true;
    }
    if (!inCall && !stoppedByText) {
      const held = triggerMatcher?.flush() ?? "";
      if (held !== "" && (await emit(held))) stoppedByText = true;
    }
    let rest = inCall ? "" : matcher.flush();
    // A grammar's trailing whitespace is padding before its stop trigger, not output.
    if (grammar?.trimWhitespaceSuffix || (grammar && grammarStops(grammar).length > 0)) rest = rest.trimEnd();
    if (!stoppedByText && rest !== "") await req.onText(rest);
  }
  if (stoppedByText) finishReason = "stop";
  const ended = performance.now();
  firstTokenAt ??= ended;
  return {
    draftTokens: draftCounts.drafted,
    draftAccepted: draftCounts.accepted,
    draftSteps: draftCounts.steps,
    draftRedecodes: draftCounts.redecodes,
    finishReason,
    promptTokens: prompt.length,
    promptTokensEvaluated: prompt.length - reuse,
    completionTokens: generated.length,
    promptMs: firstTokenAt - started,
    generationMs: ended - firstTokenAt,
    stopSequence,
    calledTools: inCall,
    tokens: tokensOut,
  };
}

/** The `top` most probable entries of a distribution the binding sorted, most probable first. */
function topOf(distribution: ReadonlyMap<Token, number>, top: number): Array<{ token: Token; probability: number }> {
  const out: Array<{ token: Token; probability: number }> = [];
  if (top <= 0) return out;
  for (const [token, probability] of distribution) {
    out.push({ token, probability });
    if (out.length >= top) break;
  }
  return out;
}

const eogTokens = new WeakMap<LlamaModel, Token[]>();

/** The vocabulary's size (the tokenizer's token list). */
function vocabSizeOf(model: LlamaModel): number {
  return model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
}

/** The model's end-of-generation tokens, found once per model. */
function eogTokensOf(model: LlamaModel): readonly Token[] {
  let eog = eogTokens.get(model);
  if (!eog) {
    eog = [];
    const size = vocabSizeOf(model);
    for (let t = 0; t < size; t++) if (model.isEogToken(t as Token)) eog.push(t as Token);
    eogTokens.set(model, eog);
  }
  return eog;
}

/** The request's biases, with every end-of-generation token banned under `ignore_eos` (llama-server's `logit_bias_eog`). */
function effectiveBias(model: LlamaModel, params: SamplingParams): ReadonlyMap<Token, number> {
  if (!params.ignoreEos) return params.logitBias;
  const out = new Map(params.logitBias);
  for (const t of eogTokensOf(model)) out.set(t, -Infinity);
  return out;
}

/**
 * A TokenBias carrying raw logit biases. Its public `set` skips
 * end-of-generation tokens (so neither `ignore_eos` nor a bias on EOS could be
 * expressed) and maps numbers as probabilities, so the map node-llama-cpp
 * 3.21.1 hands to the binding (`_biases`, token → logit bias) is filled directly.
 */
function biasFor(model: LlamaModel, bias: ReadonlyMap<Token, number>): TokenBias {
  const tokenBias = new TokenBias(model.tokenizer);
  const biases = (tokenBias as unknown as { _biases: Map<Token, number> })._biases;
  for (const [token, value] of bias) biases.set(token, value);
  return tokenBias;
}
