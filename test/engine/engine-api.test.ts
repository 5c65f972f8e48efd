import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startEngine, type StartedEngine } from "../helpers/engine.ts";
import { tinyModel } from "../helpers/models.ts";
import { eventually } from "../helpers/processes.ts";

// The real engine process on a generated model, driven by the official client.
describe("engine OpenAI API (completion mode)", () => {
  let engine: StartedEngine;
  let client: OpenAI;
  const MODEL = "tiny";

  before(async () => {
    const path = await tinyModel({ seed: 7 });
    engine = await startEngine(["-m", path, "--alias", MODEL, "-c", "2048", "-np", "2", "-t", "1"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  test("health and model list report the model with its context and parameters", async () => {
    assert.deepEqual(await (await fetch(`${engine.baseUrl}/health`)).json(), { status: "ok" });
    const models = await client.models.list();
    assert.equal(models.data.length, 1);
    const m = models.data[0] as unknown as { id: string; meta: Record<string, number> };
    assert.equal(m.id, MODEL);
    assert.equal(m.meta.n_ctx, 2048);
    assert.equal(m.meta.n_ctx_slot, 1024);
    assert.ok(m.meta.n_params! > 100_000);
  });

  test("chat completion returns text, usage and finish_reason length", async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: [{ type: "text", text: "hello " }, { type: "text", text: "world" }] },
      ],
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(res.object, "chat.completion");
    assert.equal(res.choices[0]!.finish_reason, "length");
    assert.ok(res.choices[0]!.message.content!.length > 0);
    assert.equal(res.usage!.completion_tokens, 12);
    assert.ok(res.usage!.prompt_tokens > 5);
    assert.equal(res.usage!.total_tokens, res.usage!.prompt_tokens + 12);
  });

  test("max_completion_tokens is honoured like max_tokens", async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      max_completion_tokens: 3,
      temperature: 0,
    });
    assert.equal(res.usage!.completion_tokens, 3);
  });

  test("temperature 0 and a fixed seed are reproducible", async () => {
    const ask = (extra: object) =>
      client.chat.completions
        .create({ model: MODEL, messages: [{ role: "user", content: "the world" }], max_tokens: 24, ...extra })
        .then((r) => r.choices[0]!.message.content);
    assert.equal(await ask({ temperature: 0 }), await ask({ temperature: 0 }));
    const seeded = await ask({ temperature: 1.5, seed: 42 });
    assert.equal(await ask({ temperature: 1.5, seed: 42 }), seeded);
  });

  test("streaming sends role, content deltas, finish_reason, usage and [DONE]", async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let first = true;
    for await (const chunk of stream) {
      if (first) {
        assert.equal(chunk.choices[0]!.delta.role, "assistant");
        first = false;
      }
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (choice?.delta.content) text += choice.delta.content;
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    assert.equal(finish, "length");
    assert.equal(usage?.completion_tokens, 10);
    const whole = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 10,
      temperature: 0,
    });
    assert.equal(text, whole.choices[0]!.message.content);
  });

  test("a stop sequence ends the answer with finish_reason stop and is not included", async () => {
    const full = (
      await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hello" }],
        max_tokens: 40,
        temperature: 0,
      })
    ).choices[0]!.message.content!;
    // Stop on a piece of text the model is known to write (greedy output is deterministic).
    const stop = full.slice(6, 9);
    const cut = full.indexOf(stop);
    for (const stream of [false, true]) {
      let text = "";
      let finish: string | null = null;
      let matched: string | undefined;
      if (stream) {
        const s = await client.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hello" }],
          max_tokens: 40,
          temperature: 0,
          stop: [stop],
          stream: true,
        });
        for await (const c of s) {
          text += c.choices[0]?.delta.content ?? "";
          finish = c.choices[0]?.finish_reason ?? finish;
          matched ??= (c.choices[0] as { stop_sequence?: string } | undefined)?.stop_sequence;
        }
      } else {
        const r = await client.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hello" }],
          max_tokens: 40,
          temperature: 0,
          stop,
        });
        text = r.choices[0]!.message.content!;
        finish = r.choices[0]!.finish_reason;
        matched = (r.choices[0] as { stop_sequence?: string }).stop_sequence;
      }
      assert.equal(finish, "stop", `stream=${stream}`);
      assert.equal(matched, stop, `the choice names the stop sequence that matched, stream=${stream}`);
      assert.equal(text, full.slice(0, cut), `stream=${stream}`);
    }
  });

  test("the first stream chunk carries prompt_tokens; max_tokens 0 counts the prompt without generating", async () => {
    const ask = { model: MODEL, messages: [{ role: "user" as const, content: "count these words" }] };
    const stream = await client.chat.completions.create({ ...ask, max_tokens: 2, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const usage = chunks.at(-1)!.usage!;
    assert.equal((chunks[0] as { prompt_tokens?: number }).prompt_tokens, usage.prompt_tokens);
    const none = await client.chat.completions.create({ ...ask, max_tokens: 0 });
    assert.equal(none.usage!.prompt_tokens, usage.prompt_tokens);
    assert.equal(none.usage!.completion_tokens, 0);
    assert.equal(none.choices[0]!.message.content, "");
    assert.equal(none.choices[0]!.finish_reason, "length");
    assert.equal((none.choices[0] as { stop_sequence?: string }).stop_sequence, undefined, "no stop sequence matched: the field is absent");
  });

  test("completions accept a prompt array and stream", async () => {
    const res = await client.completions.create({ model: MODEL, prompt: ["hello world", "the"], max_tokens: 5, temperature: 0 });
    assert.equal(res.choices.length, 2);
    assert.deepEqual(res.choices.map((c) => c.index), [0, 1]);
    assert.equal(res.usage!.completion_tokens, 10);
    const stream = await client.completions.create({ model: MODEL, prompt: "hello world", max_tokens: 5, temperature: 0, stream: true });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, res.choices[0]!.text);
    assert.equal(finish, "length");
  });

  test("a request for another model is refused with 421", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: "other", messages: [{ role: "user", content: "hi" }] }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 421 && /serves only "tiny"/.test(e.message),
    );
  });

  test("bad input is a 400 with an OpenAI error body naming the field", async () => {
    const post = (body: string) =>
      fetch(`${engine.baseUrl}/v1/chat/completions`, { method: "POST", body, headers: { "content-type": "application/json" } });
    const cases: Array<[string, RegExp]> = [
      ["{not json", /Malformed JSON/],
      ['{"messages":"hi"}', /'messages'/],
      ['{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}', /'temperature'/],
      ['{"messages":[{"role":"user","content":"x"}],"max_tokens":-2}', /'max_tokens'/],
      ['{"messages":[{"role":"user","content":"x"}],"n":99}', /'n' is 99, but this engine has \d+ slots?/],
      ['{"messages":[{"role":"user","content":"x"}],"bogus":1}', /'bogus' is not supported/],
      ['{"messages":[{"role":"wizard","content":"x"}]}', /'messages.0.role'/],
      ['{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}', /only text/],
      ["[1,2]", /JSON object/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      const json = (await res.json()) as { error: { message: string; type: string; code: number } };
      assert.equal(json.error.type, "invalid_request_error", body);
      assert.match(json.error.message, message, body);
    }
  });

  test("a prompt longer than the context is a 400 naming n_prompt_tokens and n_ctx", async () => {
    const res = await fetch(`${engine.baseUrl}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "hello world ".repeat(600) }),
    });
    assert.equal(res.status, 400);
    const json = (await res.json()) as { error: { type: string; n_prompt_tokens: number; n_ctx: number } };
    assert.equal(json.error.type, "exceed_context_size_error");
    assert.equal(json.error.n_ctx, 1024);
    assert.ok(json.error.n_prompt_tokens > 1024);
  });

  test("embeddings in completion mode say how to start an embedding engine", async () => {
    await assert.rejects(
      client.embeddings.create({ model: MODEL, input: "hi" }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && /--embeddings/.test(e.message),
    );
  });

  test("tokenize and detokenize round-trip", async () => {
    const tok = (await (
      await fetch(`${engine.baseUrl}/tokenize`, { method: "POST", body: JSON.stringify({ content: "hello world", with_pieces: true }) })
    ).json()) as { tokens: Array<{ id: number; piece: string }> };
    assert.ok(tok.tokens.length > 0);
    const detok = (await (
      await fetch(`${engine.baseUrl}/detokenize`, { method: "POST", body: JSON.stringify({ tokens: tok.tokens.map((t) => t.id) }) })
    ).json()) as { content: string };
    assert.equal(detok.content.trim(), "hello world");
    assert.equal(tok.tokens.map((t) => t.piece).join("").trim(), "hello world");
    const bad = await fetch(`${engine.baseUrl}/detokenize`, { method: "POST", body: JSON.stringify({ tokens: [99999999] }) });
    assert.equal(bad.status, 400);
  });

  test("two streams on two slots progress at the same time", async () => {
    const arrivals: Array<{ stream: number; at: number }> = [];
    const run = async (stream: number) => {
      const s = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: `request ${stream}` }],
        max_tokens: 300,
        temperature: 0,
        stream: true,
      });
      for await (const c of s) if (c.choices[0]?.delta.content) arrivals.push({ stream, at: performance.now() });
    };
    await Promise.all([run(0), run(1)]);
    // Interleaved: each stream receives text while the other is still producing.
    const lastOf = (s: number) => Math.max(...arrivals.filter((a) => a.stream === s).map((a) => a.at));
    const firstOf = (s: number) => Math.min(...arrivals.filter((a) => a.stream === s).map((a) => a.at));
    assert.ok(firstOf(1) < lastOf(0) && firstOf(0) < lastOf(1), "streams did not overlap");
    const switches = arrivals.slice(1).filter((a, i) => a.stream !== arrivals[i]!.stream).length;
    assert.ok(switches > 10, `only ${switches} switches between streams: not decoded together`);
  });
});

describe("engine slots and disconnects", () => {
  let engine: StartedEngine;
  let client: OpenAI;

  before(async () => {
    // A larger model so a long generation takes seconds, not milliseconds.
    const path = await tinyModel({ seed: 3, embeddingLength: 384, blockCount: 6, feedForwardLength: 768, heads: 6 });
    engine = await startEngine(["-m", path, "--alias", "m", "-c", "4096", "-np", "1", "-t", "1"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  const slotBusy = async () => {
    const slots = (await (await fetch(`${engine.baseUrl}/slots`)).json()) as Array<{ is_processing: boolean }>;
    return slots[0]!.is_processing;
  };

  test("a client that disconnects stops its generation and frees its slot", async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "m", messages: [{ role: "user", content: "go" }], max_tokens: 3500, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 5) {
          assert.equal(await slotBusy(), true);
          controller.abort();
          break;
        }
      }
    } catch (error) {
      assert.equal((error as Error).name, "APIUserAbortError");
    }
    assert.equal(chunks, 5);
    await eventually(async () => !(await slotBusy()), 1000, "slot to be freed after disconnect");
    // The freed slot serves the next request at once.
    const res = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x" }], max_tokens: 2 });
    assert.equal(res.usage!.completion_tokens, 2);
  });

  test("requests beyond the slots wait their turn and all complete", async () => {
    const results = await Promise.all(
      [0, 1, 2].map((i) =>
        client.chat.completions.create({ model: "m", messages: [{ role: "user", content: `q${i}` }], max_tokens: 4, temperature: 0 }),
      ),
    );
    for (const r of results) assert.equal(r.usage!.completion_tokens, 4);
  });
});

describe("engine embedding mode", () => {
  let engine: StartedEngine;
  let client: OpenAI;

  before(async () => {
    const path = await tinyModel({ seed: 5, pooling: "mean" });
    engine = await startEngine(["-m", path, "--alias", "emb", "--embeddings", "-c", "512", "-t", "1"]);
    client = new OpenAI({ baseURL: `${engine.baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => engine?.stop());

  test("string and array inputs give one vector each, with usage", async () => {
    const one = await client.embeddings.create({ model: "emb", input: "hello world", encoding_format: "float" });
    assert.equal(one.data.length, 1);
    assert.equal(one.data[0]!.embedding.length, 64);
    assert.ok(one.usage.prompt_tokens > 0);
    const many = await client.embeddings.create({ model: "emb", input: ["hello world", "the model"], encoding_format: "float" });
    assert.deepEqual(many.data.map((d) => d.index), [0, 1]);
    assert.deepEqual(many.data[0]!.embedding, one.data[0]!.embedding);
    assert.notDeepEqual(many.data[1]!.embedding, one.data[0]!.embedding);
  });

  test("base64 encoding carries the same little-endian float32 vector", async () => {
    const floats = await client.embeddings.create({ model: "emb", input: "hello world", encoding_format: "float" });
    const raw = await fetch(`${engine.baseUrl}/v1/embeddings`, {
      method: "POST",
      body: JSON.stringify({ input: "hello world", encoding_format: "base64" }),
    });
    const body = (await raw.json()) as { data: Array<{ embedding: string }> };
    const bytes = Buffer.from(body.data[0]!.embedding, "base64");
    const decoded = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
    assert.deepEqual(decoded, floats.data[0]!.embedding.map((x) => Math.fround(x)));
  });

  test("token-array input is accepted", async () => {
    const res = await client.embeddings.create({ model: "emb", input: [1, 300, 301], encoding_format: "float" });
    assert.equal(res.data.length, 1);
    assert.equal(res.usage.prompt_tokens, 3);
  });

  test("an input as long as the context is embedded (llama-server's limit); one token more is a 400 naming both sizes", async () => {
    const tokens = (n: number) => [1, ...Array.from({ length: n - 1 }, (_, i) => 300 + (i % 200))];
    const full = await client.embeddings.create({ model: "emb", input: tokens(512), encoding_format: "float" });
    assert.equal(full.data[0]!.embedding.length, 64);
    const over = await fetch(`${engine.baseUrl}/v1/embeddings`, { method: "POST", body: JSON.stringify({ input: tokens(513) }) });
    assert.equal(over.status, 400);
    const body = (await over.json()) as { error: { type: string; n_prompt_tokens: number; n_ctx: number } };
    assert.deepEqual([body.error.type, body.error.n_prompt_tokens, body.error.n_ctx], ["exceed_context_size_error", 513, 512]);
  });

  test("chat is refused in embedding mode", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: "emb", messages: [{ role: "user", content: "hi" }] }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && /embedding mode/.test(e.message),
    );
  });
});
