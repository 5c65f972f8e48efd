import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { HERMES_TOOLS_TEMPLATE } from "../../src/distribution/tiny-model.ts";
import { startEngine, type StartedEngine } from "../helpers/engine.ts";
import { validateJson } from "../helpers/json-schema.ts";
import { tinyModel } from "../helpers/models.ts";

// Tool calls in the template's own syntax on a random-weight model whose
// output layer favours `<tool_call>`: the model starts calls on its own
// ("auto"), and only the call grammar makes what follows a valid call.

const SEEDS = Array.from({ length: 8 }, (_, i) => i + 1);

const weather = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 16 }, unit: { enum: ["c", "f"] }, days: { type: "integer" } },
      required: ["city", "unit"],
    },
  },
};
const time = {
  type: "function" as const,
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", maxLength: 8 } } } },
};
const TOOLS = [weather, time];

/** Asserts each call names a declared tool and its arguments match that tool's schema. */
function assertValidCalls(calls: ReadonlyArray<{ id: string; name: string; arguments: string }>, where: string) {
  for (const call of calls) {
    const tool = TOOLS.find((t) => t.function.name === call.name);
    assert.ok(tool, `${where}: unknown tool ${call.name}`);
    assert.ok(call.id.startsWith("call"), where);
    assert.equal(validateJson(JSON.parse(call.arguments), tool.function.parameters), null, `${where}: ${call.arguments}`);
  }
}

type Reply = { content: string | null; calls: Array<{ id: string; name: string; arguments: string }>; finish: string | null };

const fromMessage = (res: OpenAI.ChatCompletion): Reply => {
  const choice = res.choices[0]!;
  const calls = (choice.message.tool_calls ?? []).map((c) => {
    assert.equal(c.type, "function");
    const f = (c as { function: { name: string; arguments: string } }).function;
    return { id: c.id, name: f.name, arguments: f.arguments };
  });
  return { content: choice.message.content, calls, finish: choice.finish_reason };
};

/** Reads a stream, checking the OpenAI delta shape: a first chunk per call with id/type/name, then argument pieces, indexes 0, 1, 2… */
async function fromStream(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): Promise<Reply & { argChunks: number }> {
  let content = "";
  let finish: string | null = null;
  let argChunks = 0;
  const calls: Reply["calls"] = [];
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta.content) {
      assert.equal(calls.length, 0, "content comes before the calls");
      content += choice.delta.content;
    }
    for (const d of choice.delta.tool_calls ?? []) {
      if (d.id !== undefined) {
        assert.equal(d.index, calls.length, "calls are numbered 0, 1, 2…");
        assert.equal(d.type, "function");
        assert.equal(d.function?.arguments, "");
        calls.push({ id: d.id, name: d.function!.name!, arguments: "" });
      } else {
        assert.equal(d.index, calls.length - 1, "argument pieces belong to the last call");
        assert.equal(d.function?.name, undefined);
        calls.at(-1)!.arguments += d.function!.arguments!;
        argChunks++;
      }
    }
    finish = choice.finish_reason ?? finish;
  }
  return { content: content === "" ? null : content, calls, finish, argChunks };
}

describe("tool calls in the template's syntax", () => {
  let engine: StartedEngine;
  let client: OpenAI;

  before(async () => {
    const path = await tinyModel({ seed: 7, chatTemplate: HERMES_TOOLS_TEMPLATE, toolCallBias: 3 });
    engine = await startEngine(["-m", path, "--alias", "hermes", "-c", "4096", "-np", "2", "-t", "1"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  const ask = (seed: number, extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}) => ({
    model: "hermes",
    messages: [{ role: "user" as const, content: "what is the weather in Paris?" }],
    tools: TOOLS,
    seed,
    temperature: 1,
    max_tokens: 400,
    ...extra,
  });

  test("auto: the model starts calls itself, each a valid call; text before a call is content", async () => {
    let withCalls = 0;
    let textThenCall = 0;
    for (const seed of SEEDS) {
      const reply = fromMessage(await client.chat.completions.create(ask(seed, { parallel_tool_calls: false })));
      if (reply.calls.length === 0) continue;
      withCalls++;
      assert.equal(reply.calls.length, 1, `seed ${seed}: parallel_tool_calls false allows one call`);
      assert.equal(reply.finish, "tool_calls", `seed ${seed}`);
      assertValidCalls(reply.calls, `seed ${seed}`);
      if (reply.content !== null) {
        textThenCall++;
        assert.doesNotMatch(reply.content, /<tool_call>/, "the call syntax is not content");
      }
    }
    assert.ok(withCalls >= SEEDS.length / 2, `${withCalls} of ${SEEDS.length} replies called a tool`);
    assert.ok(textThenCall > 0, "some reply has text before its call");
  });

  test("auto, streamed: the same reply as delta.content then delta.tool_calls", async () => {
    let compared = 0;
    for (const seed of SEEDS.slice(0, 5)) {
      const whole = fromMessage(await client.chat.completions.create(ask(seed, { parallel_tool_calls: false })));
      const streamed = await fromStream(await client.chat.completions.create({ ...ask(seed, { parallel_tool_calls: false }), stream: true }));
      assert.equal(streamed.finish, whole.finish, `seed ${seed}`);
      assert.equal((streamed.content ?? "").trim(), (whole.content ?? "").trim(), `seed ${seed}`);
      assert.deepEqual(
        streamed.calls.map((c) => [c.name, c.arguments]),
        whole.calls.map((c) => [c.name, c.arguments]),
        `seed ${seed}`,
      );
      assertValidCalls(streamed.calls, `seed ${seed} streamed`);
      if (streamed.calls.length > 0) {
        compared++;
        assert.ok(streamed.argChunks > 1, "arguments arrive in several chunks");
      }
    }
    assert.ok(compared > 0, "some streamed reply called a tool");
  });

  test("parallel_tool_calls (default true): every complete call is valid, and some replies make several", async () => {
    // About one reply in four makes several calls; look through seeds until
    // one does, so the check holds on any CPU's rounding of the random model.
    let severalSeed: number | null = null;
    for (let seed = 0; seed < 48 && (severalSeed === null || seed < SEEDS.length); seed++) {
      const reply = fromMessage(await client.chat.completions.create(ask(seed, { max_tokens: 600 })));
      assertValidCalls(reply.calls, `seed ${seed}`);
      if (reply.calls.length > 0) assert.ok(reply.finish === "tool_calls" || reply.finish === "length", `seed ${seed}: ${reply.finish}`);
      if (reply.calls.length > 1) severalSeed ??= seed;
      assert.equal(new Set(reply.calls.map((c) => c.id)).size, reply.calls.length, "ids are unique");
    }
    assert.ok(severalSeed !== null, "some reply has more than one call");
    // Streamed, the calls come with indexes 0, 1, 2… (checked by fromStream).
    for (const seed of new Set([...SEEDS, severalSeed])) {
      const streamed = await fromStream(await client.chat.completions.create({ ...ask(seed, { max_tokens: 600 }), stream: true }));
      assertValidCalls(streamed.calls, `seed ${seed} streamed`);
      if (seed === severalSeed) assert.ok(streamed.calls.length > 1, `seed ${seed}: the streamed reply has several calls too`);
    }
  });

  test("forced calls (required, named) are valid for every seed, streamed too", async () => {
    for (const seed of SEEDS) {
      for (const tool_choice of ["required", { type: "function", function: { name: "get_time" } }] as const) {
        const reply = fromMessage(await client.chat.completions.create(ask(seed, { tool_choice, parallel_tool_calls: false })));
        assert.equal(reply.finish, "tool_calls", `seed ${seed}`);
        assert.equal(reply.content, null);
        assert.equal(reply.calls.length, 1);
        if (typeof tool_choice === "object") assert.equal(reply.calls[0]!.name, "get_time");
        assertValidCalls(reply.calls, `seed ${seed}`);
      }
      const streamed = await fromStream(await client.chat.completions.create({ ...ask(seed, { tool_choice: "required", parallel_tool_calls: false }), stream: true }));
      assert.equal(streamed.finish, "tool_calls");
      assert.equal(streamed.content, null, "a forced call streams no content");
      assert.equal(streamed.calls.length, 1);
      assertValidCalls(streamed.calls, `seed ${seed} streamed`);
    }
  });

  test("a call, its result and the next turn round-trip in the template's syntax", async () => {
    const first = fromMessage(await client.chat.completions.create(ask(3, { tool_choice: "required", parallel_tool_calls: false })));
    const call = first.calls[0]!;
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: "user", content: "what is the weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } }] },
      { role: "tool", tool_call_id: call.id, content: "sunny and 21 degrees in the city of Paris today" },
    ];
    const next = await client.chat.completions.create({ model: "hermes", messages: history, tools: TOOLS, seed: 3, max_tokens: 1 });
    const shorter = await client.chat.completions.create({
      model: "hermes",
      messages: [...history.slice(0, 2), { role: "tool", tool_call_id: call.id, content: "sunny" }],
      tools: TOOLS,
      max_tokens: 1,
    });
    assert.ok(next.usage!.prompt_tokens > shorter.usage!.prompt_tokens + 5, "the result is in the prompt");
    // The earlier call is rendered in the prompt in the template's syntax: its arguments count.
    const bare = await client.chat.completions.create({ model: "hermes", messages: [history[0]!], tools: TOOLS, max_tokens: 1 });
    assert.ok(next.usage!.prompt_tokens > bare.usage!.prompt_tokens + 10);
    for (const seed of SEEDS.slice(0, 3)) {
      const again = fromMessage(await client.chat.completions.create({ ...ask(seed), messages: history, parallel_tool_calls: false }));
      assertValidCalls(again.calls, `seed ${seed} after a result`);
    }
  });

  test("a response_format grammar turns call detection off; tool_choice none answers in text", async () => {
    const json = await client.chat.completions.create(
      ask(1, { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "integer" } } } } } }),
    );
    assert.equal(json.choices[0]!.message.tool_calls, undefined);
    assert.equal(typeof JSON.parse(json.choices[0]!.message.content!).a, "number");
    for (const seed of SEEDS.slice(0, 3)) {
      const none = await client.chat.completions.create(ask(seed, { tool_choice: "none", max_tokens: 40 }));
      assert.equal(none.choices[0]!.message.tool_calls, undefined);
    }
  });
});
