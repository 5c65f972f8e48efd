import assert from "node:assert/strict";
import { test } from "node:test";
import { applyPreset } from "../../src/api/engine/preset.ts";
import { mergePreset, parsePresetPatch } from "../../src/scheduling/index.ts";

const preset = { system: "S", parameters: { temperature: 0.2, num_predict: -2, stop: ["x"] }, messages: [{ role: "user" as const, content: "shot" }] };

test("applyPreset: fills what the body lacks; the body's values win; system only without one of the request's", () => {
  const chat = applyPreset("/v1/chat/completions", { messages: [{ role: "user", content: "q" }] }, preset);
  assert.deepEqual(chat, {
    messages: [{ role: "system", content: "S" }, { role: "user", content: "shot" }, { role: "user", content: "q" }],
    temperature: 0.2,
    max_tokens: -1,
    stop: ["x"],
  });
  const own = applyPreset("/v1/chat/completions", { messages: [{ role: "developer", content: "D" }, { role: "user", content: "q" }], temperature: 1, max_completion_tokens: 4, stop: null }, preset);
  assert.deepEqual(own.messages, [{ role: "developer", content: "D" }, { role: "user", content: "shot" }, { role: "user", content: "q" }]);
  assert.equal(own.temperature, 1);
  assert.equal(own.max_tokens, undefined);
  assert.deepEqual(own.stop, ["x"]);
  const raw = applyPreset("/v1/completions", { prompt: "p" }, preset);
  assert.deepEqual(raw, { prompt: "p", temperature: 0.2, max_tokens: -1, stop: ["x"] });
  const embed = { input: "x" };
  assert.equal(applyPreset("/v1/embeddings", embed, preset), embed);
  assert.equal(applyPreset("/v1/chat/completions", embed, undefined), embed);
});

test("mergePreset: a patch keeps absent parts, null clears; an empty result is no preset", () => {
  const stored = mergePreset(undefined, parsePresetPatch({ system: "S", parameters: { top_k: "40", stop: "a" } }));
  assert.deepEqual(stored, { system: "S", parameters: { top_k: 40, stop: ["a"] } });
  assert.deepEqual(mergePreset(stored, parsePresetPatch({ parameters: { top_k: null, seed: 1 } })), { system: "S", parameters: { stop: ["a"], seed: 1 } });
  assert.deepEqual(mergePreset(stored, parsePresetPatch({ system: "" })), { parameters: { top_k: 40, stop: ["a"] } });
  assert.equal(mergePreset(stored, parsePresetPatch({ system: null, parameters: null })), undefined);
  assert.equal(mergePreset(stored, null), undefined);
});
