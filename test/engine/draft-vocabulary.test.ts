import assert from "node:assert/strict";
import { test } from "node:test";
import { vocabularyMismatch, type VocabularyInfo } from "../../src/engine/draft-vocabulary.ts";

const base: VocabularyInfo = { model: "llama", tokens: ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"], bos: 1, eos: 2, addBos: true, addEos: false };

test("vocabularyMismatch follows llama.cpp's common_speculative_are_compatible", () => {
  assert.equal(vocabularyMismatch(base, base), null);
  // Up to 128 extra tokens at the end, and differences below id 5, are allowed, as in llama.cpp.
  assert.equal(vocabularyMismatch(base, { ...base, tokens: [...base.tokens, "x", "y"] }), null);
  assert.equal(vocabularyMismatch(base, { ...base, tokens: ["?", ...base.tokens.slice(1)] }), null);
  assert.match(vocabularyMismatch(base, { ...base, tokens: [...base.tokens, ...Array.from({ length: 129 }, (_, i) => `t${i}`)] })!, /sizes differ by 129/);
  assert.match(vocabularyMismatch(base, { ...base, tokens: [...base.tokens.slice(0, 6), "z", "e"] })!, /token 6 differs \("d" vs "z"\)/);
  assert.match(vocabularyMismatch(base, { ...base, model: "gpt2" })!, /tokenizer types differ \(llama vs gpt2\)/);
  assert.match(vocabularyMismatch(base, { ...base, bos: 0 })!, /begin-of-text tokens differ/);
  assert.match(vocabularyMismatch(base, { ...base, addEos: true, eos: 2 })!, /end-of-text tokens differ/);
});
