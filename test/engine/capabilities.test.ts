import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { THINKING_TEMPLATE } from "../../src/distribution/tiny-model.ts";
import { startEngine, type StartedEngine } from "../helpers/engine.ts";
import { validateJson } from "../helpers/json-schema.ts";
import { tinyModel } from "../helpers/models.ts";

// Structured output, tool calls, reasoning and reranking on real engine
// processes with random-weight models: only the grammar makes the output
// valid, so a broken constraint shows up as an invalid document.

const SEEDS = Array.from({ length: 12 }, (_, i) => i + 1);

const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 24 },
      age: { type: "integer" },
      email: { type: ["string", "null"], maxLength: 32 },
      tags: { type: "array", items: { enum: ["red", "green", "blue"] }, maxItems: 3 },
    },
    required: ["name", "age"],
    additionalProperties: false,
  },
  nested: {
    type: "object",
    properties: {
      point: { $ref: "#/$defs/point" },
      kind: { anyOf: [{ const: "a" }, { type: "number" }] },
      when: { type: "string", format: "date" },
      ok: { type: "boolean" },
    },
    $defs: { point: { type: "object", properties: { x: { type: "number" }, y: { type: "number" } }, required: ["x", "y"] } },
  },
  list: { type: "array", items: { type: "integer" }, minItems: 1, maxItems: 4 },
  map: { type: "object", additionalProperties: { type: "string", maxLength: 8 }, maxProperties: 3 },
  bounded: {
    type: "object",
    properties: {
      age: { type: "integer", minimum: 18, maximum: 120 },
      level: { type: "integer", exclusiveMinimum: -5, exclusiveMaximum: 5 },
      legacy: { type: "integer", minimum: 0, exclusiveMinimum: true, maximum: 3 },
      ratio: { type: "number", exclusiveMinimum: 0, maximum: 1 },
      temp: { type: ["number", "null"], minimum: -40.5, exclusiveMaximum: 60 },
      even: { type: "integer", multipleOf: 2 },
      step: { type: "integer", multipleOf: 15, minimum: 0, maximum: 300 },
    },
    required: ["age", "level", "ratio"],
  },
  patterned: {
    type: "object",
    properties: {
      sku: { type: "string", pattern: "^[A-Z]{3}-\\d{3,5}$" },
      slug: { type: "string", pattern: "[a-z0-9]+(-[a-z0-9]+)*" },
      quoted: { type: "string", pattern: '^"[^"\\\\]{0,6}"$' },
      phone: { type: "string", pattern: "^\\+?\\d{1,3}[ .]\\d{3}$" },
    },
  },
  combined: {
    allOf: [
      { $ref: "#/$defs/base" },
      { type: "object", properties: { count: { type: "integer", maximum: 50 }, label: { type: "string", maxLength: 6 } }, required: ["label"] },
    ],
    $defs: { base: { type: "object", properties: { count: { type: "integer", minimum: 10 } }, required: ["count"] } },
  },
};

const post = async (baseUrl: string, path: string, body: unknown) => {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as any };
};

describe("structured output and tool calls", () => {
  let engine: StartedEngine;
  let client: OpenAI;

  before(async () => {
    const path = await tinyModel({ seed: 11 });
    engine = await startEngine(["-m", path, "--alias", "tiny", "-c", "4096", "-np", "2", "-t", "1"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  test("json_schema output parses and validates for every seed and schema", async () => {
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      for (const seed of SEEDS) {
        const res = await client.chat.completions.create({
          model: "tiny",
          messages: [{ role: "user", content: `give me a ${name}` }],
          seed,
          temperature: 1,
          max_tokens: 400,
          response_format: { type: "json_schema", json_schema: { name, schema, strict: true } },
        });
        const text = res.choices[0]!.message.content!;
        assert.equal(res.choices[0]!.finish_reason, "stop", `${name} seed ${seed}: ${text}`);
        const problem = validateJson(JSON.parse(text), schema);
        assert.equal(problem, null, `${name} seed ${seed}: ${text}`);
      }
    }
  });

  test("json_object gives a JSON object, also when streamed", async () => {
    for (const seed of SEEDS.slice(0, 6)) {
      const res = await client.chat.completions.create({
        model: "tiny",
        messages: [{ role: "user", content: "json please" }],
        seed,
        max_tokens: 400,
        response_format: { type: "json_object" },
      });
      const value = JSON.parse(res.choices[0]!.message.content!);
      assert.equal(typeof value, "object");
      assert.ok(value !== null && !Array.isArray(value));
    }
    const stream = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "json please" }],
      seed: 5,
      max_tokens: 400,
      stream: true,
      response_format: { type: "json_schema", json_schema: { name: "p", schema: SCHEMAS.person! } },
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(validateJson(JSON.parse(text), SCHEMAS.person!), null, text);
  });

  test("completions accept json_schema and a GBNF grammar", async () => {
    for (const seed of SEEDS.slice(0, 6)) {
      const res = await post(engine.baseUrl, "/v1/completions", { prompt: "data:", seed, max_tokens: 300, json_schema: SCHEMAS.list });
      assert.equal(res.status, 200);
      assert.equal(validateJson(JSON.parse(res.body.choices[0].text), SCHEMAS.list!), null, res.body.choices[0].text);
      const g = await post(engine.baseUrl, "/v1/completions", {
        prompt: "answer:",
        seed,
        max_tokens: 20,
        grammar: 'root ::= ("yes" | "no") " " [0-9] [0-9]?',
      });
      assert.match(g.body.choices[0].text, /^(yes|no) [0-9]{1,2}$/);
      assert.equal(g.body.choices[0].finish_reason, "stop");
    }
  });

  test("schemas and grammars that cannot be enforced are 400s naming the keyword", async () => {
    const cases: Array<[unknown, RegExp, string]> = [
      [{ type: "object", properties: { a: { type: "string", pattern: "^(?!x)" } } }, /'pattern'.*lookaround/, "response_format.json_schema.schema.properties.a.pattern"],
      [{ type: "object", properties: { a: { type: "string", pattern: "(a)\\1" } } }, /'pattern'.*backreference/, "response_format.json_schema.schema.properties.a.pattern"],
      [{ type: "object", properties: { n: { type: "number", exclusiveMinimum: 0.1 + 0.2 } } }, /'exclusiveMinimum'/, "response_format.json_schema.schema.properties.n.exclusiveMinimum"],
      [{ type: "number", multipleOf: 0.01 }, /'multipleOf'/, "response_format.json_schema.schema.multipleOf"],
      [{ type: "integer", not: { const: 3 } }, /'not'/, "response_format.json_schema.schema.not"],
      [{ allOf: [{ type: "string", pattern: "^a" }, { pattern: "b$" }] }, /'pattern'.*allOf/, "response_format.json_schema.schema.allOf.1.pattern"],
      [{ type: "string", format: "email" }, /'format'.*email/, "response_format.json_schema.schema.format"],
      [{ type: "object", properties: {}, required: ["ghost"] }, /ghost/, "response_format.json_schema.schema.required.0"],
      [{ $ref: "#/$defs/nope" }, /'\$ref'/, "response_format.json_schema.schema.$ref"],
    ];
    for (const [schema, message, param] of cases) {
      const res = await post(engine.baseUrl, "/v1/chat/completions", {
        messages: [{ role: "user", content: "x" }],
        response_format: { type: "json_schema", json_schema: { name: "x", schema } },
      });
      assert.equal(res.status, 400, JSON.stringify(schema));
      assert.match(res.body.error.message, message);
      assert.equal(res.body.error.param, param);
    }
    const bad = await post(engine.baseUrl, "/v1/completions", { prompt: "x", grammar: "root ::= undefined-rule" });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.param, "grammar");
  });

  const weather = {
    type: "function" as const,
    function: {
      name: "get_weather",
      description: "Current weather for a city",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", maxLength: 16 },
          unit: { enum: ["c", "f"] },
          days: { type: "integer", minimum: 1, maximum: 14 },
          zip: { type: "string", pattern: "^[0-9]{5}$" },
        },
        required: ["city", "unit"],
      },
    },
  };
  const time = {
    type: "function" as const,
    function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", maxLength: 8 } } } },
  };

  test("forced tool calls (required and named) have valid arguments for every seed", async () => {
    for (const seed of SEEDS) {
      for (const tool_choice of ["required", { type: "function", function: { name: "get_time" } }] as const) {
        const res = await client.chat.completions.create({
          model: "tiny",
          messages: [{ role: "user", content: "what is the weather in Paris?" }],
          tools: [weather, time],
          tool_choice,
          seed,
          temperature: 1,
          max_tokens: 300,
        });
        const choice = res.choices[0]!;
        assert.equal(choice.finish_reason, "tool_calls");
        assert.equal(choice.message.content, null);
        const call = choice.message.tool_calls![0]!;
        assert.equal(call.type, "function");
        assert.ok(call.id.length > 0);
        if (call.type !== "function") continue;
        if (typeof tool_choice === "object") assert.equal(call.function.name, "get_time");
        const tool = call.function.name === "get_weather" ? weather : time;
        assert.equal(tool.function.name, call.function.name);
        assert.equal(validateJson(JSON.parse(call.function.arguments), tool.function.parameters), null, call.function.arguments);
      }
    }
  });

  test("a forced tool call streams as delta.tool_calls chunks that reassemble to valid arguments", async () => {
    for (const seed of SEEDS.slice(0, 4)) {
      const stream = await client.chat.completions.create({
        model: "tiny",
        messages: [{ role: "user", content: "weather?" }],
        tools: [weather],
        tool_choice: "required",
        seed,
        max_tokens: 300,
        stream: true,
      });
      let name = "";
      let id = "";
      let args = "";
      let argChunks = 0;
      let finish: string | null = null;
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        for (const d of choice.delta.tool_calls ?? []) {
          assert.equal(d.index, 0);
          if (d.id) id = d.id;
          if (d.function?.name) name += d.function.name;
          if (d.function?.arguments) {
            args += d.function.arguments;
            argChunks++;
          }
        }
        assert.ok(!choice.delta.content, "a forced call streams no content");
        finish = choice.finish_reason ?? finish;
      }
      assert.equal(finish, "tool_calls");
      assert.equal(name, "get_weather");
      assert.ok(id.startsWith("call"));
      assert.ok(argChunks > 1, "arguments arrive in several chunks");
      assert.equal(validateJson(JSON.parse(args), weather.function.parameters), null, args);
    }
  });

  test("a conversation with tool calls and tool results round-trips", async () => {
    const first = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "weather in Oslo?" }],
      tools: [weather],
      tool_choice: "required",
      seed: 3,
      max_tokens: 300,
    });
    const call = first.choices[0]!.message.tool_calls![0]!;
    const result = "sunny and 21 degrees in the city of Oslo today";
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: "user", content: "weather in Oslo?" },
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: call.id, content: result },
    ];
    const next = await client.chat.completions.create({ model: "tiny", messages: history, tools: [weather], seed: 3, max_tokens: 8, temperature: 0 });
    assert.equal(next.choices[0]!.message.role, "assistant");
    // The result is in the prompt: a shorter result gives a shorter prompt.
    const shorter = await client.chat.completions.create({
      model: "tiny",
      messages: [...history.slice(0, 2), { role: "tool", tool_call_id: call.id, content: "sunny" }],
      tools: [weather],
      max_tokens: 1,
    });
    assert.ok(next.usage!.prompt_tokens > shorter.usage!.prompt_tokens + 5);
    // And another forced call after the result is still valid.
    const again = await client.chat.completions.create({ model: "tiny", messages: history, tools: [weather, time], tool_choice: "required", seed: 4, max_tokens: 300 });
    const c2 = again.choices[0]!.message.tool_calls![0]!;
    assert.ok(c2.type === "function" && ["get_weather", "get_time"].includes(c2.function.name));
    // A tool result must answer an earlier call.
    const orphan = await post(engine.baseUrl, "/v1/chat/completions", {
      messages: [{ role: "user", content: "x" }, { role: "tool", tool_call_id: "nope", content: "1" }],
    });
    assert.equal(orphan.status, 400);
    assert.equal(orphan.body.error.param, "messages.1.tool_call_id");
  });

  test("tool_choice none presents no tools and answers in text", async () => {
    const withTools = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], tools: [weather], max_tokens: 1 });
    const none = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "hi" }],
      tools: [weather],
      tool_choice: "none",
      max_tokens: 4,
      temperature: 0,
    });
    assert.ok(none.usage!.prompt_tokens < withTools.usage!.prompt_tokens, "tools are documented in the prompt only when usable");
    assert.equal(none.choices[0]!.message.tool_calls, undefined);
    assert.equal(none.choices[0]!.finish_reason, "length");
  });

  test("bad tool definitions and choices are 400s naming the field", async () => {
    const cases: Array<[object, string]> = [
      [{ tools: [{ type: "function", function: { name: "bad name!", parameters: { type: "object" } } }] }, "tools.0.function.name"],
      [{ tools: [weather, weather] }, "tools.1.function.name"],
      [{ tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", pattern: "(?=x)" } } } } }] }, "tools.0.function.parameters.properties.a.pattern"],
      [{ tools: [{ type: "function", function: { name: "f", parameters: { type: "string" } } }] }, "tools.0.function.parameters.type"],
      [{ tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice.function.name"],
      [{ tool_choice: "required" }, "tool_choice"],
      [{ tools: [{ type: "function", function: {} }] }, "tools.0.function.name"],
    ];
    for (const [extra, param] of cases) {
      const res = await post(engine.baseUrl, "/v1/chat/completions", { messages: [{ role: "user", content: "x" }], ...extra });
      assert.equal(res.status, 400, param);
      assert.equal(res.body.error.param, param, JSON.stringify(res.body));
    }
  });
});

describe("reasoning on a model with a thinking template", () => {
  let engine: StartedEngine;
  let client: OpenAI;

  before(async () => {
    const path = await tinyModel({ seed: 5, thinking: true, chatTemplate: THINKING_TEMPLATE });
    engine = await startEngine(["-m", path, "--alias", "think", "-c", "2048", "-t", "1", "--reasoning-budget", "6"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  const ask = { model: "think", messages: [{ role: "user" as const, content: "why?" }], max_tokens: 24, temperature: 0 };

  test("the thought comes back as reasoning_content, bounded by --reasoning-budget", async () => {
    const res = await client.chat.completions.create(ask);
    const message = res.choices[0]!.message as { content: string; reasoning_content?: string };
    assert.ok(message.reasoning_content && message.reasoning_content.length > 0);
    assert.ok(message.content.length > 0);
    for (const text of [message.reasoning_content, message.content]) assert.doesNotMatch(text, /<\/?think>/);
    const words = (await post(engine.baseUrl, "/tokenize", { content: message.reasoning_content })).body.tokens.length;
    assert.ok(words <= 7, `reasoning has ${words} tokens, budget 6`);
  });

  test("streamed, the thought arrives as reasoning_content deltas before the content", async () => {
    const whole = await client.chat.completions.create(ask);
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    let reasoning = "";
    let content = "";
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      if (delta?.reasoning_content) {
        assert.equal(content, "", "no reasoning after the content began");
        reasoning += delta.reasoning_content;
      }
      content += delta?.content ?? "";
    }
    const message = whole.choices[0]!.message as { content: string; reasoning_content?: string };
    assert.equal(reasoning.trim(), message.reasoning_content);
    assert.equal(content, message.content);
  });

  test("a per-request budget, reasoning_effort none and reasoning_format none", async () => {
    const longer = await client.chat.completions.create({ ...ask, reasoning_budget: 14 } as never);
    const r14 = (longer.choices[0]!.message as { reasoning_content?: string }).reasoning_content!;
    const r6 = ((await client.chat.completions.create(ask)).choices[0]!.message as { reasoning_content?: string }).reasoning_content!;
    assert.ok(r14.length > r6.length);
    // llama-server's names for the same budget; -1 there means "not given" (the flag's 6 applies).
    for (const field of ["reasoning_budget_tokens", "thinking_budget_tokens"]) {
      const named = await client.chat.completions.create({ ...ask, [field]: 14 } as never);
      assert.equal((named.choices[0]!.message as { reasoning_content?: string }).reasoning_content, r14, field);
    }
    const unset = await client.chat.completions.create({ ...ask, reasoning_budget_tokens: -1 } as never);
    assert.equal((unset.choices[0]!.message as { reasoning_content?: string }).reasoning_content, r6);
    const off = await client.chat.completions.create({ ...ask, reasoning_effort: "none" } as never);
    assert.equal((off.choices[0]!.message as { reasoning_content?: string }).reasoning_content, undefined);
    assert.equal(off.usage!.completion_tokens, 24, "all tokens go to the answer");
    const raw = await client.chat.completions.create({ ...ask, reasoning_format: "none" } as never);
    assert.match(raw.choices[0]!.message.content!, /<\/think>/);
  });

  test("structured output turns thinking off so the document starts at once", async () => {
    const res = await client.chat.completions.create({
      ...ask,
      max_tokens: 300,
      temperature: 1,
      seed: 2,
      response_format: { type: "json_schema", json_schema: { name: "p", schema: SCHEMAS.person! } },
    });
    assert.equal(validateJson(JSON.parse(res.choices[0]!.message.content!), SCHEMAS.person!), null);
  });
});

describe("reranking mode", () => {
  let engine: StartedEngine;

  before(async () => {
    const path = await tinyModel({ seed: 3, reranker: true }, "reranker.gguf");
    engine = await startEngine(["-m", path, "--alias", "rr", "--reranking", "-c", "512", "-t", "1"]);
  });
  after(() => engine?.stop());

  const documents = ["the model runner", "water is wet", "hello world", "a b c d", "time to go"];

  for (const path of ["/rerank", "/v1/rerank"]) {
    test(`${path} scores every document and sorts them, best first`, async () => {
      const res = await post(engine.baseUrl, path, { model: "rr", query: "hello", documents });
      assert.equal(res.status, 200);
      const results = res.body.results as Array<{ index: number; relevance_score: number }>;
      assert.deepEqual(results.map((r) => r.index).sort(), [0, 1, 2, 3, 4]);
      for (const r of results) assert.ok(r.relevance_score >= 0 && r.relevance_score <= 1);
      for (let i = 1; i < results.length; i++) assert.ok(results[i - 1]!.relevance_score >= results[i]!.relevance_score);
      assert.ok(new Set(results.map((r) => r.relevance_score)).size > 1, "scores depend on the document");
      assert.ok(res.body.usage.prompt_tokens > 0);
    });
  }

  test("top_n, return_documents and /score agree with /rerank", async () => {
    const all = (await post(engine.baseUrl, "/rerank", { query: "hello", documents })).body.results as Array<{ index: number; relevance_score: number }>;
    const top = await post(engine.baseUrl, "/rerank", { query: "hello", documents, top_n: 2, return_documents: true });
    assert.equal(top.body.results.length, 2);
    assert.equal(top.body.results[0].index, all[0]!.index);
    assert.equal(top.body.results[0].document.text, documents[all[0]!.index]);
    const score = await post(engine.baseUrl, "/score", { text_1: "hello", text_2: documents });
    assert.equal(score.status, 200);
    for (const r of all) assert.ok(Math.abs(score.body.data[r.index].score - r.relevance_score) < 1e-6);
  });

  test("completion endpoints and bad requests are refused", async () => {
    const chat = await post(engine.baseUrl, "/v1/chat/completions", { messages: [{ role: "user", content: "x" }] });
    assert.equal(chat.status, 400);
    const empty = await post(engine.baseUrl, "/rerank", { query: "x", documents: [] });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.param, "documents");
  });
});
