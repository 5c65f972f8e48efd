/**
 * Whether a draft model can draft for a target model: llama.cpp's rule
 * (common/speculative.cpp `common_speculative_are_compatible`), checked on
 * the GGUF tokenizer metadata before anything is loaded. Both engines and
 * the daemon's `_configure` use it, so a mismatch is refused the same way
 * everywhere, with the reason.
 */

/** The tokenizer facts the rule compares. */
export interface VocabularyInfo {
  /** `tokenizer.ggml.model` (llama, gpt2, ...). */
  model: string | null;
  tokens: readonly string[];
  bos: number | null;
  eos: number | null;
  addBos: boolean | null;
  addEos: boolean | null;
}

/** llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE and SPEC_VOCAB_CHECK_START_TOKEN_ID. */
const MAX_SIZE_DIFFERENCE = 128;
const CHECK_START_TOKEN = 5;

/** The reason `draft` cannot draft for `target`, or null when it can. */
export function vocabularyMismatch(target: VocabularyInfo, draft: VocabularyInfo): string | null {
  if (target.model !== draft.model) return `tokenizer types differ (${target.model ?? "none"} vs ${draft.model ?? "none"})`;
  if (target.addBos !== draft.addBos || (target.addBos === true && target.bos !== draft.bos)) {
    return `begin-of-text tokens differ (${target.bos ?? "none"} vs ${draft.bos ?? "none"})`;
  }
  if (target.addEos !== draft.addEos || (target.addEos === true && target.eos !== draft.eos)) {
    return `end-of-text tokens differ (${target.eos ?? "none"} vs ${draft.eos ?? "none"})`;
  }
  const difference = Math.abs(target.tokens.length - draft.tokens.length);
  if (difference > MAX_SIZE_DIFFERENCE) {
    return `vocabulary sizes differ by ${difference} tokens (${target.tokens.length} vs ${draft.tokens.length}; at most ${MAX_SIZE_DIFFERENCE})`;
  }
  const n = Math.min(target.tokens.length, draft.tokens.length);
  for (let i = CHECK_START_TOKEN; i < n; i++) {
    if (target.tokens[i] !== draft.tokens[i]) return `token ${i} differs (${JSON.stringify(target.tokens[i])} vs ${JSON.stringify(draft.tokens[i])})`;
  }
  return null;
}

const numberOrNull = (v: unknown): number | null => (typeof v === "number" || typeof v === "bigint" ? Number(v) : null);
const boolOrNull = (v: unknown): boolean | null => (typeof v === "boolean" ? v : null);

/** The facts from a GGUF's metadata as flat keys (`tokenizer.ggml.tokens`, as @huggingface/gguf gives them). */
export function vocabularyOfFlatMetadata(meta: Readonly<Record<string, unknown>>): VocabularyInfo {
  const tokens = meta["tokenizer.ggml.tokens"];
  const model = meta["tokenizer.ggml.model"];
  return {
    model: typeof model === "string" ? model : null,
    tokens: Array.isArray(tokens) ? tokens.map(String) : [],
    bos: numberOrNull(meta["tokenizer.ggml.bos_token_id"]),
    eos: numberOrNull(meta["tokenizer.ggml.eos_token_id"]),
    addBos: boolOrNull(meta["tokenizer.ggml.add_bos_token"]),
    addEos: boolOrNull(meta["tokenizer.ggml.add_eos_token"]),
  };
}

/** Reads the facts from a GGUF file's header (only the header is read). */
export async function readVocabulary(path: string): Promise<VocabularyInfo> {
  const { metadata } = await (await import("@huggingface/gguf")).gguf(path, { allowLocalFile: true });
  return vocabularyOfFlatMetadata(metadata as Record<string, unknown>);
}
