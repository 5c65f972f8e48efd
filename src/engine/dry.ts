import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * llama.cpp's DRY ("don't repeat yourself") sampler (src/llama-sampler.cpp,
 * ported there from koboldcpp): a token that would extend a sequence that
 * already occurred in the last `dry_penalty_last_n` tokens (prompt included)
 * by more than `dry_allowed_length` gets `multiplier * base^(length -
 * allowed)` subtracted from its logit. Sequence breakers (newline, colon,
 * ...) end the sequences it looks back over.
 */

/** Head token → the tails that, after it, spell a sequence breaker (empty: the token alone contains one). */
export type Breakers = ReadonlyMap<Token, ReadonlyArray<readonly Token[]>>;

const MAX_CHAR_LEN = 40;
const MAX_SEQ_LEN = 20;
const cache = new WeakMap<LlamaModel, Map<string, Breakers>>();

/**
 * llama.cpp's `get_overlapping_token_sequences` for each breaker: every token
 * whose text contains the breaker, or ends with its start (then the tokens of
 * the rest are the tail). Scans the vocabulary once per breaker list and model.
 */
export function dryBreakers(model: LlamaModel, breakers: readonly string[], vocabSize: number): Breakers {
  let perModel = cache.get(model);
  if (!perModel) cache.set(model, (perModel = new Map()));
  const key = JSON.stringify(breakers);
  const hit = perModel.get(key);
  if (hit) return hit;
  const out = new Map<Token, Token[][]>();
  const words: string[] = [];
  for (let t = 0; t < vocabSize; t++) words.push(model.detokenize([t as Token], true));
  for (const raw of breakers) {
    if (raw === "") continue;
    const str = raw.slice(0, MAX_CHAR_LEN);
    for (let t = 0; t < vocabSize; t++) {
      const word = words[t]!;
      const id = t as Token;
      const add = (tail: Token[]) => {
        const list = out.get(id) ?? [];
        if (!list.some((x) => x.length === tail.length && x.every((v, i) => v === tail[i]))) list.push(tail);
        out.set(id, list);
      };
      if (word.includes(str)) {
        add([]);
        continue;
      }
      for (let pos = word.indexOf(str[0]!); pos >= 0; pos = word.indexOf(str[0]!, pos + 1)) {
        let i = 1;
        let match = true;
        for (; i < str.length && i + pos < word.length; i++) {
          if (word[pos + i] !== str[i]) {
            match = false;
            break;
          }
        }
        if (match) add(model.tokenize(str.slice(i), false).slice(0, MAX_SEQ_LEN));
      }
    }
  }
  perModel.set(key, out);
  return out;
}

export interface DrySettings {
  multiplier: number;
  base: number;
  allowedLength: number;
  breakers: Breakers;
}

/**
 * The DRY penalty per token for the next position, given the scanned window
 * `last` (oldest first). Empty when nothing repeats enough.
 */
export function dryPenalties(settings: DrySettings, last: readonly Token[]): Map<Token, number> {
  const penalties = new Map<Token, number>();
  const n = last.length;
  if (n <= settings.allowedLength) return penalties;
  const rat = (i: number) => last[n - 1 - i]!;

  // Step 1: the nearest sequence breaker from the end limits how long a repeat may be.
  let repLimit = n;
  for (let i = 0; i < n; i++) {
    const tails = settings.breakers.get(rat(i));
    if (!tails) continue;
    let longest = -1;
    for (const tail of tails) {
      if (tail.length > longest && tail.length <= i && tail.every((t, offset) => t === rat(i - offset - 1))) longest = tail.length;
    }
    if (longest >= 0) {
      repLimit = i - longest;
      break;
    }
  }
  if (repLimit < settings.allowedLength) return penalties;

  // Step 2: the reversed Z-algorithm: for each position, how long a suffix of the window ends there.
  const repeat = new Array<number>(n).fill(0);
  const lastIndex = n - 1;
  let rt = 0;
  let lt = 0;
  for (let k = 1; k < n; k++) {
    if (k > rt) {
      let m = 0;
      while (m + k < n && rat(m) === rat(m + k)) m++;
      repeat[lastIndex - k] = Math.min(m, repLimit);
      if (m > 0) {
        lt = k;
        rt = k + m - 1;
      }
    } else {
      const p = k - lt;
      const rightPartLen = rt - k + 1;
      if (repeat[lastIndex - p]! < rightPartLen) {
        repeat[lastIndex - k] = Math.min(repeat[lastIndex - p]!, repLimit);
      } else {
        let i = rt + 1;
        while (i < n && rat(i) === rat(i - k)) i++;
        repeat[lastIndex - k] = Math.min(i - k, repLimit);
        lt = k;
        rt = i - 1;
      }
    }
  }

  // Step 3: the token after each repeat would extend it.
  const longest = new Map<Token, number>();
  for (let i = 0; i < n - 1; i++) {
    const len = repeat[i]!;
    if (len < settings.allowedLength) continue;
    const token = rat(n - 2 - i);
    if ((longest.get(token) ?? -1) < len) longest.set(token, len);
  }

  // Step 4: the penalty, its exponent clamped so it stays a finite float.
  const maxExponent = settings.base > 1.000001 ? Math.trunc(88.7228391 / Math.log(settings.base)) : 0;
  for (const [token, len] of longest) {
    // A token that is a breaker on its own is never penalized.
    if (settings.breakers.get(token)?.some((tail) => tail.length === 0)) continue;
    let exponent = len - settings.allowedLength;
    if (maxExponent > 0 && exponent > maxExponent) exponent = maxExponent;
    penalties.set(token, settings.multiplier * Math.pow(settings.base, exponent));
  }
  return penalties;
}
