import assert from "node:assert/strict";
import { test } from "node:test";
import { chatCompletionRequest, parseRequest } from "../../src/engine/requests.ts";

const chat = { messages: [{ role: "user", content: "x" }] };

test("a field of the wrong type says so; only an absent field is 'required'", () => {
  assert.throws(() => parseRequest(chatCompletionRequest, { ...chat, max_tokens: "10" }), /'max_tokens' must be .*, got string/);
  assert.throws(() => parseRequest(chatCompletionRequest, { ...chat, stream: "yes" }), /'stream' must be .*boolean, got string/);
  assert.throws(() => parseRequest(chatCompletionRequest, { messages: [{ content: "x" }] }), /'messages\.0\.role' is (required|invalid)/);
  assert.throws(() => parseRequest(chatCompletionRequest, {}), /'messages' is required/);
});
