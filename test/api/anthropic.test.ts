import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Anthropic from "@anthropic-ai/sdk";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";

// The official @anthropic-ai/sdk, unmodified, against a daemon with an API key (sent as x-api-key).
describe("Anthropic Messages API with @anthropic-ai/sdk", () => {
  let d: TestDaemon;
  let client: Anthropic;
  const KEY = "sk-test-key";

  before(async () => {
    d = await startTestDaemon({ MODEL_RUNNER_API_KEY: KEY });
    client = new Anthropic({ baseURL: `${d.url}/anthropic`, apiKey: KEY, maxRetries: 0 });
  });
  after(() => d?.close());

  test("messages.create returns a message with text, stop_reason and usage", async () => {
    const msg = await client.messages.create({
      model: "ai/tiny",
      max_tokens: 6,
      system: [{ type: "text", text: "Be brief." }],
      messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
      temperature: 0,
      top_k: 10,
      metadata: { user_id: "u1" },
      // This SDK version's types lack the sampling fields; the API (and the SDK, which sends the body as is) has them.
    } as Anthropic.MessageCreateParamsNonStreaming);
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.type, "message");
    assert.equal(msg.role, "assistant");
    assert.equal(msg.content[0]!.type, "text");
    assert.ok((msg.content[0] as { text: string }).text.length > 0);
    assert.equal(msg.stop_reason, "max_tokens");
    assert.equal(msg.usage.output_tokens, 6);
    assert.ok(msg.usage.input_tokens > 3);
  });

  test("the same route answers at /v1/messages", async () => {
    const plain = new Anthropic({ baseURL: d.url, apiKey: KEY, maxRetries: 0 });
    const msg = await plain.messages.create({ model: "tiny", max_tokens: 2, messages: [{ role: "user", content: "hi" }] });
    assert.equal(msg.usage.output_tokens, 2);
  });

  test("streaming through the SDK's stream helper yields the documented events", async () => {
    const stream = client.messages.stream({ model: "tiny", max_tokens: 8, messages: [{ role: "user", content: "tell me" }], stop_sequences: ["\n\n\n"] });
    const types: string[] = [];
    let text = "";
    stream.on("streamEvent", (e) => types.push(e.type));
    stream.on("text", (t) => (text += t));
    const final = await stream.finalMessage();
    assert.equal(types[0], "message_start");
    assert.equal(types[1], "content_block_start");
    // The SDK swallows `ping`; the raw stream below checks it.
    assert.ok(types.includes("content_block_delta"));
    assert.deepEqual(types.slice(-3), ["content_block_stop", "message_delta", "message_stop"]);
    assert.equal(final.stop_reason, "max_tokens");
    assert.equal(final.usage.output_tokens, 8);
    assert.equal((final.content[0] as { text: string }).text, text);
  });

  test("the raw event stream carries ping and text_delta events in order", async () => {
    const res = await fetch(`${d.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", max_tokens: 3, stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.match(res.headers.get("content-type")!, /text\/event-stream/);
    const events = (await res.text()).trim().split("\n\n").map((e) => e.split("\n")[0]!.slice(7));
    assert.deepEqual(events.slice(0, 3), ["message_start", "content_block_start", "ping"]);
    assert.deepEqual(events.slice(-3), ["content_block_stop", "message_delta", "message_stop"]);
  });

  test("count_tokens uses the model's tokenizer", async () => {
    const short = await client.messages.countTokens({ model: "tiny", messages: [{ role: "user", content: "hello" }] });
    const long = await client.messages.countTokens({ model: "tiny", system: "be brief", messages: [{ role: "user", content: "hello world hello world" }] });
    assert.ok(short.input_tokens > 0);
    assert.ok(long.input_tokens > short.input_tokens + 3);
  });

  test("errors map to the SDK's error classes and Anthropic's error shape", async () => {
    await assert.rejects(client.messages.create({ model: "absent", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.NotFoundError);
      assert.equal((e.error as { error: { type: string } }).error.type, "not_found_error");
      return true;
    });
    await assert.rejects(client.messages.create({ model: "tiny", max_tokens: 5, messages: [] }), Anthropic.BadRequestError);
    const noKey = new Anthropic({ baseURL: `${d.url}/anthropic`, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(noKey.messages.create({ model: "tiny", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), Anthropic.AuthenticationError);
    const raw = await fetch(`${d.url}/anthropic/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(raw.status, 400);
    const body = (await raw.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, "error");
    assert.equal(body.error.type, "invalid_request_error");
    assert.match(body.error.message, /max_tokens/);
  });

  test("unsupported content blocks and thinking are clear 400s", async () => {
    await assert.rejects(
      client.messages.create({ model: "tiny", max_tokens: 5, messages: [{ role: "user", content: [{ type: "document", source: { type: "text", media_type: "text/plain", data: "x" } }] }] }),
      (e) => e instanceof Anthropic.BadRequestError && /document/.test(e.message),
    );
    await assert.rejects(
      client.messages.create({ model: "tiny", max_tokens: 5, thinking: { type: "enabled", budget_tokens: 1024 }, messages: [{ role: "user", content: "x" }] }),
      (e) => e instanceof Anthropic.BadRequestError && /thinking/.test(e.message),
    );
  });

  test("inference metrics are labelled with the anthropic API", async () => {
    const text = await (await fetch(`${d.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    assert.match(text, /model_runner_inference_requests_total\{api="anthropic",endpoint="\/v1\/chat\/completions"/);
    assert.match(text, /model_runner_inference_requests_total\{api="anthropic",endpoint="\/tokenize"/);
  });
});
