import type { LlamaGrammarEvaluationState, LlamaModel, Token } from "node-llama-cpp";

/**
 * The two grammar-state operations node-llama-cpp 3.21.1 keeps internal
 * (LlamaSampler._acceptTokenOnGrammarEvaluationState and
 * _canBeNextTokenForGrammarEvaluationState, both thin calls into the
 * binding's AddonSampler), in one place: the version is pinned exactly, and
 * an upgrade has only this file to check.
 */
interface GrammarBinding {
  acceptGrammarEvaluationStateToken(state: unknown, token: number): void;
  canBeNextTokenForGrammarEvaluationState(state: unknown, token: number): boolean;
}

function bindingOf(model: LlamaModel): GrammarBinding {
  return (model as unknown as { _llama: { _bindings: { AddonSampler: GrammarBinding } } })._llama._bindings.AddonSampler;
}

const nativeState = (state: LlamaGrammarEvaluationState): unknown => (state as unknown as { _state: unknown })._state;

/**
 * Accepts `token` into the grammar state. The binding accepts only the tokens
 * it samples itself under that state, so tokens chosen elsewhere (by the
 * sampler chain, or by a verification batch sampled without the grammar) are
 * accepted through this.
 */
export function acceptOnGrammar(model: LlamaModel, state: LlamaGrammarEvaluationState, token: Token): void {
  bindingOf(model).acceptGrammarEvaluationStateToken(nativeState(state), token);
}

/**
 * Whether the grammar, in this state, allows `token` next (llama.cpp's grammar
 * sampler applied to that one token). An end-of-generation token is allowed
 * only once the grammar is complete.
 */
export function grammarAllows(model: LlamaModel, state: LlamaGrammarEvaluationState, token: Token): boolean {
  return bindingOf(model).canBeNextTokenForGrammarEvaluationState(nativeState(state), token);
}

/**
 * Whether the grammar, in this state, is complete and allows no token but an
 * end-of-generation one, none of which `usable` lets through (they are all
 * banned: `ignore_eos`). Sampling on from such a state fails inside the
 * binding ("Unexpected empty grammar stack after accepting piece"), as an
 * error that escapes node-llama-cpp and ends the process; llama-server
 * answers it with a 500. The whole vocabulary is scanned only when an
 * end-of-generation token is allowed, and only until a token is found that
 * may follow, so a grammar that can always go on costs a few calls a token
(and a request that bans no end token, a few map lookups).
 */
export function grammarOnlyEnds(
  model: LlamaModel,
  state: LlamaGrammarEvaluationState,
  eog: readonly Token[],
  vocabularySize: number,
  usable: (token: Token) => boolean,
): boolean {
  // An end token that may be sampled ends the reply itself; only then is the grammar asked.
  if (eog.some((t) => usable(t))) return false;
  if (!eog.some((t) => grammarAllows(model, state, t))) return false;
  for (let t = 0; t < vocabularySize; t++) {
    const token = t as Token;
    if (!model.isEogToken(token) && usable(token) && grammarAllows(model, state, token)) return false;
  }
  return true;
}
