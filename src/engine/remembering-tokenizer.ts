import type { Token, Tokenizer } from "node-llama-cpp";

/** How much a RememberingTokenizer keeps. */
export interface RememberingTokenizerLimits {
  /** Texts shorter than this are tokenized every time: cheap, and too many to be worth keeping. */
  minLength: number;
  /** The total length of the texts kept; the least recently used go first beyond it. */
  maxTotalLength: number;
}

const DEFAULT_LIMITS: RememberingTokenizerLimits = { minLength: 256, maxTotalLength: 1 << 20 };

/**
 * `tokenizer` (a model's), remembering the tokens of the long texts it was
 * given lately. A chat's next turn renders its whole history again, and the
 * template's text between two special tokens (a message) goes to the
 * tokenizer piece by piece: without this, a system prompt of 800 tokens is
 * tokenized again on every turn, ~1 ms on the way to the first token. A
 * text's tokens depend only on the text and the options, so what is
 * remembered is exactly what the tokenizer would answer.
 */
export function rememberingTokenizer(tokenizer: Tokenizer, limits: RememberingTokenizerLimits = DEFAULT_LIMITS): Tokenizer {
  /** Key: the options, a NUL, the text. Map order is use order, the least recent first. */
  const kept = new Map<string, readonly Token[]>();
  let total = 0;
  const tokenize = (text: string, specialTokens?: boolean | "builtin", options?: "trimLeadingSpace"): Token[] => {
    if (specialTokens === "builtin" || text.length < limits.minLength || text.length > limits.maxTotalLength) {
      return (tokenizer as (text: string, specialTokens?: boolean | "builtin", options?: "trimLeadingSpace") => Token[])(text, specialTokens, options);
    }
    const key = `${specialTokens ? "s" : "-"}${options === "trimLeadingSpace" ? "t" : "-"}\0${text}`;
    const hit = kept.get(key);
    if (hit) {
      kept.delete(key);
      kept.set(key, hit);
      return [...hit];
    }
    const tokens = tokenizer(text, specialTokens, options);
    kept.set(key, [...tokens]);
    total += text.length;
    for (const old of kept.keys()) {
      if (total <= limits.maxTotalLength) break;
      kept.delete(old);
      total -= old.length - 3;
    }
    return tokens;
  };
  return Object.assign(tokenize, {
    detokenize: tokenizer.detokenize,
    isSpecialToken: tokenizer.isSpecialToken,
    isEogToken: tokenizer.isEogToken,
  }) as Tokenizer;
}
