import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";
import { tinyModel } from "../helpers/models.ts";

// The daemon forwards request bodies to the engine unchanged, so llama-server's
// fields work through it, and a field the engine cannot honour is the engine's 400:
// with either engine (llama-server's wrapper checks bodies as the built-in engine
// does, where llama-server alone would drop what it does not know).

type Json = Record<string, any>;

for (const variant of ENGINE_VARIANTS) describe(`llama-server request fields through the daemon [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;

  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...variant.env });
    await d.addModel(await tinyModel({ seed: 41 }), "ai/fields:latest");
    await d.addModel(await tinyModel({ seed: 42, pooling: "mean" }, "embed.gguf"), "ai/fields-embed:latest");
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
    const banned = await post("/v1/chat/completions", { model: "ai/fields", messages, temperature: 0, max_tokens: 1, logit_bias: [[entries[0]!.id, false]], logprobs: true, top_logprobs: 1 });
    assert.equal(banned.status, 200, JSON.stringify(banned.json));
    assert.notEqual(banned.json.choices[0].logprobs.content[0].id, entries[0]!.id);
    const bad = await post("/v1/chat/completions", { model: "ai/fields", messages, frobnicate: true });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "frobnicate");
    const echo = await post("/v1/completions", { model: "ai/fields", prompt: "x", echo: true });
    assert.equal(echo.status, 400);
    assert.equal(echo.json.error.param, "echo");
  });

  test("what either engine would drop is a 400 naming it: unknown fields at any depth, wrong types, best_of, an audio answer", async () => {
    const cases: Array<[string, object, string]> = [
      ["/v1/chat/completions", { model: "ai/fields", messages: [{ role: "user", content: "x", frob: 1 }], max_tokens: 1 }, "messages.0.frob"],
      ["/v1/chat/completions", { model: "ai/fields", messages, max_tokens: "3" }, "max_tokens"],
      ["/v1/chat/completions", { model: "ai/fields", messages, modalities: ["text", "audio"] }, "modalities"],
      ["/v1/chat/completions", { model: "ai/fields", messages, grammar: "root ::= \"a\"", json_schema: { type: "string" } }, "grammar"],
      ["/v1/completions", { model: "ai/fields", prompt: "x", best_of: 2 }, "best_of"],
      ["/v1/completions", { model: "ai/fields", prompt: "x", suffix: "y" }, "suffix"],
      ["/v1/embeddings", { model: "ai/fields", input: "x", frobnicate: true }, "frobnicate"],
      ["/v1/embeddings", { model: "ai/fields-embed", input: "x", dimensions: 100_000 }, "dimensions"],
    ];
    // llama-server answers `logprobs` with `top_logprobs: 0` without any log probabilities: its wrapper refuses it.
    if (variant.engine === "llama-server") cases.push(["/v1/chat/completions", { model: "ai/fields", messages, max_tokens: 1, logprobs: true, top_logprobs: 0 }, "top_logprobs"]);
    for (const [path, body, param] of cases) {
      const r = await post(path, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.param, param, JSON.stringify(r.json));
      assert.equal(r.json.error.type, "invalid_request_error");
    }
    // `dimensions` up to the model's size shortens the vectors, on either engine (llama-server's by its wrapper).
    const full = await post("/v1/embeddings", { model: "ai/fields-embed", input: "x" });
    const vector = full.json.data[0].embedding as number[];
    const same = await post("/v1/embeddings", { model: "ai/fields-embed", input: "x", dimensions: vector.length });
    assert.equal(same.status, 200, JSON.stringify(same.json));
    assert.equal(same.json.data[0].embedding.length, vector.length);
    for (const encoding_format of ["float", "base64"]) {
      const short = await post("/v1/embeddings", { model: "ai/fields-embed", input: ["x", "y"], dimensions: 3, encoding_format });
      assert.equal(short.status, 200, JSON.stringify(short.json));
      const first = short.json.data[0].embedding;
      const v = typeof first === "string" ? Array.from(floatsOf(first)) : (first as number[]);
      assert.equal(v.length, 3);
      const head = Math.hypot(...vector.slice(0, 3));
      v.forEach((x, i) => assert.ok(Math.abs(x - vector[i]! / head) < 1e-5, `${encoding_format} ${x} vs ${vector[i]! / head}`));
      assert.equal(short.json.data.length, 2);
    }
  });

  test(`what only one engine honours: n_indent (llama-server's), return_tokens on the OpenAI routes (the built-in engine's) [${variant.engine}]`, async () => {
    const indent = await post("/v1/completions", { model: "ai/fields", prompt: "x", max_tokens: 2, n_indent: 0, temperature: 0 });
    const tokens = await post("/v1/completions", { model: "ai/fields", prompt: "x", max_tokens: 2, return_tokens: true, temperature: 0 });
    const refused = variant.engine === "llama-server" ? { r: tokens, param: "return_tokens" } : { r: indent, param: "n_indent" };
    const served = variant.engine === "llama-server" ? indent : tokens;
    assert.equal(served.status, 200, JSON.stringify(served.json));
    assert.equal(refused.r.status, 400, JSON.stringify(refused.r.json));
    assert.equal(refused.r.json.error.param, refused.param);
    if (variant.engine === "built-in") assert.equal(served.json.choices[0].tokens.length, 2);
  });
});

/** A base64 embedding's float32 values (a decoded Buffer may share a larger pool, so its own bytes are copied out). */
function floatsOf(base64: string): Float32Array {
  const bytes = Buffer.from(base64, "base64");
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}
