import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tinyModel } from "../helpers/models.ts";

// The daemon forwards request bodies to the engine unchanged, so llama-server's
// fields work through it, and a field the engine cannot honour is the engine's 400.

type Json = Record<string, any>;

describe("llama-server request fields through the daemon", () => {
  let d: TestDaemon;

  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn" });
    await d.addModel(await tinyModel({ seed: 41 }), "ai/fields:latest");
  });
  after(() => d?.close());

  const post = async (path: string, body: object): Promise<{ status: number; json: Json }> => {
    const res = await fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Json };
  };
  const messages = [{ role: "user", content: "hello there" }];

  test("logprobs, logit_bias and n_predict reach the engine; an unknown field is a 400 naming it", async () => {
    const first = await post("/v1/chat/completions", { model: "ai/fields", messages, temperature: 0, n_predict: 3, max_tokens: 9, logprobs: true, top_logprobs: 2 });
    assert.equal(first.status, 200, JSON.stringify(first.json));
    assert.equal(first.json.usage.completion_tokens, 3);
    const entries = first.json.choices[0].logprobs.content as Array<{ id: number; top_logprobs: unknown[] }>;
    assert.equal(entries.length, 3);
    const banned = await post("/v1/chat/completions", { model: "ai/fields", messages, temperature: 0, max_tokens: 1, logit_bias: [[entries[0]!.id, false]], return_tokens: true });
    assert.notEqual(banned.json.choices[0].tokens[0], entries[0]!.id);
    const bad = await post("/v1/chat/completions", { model: "ai/fields", messages, frobnicate: true });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "frobnicate");
    const echo = await post("/v1/completions", { model: "ai/fields", prompt: "x", echo: true });
    assert.equal(echo.status, 400);
    assert.equal(echo.json.error.param, "echo");
  });
});
