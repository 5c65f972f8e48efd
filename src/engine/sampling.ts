import type { Token } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";

/**
 * llama-server's sampling settings for one request, after defaults, and how
 * they reach node-llama-cpp.
 *
 * llama-server samples with this chain: logit biases, then the samplers of
 * `samplers` in order (default penalties, dry, top_n_sigma, top_k, typ_p,
 * top_p, min_p, xtc, temperature), then a draw from the distribution; or,
 * with `mirostat`, temperature then Mirostat. node-llama-cpp 3.21.1's binding
 * has a fixed chain (biases, penalties, DRY, top_k, top_p, min_p, XTC,
 * temperature, draw) and reports probabilities only after it. So a request
 * runs on one of two paths:
 * - native: the binding's chain does exactly what llama-server's would (the
 *   default order, or any order that keeps the binding's relative order, with
 *   the samplers left out disabled);
 * - chain: the binding evaluates greedily and reports the model's full
 *   distribution; the engine then runs llama-server's chain itself
 *   (sampler-chain.ts) and feeds the chosen token back. Needed for
 *   `typical_p`, `top_n_sigma`, `dynatemp_range`, `mirostat`, `min_keep` > 1,
 *   DRY (`dry_multiplier` > 0),
 *   an order the binding cannot follow, and log probabilities (llama-server
 *   reports the distribution before sampling, or after its whole chain).
 * and DRY: the binding's DRY sampler cannot be shown the prompt, which
 * llama-server's DRY scans for repetitions too.
 */

export type SamplerName = "penalties" | "dry" | "top_n_sigma" | "top_k" | "typ_p" | "top_p" | "min_p" | "xtc" | "temperature";

/** llama-server's default order (common.h). */
export const DEFAULT_SAMPLERS: readonly SamplerName[] = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"];

/** The order node-llama-cpp's binding applies the samplers it has (AddonSampler.cpp). */
const NATIVE_ORDER: readonly SamplerName[] = ["penalties", "dry", "top_k", "top_p", "min_p", "xtc", "temperature"];

/** Sampling settings after defaults are applied (llama-server's defaults). */
export interface SamplingParams {
  temperature: number;
  topP: number;
  /** <= 0: all tokens. */
  topK: number;
  minP: number;
  /** `null` = a fresh random seed per generation (llama-server's -1). */
  seed: number | null;
  presencePenalty: number;
  frequencyPenalty: number;
  repeatPenalty: number;
  /** Tokens (prompt and reply) the penalties look back over; 0 turns them off. */
  repeatLastN: number;
  typicalP: number;
  minKeep: number;
  topNSigma: number;
  xtcProbability: number;
  xtcThreshold: number;
  dynatempRange: number;
  dynatempExponent: number;
  mirostat: 0 | 1 | 2;
  mirostatTau: number;
  mirostatEta: number;
  /** DRY ("don't repeat yourself"); off when the multiplier is 0. */
  dryMultiplier: number;
  dryBase: number;
  dryAllowedLength: number;
  /** Tokens (prompt and reply) DRY scans; 0 turns it off. */
  dryPenaltyLastN: number;
  drySequenceBreakers: readonly string[];
  samplers: readonly SamplerName[];
  /** Summed per token; -Infinity bans it. */
  logitBias: ReadonlyMap<Token, number>;
  /** Bans every end-of-generation token, as llama-server's `ignore_eos`. */
  ignoreEos: boolean;
  /** `null` = until the context is full or the model stops. */
  maxTokens: number | null;
  stop: readonly string[];
  /** Alternatives reported per token; null = no log probabilities. */
  logprobs: { top: number; postSampling: boolean } | null;
  /** llama-server's `t_max_predict_ms`: stop at a newline once generation took this long. null = no limit. */
  maxPredictMs: number | null;
  /** false re-evaluates the whole prompt (llama-server's `cache_prompt`). */
  cachePrompt: boolean;
  /** llama-server's `n_keep`: prompt tokens a context shift keeps (-1 = all); null = the engine's `--keep`. */
  nKeep: number | null;
}

/** llama-server's defaults (common.h), for everything but the limit and the stops. */
export const DEFAULT_SAMPLING: Readonly<Omit<SamplingParams, "stop" | "maxTokens">> = {
  temperature: 0.8,
  topP: 0.95,
  topK: 40,
  minP: 0.05,
  seed: null,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repeatPenalty: 1,
  repeatLastN: 64,
  typicalP: 1,
  minKeep: 0,
  topNSigma: -1,
  xtcProbability: 0,
  xtcThreshold: 0.1,
  dynatempRange: 0,
  dynatempExponent: 1,
  mirostat: 0,
  mirostatTau: 5,
  mirostatEta: 0.1,
  dryMultiplier: 0,
  dryBase: 1.75,
  dryAllowedLength: 2,
  dryPenaltyLastN: 64,
  drySequenceBreakers: ["\n", ":", '"', "*"],
  samplers: DEFAULT_SAMPLERS,
  logitBias: new Map(),
  ignoreEos: false,
  logprobs: null,
  maxPredictMs: null,
  cachePrompt: true,
  nKeep: null,
};

/** The request fields sampling reads (chat and completions share them). */
export interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | readonly string[] | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repeat_penalty?: number | null;
  repeat_last_n?: number | null;
  typical_p?: number | null;
  min_keep?: number | null;
  n_keep?: number | null;
  top_n_sigma?: number | null;
  xtc_probability?: number | null;
  xtc_threshold?: number | null;
  dynatemp_range?: number | null;
  dynatemp_exponent?: number | null;
  mirostat?: number | null;
  mirostat_tau?: number | null;
  mirostat_eta?: number | null;
  dry_multiplier?: number | null;
  dry_base?: number | null;
  dry_allowed_length?: number | null;
  dry_penalty_last_n?: number | null;
  dry_sequence_breakers?: readonly string[] | null;
  samplers?: readonly string[] | string | null;
  logit_bias?: Record<string, number | false> | ReadonlyArray<readonly [number | string, number | false]> | null;
  ignore_eos?: boolean | null;
  t_max_predict_ms?: number | null;
  cache_prompt?: boolean | null;
  n_probs?: number | null;
  post_sampling_probs?: boolean | null;
}

/** What samplingFrom needs to know about the model. */
export interface Vocabulary {
  size: number;
  /** Text to tokens without special-token parsing or BOS (llama-server's `common_tokenize(vocab, s, false)`). */
  tokenizeText(text: string): Token[];
}

/**
 * Sampling settings from a request. `maxTokens` is the generation limit the
 * caller resolved (llama-server: `n_predict`, then `max_completion_tokens`,
 * then `max_tokens`; -1 = none); `logprobs` the alternatives asked for, or null.
 * Throws InvalidRequestError naming a field that cannot be honoured.
 */
export function samplingFrom(
  req: SamplingFields,
  maxTokens: number | null | undefined,
  logprobs: { top: number; postSampling: boolean } | null,
  vocab: Vocabulary,
): SamplingParams {
  const stops = req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
  const mirostat = req.mirostat ?? 0;
  return {
    temperature: req.temperature ?? DEFAULT_SAMPLING.temperature,
    topP: req.top_p ?? DEFAULT_SAMPLING.topP,
    topK: req.top_k ?? DEFAULT_SAMPLING.topK,
    minP: req.min_p ?? DEFAULT_SAMPLING.minP,
    seed: req.seed == null || req.seed === -1 ? null : req.seed >>> 0,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    repeatPenalty: req.repeat_penalty ?? DEFAULT_SAMPLING.repeatPenalty,
    repeatLastN: req.repeat_last_n ?? DEFAULT_SAMPLING.repeatLastN,
    typicalP: req.typical_p ?? DEFAULT_SAMPLING.typicalP,
    minKeep: req.min_keep ?? 0,
    topNSigma: req.top_n_sigma ?? DEFAULT_SAMPLING.topNSigma,
    xtcProbability: req.xtc_probability ?? DEFAULT_SAMPLING.xtcProbability,
    xtcThreshold: req.xtc_threshold ?? DEFAULT_SAMPLING.xtcThreshold,
    dynatempRange: req.dynatemp_range ?? DEFAULT_SAMPLING.dynatempRange,
    dynatempExponent: req.dynatemp_exponent ?? DEFAULT_SAMPLING.dynatempExponent,
    mirostat: mirostat === 1 || mirostat === 2 ? mirostat : 0,
    mirostatTau: req.mirostat_tau ?? DEFAULT_SAMPLING.mirostatTau,
    mirostatEta: req.mirostat_eta ?? DEFAULT_SAMPLING.mirostatEta,
    dryMultiplier: req.dry_multiplier ?? DEFAULT_SAMPLING.dryMultiplier,
    // llama-server replaces a base below 1 with its default.
    dryBase: req.dry_base != null && req.dry_base >= 1 ? req.dry_base : DEFAULT_SAMPLING.dryBase,
    dryAllowedLength: req.dry_allowed_length ?? DEFAULT_SAMPLING.dryAllowedLength,
    dryPenaltyLastN: req.dry_penalty_last_n ?? DEFAULT_SAMPLING.dryPenaltyLastN,
    drySequenceBreakers: req.dry_sequence_breakers ?? DEFAULT_SAMPLING.drySequenceBreakers,
    samplers: req.samplers == null ? DEFAULT_SAMPLERS : samplerOrder(req.samplers),
    logitBias: logitBiasOf(req.logit_bias ?? null, vocab),
    ignoreEos: req.ignore_eos ?? false,
    maxTokens: maxTokens == null || maxTokens < 0 ? null : maxTokens,
    stop: stops.filter((s) => s !== ""),
    logprobs,
    maxPredictMs: req.t_max_predict_ms != null && req.t_max_predict_ms > 0 ? req.t_max_predict_ms : null,
    cachePrompt: req.cache_prompt ?? true,
    nKeep: req.n_keep ?? null,
  };
}

const SAMPLER_NAMES: Record<string, SamplerName | "infill" | "adaptive_p"> = (() => {
  const canonical: Record<string, SamplerName | "infill" | "adaptive_p"> = {
    dry: "dry",
    top_k: "top_k",
    top_p: "top_p",
    top_n_sigma: "top_n_sigma",
    typ_p: "typ_p",
    min_p: "min_p",
    temperature: "temperature",
    xtc: "xtc",
    infill: "infill",
    penalties: "penalties",
    adaptive_p: "adaptive_p",
  };
  const all: Record<string, SamplerName | "infill" | "adaptive_p"> = { ...canonical, nucleus: "top_p", temp: "temperature", typ: "typ_p" };
  for (const [name, type] of Object.entries(canonical)) {
    if (!name.includes("_")) continue;
    all[name.replaceAll("_", "-")] = type;
    all[name.replaceAll("_", "")] = type;
  }
  return all;
})();

const SAMPLER_CHARS: Record<string, SamplerName | "infill" | "adaptive_p"> = {
  d: "dry",
  k: "top_k",
  y: "typ_p",
  p: "top_p",
  s: "top_n_sigma",
  m: "min_p",
  t: "temperature",
  x: "xtc",
  i: "infill",
  e: "penalties",
  a: "adaptive_p",
};

/**
 * llama-server's `samplers`: names (with its aliases, any case) or a string
 * of sampler letters. llama-server skips a name it does not know with a log
 * line; here it is a 400.
 */
function samplerOrder(samplers: readonly string[] | string): SamplerName[] {
  const items = typeof samplers === "string" ? [...samplers] : samplers;
  const table = typeof samplers === "string" ? SAMPLER_CHARS : SAMPLER_NAMES;
  return items.map((item, i) => {
    const type = table[typeof samplers === "string" ? item : item.toLowerCase()];
    const param = typeof samplers === "string" ? "samplers" : `samplers.${i}`;
    if (type === undefined) throw new InvalidRequestError(`'samplers' has an unknown sampler "${item}".`, param);
    if (type === "infill" || type === "adaptive_p") {
      throw new InvalidRequestError(`The "${type}" sampler is not supported by this engine.`, param);
    }
    return type;
  });
}

/**
 * llama-server's `logit_bias` forms, summed per token: `{"id": bias}` and
 * `{"text": bias}` (every token of the text), `[[id, bias]]`, `[["text", bias]]`;
 * `false` bans the token. llama-server skips ids outside the vocabulary; here they are a 400.
 */
function logitBiasOf(bias: SamplingFields["logit_bias"], vocab: Vocabulary): Map<Token, number> {
  const out = new Map<Token, number>();
  if (bias == null) return out;
  const add = (key: number | string, value: number | false, param: string) => {
    const amount = value === false ? -Infinity : value;
    let tokens: Token[];
    if (typeof key === "number" || /^-?\d+$/.test(key)) {
      const id = Number(key);
      if (id < 0 || id >= vocab.size) throw new InvalidRequestError(`'logit_bias' names token ${id}, which is not in the vocabulary (size ${vocab.size}).`, param);
      tokens = [id as Token];
    } else {
      tokens = vocab.tokenizeText(key);
    }
    for (const t of tokens) out.set(t, (out.get(t) ?? 0) + amount);
  };
  if (Array.isArray(bias)) bias.forEach(([key, value], i) => add(key, value, `logit_bias.${i}`));
  else for (const [key, value] of Object.entries(bias)) add(key, value as number | false, `logit_bias.${key}`);
  return out;
}

/**
 * Whether the binding's own chain does what llama-server's would for these
 * settings (see the top of this file); otherwise sampler-chain.ts samples.
 */
export function samplesNatively(p: SamplingParams): boolean {
  if (p.logprobs !== null || p.mirostat !== 0 || p.typicalP < 1 || p.topNSigma > 0 || p.dynatempRange > 0 || p.minKeep > 1 || dryActive(p)) return false;
  // The requested order must keep the binding's relative order; the ones it has not got are no-ops here.
  const order = p.samplers.filter((s) => NATIVE_ORDER.includes(s));
  let at = 0;
  for (const s of order) {
    const i = NATIVE_ORDER.indexOf(s, at);
    if (i < 0) return false;
    at = i + 1;
  }
  return true;
}

/** Whether sampler `name` is in the request's chain. */
export function uses(p: SamplingParams, name: SamplerName): boolean {
  return p.samplers.includes(name);
}

/** True when the penalties sampler changes anything (llama.cpp's `is_disabled`). */
export function penaltiesActive(p: SamplingParams): boolean {
  return uses(p, "penalties") && p.repeatLastN > 0 && (p.repeatPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0);
}

/** True when DRY changes anything (llama.cpp's `dry_enabled`, and in the chain). */
export function dryActive(p: SamplingParams): boolean {
  return uses(p, "dry") && p.dryMultiplier !== 0 && p.dryBase >= 1 && p.dryPenaltyLastN > 0;
}

/** A random 32-bit seed, for a request that sets none. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
}
