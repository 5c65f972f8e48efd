import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SseReader } from "../../src/http/sse-reader.ts";
import OpenAI from "openai";
import { ResponseStore } from "../../src/api/responses/index.ts";
import { validateJson } from "../helpers/json-schema.ts";
import { tinyModel } from "../helpers/models.ts";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { killEngineMidStream, SLOW_MODEL } from "./mid-stream.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";

// The official openai client's Responses API, unmodified, against the daemon.
// Once per llama.cpp engine (test/helpers/engines.ts): the same tests against our engine and a real llama-server.
for (const variant of ENGINE_VARIANTS) describe(`OpenAI Responses API with the openai client [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  let client: OpenAI;

  before(async () => {
    d = await startTestDaemon(variant.env);
    client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "unused", maxRetries: 0 });
    await d.addModel(await tinyModel(SLOW_MODEL), "ai/slow:latest");
    // llama-server checks a JSON grammar against the generation prompt's tokens, which fails ("Failed to
    // initialize samplers") when text after a special token gets a leading space, as tiny's tokenizer gives it.
    await d.addModel(await tinyModel({ seed: 3, spacePrefix: false }), "ai/tiny-bpe:latest");
  });
  after(() => d?.close());

  test("create returns output text and usage; retrieve and input_items find it", async () => {
    const res = await client.responses.create({ model: "tiny", input: "hello", instructions: "Be brief.", max_output_tokens: 5, temperature: 0 });
    assert.match(res.id, /^resp_/);
    assert.equal(res.object, "response");
    assert.equal(res.status, "incomplete");
    assert.equal(res.incomplete_details?.reason, "max_output_tokens");
    assert.ok(res.output_text.length > 0);
    assert.equal(res.usage!.output_tokens, 5);
    assert.ok(res.usage!.input_tokens > 3);
    const again = await client.responses.retrieve(res.id);
    assert.equal(again.id, res.id);
    assert.equal(again.output_text, res.output_text);
    const items = await client.responses.inputItems.list(res.id);
    assert.equal(items.data.length, 1);
    assert.equal((items.data[0] as { role: string }).role, "user");
  });

  test("streaming emits the typed events and a final response", async () => {
    const stream = await client.responses.create({ model: "tiny", input: [{ role: "user", content: [{ type: "input_text", text: "hi" }] }], max_output_tokens: 4, stream: true });
    const types: string[] = [];
    let text = "";
    let done = "";
    let final: OpenAI.Responses.Response | null = null;
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === "response.output_text.delta") text += e.delta;
      if (e.type === "response.output_text.done") done = e.text;
      if (e.type === "response.incomplete" || e.type === "response.completed") final = e.response;
    }
    assert.equal(types[0], "response.created");
    assert.ok(types.includes("response.output_text.delta"));
    assert.ok(types.includes("response.output_text.done"));
    assert.equal(types.at(-1), "response.incomplete");
    assert.equal(done, text);
    assert.equal(final!.usage!.output_tokens, 4);
    assert.equal((await client.responses.retrieve(final!.id)).output_text, text);
  });

  test("the SDK's stream helper and /engines paths work too", async () => {
    const engines = new OpenAI({ baseURL: `${d.url}/engines/llama.cpp/v1`, apiKey: "unused", maxRetries: 0 });
    const stream = engines.responses.stream({ model: "tiny", input: "x", max_output_tokens: 3 });
    const final = await stream.finalResponse();
    assert.equal(final.usage!.output_tokens, 3);
  });

  test("previous_response_id chains the conversation; delete removes a response", async () => {
    const first = await client.responses.create({ model: "tiny", input: "one", max_output_tokens: 3, temperature: 0 });
    const second = await client.responses.create({ model: "tiny", input: "two", previous_response_id: first.id, max_output_tokens: 3, temperature: 0 });
    assert.equal(second.previous_response_id, first.id);
    // The chained prompt holds the first turn and its answer.
    assert.ok(second.usage!.input_tokens > first.usage!.input_tokens + 3);
    await client.responses.delete(first.id);
    await assert.rejects(client.responses.retrieve(first.id), OpenAI.NotFoundError);
    await assert.rejects(client.responses.create({ model: "tiny", input: "x", previous_response_id: first.id }), OpenAI.NotFoundError);
    const unstored = await client.responses.create({ model: "tiny", input: "x", max_output_tokens: 1, store: false });
    await assert.rejects(client.responses.retrieve(unstored.id), OpenAI.NotFoundError);
  });

  test("text.format json_schema gives output that parses and validates, streamed or not", async () => {
    const schema = {
      type: "object",
      properties: { name: { type: "string", minLength: 1, maxLength: 16 }, age: { type: "integer" }, ok: { type: "boolean" } },
      required: ["name", "age", "ok"],
      additionalProperties: false,
    };
    const format = { type: "json_schema" as const, name: "person", schema, strict: true };
    const model = variant.engine === "llama-server" ? "tiny-bpe" : "tiny";
    const res = await client.responses.create({ model, input: "a person", max_output_tokens: 300, temperature: 1, text: { format } });
    assert.equal(res.status, "completed", res.output_text);
    assert.equal(validateJson(JSON.parse(res.output_text), schema), null, res.output_text);
    const stream = client.responses.stream({ model, input: "another", max_output_tokens: 300, text: { format } });
    const final = await stream.finalResponse();
    assert.equal(validateJson(JSON.parse(final.output_text), schema), null, final.output_text);
    // json_object leaves string lengths open and the Responses API has no
    // seed: greedy decoding makes the reply the same every run.
    const object = await client.responses.create({ model, input: "json", max_output_tokens: 300, temperature: 0, text: { format: { type: "json_object" } } });
    if (object.status === "completed") {
      const value: unknown = JSON.parse(object.output_text);
      assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), object.output_text);
    } else {
      // Should another CPU's kernels tip greedy decoding into a long string,
      // the reply must say why it ended and still be an object so far (the
      // tiny model cannot write "{" on its own: its byte tokens are silent).
      assert.equal(object.status, "incomplete");
      assert.equal(object.incomplete_details?.reason, "max_output_tokens");
      assert.match(object.output_text, /^\s*\{/);
    }
  });

  test("an engine killed mid-stream ends with error and response.failed", async () => {
    const res = await fetch(`${d.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "slow", input: "go on", max_output_tokens: 100000, stream: true }),
    });
    const text = await killEngineMidStream(d, res, "response.output_text.delta");
    // The model is cold here: `: loading` comments come first, and the reader skips them.
    const events = SseReader.readAll(text).map((e) => ({ type: e.event!, data: JSON.parse(e.data) as Record<string, unknown> }));
    assert.deepEqual(events.slice(-2).map((e) => e.type), ["error", "response.failed"]);
    assert.equal(typeof events.at(-2)!.data.message, "string");
    const failed = events.at(-1)!.data.response as { status: string; error: { code: string; message: string } | null; id: string };
    assert.equal(failed.status, "failed");
    assert.ok(failed.error && failed.error.message.length > 0);
    // The same message as on the OpenAI routes: the engine's failure and its last output.
    assert.equal(failed.error.code, "engine_failed");
    assert.match(failed.error.message, /killed by SIGKILL/);
    assert.match(failed.id, /^resp_/);
    assert.ok(!events.some((e) => e.type === "response.completed"));
  });

  test("unsupported fields are rejected by name", async () => {
    await assert.rejects(client.responses.create({ model: "tiny", input: "x", background: true }), (e) => e instanceof OpenAI.BadRequestError && /background/.test(e.message));
    await assert.rejects(client.responses.create({ model: "tiny", input: "x", service_tier: "flex" }), (e) => e instanceof OpenAI.BadRequestError && /service_tier/.test(e.message));
    await assert.rejects(client.responses.create({ model: "tiny", input: "x", tools: [{ type: "web_search_preview" }] }), (e) => e instanceof OpenAI.BadRequestError && /web_search/.test(e.message));
    const raw = await fetch(`${d.url}/v1/responses`, { method: "POST", body: JSON.stringify({ model: "absent", input: "x" }) });
    assert.equal(raw.status, 404);
    const body = (await raw.json()) as { error: { message: string; type: string } };
    assert.equal(body.error.type, "not_found_error");
  });

  test("the store expires entries and stays within its bounds", () => {
    let now = 0;
    const store = new ResponseStore({ ttlMs: 1000, maxEntries: 2, now: () => now });
    const entry = { response: {}, inputItems: [], messages: [] };
    store.put("a", entry);
    store.put("b", entry);
    store.put("c", entry);
    assert.equal(store.get("a"), null);
    assert.ok(store.get("c"));
    now = 1001;
    assert.equal(store.get("c"), null);
  });
});
