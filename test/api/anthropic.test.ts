import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Anthropic from "@anthropic-ai/sdk";
import { HERMES_INLINE_TOOLS_TEMPLATE, HERMES_TOOLS_TEMPLATE, REASONING_TEMPLATE } from "../../src/distribution/tiny-model.ts";
import { validateJson } from "../helpers/json-schema.ts";
import { tinyModel } from "../helpers/models.ts";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { killEngineMidStream, SLOW_MODEL } from "./mid-stream.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";

// The official @anthropic-ai/sdk, unmodified, against a daemon with an API key (sent as x-api-key).
// Once per llama.cpp engine (test/helpers/engines.ts): the same tests against our engine and a real llama-server.
for (const variant of ENGINE_VARIANTS) describe(`Anthropic Messages API with @anthropic-ai/sdk [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  let client: Anthropic;
  const KEY = "sk-test-key";

  before(async () => {
    d = await startTestDaemon({ ...variant.env, MODEL_RUNNER_API_KEY: KEY });
    await d.addModel(await tinyModel({ seed: 5, thinking: true, chatTemplate: REASONING_TEMPLATE }), "ai/think:latest");
    await d.addModel(await tinyModel(SLOW_MODEL), "ai/slow:latest");
    // Favours `<tool_call>`: it starts calls on its own (tool_choice auto). For llama-server, calls on one
    // line and no space prefix after special tokens: what its call trigger and grammar prefill need
    // (node-llama-cpp reads its call syntax from the original template only).
    const hermes = variant.engine === "llama-server" ? { chatTemplate: HERMES_INLINE_TOOLS_TEMPLATE, spacePrefix: false } : { chatTemplate: HERMES_TOOLS_TEMPLATE };
    await d.addModel(await tinyModel({ seed: 7, toolCallBias: 5, ...hermes }), "ai/hermes:latest");
    client = new Anthropic({ baseURL: `${d.url}/anthropic`, apiKey: KEY, maxRetries: 0 });
  });
  after(() => d?.close());

  test("models.list and models.retrieve: the stored models in Anthropic's shape, paged by the SDK; bad queries 400, unknown ids 404", async () => {
    const first = await client.models.list({ limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(first.has_more, true);
    const ids: string[] = [];
    for await (const m of client.models.list({ limit: 2 })) ids.push(m.id);
    const stored = (await d.daemon.distribution.list()).map((m) => m.tags[0]);
    assert.deepEqual([...ids].sort(), [...stored].sort(), "the SDK's auto-paging (after_id) sees every model once");
    const tiny = await client.models.retrieve("ai/tiny:latest");
    assert.deepEqual(Object.keys(tiny).sort(), ["created_at", "display_name", "id", "type"]);
    assert.equal(tiny.type, "model");
    assert.equal(tiny.id, "ai/tiny:latest");
    assert.ok(!Number.isNaN(Date.parse(tiny.created_at)));
    assert.equal((await client.models.retrieve("tiny")).id, "ai/tiny:latest", "partial names, as elsewhere");
    await assert.rejects(client.models.retrieve("no-such-model"), (e: unknown) => e instanceof Anthropic.NotFoundError);
    const back = await client.models.list({ limit: 1, before_id: ids[1]! });
    assert.deepEqual(back.data.map((m) => m.id), [ids[0]]);
    for (const query of ["limit=0", "limit=1001", "limit=x", "order=asc", `after_id=${ids[0]}&before_id=${ids[1]}`, "after_id=nope"]) {
      const res = await fetch(`${d.url}/anthropic/v1/models?${query}`, { headers: { "x-api-key": KEY } });
      assert.equal(res.status, 400, query);
      assert.equal(((await res.json()) as { error: { type: string } }).error.type, "invalid_request_error", query);
    }
  });

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

  test("count_tokens counts the chat-templated prompt, the same number generation reports", async () => {
    const request = { model: "tiny", system: "be brief", messages: [{ role: "user" as const, content: "hello world hello world" }] };
    const counted = await client.messages.countTokens(request);
    const short = await client.messages.countTokens({ model: "tiny", messages: [{ role: "user", content: "hello" }] });
    assert.ok(counted.input_tokens > short.input_tokens + 3);
    const msg = await client.messages.create({ ...request, max_tokens: 1 });
    assert.equal(counted.input_tokens, msg.usage.input_tokens);
    const tools = [{ name: "lookup", description: "Looks a word up.", input_schema: { type: "object" as const, properties: { word: { type: "string" } } } }];
    // A template that renders tools (Hermes) counts them on both engines.
    const hermes = await client.messages.countTokens({ ...request, model: "hermes" });
    const hermesTools = await client.messages.countTokens({ ...request, model: "hermes", tools });
    assert.ok(hermesTools.input_tokens > hermes.input_tokens + 5, "tool definitions are in the templated prompt");
    if (variant.engine === "built-in") {
      // Our engine describes tools itself when the template does not.
      const withTools = await client.messages.countTokens({ ...request, tools });
      assert.ok(withTools.input_tokens > counted.input_tokens + 5, "tool definitions are in the templated prompt");
    } else {
      // llama-server leaves tools out of a prompt whose template has none: refused, not counted without them.
      await assert.rejects(client.messages.countTokens({ ...request, tools }), (e) => e instanceof Anthropic.BadRequestError && /'tools'/.test(e.message));
    }
  });

  test("message_start carries the real input_tokens", async () => {
    const stream = client.messages.stream({ model: "tiny", max_tokens: 3, messages: [{ role: "user", content: "count me in" }] });
    let startTokens = -1;
    stream.on("streamEvent", (e) => {
      if (e.type === "message_start") startTokens = e.message.usage.input_tokens;
    });
    const final = await stream.finalMessage();
    assert.ok(startTokens > 3);
    assert.equal(startTokens, final.usage.input_tokens);
  });

  test("a matched stop sequence is stop_reason stop_sequence, streamed or not", async () => {
    const ask = { model: "tiny", max_tokens: 16, temperature: 0, messages: [{ role: "user" as const, content: "say something" }] };
    const free = await client.messages.create(ask as Anthropic.MessageCreateParamsNonStreaming);
    const text = (free.content[0] as { text: string }).text;
    assert.equal(free.stop_reason, "max_tokens");
    assert.ok(text.length >= 10, text);
    const stop = text.slice(6, 9);
    const expected = text.slice(0, text.indexOf(stop));
    const cut = await client.messages.create({ ...ask, stop_sequences: ["@@never@@", stop] } as Anthropic.MessageCreateParamsNonStreaming);
    assert.equal(cut.stop_reason, "stop_sequence");
    assert.equal(cut.stop_sequence, stop);
    assert.equal((cut.content[0] as { text: string }).text, expected);
    const streamed = await client.messages.stream({ ...ask, stop_sequences: [stop] } as Anthropic.MessageCreateParamsNonStreaming).finalMessage();
    assert.equal(streamed.stop_reason, "stop_sequence");
    assert.equal(streamed.stop_sequence, stop);
    assert.equal((streamed.content[0] as { text: string }).text, expected);
  });

  test("a forced tool gives a tool_use block with valid input; its tool_result round-trips", async () => {
    const schema = { type: "object", properties: { city: { type: "string", minLength: 1, maxLength: 12 }, days: { type: "integer" } }, required: ["city", "days"], additionalProperties: false };
    const tools = [{ name: "get_weather", description: "Weather for a city.", input_schema: schema as Anthropic.Tool.InputSchema }];
    const question = { role: "user" as const, content: "Weather in Paris?" };
    if (variant.engine === "llama-server") {
      // tiny's ChatML template renders no tools: llama-server would answer without them, so the daemon refuses.
      for (const stream of [false, true]) {
        await assert.rejects(
          client.messages.create({ model: "tiny", max_tokens: 200, stream, tools, tool_choice: { type: "tool", name: "get_weather" }, messages: [question] }),
          (e) => e instanceof Anthropic.BadRequestError && /'tools'/.test(e.message) && /llama-server/.test(e.message),
        );
      }
      return;
    }
    const msg = await client.messages.create({ model: "tiny", max_tokens: 200, tools, tool_choice: { type: "tool", name: "get_weather" }, messages: [question] });
    assert.equal(msg.stop_reason, "tool_use");
    const use = msg.content.find((b) => b.type === "tool_use");
    assert.ok(use && use.type === "tool_use", JSON.stringify(msg.content));
    assert.equal(use.name, "get_weather");
    assert.equal(validateJson(use.input, schema), null, JSON.stringify(use.input));

    const streamed = await client.messages.stream({ model: "tiny", max_tokens: 200, tools, tool_choice: { type: "tool", name: "get_weather" }, messages: [question] }).finalMessage();
    const streamedUse = streamed.content.find((b) => b.type === "tool_use");
    assert.ok(streamedUse && streamedUse.type === "tool_use");
    assert.equal(validateJson(streamedUse.input, schema), null, JSON.stringify(streamedUse.input));

    const next = await client.messages.create({
      model: "tiny",
      max_tokens: 4,
      tools,
      messages: [question, { role: "assistant", content: msg.content }, { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "sunny, 21 C" }] }],
    });
    assert.equal(next.stop_reason, "max_tokens");
    assert.ok(next.usage.input_tokens > msg.usage.input_tokens, "the call and its result are in the prompt");
    // cache_control is accepted on any block (both engines cache the prompt's prefix anyway); is_error reaches the model.
    const resultTurn = (isError: boolean) => [
      question,
      { role: "assistant" as const, content: msg.content },
      { role: "user" as const, content: [{ type: "tool_result" as const, tool_use_id: use.id, content: "no such city", is_error: isError, cache_control: { type: "ephemeral" as const } }] },
    ];
    const plain = await client.messages.countTokens({ model: "tiny", tools, messages: resultTurn(false) });
    const failed = await client.messages.countTokens({ model: "tiny", tools, messages: resultTurn(true) });
    assert.ok(failed.input_tokens > plain.input_tokens, "an error result says so in the prompt");
    // A result for a call that was never made is refused by the engine.
    await assert.rejects(
      client.messages.create({ model: "tiny", max_tokens: 4, tools, messages: [question, { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_nope", content: "x" }] }] }),
      Anthropic.BadRequestError,
    );
  });

  test("a call the model starts itself (auto) streams as a tool_use block with valid input", async () => {
    const schema = { type: "object", properties: { city: { type: "string", minLength: 1, maxLength: 12 }, days: { type: "integer" } }, required: ["city", "days"], additionalProperties: false };
    const tools = [{ name: "get_weather", description: "Weather for a city.", input_schema: schema as Anthropic.Tool.InputSchema }];
    // One call, so a random reply cannot run out of tokens making several (Anthropic has no seed).
    const request = { model: "hermes", max_tokens: 300, tools, tool_choice: { type: "auto" as const, disable_parallel_tool_use: true }, messages: [{ role: "user" as const, content: "Weather in Paris?" }] };
    const stream = client.messages.stream(request);
    const types: string[] = [];
    stream.on("streamEvent", (e) => types.push(e.type === "content_block_start" ? `start:${e.content_block.type}` : e.type));
    const streamed = await stream.finalMessage();
    assert.equal(streamed.stop_reason, "tool_use", JSON.stringify(streamed.content));
    const use = streamed.content.find((b) => b.type === "tool_use");
    assert.ok(use && use.type === "tool_use");
    assert.equal(use.name, "get_weather");
    assert.equal(validateJson(use.input, schema), null, JSON.stringify(use.input));
    assert.ok(types.includes("start:tool_use") && types.filter((t) => t === "content_block_delta").length > 1);
    const whole = await client.messages.create(request);
    assert.equal(whole.stop_reason, "tool_use");
    assert.equal(streamed.content.filter((b) => b.type === "tool_use").length, 1, "disable_parallel_tool_use allows one call");
    assert.equal(whole.content.filter((b) => b.type === "tool_use").length, 1);
    for (const b of whole.content) if (b.type === "tool_use") assert.equal(validateJson(b.input, schema), null, JSON.stringify(b.input));
  });

  test("thinking enabled gives a thinking block bounded by budget_tokens; absent means no thought", async () => {
    const ask = { model: "think", max_tokens: 24, temperature: 0, messages: [{ role: "user" as const, content: "why?" }] };
    const msg = await client.messages.create({ ...ask, thinking: { type: "enabled", budget_tokens: 6 } } as Anthropic.MessageCreateParamsNonStreaming);
    assert.equal(msg.content[0]!.type, "thinking", JSON.stringify(msg.content));
    const thought = (msg.content[0] as { thinking: string }).thinking;
    assert.ok(thought.length > 0);
    assert.equal(msg.content[1]!.type, "text");
    assert.doesNotMatch((msg.content[1] as { text: string }).text, /<\/?think>/);
    const streamed = await client.messages.stream({ ...ask, thinking: { type: "enabled", budget_tokens: 6 } } as Anthropic.MessageCreateParamsNonStreaming).finalMessage();
    assert.deepEqual(streamed.content.map((b) => b.type), ["thinking", "text"]);
    assert.equal((streamed.content[0] as { thinking: string }).thinking.trim(), thought);
    const plain = await client.messages.create(ask);
    assert.deepEqual(plain.content.map((b) => b.type), ["text"]);
    assert.equal(plain.usage.output_tokens, 24, "all tokens go to the answer");
    // The earlier thought may be sent back with the history.
    const next = await client.messages.create({ ...ask, max_tokens: 2, messages: [...ask.messages, { role: "assistant", content: msg.content }, { role: "user", content: "and?" }] } as Anthropic.MessageCreateParamsNonStreaming);
    assert.equal(next.usage.output_tokens, 2);
  });

  test("an engine killed mid-stream ends the stream with an error event", async () => {
    const res = await fetch(`${d.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "content-type": "application/json" },
      body: JSON.stringify({ model: "slow", max_tokens: 100000, stream: true, messages: [{ role: "user", content: "go on" }] }),
    });
    const text = await killEngineMidStream(d, res, "content_block_delta", { "x-api-key": KEY });
    const events = text.trim().split("\n\n");
    const last = events.at(-1)!.split("\n");
    assert.equal(last[0], "event: error");
    const data = JSON.parse(last[1]!.slice(6)) as { type: string; error: { type: string; message: string } };
    assert.equal(data.type, "error");
    assert.equal(data.error.type, "api_error");
    // The same message as on the OpenAI routes: the engine's failure and its last output.
    assert.match(data.error.message, /killed by SIGKILL/);
    assert.ok(!events.some((e) => e.startsWith("event: message_stop")));
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

  test("unsupported content blocks and bad thinking settings are clear 400s", async () => {
    await assert.rejects(
      client.messages.create({ model: "tiny", max_tokens: 5, messages: [{ role: "user", content: [{ type: "document", source: { type: "text", media_type: "text/plain", data: "x" } }] }] }),
      (e) => e instanceof Anthropic.BadRequestError && /document/.test(e.message),
    );
    await assert.rejects(
      client.messages.create({ model: "tiny", max_tokens: 5, thinking: { type: "enabled" } as never, messages: [{ role: "user", content: "x" }] }),
      (e) => e instanceof Anthropic.BadRequestError && /thinking/.test(e.message),
    );
    // Fields Anthropic does not have are refused at any depth, named with their path.
    const extra: Array<[object, RegExp]> = [
      [{ messages: [{ role: "user", content: "x", name: "bob" }] }, /^messages\.0\.name: Extra inputs are not permitted$/],
      [{ messages: [{ role: "user", content: [{ type: "text", text: "x", style: "bold" }] }] }, /^messages\.0\.content\.0\.style: Extra inputs/],
      [{ messages: [{ role: "user", content: "x" }], system: [{ type: "text", text: "s", lang: "en" }] }, /^system\.0\.lang: Extra inputs/],
      [{ messages: [{ role: "user", content: "x" }], tools: [{ name: "t", input_schema: { type: "object" }, strict: true }] }, /^tools\.0\.strict: Extra inputs/],
      [{ messages: [{ role: "user", content: "x" }], thinking: { type: "enabled", budget_tokens: 10, effort: "high" } }, /^thinking\.effort: Extra inputs/],
      // Image sources and tool results are read whole: nothing in them is dropped.
      [{ messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AA==", detail: "high" } }] }] }, /^messages\.0\.content\.0\.source\.detail: Extra inputs/],
      [{ messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", data: "AA==" } }] }] }, /^messages\.0\.content\.0\.source\.media_type: Input should be/],
      [{ messages: [{ role: "user", content: [{ type: "image", source: { type: "file", file_id: "file_1" } }] }] }, /^messages\.0\.content\.0\.source: must be a base64 or url image source/],
      [{ messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "t", content: [{ type: "text", text: "x", lang: "en" }] }] }] }, /^messages\.0\.content\.0\.content\.0\.lang: Extra inputs/],
      [
        { messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "t", content: [{ type: "image", source: { type: "url", url: "http://127.0.0.1/x.png" } }] }] }] },
        /^messages\.0\.content\.0\.content\.0: only text blocks can be part of a tool result/,
      ],
    ];
    for (const [body, message] of extra) {
      await assert.rejects(client.messages.create({ model: "tiny", max_tokens: 5, ...body } as never), (e) => e instanceof Anthropic.BadRequestError && message.test((e.error as { error: { message: string } }).error.message), JSON.stringify(body));
    }
  });

  test("inference metrics are labelled with the anthropic API", async () => {
    const text = await (await fetch(`${d.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    assert.match(text, /model_runner_inference_requests_total\{api="anthropic",endpoint="\/v1\/chat\/completions"/);
  });
});
