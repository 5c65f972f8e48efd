import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import OpenAI from "openai";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tinyModel } from "../helpers/models.ts";
import { eventually, isAlive } from "../helpers/processes.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";

type Ps = Array<{ model_name: string; model_id: string; state: string; pid: number; mode: string; context_size: number; in_flight: number }>;

const ps = async (d: TestDaemon) => (await (await fetch(`${d.url}/engines/ps`)).json()) as Ps;
const metric = async (d: TestDaemon, name: string, labels = ""): Promise<number> => {
  const text = await (await fetch(`${d.url}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(name) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
};

// Once per llama.cpp engine (test/helpers/engines.ts): the same tests against our engine and a real llama-server.
for (const variant of ENGINE_VARIANTS) describe(`daemon inference (OpenAI routes, real engines) [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  let chatModelId: string;

  before(async () => {
    d = await startBareDaemon({ ...variant.env, MODEL_RUNNER_KEEP_ALIVE: "5m" });
    chatModelId = await d.addModel(await tinyModel({ seed: 31 }), "ai/chat:latest");
    await d.addModel(await tinyModel({ seed: 32 }), "ai/second:latest");
    await d.addModel(await tinyModel({ seed: 33, pooling: "mean" }), "ai/embed:latest");
  });
  after(() => d?.close());

  test("chat, completions and streaming through /v1, /engines/v1 and /engines/llama.cpp/v1", async () => {
    for (const base of ["/v1", "/engines/v1", "/engines/llama.cpp/v1"]) {
      const client = new OpenAI({ baseURL: `${d.url}${base}`, apiKey: "x", maxRetries: 0 });
      const chat = await client.chat.completions.create({ model: "ai/chat", messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
      assert.equal(chat.usage!.completion_tokens, 5, base);
      const completion = await client.completions.create({ model: "chat", prompt: "hello", max_tokens: 4 });
      assert.equal(completion.usage!.completion_tokens, 4, base);
      const stream = await client.chat.completions.create({
        model: chatModelId,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 6,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = "";
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        usage = chunk.usage ?? usage;
      }
      assert.ok(text.length > 0, base);
      assert.equal(usage?.completion_tokens, 6, base);
    }
    const runners = (await ps(d)).filter((r) => r.model_id === chatModelId);
    assert.equal(runners.length, 1, "every route form and reference form shares one runner");
  });

  test("embeddings start an embedding-mode runner", async () => {
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });
    const res = await client.embeddings.create({ model: "ai/embed", input: ["a", "b"], encoding_format: "float" });
    assert.equal(res.data.length, 2);
    assert.equal(res.data[0]!.embedding.length, 64);
    assert.ok((await ps(d)).some((r) => r.mode === "embedding"));
  });

  test("two models are served at once, and concurrent requests share one load", async () => {
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });
    const loadsBefore = await metric(d, "model_runner_runner_loads_total", 'model="ai/second');
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        client.chat.completions.create({ model: i % 2 ? "ai/second" : "ai/chat", messages: [{ role: "user", content: `q${i}` }], max_tokens: 3 }),
      ),
    );
    for (const a of answers) assert.equal(a.usage!.completion_tokens, 3);
    const running = await ps(d);
    assert.ok(running.some((r) => r.model_name.includes("second")) && running.some((r) => r.model_id === chatModelId));
    assert.equal((await metric(d, "model_runner_runner_loads_total", 'model="ai/second')) - loadsBefore, 1);
  });

  test("50 concurrent clients on one model all get complete answers", async () => {
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0, timeout: 120_000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        if (i % 2 === 0) {
          const r = await client.chat.completions.create({ model: "ai/chat", messages: [{ role: "user", content: `n${i}` }], max_tokens: 8 });
          return r.usage!.completion_tokens;
        }
        const s = await client.chat.completions.create({ model: "ai/chat", messages: [{ role: "user", content: `n${i}` }], max_tokens: 8, stream: true });
        let finish: string | null = null;
        for await (const c of s) finish = c.choices[0]?.finish_reason ?? finish;
        return finish === "length" ? 8 : -1;
      }),
    );
    assert.deepEqual(results, Array(50).fill(8));
  });

  test("errors: unknown model 404 saying mr pull, unknown backend 404, missing model 400, bad JSON 400, >10 MiB 413", async () => {
    const post = (path: string, body: string) => fetch(`${d.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json" } });
    const missing = await post("/v1/chat/completions", JSON.stringify({ model: "ai/absent", messages: [{ role: "user", content: "x" }] }));
    assert.equal(missing.status, 404);
    const missingBody = (await missing.json()) as { error: { message: string; type: string } };
    assert.match(missingBody.error.message, /mr pull ai\/absent/);
    const backend = await post("/engines/vllm-nope/v1/chat/completions", JSON.stringify({ model: "ai/chat", messages: [] }));
    assert.equal(backend.status, 404);
    const noModel = await post("/v1/chat/completions", JSON.stringify({ messages: [] }));
    assert.equal(noModel.status, 400);
    assert.match(((await noModel.json()) as { error: { message: string } }).error.message, /'model' is required/);
    assert.equal((await post("/v1/chat/completions", "{oops")).status, 400);
    const huge = await post("/v1/chat/completions", JSON.stringify({ model: "ai/chat", pad: "x".repeat(11 * 1024 * 1024) }));
    assert.equal(huge.status, 413);
    assert.equal(((await huge.json()) as { error: { code: string } }).error.code, "request_too_large");
    // Engine-side validation errors come back unchanged.
    const bad = await post("/v1/chat/completions", JSON.stringify({ model: "ai/chat", messages: [{ role: "user", content: "x" }], n: 3 }));
    assert.equal(bad.status, 400);
  });

  test("X-Preload-Only loads the model and returns 200 without inference", async () => {
    const id = await d.addModel(await tinyModel({ seed: 34 }), "ai/preload:latest");
    const res = await fetch(`${d.url}/engines/v1/chat/completions`, {
      method: "POST",
      headers: { "x-preload-only": "true", "content-type": "application/json" },
      body: JSON.stringify({ model: "ai/preload" }),
    });
    assert.equal(res.status, 200);
    assert.ok((await ps(d)).some((r) => r.model_id === id && r.state === "ready"));
  });

  test("/v1/models lists stored models with the effective context size; configure changes it and persists", async () => {
    const list = (await (await fetch(`${d.url}/v1/models`)).json()) as { data: Array<{ id: string; dmr: { context_window: number } }> };
    const chat = list.data.find((m) => m.id === "ai/chat:latest")!;
    assert.equal(chat.dmr.context_window, 4096);

    const configure = await fetch(`${d.url}/engines/_configure`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/chat", "context-size": 1024, "runtime-flags": ["--threads", "1"] }),
    });
    assert.equal(configure.status, 202);
    const one = (await (await fetch(`${d.url}/v1/models/ai/chat`)).json()) as { dmr: { context_window: number } };
    assert.equal(one.dmr.context_window, 1024);
    const shown = (await (await fetch(`${d.url}/engines/_configure?model=ai/chat`)).json()) as Array<{ context_size: number; runtime_flags: string[] }>;
    assert.equal(shown[0]!.context_size, 1024);
    assert.deepEqual(shown[0]!.runtime_flags, ["--threads", "1"]);

    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });
    await client.chat.completions.create({ model: "ai/chat", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    await eventually(async () => (await ps(d)).some((r) => r.model_id === chatModelId && r.context_size === 1024), 10_000, "restart with new context");

    const refused = await fetch(`${d.url}/engines/_configure`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/chat", "runtime-flags": ["--model", "/etc/passwd"] }),
    });
    assert.equal(refused.status, 400);
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /--model/);

    // A new daemon on the same home reads the stored configuration back.
    const config = (await (await fetch(`${d.url}/engines/_configure`)).json()) as unknown[];
    assert.ok(config.length >= 1);
  });

  test("unload stops idle runners and status names the backend", async () => {
    const status = (await (await fetch(`${d.url}/engines/status`)).json()) as Record<string, string>;
    assert.match(status["llama.cpp"]!, variant.engine === "built-in" ? /^Running: llama\.cpp built-in/ : /^Running: llama\.cpp llama-server \(/);
    const [runner] = (await ps(d)) as unknown as Array<{ engine: string }>;
    if (runner) assert.equal(runner.engine, variant.engine, "ps names the engine");
    const before = await ps(d);
    assert.ok(before.length > 0);
    const res = await fetch(`${d.url}/engines/unload`, { method: "POST", body: JSON.stringify({ all: true }) });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { unloaded_runners: number };
    assert.equal(body.unloaded_runners, before.length);
    await eventually(async () => (await ps(d)).length === 0, 10_000, "runners to stop");
    for (const r of before) assert.equal(isAlive(r.pid), false);
  });

  test("metrics count requests, tokens, time to first token and loads", async () => {
    const text = await (await fetch(`${d.url}/metrics`)).text();
    for (const name of [
      "model_runner_inference_requests_total",
      "model_runner_time_to_first_token_seconds_bucket",
      "model_runner_prompt_tokens_total",
      "model_runner_generated_tokens_total",
      "model_runner_generation_tokens_per_second_bucket",
      "model_runner_runner_loads_total",
      "model_runner_runner_load_duration_seconds_bucket",
      "model_runner_runner_evictions_total",
      "model_runner_queue_depth",
      "model_runner_process_resident_memory_bytes",
    ]) {
      assert.ok(text.includes(name), `metrics include ${name}`);
    }
    assert.ok((await metric(d, "model_runner_generated_tokens_total")) > 100);
  });

  test("logs include daemon and engine lines", async () => {
    const text = await (await fetch(`${d.url}/logs`)).text();
    assert.match(text, /model runner listening/);
    assert.match(text, /"component":"engine"/);
    const quiet = await (await fetch(`${d.url}/logs?no-engines=true`)).text();
    assert.doesNotMatch(quiet, /"component":"engine"/);
  });
});

describe("daemon faults, memory and keep-alive", () => {
  test("an engine SIGKILLed mid-stream ends the stream with an error event; the next request gets a fresh engine", async (t) => {
    const d = await startBareDaemon();
    t.after(() => d.close());
    await d.addModel(await tinyModel({ seed: 41, embeddingLength: 384, blockCount: 6, feedForwardLength: 768, heads: 6 }), "ai/slow:latest");
    const res = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/slow", messages: [{ role: "user", content: "go" }], max_tokens: 3000, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = "";
    const decoder = new TextDecoder();
    while (!text.includes("content")) text += decoder.decode((await reader.read()).value);
    const [runner] = await ps(d);
    process.kill(runner!.pid, "SIGKILL");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const events = text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
    const last = JSON.parse(events.at(-1)!) as { error?: { message: string } };
    assert.ok(last.error, "final event is an error");
    assert.match(last.error.message, /killed by SIGKILL/);
    await eventually(async () => (await ps(d)).length === 0, 5000, "dead runner removed");
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });
    const again = await client.chat.completions.create({ model: "ai/slow", messages: [{ role: "user", content: "x" }], max_tokens: 2 });
    assert.equal(again.usage!.completion_tokens, 2);
    assert.notEqual((await ps(d))[0]!.pid, runner!.pid);
    assert.ok((await metric(d, "model_runner_runner_crashes_total")) >= 1);
  });

  test("a short keep-alive unloads an idle runner", async (t) => {
    const d = await startBareDaemon({ MODEL_RUNNER_KEEP_ALIVE: "300ms" });
    t.after(() => d.close());
    await d.addModel(await tinyModel({ seed: 42 }), "ai/brief:latest");
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });
    await client.chat.completions.create({ model: "ai/brief", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    const [runner] = await ps(d);
    assert.ok(runner);
    await eventually(async () => (await ps(d)).length === 0, 5000, "keep-alive expiry");
    await eventually(() => !isAlive(runner.pid), 3000, "engine exit");
  });

  test("a small memory budget evicts the idle runner; a full queue answers 503 with Retry-After", async (t) => {
    // Room for exactly one runner (each is estimated at ~256 MiB of overhead plus the model).
    const d = await startBareDaemon({ MODEL_RUNNER_MEMORY: "400MiB", MODEL_RUNNER_QUEUE_LIMIT: "1" });
    t.after(() => d.close());
    const slow = await tinyModel({ seed: 43, embeddingLength: 384, blockCount: 6, feedForwardLength: 768, heads: 6 });
    await d.addModel(slow, "ai/a:latest");
    await d.addModel(await tinyModel({ seed: 44 }), "ai/b:latest");
    await d.addModel(await tinyModel({ seed: 45 }), "ai/c:latest");
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "x", maxRetries: 0 });

    await client.chat.completions.create({ model: "ai/b", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    const [b] = await ps(d);
    await client.chat.completions.create({ model: "ai/c", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    const running = await ps(d);
    assert.equal(running.length, 1, "the idle runner was evicted to make room");
    assert.match(running[0]!.model_name, /c/);
    assert.equal(isAlive(b!.pid), false);
    assert.ok((await metric(d, "model_runner_runner_evictions_total", 'reason="memory"')) >= 1);

    // Keep model a busy with a long stream, so b must wait (queue of 1) and c is refused.
    const controller = new AbortController();
    const busy = await client.chat.completions.create(
      { model: "ai/a", messages: [{ role: "user", content: "go" }], max_tokens: 3000, stream: true },
      { signal: controller.signal },
    );
    const iterator = busy[Symbol.asyncIterator]();
    await iterator.next();
    const waiting = client.chat.completions.create({ model: "ai/b", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    await eventually(async () => (await metric(d, "model_runner_queue_depth")) === 1, 5000, "request to queue");
    const refused = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/c", messages: [{ role: "user", content: "x" }], max_tokens: 1 }),
    });
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "queue_full");
    controller.abort();
    await iterator.return?.();
    const served = await waiting;
    assert.equal(served.usage!.completion_tokens, 1);
    await delay(10);
  });

  test("a model that can never fit is a 507 giving both figures", async (t) => {
    const d = await startBareDaemon({ MODEL_RUNNER_MEMORY: "100MiB" });
    t.after(() => d.close());
    await d.addModel(await tinyModel({ seed: 46 }), "ai/big:latest");
    const res = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/big", messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(res.status, 507);
    const body = (await res.json()) as { error: { message: string; required_bytes: number; budget_bytes: number } };
    assert.equal(body.error.budget_bytes, 100 * 1024 * 1024);
    assert.ok(body.error.required_bytes > body.error.budget_bytes);
  });
});
