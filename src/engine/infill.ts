import type { Token } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import type { ModelHost } from "./model-host.ts";

/** `/infill`'s inputs (llama-server's names). */
export interface InfillInput {
  input_prefix: string;
  input_suffix: string;
  input_extra: ReadonlyArray<{ text: string; filename?: string | undefined }>;
  /** Text after the prefix, where the model starts (may be empty). */
  prompt: string;
}

/** `/infill` on a model without FIM tokens: llama-server's 501-style refusal, here a 400. */
export class InfillNotSupportedError extends InvalidRequestError {
  override readonly code = "infill_not_supported";
}

/**
 * The fill-in-the-middle prompt exactly as llama-server builds it
 * (`format_prompt_infill` in tools/server/server-common.cpp, repo-level
 * pattern): extra chunks under the repo and file-separator tokens, then
 * `[FIM_PRE]prefix prompt [FIM_SUF]suffix [FIM_MID]`. Prefix and suffix are
 * cut to fit a batch (3:1), extra chunks to fill the rest of the context.
 */
export function infillPrompt(host: ModelHost, input: InfillInput, nPredict: number): Token[] {
  const fim = host.info.fim;
  if (!fim) {
    throw new InfillNotSupportedError("Infill is not supported by this model: it has no fill-in-the-middle prefix, suffix and middle tokens.");
  }
  const text = (s: string) => host.tokenize(s, false, false);
  const extra: Token[] = [];
  if (fim.repo !== null) extra.push(fim.repo, ...text("myproject\n"));
  for (const chunk of input.input_extra) {
    if (fim.fileSeparator !== null) extra.push(fim.fileSeparator, ...text(`${chunk.filename ?? "tmp"}\n`));
    else extra.push(...text("\n\n--- snippet ---\n\n"));
    extra.push(...text(chunk.text));
  }
  if (fim.fileSeparator !== null) extra.push(fim.fileSeparator, ...text("filename\n"));

  const nBatch = host.batchSize;
  const nCtx = host.info.slotContextSize;
  const promptTokens = host.tokenize(input.prompt, false);
  let prefix = text(input.input_prefix);
  let suffix = text(input.input_suffix);
  const prefixTake = Math.min(prefix.length, 3 * Math.floor(nBatch / 4));
  const suffixTake = Math.min(suffix.length, Math.max(0, Math.floor(nBatch / 4) - (2 + promptTokens.length)));
  const extraTake = Math.min(Math.max(0, nCtx - nBatch - 2 * nPredict), extra.length);
  prefix = prefix.slice(prefix.length - prefixTake);
  suffix = suffix.slice(0, suffixTake);
  const begin: Token[] = [fim.prefix, ...prefix, ...promptTokens];
  const end: Token[] = [fim.suffix, ...suffix];
  const bos = host.model.tokens.bos;
  const out: Token[] = [...extra.slice(extra.length - extraTake)];
  if (bos !== null && host.model.tokens.shouldPrependBosToken) out.push(bos);
  return [...out, ...begin, ...end, fim.middle];
}
