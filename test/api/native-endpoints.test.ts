import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { tinyModel } from "../helpers/models.ts";

/**
 * llama-server's own endpoints through the daemon: a `model` field routes
 * them to that model's runner, under `/`, `/engines/` and
 * `/engines/llama.cpp/` as the OpenAI routes are.
 */
describe("llama-server endpoints through the daemon", () => {
  let d: TestDaemon;
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  before(async () => {
    d = await startTestDaemon();
  });
  after(() => d?.close());

  test("tokenize and detokenize round-trip under every prefix", async () => {
    for (const prefix of ["", "/engines", "/engines/llama.cpp"]) {
      const tok = await post(`${prefix}/tokenize`, { model: "ai/tiny", content: "hello world" });
      assert.equal(tok.status, 200, JSON.stringify(tok.body));
      const tokens = tok.body.tokens as number[];
      assert.ok(tokens.length > 0 && tokens.every((t) => Number.isInteger(t)), prefix);
      const detok = await post(`${prefix}/detokenize`, { model: "ai/tiny", tokens });
      assert.equal(detok.status, 200, JSON.stringify(detok.body));
      assert.equal((detok.body.content as string).trim(), "hello world", prefix);
    }
    const pieces = await post("/tokenize", { model: "ai/tiny", content: "hi", with_pieces: true });
    assert.ok((pieces.body.tokens as Array<{ id: number; piece: string }>).every((t) => typeof t.piece === "string"));
  });

  test("apply-template renders the chat prompt without generating", async () => {
    const res = await post("/apply-template", { model: "ai/tiny", messages: [{ role: "user", content: "marker-42" }] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.match(res.body.prompt as string, /marker-42/);
  });

  test("/completion, /infill and /embedding reach the model's runner", async () => {
    const completion = await post("/completion", { model: "ai/tiny", prompt: "once", n_predict: 3 });
    assert.equal(completion.status, 200, JSON.stringify(completion.body));
    assert.equal(completion.body.tokens_predicted, 3);
    const infill = await post("/engines/infill", { model: "ai/tiny", input_prefix: "a", input_suffix: "b", n_predict: 2 });
    // The tiny model has no FIM tokens: llama-server's own 400 comes through unchanged.
    assert.ok(infill.status === 200 || infill.status === 400, JSON.stringify(infill.body));
    const embedding = await post("/embedding", { model: "ai/tiny-embed", content: "hello" });
    assert.equal(embedding.status, 200, JSON.stringify(embedding.body));
    const rows = embedding.body as unknown as Array<{ index: number; embedding: number[][] }>;
    assert.equal(rows[0]!.index, 0);
    const ps = (await (await fetch(`${d.url}/engines/ps`)).json()) as Array<{ model_name: string; mode: string }>;
    assert.ok(ps.some((r) => r.model_name.includes("tiny-embed") && r.mode === "embedding"), JSON.stringify(ps));
  });

  test("streams from /completion pass through as SSE", async () => {
    const res = await fetch(`${d.url}/completion`, { method: "POST", body: JSON.stringify({ model: "ai/tiny", prompt: "x", n_predict: 3, stream: true }) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /text\/event-stream/);
    const events = (await res.text()).split("\n").filter((l) => l.startsWith("data: "));
    assert.ok(events.length >= 3, String(events.length));
  });

  test("a proxied answer carries the CORS headers and its Content-Length", async () => {
    const res = await fetch(`${d.url}/tokenize`, { method: "POST", headers: { origin: "http://localhost:3000" }, body: JSON.stringify({ model: "ai/tiny", content: "hi" }) });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal(res.headers.get("access-control-allow-origin"), "http://localhost:3000");
    assert.equal(res.headers.get("content-length"), String(Buffer.byteLength(text)));
  });

  test("a missing or unknown model is refused, in OpenAI's shape", async () => {
    const missing = await post("/tokenize", { content: "hi" });
    assert.equal(missing.status, 400);
    assert.match(JSON.stringify(missing.body.error), /model/);
    const unknown = await post("/engines/tokenize", { model: "ai/nope", content: "hi" });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
  });

  test("a model removed from the store is not served from the lookup cache", async () => {
    await d.addModel(await tinyModel({ seed: 77 }), "ai/gone:latest");
    assert.equal((await post("/tokenize", { model: "ai/gone", content: "hi" })).status, 200);
    const rm = await fetch(`${d.url}/models/ai/gone`, { method: "DELETE" });
    assert.equal(rm.status, 200, await rm.text());
    assert.equal((await post("/tokenize", { model: "ai/gone", content: "hi" })).status, 404);
    // And a model added by another writer of the store is found at once.
    await d.addModel(await tinyModel({ seed: 77 }), "ai/gone:latest");
    assert.equal((await post("/tokenize", { model: "ai/gone", content: "hi" })).status, 200);
  });
});
