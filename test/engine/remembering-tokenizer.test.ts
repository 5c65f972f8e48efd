import assert from "node:assert/strict";
import { test } from "node:test";
import { getLlama, LlamaText, SpecialTokensText, type Token, type Tokenizer } from "node-llama-cpp";
import { rememberingTokenizer } from "../../src/engine/remembering-tokenizer.ts";
import { tinyModel } from "../helpers/models.ts";

test("the remembering tokenizer answers as the model's, and tokenizes a long text once while it is kept", async (t) => {
  const llama = await getLlama({ gpu: false });
  t.after(() => llama.dispose());
  const model = await llama.loadModel({ modelPath: await tinyModel({ seed: 1 }) });
  const given: string[] = [];
  // The model's own tokenizer, recording what it is asked.
  const counting = Object.assign(
    (text: string, special?: boolean, options?: "trimLeadingSpace"): Token[] => {
      given.push(text);
      return model.tokenizer(text, special, options);
    },
    { detokenize: model.tokenizer.detokenize, isSpecialToken: model.tokenizer.isSpecialToken, isEogToken: model.tokenizer.isEogToken },
  ) as Tokenizer;
  const remembering = rememberingTokenizer(counting, { minLength: 16, maxTotalLength: 100 });

  const long = " hello world, the model runner is";
  for (const special of [false, true]) {
    for (const options of [undefined, "trimLeadingSpace"] as const) {
      const expected = model.tokenizer(long, special, options);
      assert.deepEqual(remembering(long, special, options), expected);
      const again = remembering(long, special, options);
      assert.deepEqual(again, expected);
      // A caller changing its answer changes nothing that is kept.
      again.push(0 as Token);
      assert.deepEqual(remembering(long, special, options), expected);
    }
  }
  assert.equal(given.filter((g) => g === long).length, 4, "once per combination of options");

  // Short texts are not kept.
  given.length = 0;
  remembering("hi there", false);
  remembering("hi there", false);
  assert.equal(given.length, 2);

  // Beyond maxTotalLength the least recently used text goes first.
  const a = "a".repeat(30);
  const b = "b".repeat(30);
  const c = "c".repeat(30);
  const d = "d".repeat(30);
  const fresh = rememberingTokenizer(counting, { minLength: 16, maxTotalLength: 100 });
  given.length = 0;
  for (const text of [a, b, c, a, d, a, c, b]) fresh(text, false);
  // a, b, c kept (90); a used; d evicts b (the least recent); a and c are kept; b comes again.
  assert.deepEqual(given, [a, b, c, d, b]);

  // A chat prompt tokenizes to the same tokens through it as through the model.
  const prompt = LlamaText([new SpecialTokensText("<|im_start|>"), `system\n${long.repeat(4)}`, new SpecialTokensText("<|im_end|>\n<|im_start|>"), "user\nhi"]);
  const chat = rememberingTokenizer(model.tokenizer);
  assert.deepEqual(prompt.tokenize(chat), prompt.tokenize(model.tokenizer));
  assert.deepEqual(prompt.tokenize(chat), prompt.tokenize(model.tokenizer));
});
