import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * Per-token probabilities, as llama-server reports them (`n_probs`,
 * OpenAI's `logprobs`), and their response shapes.
 *
 * Which distribution: llama-server's default is the model's distribution
 * before sampling (softmax of the logits); with `post_sampling_probs` it is
 * the one left after the whole sampler chain, reported as probabilities
 * (`prob`, `top_probs`) instead of log probabilities.
 */

/** One alternative for a generated token. */
export interface TokenAlternative {
  token: Token;
  probability: number;
}

/** One generated token with its probability and the most probable alternatives. */
export interface TokenProbabilities {
  token: Token;
  probability: number;
  /** Most probable first; at most the requested number. */
  top: readonly TokenAlternative[];
}

/** A token's bytes and its text (the bytes' longest valid UTF-8 prefix), as llama-server reports them. */
export interface TokenText {
  text: string;
  bytes: number[];
}

/** GPT-2's byte-level alphabet: the printable character that stands for each byte in BPE vocabularies. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i]!), b]));
})();

const texts = new WeakMap<LlamaModel, Map<Token, TokenText>>();

/**
 * The bytes a token stands for: SentencePiece byte tokens (`<0x41>`) are one
 * byte, byte-level BPE pieces are decoded from GPT-2's alphabet, control
 * tokens are their text; anything else is the piece's UTF-8.
 */
export function tokenText(model: LlamaModel, token: Token): TokenText {
  let cache = texts.get(model);
  if (!cache) texts.set(model, (cache = new Map()));
  const hit = cache.get(token);
  if (hit) return hit;
  const ggml = model.fileInfo.metadata.tokenizer?.ggml;
  const piece = ggml?.tokens?.[token];
  const type = ggml?.token_type?.[token];
  let bytes: number[];
  if (piece === undefined || type === 3 /* control */ || type === 4 /* user defined */) {
    bytes = [...Buffer.from(model.detokenize([token], true), "utf8")];
  } else if (ggml?.model === "llama") {
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    bytes = byte ? [parseInt(byte[1]!, 16)] : [...Buffer.from(piece.replaceAll("\u2581", " "), "utf8")];
  } else if (ggml?.model === "gpt2" && [...piece].every((c) => BYTE_OF_CHAR.has(c))) {
    bytes = [...piece].map((c) => BYTE_OF_CHAR.get(c)!);
  } else {
    bytes = [...Buffer.from(model.detokenize([token], true), "utf8")];
  }
  const result = { text: validUtf8Prefix(bytes), bytes };
  cache.set(token, result);
  return result;
}

/** The longest prefix of `bytes` that is complete UTF-8 (llama-server's `validate_utf8`), decoded. */
function validUtf8Prefix(bytes: readonly number[]): string {
  let end = bytes.length;
  // Look back at most 3 bytes for a sequence that is cut short.
  for (let i = 1; i <= Math.min(3, bytes.length); i++) {
    const b = bytes[bytes.length - i]!;
    if ((b & 0xc0) === 0x80) continue;
    const need = (b & 0xe0) === 0xc0 ? 2 : (b & 0xf0) === 0xe0 ? 3 : (b & 0xf8) === 0xf0 ? 4 : 1;
    if (need > i) end = bytes.length - i;
    break;
  }
  return Buffer.from(bytes.slice(0, end)).toString("utf8");
}

/** log(p), with llama-server's stand-in for log(0) (JSON has no -Infinity). */
export function logOf(p: number): number {
  return p === 0 ? -3.4028234663852886e38 : Math.log(p);
}

/**
 * llama-server's per-token entries (`completion_probabilities`, and
 * `logprobs.content` on the OpenAI routes): `id`, `token`, `bytes`, then
 * `logprob`/`top_logprobs`, or `prob`/`top_probs` after sampling.
 */
export function probabilityEntries(model: LlamaModel, tokens: readonly TokenProbabilities[], postSampling: boolean): object[] {
  const value = (p: number) => (postSampling ? { prob: p } : { logprob: logOf(p) });
  return tokens.map((t) => {
    const own = tokenText(model, t.token);
    return {
      id: t.token,
      token: own.text,
      bytes: own.bytes,
      ...value(t.probability),
      [postSampling ? "top_probs" : "top_logprobs"]: t.top.map((a) => {
        const alt = tokenText(model, a.token);
        return { id: a.token, token: alt.text, bytes: alt.bytes, ...value(a.probability) };
      }),
    };
  });
}

/** A chat choice's `logprobs`: `{content: [...]}` (OpenAI's shape, with llama-server's `id`). */
export function chatLogprobs(model: LlamaModel, tokens: readonly TokenProbabilities[], postSampling: boolean): { content: object[] } {
  return { content: probabilityEntries(model, tokens, postSampling) };
}

/**
 * A `/v1/completions` choice's `logprobs`: OpenAI's legacy arrays (`tokens`,
 * `token_logprobs`, `top_logprobs` as text → logprob, `text_offset` into the
 * choice's text) and llama-server's `content` entries beside them.
 * `offset` is where the first token's text starts in the choice's text.
 */
export function completionLogprobs(model: LlamaModel, tokens: readonly TokenProbabilities[], postSampling: boolean, offset = 0) {
  const pieces: string[] = [];
  const offsets: number[] = [];
  let at = offset;
  for (const t of tokens) {
    const text = tokenText(model, t.token).text;
    pieces.push(text);
    offsets.push(at);
    at += text.length;
  }
  return {
    tokens: pieces,
    token_logprobs: tokens.map((t) => logOf(t.probability)),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [tokenText(model, a.token).text, logOf(a.probability)]))),
    text_offset: offsets,
    content: probabilityEntries(model, tokens, postSampling),
  };
}
