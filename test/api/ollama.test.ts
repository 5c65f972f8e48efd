import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Ollama, type ChatRequest } from "ollama";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { REASONING_TEMPLATE } from "../../src/distribution/tiny-model.ts";
import { validateJson } from "../helpers/json-schema.ts";
import { tinyModel } from "../helpers/models.ts";
import { eventually } from "../helpers/processes.ts";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";

// The official `ollama` npm client, unmodified, against an in-process daemon with generated tiny models.
// Once per llama.cpp engine (test/helpers/engines.ts): the same tests against our engine and a real llama-server.
for (const variant of ENGINE_VARIANTS) describe(`Ollama API with the ollama client [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  let ollama: Ollama;
  let registry: TestRegistry;

  before(async () => {
    [d, registry] = await Promise.all([startTestDaemon(variant.env), startTestRegistry()]);
    ollama = new Ollama({ host: d.url });
    await d.addModel(await tinyModel({ seed: 5, thinking: true, chatTemplate: REASONING_TEMPLATE }), "ai/think:latest");
    // llama-server checks a JSON grammar against the generation prompt's tokens, which fails ("Failed to
    // initialize samplers") when text after a special token gets a leading space, as tiny's tokenizer gives it.
    await d.addModel(await tinyModel({ seed: 3, spacePrefix: false }), "ai/tiny-bpe:latest");
  });
  after(async () => {
    await d?.close();
    await registry?.close();
  });

  test("version, root liveness and list", async () => {
    assert.match((await ollama.version()).version, /^\d+\.\d+\.\d+$/);
    const root = await fetch(`${d.url}/`);
    assert.match(await root.text(), /is running/);
    assert.equal((await fetch(`${d.url}/api/version`, { method: "HEAD" })).status, 200);
    const { models } = await ollama.list();
    const tiny = models.find((m) => m.name === "ai/tiny:latest");
    assert.ok(tiny);
    assert.match(tiny.digest, /^[0-9a-f]{64}$/);
    assert.equal(tiny.details.family, "llama");
    assert.ok(tiny.size > 0);
  });

  test("chat without streaming returns one object with measured durations", async () => {
    const res = await ollama.chat({ model: "tiny", messages: [{ role: "user", content: "hi" }], options: { num_predict: 5, temperature: 0, seed: 1 } });
    assert.equal(res.message.role, "assistant");
    assert.ok(res.message.content.length > 0);
    assert.equal(res.done, true);
    assert.equal(res.done_reason, "length");
    assert.equal(res.eval_count, 5);
    assert.ok(res.prompt_eval_count > 3);
    assert.ok(res.eval_duration > 0 && res.prompt_eval_duration > 0);
    assert.ok(res.total_duration >= res.eval_duration + res.prompt_eval_duration);
    assert.ok(res.load_duration >= 0);
  });

  test("logprobs and top_logprobs: each generated token with its log-probability and alternatives, streamed or whole, chat, generate and raw", async () => {
    const options = { num_predict: 4, temperature: 0, seed: 1 };
    const whole = await ollama.generate({ model: "tiny", prompt: "hello", logprobs: true, top_logprobs: 3, options, stream: false });
    assert.equal(whole.logprobs?.length, whole.eval_count, JSON.stringify(whole.logprobs));
    for (const entry of whole.logprobs!) {
      assert.equal(typeof entry.token, "string");
      assert.ok(entry.logprob <= 0);
      assert.equal(entry.top_logprobs?.length, 3);
      assert.ok(entry.top_logprobs!.every((a) => a.logprob <= entry.top_logprobs![0]!.logprob), "alternatives, most likely first");
    }
    // Greedy: the chosen token is the most likely alternative.
    assert.equal(whole.logprobs![0]!.token, whole.logprobs![0]!.top_logprobs![0]!.token);
    const streamed: Array<{ token: string; top_logprobs?: unknown[] }> = [];
    let content = "";
    for await (const part of await ollama.chat({ model: "tiny", messages: [{ role: "user", content: "hello" }], logprobs: true, options, stream: true })) {
      streamed.push(...(part.logprobs ?? []));
      content += part.message.content;
    }
    assert.equal(streamed.length, 4);
    assert.ok(streamed.every((e) => e.top_logprobs === undefined), "top_logprobs 0: no alternatives, as Ollama leaves them out");
    assert.equal(streamed.map((e) => e.token).join(""), content, "the tokens spell the answer");
    const raw = await ollama.generate({ model: "tiny", prompt: "hello", raw: true, logprobs: true, options, stream: false });
    assert.equal(raw.logprobs?.length, raw.eval_count);
    assert.ok(raw.logprobs!.every((e) => e.top_logprobs === undefined));
    const plain = await ollama.generate({ model: "tiny", prompt: "hello", options, stream: false });
    assert.equal(plain.logprobs, undefined, "none unless asked for");
    for (const [body, pattern] of [
      [{ logprobs: true, top_logprobs: 21 }, /'top_logprobs' must be an integer from 0 to 20/],
      [{ top_logprobs: 2 }, /'top_logprobs' needs 'logprobs': true/],
      [{ logprobs: "yes" }, /'logprobs' must be a boolean/],
    ] as const) {
      await assert.rejects(ollama.generate({ model: "tiny", prompt: "x", ...(body as object), stream: false }), (e: Error & { status_code?: number }) => e.status_code === 400 && pattern.test(e.message), JSON.stringify(body));
    }
  });

  test("generate streams NDJSON and ends with done_reason and stats", async () => {
    const stream = await ollama.generate({ model: "tiny:latest", prompt: "hello", system: "be brief", stream: true, options: { num_predict: 6, temperature: 0 } });
    const parts = [];
    for await (const part of stream) parts.push(part);
    const last = parts.at(-1)!;
    assert.equal(last.done, true);
    assert.equal(last.done_reason, "length");
    assert.equal(last.eval_count, 6);
    assert.ok(parts.slice(0, -1).every((p) => !p.done && typeof p.response === "string"));
    assert.ok(parts.map((p) => p.response).join("").length > 0);
  });

  test("raw generate and stop options reach the engine", async () => {
    const res = await ollama.generate({ model: "tiny", prompt: "the", raw: true, options: { num_predict: 3, temperature: 0, stop: ["zzz"] } });
    assert.equal(res.eval_count, 3);
    await assert.rejects(ollama.generate({ model: "tiny", prompt: "x", options: { tfs_z: 1 } as never }), (e: { status_code: number; error: string }) => {
      assert.equal(e.status_code, 400);
      assert.match(e.error, /tfs_z/);
      return true;
    });
  });

  test("format json and a JSON schema give replies that parse and validate", async () => {
    const model = variant.engine === "llama-server" ? "tiny-bpe" : "tiny";
    // A seed whose random object closes within 300 tokens, on each engine's sampler.
    const json = await ollama.chat({ model, messages: [{ role: "user", content: "data" }], format: "json", options: { num_predict: 300, temperature: 1, seed: variant.engine === "llama-server" ? 1 : 2 } });
    assert.equal(json.done_reason, "stop", json.message.content);
    assert.equal(typeof JSON.parse(json.message.content), "object", json.message.content);
    const schema = {
      type: "object",
      properties: { name: { type: "string", minLength: 1, maxLength: 16 }, age: { type: "integer" }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 3 } },
      required: ["name", "age"],
      additionalProperties: false,
    };
    const generated = await ollama.generate({ model, prompt: "person:", format: schema, options: { num_predict: 300, temperature: 1, seed: 3 } });
    assert.equal(validateJson(JSON.parse(generated.response ?? ""), schema), null);
    let streamed = "";
    for await (const part of await ollama.chat({ model, messages: [{ role: "user", content: "p" }], format: schema, stream: true, options: { num_predict: 300, seed: 4 } })) streamed += part.message.content;
    assert.equal(validateJson(JSON.parse(streamed), schema), null, streamed);
    await assert.rejects(ollama.chat({ model: "tiny", messages: [{ role: "user", content: "x" }], format: { type: "string", pattern: "(?=x)" } }), (e: { status_code: number }) => e.status_code === 400);
  });

  test("tools with a forced call give message.tool_calls with object arguments", async () => {
    const parameters = { type: "object", properties: { city: { type: "string", minLength: 1, maxLength: 12 } }, required: ["city"] };
    const tools = [{ type: "function", function: { name: "get_weather", description: "Weather for a city.", parameters } }];
    // tool_choice is not Ollama's; the route passes OpenAI's through so a call can be forced.
    const request = { model: "tiny", messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice: "required", options: { num_predict: 200 } } as ChatRequest;
    if (variant.engine === "llama-server") {
      // tiny's ChatML template renders no tools: llama-server would answer without them, so the daemon refuses.
      for (const stream of [false, true] as const) {
        await assert.rejects(ollama.chat({ ...request, stream } as ChatRequest & { stream: false }), (e: { status_code: number; error: string }) => {
          assert.equal(e.status_code, 400);
          assert.match(e.error, /'tools'.*llama-server/);
          return true;
        });
      }
      return;
    }
    const res = await ollama.chat({ ...request, stream: false });
    const calls = res.message.tool_calls!;
    assert.equal(calls.length, 1, JSON.stringify(res.message));
    assert.equal(calls[0]!.function.name, "get_weather");
    assert.equal(typeof calls[0]!.function.arguments, "object");
    assert.equal(validateJson(calls[0]!.function.arguments, parameters), null);
    let streamedCalls: typeof calls = [];
    for await (const part of await ollama.chat({ ...request, stream: true })) streamedCalls = [...streamedCalls, ...(part.message.tool_calls ?? [])];
    assert.equal(streamedCalls.length, 1);
    assert.equal(validateJson(streamedCalls[0]!.function.arguments, parameters), null);
    // The Responses shape (the AI SDK's Ollama provider) forces the named tool too; a tool_choice Ollama ignores is ignored.
    const named = await ollama.chat({ ...request, tool_choice: { type: "function", name: "get_weather" }, stream: false } as ChatRequest & { stream: false });
    assert.equal(named.message.tool_calls?.[0]?.function.name, "get_weather", JSON.stringify(named.message));
    const openai = await ollama.chat({ ...request, tool_choice: { type: "function", function: { name: "get_weather" } }, stream: false } as ChatRequest & { stream: false });
    assert.equal(openai.message.tool_calls?.[0]?.function.name, "get_weather");
    for (const ignored of [{ type: "any" }, "sometimes", 3]) {
      const res = await ollama.chat({ ...request, tool_choice: ignored, options: { num_predict: 3 }, stream: false } as ChatRequest & { stream: false });
      assert.equal(res.done, true, JSON.stringify(ignored));
    }
    // The call and its result go back as history.
    const next = await ollama.chat({ ...request, tool_choice: undefined, options: { num_predict: 2 }, messages: [...request.messages!, res.message, { role: "tool", content: "sunny", tool_name: "get_weather" }], stream: false } as ChatRequest & { stream: false });
    assert.equal(next.eval_count, 2);
    assert.ok(next.prompt_eval_count > res.prompt_eval_count, "the call and its result are in the prompt");
    // A result that answers no call is a 400.
    await assert.rejects(ollama.chat({ model: "tiny", messages: [{ role: "user", content: "x" }, { role: "tool", content: "sunny" }] }), (e: { status_code: number }) => e.status_code === 400);
  });

  test("think maps to the engine's reasoning controls and returns message.thinking", async () => {
    const ask = { model: "think", messages: [{ role: "user", content: "why?" }], options: { num_predict: 24, temperature: 0 } };
    const on = await ollama.chat({ ...ask, think: true });
    assert.ok(on.message.thinking && on.message.thinking.length > 0, JSON.stringify(on.message));
    assert.doesNotMatch(on.message.content, /<\/?think>/);
    const off = await ollama.chat({ ...ask, think: false });
    assert.equal(off.message.thinking, undefined);
    assert.equal(off.eval_count, 24);
    assert.notEqual(off.message.content, on.message.content);
    let thinking = "";
    let content = "";
    for await (const part of await ollama.chat({ ...ask, think: "high", stream: true })) {
      if (part.message.thinking) {
        assert.equal(content, "", "no thinking after the content began");
        thinking += part.message.thinking;
      }
      content += part.message.content;
    }
    assert.equal(thinking.trim(), on.message.thinking);
    assert.equal(content, on.message.content);
    const generated = await ollama.generate({ model: "think", prompt: "why?", think: true, options: { num_predict: 24, temperature: 0 } });
    assert.ok(generated.thinking && generated.thinking.length > 0);
    await assert.rejects(ollama.chat({ ...ask, think: "very" as never }), (e: { status_code: number }) => e.status_code === 400);
  });

  test("embed (string or array) and legacy embeddings", async () => {
    const one = await ollama.embed({ model: "tiny-embed", input: "hello world" });
    assert.equal(one.embeddings.length, 1);
    assert.equal(one.embeddings[0]!.length, 64);
    const two = await ollama.embed({ model: "tiny-embed", input: ["a", "b c"] });
    assert.equal(two.embeddings.length, 2);
    assert.ok(two.prompt_eval_count > 0);
    const legacy = await ollama.embeddings({ model: "tiny-embed", prompt: "hello world" });
    assert.deepEqual(legacy.embedding.map((x) => x.toFixed(5)), one.embeddings[0]!.map((x) => x.toFixed(5)));
  });

  test("embed with nothing to embed loads the model in embedding mode for keep_alive and answers no vectors, as Ollama does", async () => {
    await d.daemon.scheduler.unload({ models: ["ai/tiny-embed"] });
    const load = await ollama.embed({ model: "tiny-embed", input: [], keep_alive: "7m" });
    assert.deepEqual(load.embeddings, []);
    assert.equal(load.prompt_eval_count, 0);
    const runner = d.daemon.scheduler.ps().find((r) => r.model.includes("tiny-embed"));
    assert.equal(runner?.mode, "embedding");
    const expires = new Date((await ollama.ps()).models.find((m) => m.name === "ai/tiny-embed:latest")!.expires_at).getTime();
    assert.ok(expires > Date.now() + 6 * 60_000 && expires < Date.now() + 8 * 60_000, String(expires - Date.now()));
    assert.deepEqual((await ollama.embeddings({ model: "tiny-embed", prompt: "" })).embedding, []);
    const missing = await fetch(`${d.url}/api/embed`, { method: "POST", body: JSON.stringify({ model: "no-such-model" }) });
    assert.equal(missing.status, 404);
  });

  test("text from an embedding model is a 400 before any load, in every dialect (Ollama: does not support chat); its tokenizer still answers", async () => {
    const refused = (e: Error & { status_code?: number }) => e.status_code === 400 && /tiny-embed is an embedding model/.test(e.message);
    await assert.rejects(ollama.chat({ model: "tiny-embed", messages: [{ role: "user", content: "hi" }] }), refused);
    await assert.rejects(ollama.generate({ model: "tiny-embed", prompt: "hi", stream: false }), refused);
    await assert.rejects(ollama.generate({ model: "tiny-embed", prompt: "" }), refused, "the load idiom too");
    const post = (path: string, body: object, headers: Record<string, string> = {}) =>
      fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const messages = [{ role: "user", content: "hi" }];
    for (const [path, body, headers] of [
      ["/v1/chat/completions", { model: "ai/tiny-embed", messages }, {}],
      ["/v1/completions", { model: "ai/tiny-embed", prompt: "hi" }, {}],
      ["/v1/chat/completions", { model: "ai/tiny-embed", messages: [] }, { "x-preload-only": "true" }],
      ["/v1/messages", { model: "ai/tiny-embed", messages, max_tokens: 4 }, {}],
      ["/v1/responses", { model: "ai/tiny-embed", input: "hi" }, {}],
    ] as const) {
      const res = await post(path, body, headers);
      const text = await res.text();
      assert.equal(res.status, 400, `${path}: ${text}`);
      assert.match(text, /is an embedding model: it makes vectors/, path);
      const completion = d.daemon.scheduler.ps().filter((r) => r.model.includes("tiny-embed") && r.mode === "completion");
      assert.equal(completion.length, 0, `${path}: no runner was started for it`);
    }
    const tokens = await post("/tokenize", { model: "ai/tiny-embed", content: "hello" });
    assert.equal(tokens.status, 200);
    assert.ok(((await tokens.json()) as { tokens: number[] }).tokens.length > 0);
    await d.daemon.scheduler.unload({ models: ["ai/tiny-embed"] });
  });

  test("embed dimensions: vectors cut to that size and scaled to unit length, as Ollama does; 0 is unset; too many or negative is a 400", async () => {
    const [full] = (await ollama.embed({ model: "tiny-embed", input: "hello world" })).embeddings;
    const [short] = (await ollama.embed({ model: "tiny-embed", input: "hello world", dimensions: 8 })).embeddings;
    assert.equal(short!.length, 8);
    assert.ok(Math.abs(Math.hypot(...short!) - 1) < 1e-5);
    const head = Math.hypot(...full!.slice(0, 8));
    short!.forEach((x, i) => assert.ok(Math.abs(x - full![i]! / head) < 1e-5));
    assert.equal((await ollama.embed({ model: "tiny-embed", input: "hello world", dimensions: 0 })).embeddings[0]!.length, 64);
    for (const dimensions of [65, -1, 2.5]) {
      await assert.rejects(ollama.embed({ model: "tiny-embed", input: "x", dimensions }), (e: Error & { status_code?: number }) => {
        assert.equal(e.status_code, 400, e.message);
        assert.match(e.message, /dimensions/);
        return true;
      });
    }
  });

  test("show reports details, model_info, capabilities and template", async () => {
    const show = await ollama.show({ model: "tiny" });
    assert.deepEqual(show.capabilities, ["completion"]);
    assert.equal(show.details.family, "llama");
    assert.equal((show.model_info as unknown as Record<string, unknown>)["general.architecture"], "llama");
    assert.equal(typeof (show.model_info as unknown as Record<string, unknown>)["llama.context_length"], "number");
    assert.match(show.template, /im_start/);
    assert.match(show.parameters, /num_ctx/);
    const embed = await ollama.show({ model: "tiny-embed" });
    assert.deepEqual(embed.capabilities, ["embedding"]);
  });

  test("ps lists loaded runners with expires_at; empty prompt with keep_alive 0 unloads", async () => {
    const load = await ollama.generate({ model: "tiny", prompt: "", keep_alive: "10m" });
    assert.equal(load.done_reason, "load");
    const { models } = await ollama.ps();
    const running = models.find((m) => m.name === "ai/tiny:latest");
    assert.ok(running);
    assert.ok(running.size > 0);
    assert.equal(running.size_vram, 0, "this machine has no GPU: nothing of the runner is on one");
    const expires = new Date(running.expires_at).getTime();
    assert.ok(expires > Date.now() + 9 * 60_000 && expires < Date.now() + 11 * 60_000);
    const unload = await ollama.chat({ model: "tiny", messages: [], keep_alive: 0 });
    assert.equal(unload.done_reason, "unload");
    await eventually(async () => !(await ollama.ps()).models.some((m) => m.name === "ai/tiny:latest"), 10_000, "runner to unload");
  });

  test("runner options (num_ctx, num_thread, num_batch, use_mmap) configure the model's runner; a default value removes its flag", async () => {
    await d.addModel(await tinyModel({ seed: 19 }), "ai/opts:latest");
    const stored = async () => ((await (await fetch(`${d.url}/engines/_configure?model=ai/opts`)).json()) as Array<{ context_size?: number; runtime_flags: string[] }>)[0];
    const first = await ollama.generate({ model: "ai/opts", prompt: "hi", options: { num_predict: 2, num_ctx: 512, num_thread: 1, num_batch: 64, use_mmap: false } });
    assert.ok(first.done);
    assert.equal((await stored())?.context_size, 512);
    assert.deepEqual((await stored())?.runtime_flags, ["--threads", "1", "--batch-size", "64", "--no-mmap"]);
    assert.equal(((await ollama.ps()).models.find((m) => m.name === "ai/opts:latest") as { context_length?: number } | undefined)?.context_length, 512);
    // The same options again change nothing; Ollama's defaults remove the flags they set.
    await ollama.generate({ model: "ai/opts", prompt: "hi", options: { num_predict: 2, num_thread: 1, use_mmap: false } });
    await ollama.generate({ model: "ai/opts", prompt: "hi", options: { num_predict: 2, num_thread: 0, use_mmap: true } });
    assert.deepEqual((await stored())?.runtime_flags, ["--batch-size", "64"]);
    for (const [options, param] of [[{ numa: true }, /options\.numa/], [{ num_thread: "2" }, /options\.num_thread/], [{ num_keep: -2 }, /options\.num_keep/]] as const) {
      await assert.rejects(ollama.generate({ model: "ai/opts", prompt: "hi", options: options as never }), (e: Error) => param.test(e.message), JSON.stringify(options));
    }
    await d.daemon.scheduler.unload({ models: ["ai/opts"] });
  });

  test("copy, delete and errors in Ollama's shape", async () => {
    await ollama.copy({ source: "tiny", destination: "mine/copy:v1" });
    assert.ok((await ollama.list()).models.some((m) => m.name === "mine/copy:v1"));
    await ollama.delete({ model: "mine/copy:v1" });
    assert.ok(!(await ollama.list()).models.some((m) => m.name === "mine/copy:v1"));
    await assert.rejects(ollama.delete({ model: "mine/copy:v1" }), (e: { status_code: number }) => e.status_code === 404);
    const res = await fetch(`${d.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: "nope", messages: [{ role: "user", content: "x" }] }) });
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: unknown };
    assert.equal(typeof body.error, "string");
    const missing = await fetch(`${d.url}/api/generate`, { method: "POST", body: JSON.stringify({ prompt: "x" }) });
    assert.equal(missing.status, 400);
    assert.deepEqual(await missing.json(), { error: "model is required" });
  });

  test("create from a stored model and from an uploaded GGUF blob (digest checked)", async () => {
    const fromStored = await ollama.create({ model: "made/alias", from: "tiny" });
    assert.equal(fromStored.status, "success");
    assert.ok((await ollama.list()).models.some((m) => m.name === "made/alias:latest"));

    const gguf = await readFile(await tinyModel({ seed: 9 }));
    const digest = `sha256:${createHash("sha256").update(gguf).digest("hex")}`;
    assert.equal((await fetch(`${d.url}/api/blobs/${digest}`, { method: "HEAD" })).status, 404);
    const bad = await fetch(`${d.url}/api/blobs/${digest}`, { method: "POST", body: Buffer.from("not it"), headers: { "content-type": "application/octet-stream" } });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /digest mismatch/);
    const put = await fetch(`${d.url}/api/blobs/${digest}`, { method: "POST", body: gguf, headers: { "content-type": "application/octet-stream" } });
    assert.equal(put.status, 201);
    assert.equal((await fetch(`${d.url}/api/blobs/${digest}`, { method: "HEAD" })).status, 200);
    const statuses: string[] = [];
    for await (const p of await ollama.create({ model: "made/blob", files: { "model.gguf": digest }, parameters: { num_ctx: 1024 }, stream: true } as { model: string; stream: true })) statuses.push(p.status);
    assert.equal(statuses.at(-1), "success");
    const res = await ollama.generate({ model: "made/blob", prompt: "hi", options: { num_predict: 2 } });
    assert.equal(res.eval_count, 2);
    await assert.rejects(ollama.create({ model: "x", from: "tiny", quantize: "q4_K_M" }), (e: { status_code: number }) => e.status_code === 400);
  });

  test("pull and push against a local registry report Ollama's progress lines", async () => {
    const remote = `${registry.host}/ai/pushed:latest`;
    await ollama.copy({ source: "tiny", destination: remote });
    const pushed: string[] = [];
    for await (const p of await ollama.push({ model: remote, stream: true })) pushed.push(p.status);
    assert.equal(pushed[0], "retrieving manifest");
    assert.equal(pushed.at(-1), "success");
    await ollama.delete({ model: remote });

    const lines: Array<{ status: string; digest?: string; total?: number; completed?: number }> = [];
    for await (const p of await ollama.pull({ model: remote, stream: true })) lines.push(p);
    assert.equal(lines[0]!.status, "pulling manifest");
    const layer = lines.find((l) => l.status.startsWith("pulling ") && l.digest);
    assert.ok(layer, JSON.stringify(lines));
    assert.equal(layer.status, `pulling ${layer.digest!.slice(7, 19)}`);
    assert.ok(layer.total! > 0);
    assert.deepEqual(lines.slice(-3).map((l) => l.status), ["verifying sha256 digest", "writing manifest", "success"]);
    assert.ok((await ollama.list()).models.some((m) => m.name === remote));
    // A pull that fails after the first line ends with an error line, and the client throws it.
    await assert.rejects(async () => {
      for await (const _ of await ollama.pull({ model: `${registry.host}/ai/absent:latest`, stream: true })) void _;
    }, /not found|absent/i);
  });

  test("aborting a stream stops generation and frees the runner", async () => {
    const stream = await ollama.chat({ model: "tiny", messages: [{ role: "user", content: "go on" }], stream: true, options: { num_predict: 100000 } });
    let n = 0;
    await assert.rejects(async () => {
      for await (const _ of stream) {
        if (++n === 3) stream.abort();
      }
    });
    await eventually(() => d.daemon.scheduler.ps().every((r) => r.inFlight === 0), 10_000, "the request to end");
  });

  test("an engine that dies mid-stream ends the NDJSON stream with an error line", async () => {
    const res = await fetch(`${d.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "tiny", prompt: "go", options: { num_predict: 100000 } }) });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (text.split("\n").length < 3) text += (await reader.read()).value ?? "";
    const pid = d.daemon.scheduler.ps().find((r) => /^(ai\/)?tiny(:latest)?$/.test(r.model) && r.mode === "completion")!.pid!;
    process.kill(pid, "SIGKILL");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const last = JSON.parse(text.trim().split("\n").at(-1)!) as { error?: string };
    assert.equal(typeof last.error, "string");
    // The same message as on the OpenAI routes: the engine's failure and its last output.
    assert.match(last.error!, /killed by SIGKILL/);
  });
});
