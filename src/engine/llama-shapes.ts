import type { GenerationResult, SamplingParams } from "./generate.ts";

/**
 * The JSON shapes of llama-server's own (non-OpenAI) endpoints: `/completion`
 * and `/infill` results and stream chunks, `generation_settings`, `/slots`
 * entries (tools/server/server-task.cpp, server-context.cpp of the bundled
 * llama.cpp release).
 */

/** llama.cpp's `LLAMA_DEFAULT_SEED`: "pick a random seed". */
const DEFAULT_SEED = 0xffffffff;


/**
 * llama-server's `generation_settings` / slot `params` (task_params::to_json)
 * for `params`. Samplers the engine does not run report their "disabled"
 * value, which is what the engine does with them.
 */
export function generationSettings(params: SamplingParams, stream = false) {
  const nPredict = params.maxTokens ?? -1;
  return {
    seed: params.seed ?? DEFAULT_SEED,
    temperature: params.temperature,
    dynatemp_range: params.dynatempRange,
    dynatemp_exponent: params.dynatempExponent,
    top_k: params.topK,
    top_p: params.topP,
    min_p: params.minP,
    top_n_sigma: params.topNSigma,
    xtc_probability: params.xtcProbability,
    xtc_threshold: params.xtcThreshold,
    typical_p: params.typicalP,
    repeat_last_n: params.repeatLastN,
    repeat_penalty: params.repeatPenalty,
    presence_penalty: params.presencePenalty,
    frequency_penalty: params.frequencyPenalty,
    dry_multiplier: params.dryMultiplier,
    dry_base: params.dryBase,
    dry_allowed_length: params.dryAllowedLength,
    dry_penalty_last_n: params.dryPenaltyLastN,
    dry_sequence_breakers: [...params.drySequenceBreakers],
    mirostat: params.mirostat,
    mirostat_tau: params.mirostatTau,
    mirostat_eta: params.mirostatEta,
    stop: [...params.stop],
    max_tokens: nPredict,
    n_predict: nPredict,
    n_keep: 0,
    n_discard: 0,
    ignore_eos: params.ignoreEos,
    stream,
    logit_bias: [...params.logitBias].map(([token, bias]) => [token, Number.isFinite(bias) ? bias : false]),
    n_probs: params.logprobs?.top ?? 0,
    min_keep: params.minKeep,
    samplers: [...params.samplers],
    timings_per_token: false,
    post_sampling_probs: params.logprobs?.postSampling ?? false,
    lora: [],
  };
}

/** llama-server's `timings` object: measured, in milliseconds, with its rates. */
export function llamaTimings(
  r: Pick<GenerationResult, "promptTokens" | "promptTokensEvaluated" | "promptMs" | "completionTokens" | "generationMs"> &
    Partial<Pick<GenerationResult, "draftTokens" | "draftAccepted">>,
) {
  const timings = {
    cache_n: r.promptTokens - r.promptTokensEvaluated,
    prompt_n: r.promptTokensEvaluated,
    prompt_ms: r.promptMs,
    prompt_per_token_ms: r.promptTokensEvaluated > 0 ? r.promptMs / r.promptTokensEvaluated : 0,
    prompt_per_second: r.promptMs > 0 ? (1000 * r.promptTokensEvaluated) / r.promptMs : 0,
    predicted_n: r.completionTokens,
    predicted_ms: r.generationMs,
    predicted_per_token_ms: r.completionTokens > 0 ? r.generationMs / r.completionTokens : 0,
    predicted_per_second: r.generationMs > 0 ? (1000 * r.completionTokens) / r.generationMs : 0,
  };
  // As llama-server (server-common.cpp): the draft counts only when something was drafted.
  return r.draftTokens ? { ...timings, draft_n: r.draftTokens, draft_n_accepted: r.draftAccepted ?? 0 } : timings;
}

/** Why generation ended, in llama-server's words (`stop_type_to_str`). */
export function stopTypeOf(r: GenerationResult): "eos" | "word" | "limit" {
  if (r.finishReason === "length") return "limit";
  return r.stopSequence !== null ? "word" : "eos";
}

/** What one `/completion` generation produced, beyond GenerationResult. */
export interface NativeOutput {
  index: number;
  /** The generated text (empty in a stream's last chunk, whose text was streamed). */
  content: string;
  /** All text generated (to tell `has_new_line`). */
  generated: string;
  slot: number;
  prompt: string;
  model: string;
  params: SamplingParams;
  stream: boolean;
  result: GenerationResult;
}

/** The final result (or a stream's last chunk) of `/completion` and `/infill`. */
export function nativeFinal(o: NativeOutput) {
  const r = o.result;
  return {
    index: o.index,
    content: o.content,
    tokens: [],
    id_slot: o.slot,
    stop: true,
    model: o.model,
    tokens_predicted: r.completionTokens,
    tokens_evaluated: r.promptTokens,
    generation_settings: generationSettings(o.params, o.stream),
    prompt: o.prompt,
    has_new_line: o.generated.includes("\n"),
    truncated: false,
    stop_type: stopTypeOf(r),
    stopping_word: r.stopSequence ?? "",
    tokens_cached: r.promptTokens + r.completionTokens,
    timings: llamaTimings(r),
  };
}

/** One streamed piece of `/completion` and `/infill` output. */
export function nativePartial(index: number, content: string, slot: number, predicted: number, evaluated: number) {
  return { index, content, tokens: [], stop: false, id_slot: slot, tokens_predicted: predicted, tokens_evaluated: evaluated };
}
