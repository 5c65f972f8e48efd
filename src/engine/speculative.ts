import { TokenBias, type ControlledEvaluateInputItem, type ControlledEvaluateIndexOutput, type LlamaContextSequence, type SequenceEvaluateOptions, type Token } from "node-llama-cpp";
import { acceptOnGrammar, grammarAllows } from "./grammar-state.ts";

/** One step of a sequence's evaluation: the next token, with the model's distribution when it was asked for. */
export interface EvaluatedToken {
  token: Token;
  probabilities?: Map<Token, number>;
}

/**
 * A token-by-token evaluation, as `LlamaContextSequence.evaluateWithMetadata`
 * gives it: each `next(token)` evaluates `token` (by default the one just
 * yielded) and yields the token after it.
 */
export type TokenStream = AsyncGenerator<EvaluatedToken, void, Token | undefined>;

/** Draft tokens of one request: proposed, kept, and verification steps (llama-server's `draft_n`, `draft_n_accepted`, `n_draft_verif_steps`). */
export interface DraftCounts {
  drafted: number;
  accepted: number;
  steps: number;
  /** Under a grammar: positions of a verification batch decoded again with the grammar (their token was not allowed). */
  redecodes: number;
}

/** How one slot drafts (`--spec-draft-n-max`, `--spec-draft-p-min`). */
export interface DraftSettings {
  maxTokens: number;
  /** Drafting stops at a token whose probability among the draft's 10 best is under this; 0: never. */
  minProbability: number;
}

export interface DraftRequest {
  /** The model's distribution at every position (the sampler-chain path). */
  probabilities: boolean;
  /** The request's token biases (`logit_bias`, `ignore_eos`): the draft drafts with them too. */
  bias: ReadonlyMap<Token, number>;
  /** At most this many tokens are worth drafting now (llama-server: the tokens left to generate, less one). */
  maxDraft: () => number;
  counts: DraftCounts;
}

/** llama-server's draft sampler keeps the 10 best tokens (common/speculative.cpp: top_k 10) and compares p_min with the first of them. */
const DRAFT_TOP_K = 10;

/**
 * Speculative decoding of one slot with a draft model, as llama-server's
 * `draft-simple` does it (common/speculative.cpp, tools/server): before each
 * step the draft greedily proposes up to `maxTokens` tokens following the
 * token just sampled; the model evaluates that token and the draft in one
 * batch, sampling every position with the request's own sampling; the draft
 * tokens are kept while each is what the model sampled at the position before
 * it, and the rest are erased from the model's KV cache. The draft sequence
 * keeps its KV cache across steps and requests: before each draft it is
 * brought to the model's tokens by their common prefix, so a step evaluates
 * on the draft only the token just sampled (and the last draft token when
 * all were kept).
 *
 * node-llama-cpp's own `DraftSequenceTokenPredictor` is not used: its
 * verification (`LlamaContextSequence._speculativeEvaluate` in 3.21.1)
 * compares the second and later draft tokens with an array it never fills,
 * so it keeps at most one draft token per step and counts the others as
 * refuted (measured: 24.8% of 4-token drafts accepted where llama-server
 * accepts 71.7% of the same drafts, and slower than no draft at all).
 */
export class DraftSlot {
  constructor(
    /** This slot's sequence of the draft model's context. */
    readonly sequence: LlamaContextSequence,
    readonly settings: DraftSettings,
  ) {}

  /**
   * Evaluates `tokens` on `target` and streams the tokens after them, as
   * `target.evaluateWithMetadata(tokens, {probabilities}, options)` does, with
   * drafting. Between steps, and once it is closed, `target` holds exactly
   * the tokens before the one last yielded: draft tokens not (yet) used are
   * erased.
   *
   * Under a grammar (`options.grammarEvaluationState`, a state object: the
   * native sampling path) verification is llama.cpp's grammar-based
   * rejection sampling (common_sampler_sample_and_accept_n with
   * grammar_first false, which node-llama-cpp's own native sampling does as
   * well): each position is sampled without the grammar in the one batch,
   * and a token the grammar allows is kept and accepted into the state; at
   * the first position whose token it does not allow, that position is
   * decoded again with the grammar (its predecessor and all after it erased
   * and evaluated anew, one token: the batch's logits are gone by then) and
   * the step ends there. The draft proposes without the grammar, as
   * llama-server's draft sampler (top-k 10, no grammar) does (drafting under a
   * clone of the grammar state changed no count in test/engine/speculative.test.ts:
   * what the grammar refuses is the model's token, not the draft's). See `GrammarPacing`
   * for when a step under a grammar is decoded without the draft. The
   * caller must not replace yielded tokens under a grammar.
   */
  async *evaluate(target: LlamaContextSequence, tokens: readonly Token[], options: SequenceEvaluateOptions, request: DraftRequest): TokenStream {
    const grammar = options.grammarEvaluationState ?? null;
    if (grammar instanceof Function || (grammar !== null && request.probabilities)) {
      throw new Error("speculative decoding under a grammar is done on the native sampling path only");
    }
    const { evaluationPriority, contextShift, yieldEogToken = false, seed } = options;
    const sampling = {
      temperature: options.temperature,
      minP: options.minP,
      topK: options.topK,
      topP: options.topP,
      xtc: options.xtc,
      repeatPenalty: options.repeatPenalty,
      dryRepeatPenalty: options.dryRepeatPenalty,
      tokenBias: options.tokenBias,
    };
    const evaluateOptions = { ...(evaluationPriority !== undefined ? { evaluationPriority } : {}), ...(contextShift !== undefined ? { contextShift } : {}) };
    const draftBias = request.bias.size > 0 ? biasOn(this.sequence, request.bias) : undefined;
    const { counts } = request;
    const model = target.model;
    const pacing = grammar ? new GrammarPacing() : null;
    let step = 0;
    /** Each call of controlledEvaluate gets a fresh sampler: a seed moved on per step keeps its draws from repeating. */
    const stepSeed = () => (seed !== undefined ? { seed: (seed + step) >>> 0 } : {});
    const item = (token: Token): ControlledEvaluateInputItem => [
      token,
      {
        generateNext: {
          token: true,
          ...(request.probabilities ? { probabilities: true } : {}),
          options: { ...sampling, ...stepSeed() },
        },
      },
    ];
    /**
     * Consecutive steps sampled under the grammar share one evaluation, as without the draft (a fresh one per step
     * would cost a sampler each); a verification batch closes it.
     */
    let grammarStream: TokenStream | null = null;
    /**
     * Evaluates `input` and samples the next token under the grammar (native: the binding accepts the token it
     * samples into the state itself). `target` then holds `input`. With the stream open, `input` is the token it
     * yielded last.
     */
    const underGrammar = async (input: readonly Token[]): Promise<EvaluatedToken> => {
      grammarStream ??= target.evaluateWithMetadata(input.slice(), {}, { ...sampling, ...stepSeed(), ...evaluateOptions, grammarEvaluationState: grammar!, yieldEogToken: true });
      const next = await grammarStream.next();
      if (next.done) throw new Error("Failed to sample next token");
      return { token: next.value.token };
    };
    /**
     * Evaluates `token` again and samples the next token with the grammar applied before the chain, as llama.cpp
     * resamples once the chain's token was rejected: asking for the token's confidence makes the binding do that
     * (AddonSampler::sample's forceGrammar in 3.21.1), where it would otherwise sample with the chain first again.
     */
    const resample = async (token: Token): Promise<EvaluatedToken> => {
      const iterator = target.evaluateWithMetadata([token], { confidence: true }, { ...sampling, ...stepSeed(), ...evaluateOptions, grammarEvaluationState: grammar!, yieldEogToken: true });
      try {
        const next = await iterator.next();
        if (next.done) throw new Error("Failed to sample next token");
        return { token: next.value.token };
      } finally {
        await iterator.return();
      }
    };
    const closeGrammarStream = async () => {
      const stream = grammarStream;
      grammarStream = null;
      await stream?.return();
    };
    let input = tokens.slice();
    /** Draft tokens in `target` past the last yielded token. */
    let surplus = 0;
    const dropSurplus = async () => {
      if (surplus > 0) await target.eraseContextTokenRanges([{ start: target.nextTokenIndex - surplus, end: target.nextTokenIndex }]);
      surplus = 0;
    };
    try {
      for (;; step++) {
        const before = target.contextTokens;
        const head = input.slice(0, -1);
        const last = input.at(-1)!;
        // Room in the sequence (llama-server leaves one position for a context shift).
        const room = target.contextSize - (before.length + input.length) - 1;
        const n = pacing?.pausing() ? 0 : Math.min(this.settings.maxTokens, room, request.maxDraft());
        const drafts = step > 0 && n > 0 ? await this.draft([...before, ...head], last, n, draftBias, evaluationPriority) : [];
        // The first step evaluates the prompt: the draft sequence takes it in meanwhile.
        const aligned = step === 0 ? this.align([...before, ...input], evaluationPriority) : null;
        let results: Array<ControlledEvaluateIndexOutput | undefined> = [];
        let first: EvaluatedToken | null;
        /** Whether `first` was sampled under the grammar already (and accepted into its state). */
        let constrained = false;
        if (grammar && drafts.length === 0) {
          // Nothing to verify: the step samples under the grammar at once.
          [first] = await Promise.all([underGrammar(input), aligned]);
          constrained = true;
        } else {
          await closeGrammarStream();
          [results] = await Promise.all([target.controlledEvaluate([...head, item(last), ...drafts.map(item)], evaluateOptions), aligned]);
          counts.drafted += drafts.length;
          if (drafts.length > 0) counts.steps++;
          first = tokenAt(results, head.length);
        }
        if (first === null) throw new Error("Failed to sample next token");
        const at = head.length;
        /**
         * after[j]: the model's token after drafts[j]; it counts once the tokens fed are drafts[0..j] (with native
         * sampling, while each draft token is the one the model sampled before it; on the sampler-chain path the
         * chain's choice decides).
         */
        const after = drafts.map((_, j) => tokenAt(results, at + 1 + j));
        surplus = drafts.length;
        let out = first;
        let rejected = false;
        for (let used = 0; ; ) {
          if (grammar && !constrained) {
            if (grammarAllows(model, grammar, out.token)) {
              // The binding does not accept an end-of-generation token into a grammar state either.
              if (!model.isEogToken(out.token)) acceptOnGrammar(model, grammar, out.token);
            } else {
              // The grammar's own sample at this position: its predecessor (the last token fed before it) again.
              const predecessor = used === 0 ? last : drafts[used - 1]!;
              await target.eraseContextTokenRanges([{ start: target.nextTokenIndex - surplus - 1, end: target.nextTokenIndex }]);
              surplus = 0;
              out = await resample(predecessor);
              counts.redecodes++;
              rejected = true;
            }
          }
          if (!yieldEogToken && model.isEogToken(out.token)) return;
          const reply = yield out;
          const fed = reply ?? out.token;
          if (grammar && fed !== out.token) throw new Error("a token under a grammar cannot be replaced");
          const kept = !rejected && used < drafts.length && fed === drafts[used] ? after[used] : null;
          if (kept) {
            counts.accepted++;
            out = kept;
            used++;
            surplus = drafts.length - used;
            continue;
          }
          pacing?.stepped(drafts.length > 0, used, rejected);
          // The rest of the draft is not what the model chose: out of its KV cache.
          await dropSurplus();
          input = [fed];
          break;
        }
      }
    } finally {
      await closeGrammarStream();
      await dropSurplus();
    }
  }

  /** Brings the draft sequence to `tokens`: keeps the common prefix of its cache and evaluates the rest. */
  private async align(tokens: readonly Token[], evaluationPriority: SequenceEvaluateOptions["evaluationPriority"]): Promise<void> {
    const rest = await this.keepCommonPrefix(tokens);
    if (rest.length > 0) await this.sequence.evaluateWithoutGeneratingNewTokens(rest, evaluationPriority !== undefined ? { evaluationPriority } : {});
  }

  private async keepCommonPrefix(tokens: readonly Token[]): Promise<Token[]> {
    const draft = this.sequence;
    const have = draft.contextTokens;
    let common = 0;
    while (common < have.length && common < tokens.length && have[common] === tokens[common]) common++;
    if (draft.nextTokenIndex > common) await draft.eraseContextTokenRanges([{ start: common, end: draft.nextTokenIndex }]);
    return tokens.slice(common);
  }

  /**
   * Up to `n` tokens after `context` + `last`, each the draft's most probable
   * one (with the request's biases); it stops early at an end-of-generation
   * token or, with a `minProbability`, at a token less probable than that
   * among the draft's 10 best (llama-server's p_min). The draft sequence ends
   * holding `context`, `last` and all drafted tokens but the last.
   */
  private async draft(context: readonly Token[], last: Token, n: number, bias: TokenBias | undefined, evaluationPriority: SequenceEvaluateOptions["evaluationPriority"]): Promise<Token[]> {
    const rest = await this.keepCommonPrefix(context);
    const pMin = this.settings.minProbability;
    const iterator = this.sequence.evaluateWithMetadata([...rest, last], { probabilities: pMin > 0 }, {
      temperature: 0,
      ...(bias ? { tokenBias: bias } : {}),
      ...(evaluationPriority !== undefined ? { evaluationPriority } : {}),
    });
    const drafted: Token[] = [];
    try {
      while (drafted.length < n) {
        const next = await iterator.next();
        if (next.done) break;
        if (pMin > 0 && topProbability((next.value as EvaluatedToken).probabilities!) < pMin) break;
        drafted.push(next.value.token);
      }
    } finally {
      await iterator.return();
    }
    return drafted;
  }
}

/** The longest pause `GrammarPacing` makes, in steps. */
export const MAX_GRAMMAR_PAUSE = 32;

/**
 * When a step under a grammar drafts. A position whose token the grammar
 * does not allow costs a second decode (see `DraftSlot.evaluate`) and
 * throws away the rest of its batch, so a model that does not follow the
 * grammar by itself (a random test model writing JSON, a model asked for a
 * format it does not know) would be slower with the draft than without it.
 * After such a position the next `pause` steps are decoded without the draft,
 * each sampled under the grammar in one decode as without speculative
 * decoding; the pause doubles with each such position (1, 2, 4, … up to
 * MAX_GRAMMAR_PAUSE steps) and halves after a verification step that kept a
 * draft token and found every token allowed. A request whose tokens are
 * mostly not allowed so pays about log2(32) + n/32 extra decodes over n
 * steps, a few per cent; one that mostly follows the grammar drafts almost
 * every step.
 */
class GrammarPacing {
  /** Steps still to decode without the draft. */
  private pause = 0;
  /** The next pause. */
  private backoff = 1;

  /** Whether this step is decoded without the draft (it counts down the pause). */
  pausing(): boolean {
    if (this.pause === 0) return false;
    this.pause--;
    return true;
  }

  /** After a step: whether it drafted, how many draft tokens it kept, whether a position was decoded again. */
  stepped(drafted: boolean, kept: number, rejected: boolean): void {
    if (rejected) {
      this.pause = this.backoff;
      this.backoff = Math.min(2 * this.backoff, MAX_GRAMMAR_PAUSE);
    } else if (drafted && kept > 0) {
      this.backoff = Math.max(1, this.backoff >> 1);
    }
  }
}

/** The sampled token at `index` of a verification batch; null when sampling found none. */
function tokenAt(results: ReadonlyArray<ControlledEvaluateIndexOutput | undefined>, index: number): EvaluatedToken | null {
  const next = results[index]?.next;
  if (next?.token == null) return null;
  return next.probabilities ? { token: next.token, probabilities: next.probabilities } : { token: next.token };
}

/** The first token's probability among the `DRAFT_TOP_K` best, renormalised over them (llama-server's top-k sampler, then softmax). */
function topProbability(probabilities: ReadonlyMap<Token, number>): number {
  let sum = 0;
  let top = 0;
  let i = 0;
  for (const p of probabilities.values()) {
    if (i === 0) top = p;
    sum += p;
    if (++i >= DRAFT_TOP_K) break;
  }
  return sum > 0 ? top / sum : 0;
}

/**
 * The request's biases on the draft's own tokenizer: a TokenBias belongs to
 * one model's tokenizer and the draft's context refuses another's. The
 * vocabularies match (checked at load), so the token ids carry over.
 */
function biasOn(draft: LlamaContextSequence, bias: ReadonlyMap<Token, number>): TokenBias {
  const tokenBias = new TokenBias(draft.model.tokenizer);
  const biases = (tokenBias as unknown as { _biases: Map<Token, number> })._biases;
  for (const [token, value] of bias) biases.set(token, value);
  return tokenBias;
}
