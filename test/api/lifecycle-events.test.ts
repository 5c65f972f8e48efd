import assert from "node:assert/strict";
import { SseReader } from "../../src/http/sse-reader.ts";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { chmod, writeFile } from "node:fs/promises";
import { eventually, isAlive } from "../helpers/processes.ts";
import { tinyModel } from "../helpers/models.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";

// GET /engines/events on a real daemon: a cold streaming request (with its
// `: loading` comments), an unload, a configure, an engine killed under the
// daemon and a pull from a local registry, each seen in order.

interface Event {
  event: string;
  data: Record<string, unknown>;
}

/** Follows an SSE URL, collecting its events, until `stop()`. */
async function follow(url: string): Promise<{ events: Event[]; stop(): Promise<void> }> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream" }, signal: controller.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
  const events: Event[] = [];
  const reading = (async () => {
    const reader = new SseReader();
    try {
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream()) as unknown as AsyncIterable<string>) {
        for (const { event, data } of reader.push(chunk)) if (event) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
      }
    } catch {
      // stopped
    }
  })();
  await eventually(() => events.some((e) => e.event === "connected"), 5000, "the connected event");
  return {
    events,
    async stop() {
      controller.abort();
      await reading;
    },
  };
}

describe("lifecycle events", () => {
  let d: TestDaemon;
  let registry: TestRegistry;
  before(async () => {
    d = await startTestDaemon();
    registry = await startTestRegistry();
  });
  after(async () => {
    await d?.close();
    await registry?.close();
  });

  const post = (path: string, body: unknown) => fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  /** A model's runner events in order; the `loading` events that report progress are left out (see loadProgress). */
  const runnerEvents = (events: Event[], model: string) => events.filter((e) => e.data.model === model && e.data.progress === undefined).map((e) => e.event);
  /** The progress of each `loading` event of a model's n-th load (0-based), in order; the first event of a load has none. */
  const loadProgress = (events: Event[], model: string, n = 0) => {
    const mine = events.filter((e) => e.data.model === model);
    const starts = mine.flatMap((e, i) => (e.event === "loading" && e.data.progress === undefined ? [i] : []));
    const end = mine.findIndex((e, i) => i > starts[n]! && e.event !== "loading");
    return mine.slice(starts[n]! + 1, end < 0 ? undefined : end).map((e) => {
      assert.equal(e.event, "loading", "progress comes between the load's start and its end");
      return e.data.progress as number;
    });
  };

  test("load (with `: loading` comments on the cold stream), unload, configure, a killed engine: in order, with their facts", async () => {
    const feed = await follow(`${d.url}/engines/events`);
    try {
      const cold = await post("/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2, stream: true });
      assert.equal(cold.status, 200);
      assert.match(cold.headers.get("content-type")!, /^text\/event-stream/);
      const text = await cold.text();
      // Comments before the first data; the data itself is the usual stream.
      assert.ok(text.startsWith(": loading ai/tiny\n\n"), text.slice(0, 200));
      assert.ok(text.indexOf(": loading") < text.indexOf("data: "));
      const chunks = text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)) as { object: string });
      assert.ok(chunks.length > 0 && chunks.every((c) => c.object === "chat.completion.chunk"));
      assert.ok(text.trimEnd().endsWith("data: [DONE]"));
      // A warm stream has no comment.
      const warm = await (await post("/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1, stream: true })).text();
      assert.ok(warm.startsWith("data: "), warm.slice(0, 100));

      await eventually(() => feed.events.some((e) => e.event === "ready"), 5000, "ready");
      const loading = feed.events.find((e) => e.event === "loading")!;
      assert.equal(loading.data.progress, undefined);
      // The built-in engine reports its load's progress: rising, the last 1, all before ready.
      const progress = loadProgress(feed.events, "ai/tiny");
      assert.ok(progress.length >= 2, JSON.stringify(progress));
      assert.ok(progress.every((p, i) => p > 0 && p <= 1 && (i === 0 || p > progress[i - 1]!)), JSON.stringify(progress));
      assert.equal(progress.at(-1), 1);
      const reported = feed.events.find((e) => e.data.progress !== undefined)!;
      assert.equal(reported.data.context_size, loading.data.context_size);
      assert.equal(reported.data.engine, loading.data.engine);
      assert.equal(loading.data.backend, "llama.cpp");
      assert.equal(loading.data.mode, "completion");
      assert.equal(typeof loading.data.context_size, "number");
      assert.equal(typeof loading.data.memory_bytes, "number");
      const ready = feed.events.find((e) => e.event === "ready")!;
      assert.equal(typeof ready.data.duration_ms, "number");
      assert.ok(typeof ready.data.pid === "number" && isAlive(ready.data.pid));
      assert.ok(!Number.isNaN(Date.parse(String(ready.data.time))));

      assert.equal((await post("/engines/unload", { models: ["ai/tiny"] })).status, 200);
      await eventually(() => feed.events.some((e) => e.event === "evicted"), 5000, "evicted");
      assert.equal(feed.events.find((e) => e.event === "evicted")!.data.reason, "unload");

      const configured = await post("/engines/_configure", { model: "ai/tiny", "context-size": 512 });
      assert.equal(configured.status, 202, await configured.text());
      await eventually(() => feed.events.some((e) => e.event === "configured"), 5000, "configured");
      const cfg = feed.events.find((e) => e.event === "configured")!;
      assert.equal((cfg.data.config as { context_size: number }).context_size, 512);
      assert.equal(cfg.data.restarted, false);

      const again = await post("/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
      assert.equal(again.status, 200, await again.text());
      await eventually(() => feed.events.filter((e) => e.event === "ready").length === 2, 5000, "the second ready");
      const pid = feed.events.filter((e) => e.event === "ready")[1]!.data.pid as number;
      process.kill(pid, "SIGKILL");
      await eventually(() => feed.events.some((e) => e.event === "crashed"), 10_000, "crashed");
      const crashed = feed.events.find((e) => e.event === "crashed")!;
      assert.match(String(crashed.data.error), /SIGKILL|signal|exit/i);
      assert.equal(crashed.data.in_flight, 0);

      assert.deepEqual(runnerEvents(feed.events, "ai/tiny"), ["loading", "ready", "evicted", "configured", "loading", "ready", "crashed"]);
      const second = feed.events.filter((e) => e.event === "loading" && e.data.progress === undefined)[1]!;
      assert.equal(second.data.context_size, 512, "the configured context applies to the next load");
      assert.equal(loadProgress(feed.events, "ai/tiny", 1).at(-1), 1, "the second load reports its progress too");
    } finally {
      await feed.stop();
    }
  });

  test("a cold stream whose load fails: the comment, then the failure as its one data event; load_failed on the feed", async () => {
    const id = await d.addModel(await tinyModel({ seed: 72 }), "ai/broken:latest");
    const { files } = await d.daemon.distribution.resolve(id);
    await chmod(files.ggufPath!, 0o600);
    await writeFile(files.ggufPath!, "this is not a GGUF file\n".repeat(64));
    const feed = await follow(`${d.url}/engines/events`);
    try {
      const res = await post("/v1/chat/completions", { model: "ai/broken", messages: [{ role: "user", content: "hi" }], max_tokens: 1, stream: true });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(text.startsWith(": loading ai/broken\n\n"), text);
      const data = text.split("\n").filter((l) => l.startsWith("data: "));
      assert.equal(data.length, 1, text);
      const body = JSON.parse(data[0]!.slice(6)) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "engine_failed");
      assert.match(body.error.message, /GGUF/);
      await eventually(() => feed.events.some((e) => e.event === "load_failed"), 5000, "load_failed");
      const failed = feed.events.find((e) => e.event === "load_failed")!;
      assert.equal(failed.data.model, "ai/broken");
      assert.equal(failed.data.code, "engine_failed");
      assert.deepEqual(runnerEvents(feed.events, "ai/broken"), ["loading", "load_failed"]);
      assert.deepEqual(loadProgress(feed.events, "ai/broken"), [], "a file that is no GGUF fails before any progress");
    } finally {
      await feed.stop();
    }
  });

  test("a cold stream the engine refuses: the comment, then the engine's error body as its one data event", async () => {
    await d.addModel(await tinyModel({ seed: 74 }), "ai/cold:latest");
    const res = await post("/v1/chat/completions", { model: "ai/cold", messages: [{ role: "user", content: "hi" }], max_tokens: 1, stream: true, no_such_field: 1 });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.startsWith(": loading ai/cold\n\n"), text);
    const data = text.split("\n").filter((l) => l.startsWith("data: "));
    assert.equal(data.length, 1, text);
    const body = JSON.parse(data[0]!.slice(6)) as { error: { message: string } };
    assert.match(body.error.message, /no_such_field/);
    // Recorded with the engine's status and body.
    const [group] = (await (await fetch(`${d.url}/engines/requests?model=ai/cold`)).json()) as Array<{ records: Array<{ status_code: number; error?: string }> }>;
    assert.equal(group!.records[0]!.status_code, 400);
    assert.match(group!.records[0]!.error!, /no_such_field/);
  });

  /** The first comment at once, then one every 5 s while the (busy machine's) load goes on. */
  const assertLoadingComments = (comments: string[], model: string) => {
    assert.equal(comments[0], `: loading ${model}`);
    for (const c of comments.slice(1)) assert.match(c, new RegExp(`^: loading ${model} \\(\\d+s\\)$`));
  };
  /** The SSE stream as (event, data) pairs, with the comment lines before the first event. */
  const sseParts = (text: string) => ({
    comments: text.slice(0, text.search(/^(event|data):/m)).split("\n").filter((l) => l.startsWith(":")),
    events: SseReader.readAll(text).map((e) => ({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> })),
  });

  test("Anthropic and Responses cold streams: `: loading` comments, then their usual events; the SDKs read them as usual", async () => {
    await d.addModel(await tinyModel({ seed: 75 }), "ai/cold-anthropic:latest");
    await d.addModel(await tinyModel({ seed: 76 }), "ai/cold-responses:latest");
    const anthropic = await post("/v1/messages", { model: "ai/cold-anthropic", max_tokens: 2, stream: true, messages: [{ role: "user", content: "hi" }] });
    assert.equal(anthropic.status, 200);
    assert.match(anthropic.headers.get("content-type")!, /^text\/event-stream/);
    const a = sseParts(await anthropic.text());
    assertLoadingComments(a.comments, "ai/cold-anthropic");
    assert.equal(a.events[0]!.event, "message_start");
    assert.deepEqual(a.events.slice(-2).map((e) => e.event), ["message_delta", "message_stop"]);
    for (const e of a.events) assert.equal(e.data.type, e.event);

    const responses = await post("/v1/responses", { model: "ai/cold-responses", input: "hi", max_output_tokens: 2, stream: true });
    assert.equal(responses.status, 200);
    const r = sseParts(await responses.text());
    assertLoadingComments(r.comments, "ai/cold-responses");
    assert.equal(r.events[0]!.event, "response.created");
    assert.equal(r.events.at(-1)!.event, "response.incomplete");
    assert.deepEqual(r.events.map((e) => e.data.sequence_number), r.events.map((_, i) => i));

    // The official SDKs skip the comments: unloaded, the same cold streams read as any other.
    assert.equal((await post("/engines/unload", { models: ["ai/cold-anthropic", "ai/cold-responses"] })).status, 200);
    const { default: Anthropic } = await import("@anthropic-ai/sdk");
    const { default: OpenAI } = await import("openai");
    const sdkMessage = await new Anthropic({ baseURL: d.url, apiKey: "none", maxRetries: 0 }).messages.stream({ model: "ai/cold-anthropic", max_tokens: 2, messages: [{ role: "user", content: "hi" }] }).finalMessage();
    assert.equal(sdkMessage.usage.output_tokens, 2);
    const types: string[] = [];
    for await (const e of await new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "none", maxRetries: 0 }).responses.create({ model: "ai/cold-responses", input: "hi", max_output_tokens: 2, stream: true })) types.push(e.type);
    assert.equal(types[0], "response.created");
    assert.equal(types.at(-1), "response.incomplete");
  });

  test("Anthropic and Responses cold streams whose load fails: the comment, then the dialect's own error events", async () => {
    const id = await d.addModel(await tinyModel({ seed: 77 }), "ai/broken2:latest");
    const { files } = await d.daemon.distribution.resolve(id);
    await chmod(files.ggufPath!, 0o600);
    await writeFile(files.ggufPath!, "this is not a GGUF file\n".repeat(64));

    const anthropic = await post("/v1/messages", { model: "ai/broken2", max_tokens: 2, stream: true, messages: [{ role: "user", content: "hi" }] });
    assert.equal(anthropic.status, 200);
    const a = sseParts(await anthropic.text());
    assertLoadingComments(a.comments, "ai/broken2");
    assert.equal(a.events.length, 1, JSON.stringify(a.events));
    assert.equal(a.events[0]!.event, "error");
    const error = a.events[0]!.data as { type: string; error: { type: string; message: string } };
    assert.equal(error.type, "error");
    assert.equal(error.error.type, "api_error");
    assert.match(error.error.message, /GGUF/);

    // Unloading ends the failed load's back-off: the next request loads (and fails) again.
    await post("/engines/unload", { models: ["ai/broken2"] });
    const responses = await post("/v1/responses", { model: "ai/broken2", input: "hi", max_output_tokens: 2, stream: true });
    assert.equal(responses.status, 200);
    const r = sseParts(await responses.text());
    assertLoadingComments(r.comments, "ai/broken2");
    assert.deepEqual(r.events.map((e) => e.event), ["error", "response.failed"]);
    assert.equal(r.events[0]!.data.code, "engine_failed");
    assert.match(String(r.events[0]!.data.message), /GGUF/);
    const failed = r.events[1]!.data.response as { status: string; error: { code: string } };
    assert.equal(failed.status, "failed");
    assert.equal(failed.error.code, "engine_failed");
  });

  test("pull progress, from the start to success; a failing pull says so", async () => {
    const feed = await follow(`${d.url}/engines/events`);
    try {
      const ref = `${registry.host}/team/pushed:v1`;
      const id = await d.addModel(await tinyModel({ seed: 73 }), ref);
      const pushed = await fetch(`${d.url}/models/${ref}/push`, { method: "POST" });
      assert.equal(pushed.status, 200, await pushed.text());
      // Gone from the store, blobs and all: the pull downloads them again.
      assert.equal((await fetch(`${d.url}/models/${id}?force=true`, { method: "DELETE" })).status, 200);
      const pulled = await post("/models/create", { from: ref });
      assert.equal(pulled.status, 200, await pulled.text());
      await eventually(() => feed.events.some((e) => e.event === "pull" && e.data.status === "success"), 5000, "the pull's success");
      const pulls = feed.events.filter((e) => e.event === "pull" && e.data.model === ref);
      assert.equal(pulls.at(-1)!.data.status, "success");
      assert.match(String(pulls.at(-1)!.data.id), /^sha256:/);
      assert.ok(pulls.length >= 2, JSON.stringify(pulls));
      for (const p of pulls.slice(0, -1)) assert.equal(p.data.status, "progress");
      const last = pulls.at(-2)!.data as { current: number; total: number };
      assert.ok(last.total > 0 && last.current === last.total, JSON.stringify(last));

      const failing = await post("/models/create", { from: `${registry.host}/team/none:v1` });
      await failing.text();
      await eventually(() => feed.events.some((e) => e.event === "pull" && e.data.status === "error"), 5000, "the failed pull");
      const failed = feed.events.find((e) => e.event === "pull" && e.data.status === "error")!;
      assert.equal(failed.data.model, `${registry.host}/team/none:v1`);
      assert.ok(String(failed.data.message).length > 0);
    } finally {
      await feed.stop();
    }
  });
});

const llamaServer = ENGINE_VARIANTS.find((v) => v.engine === "llama-server")!;
describe("lifecycle events with llama-server", { skip: llamaServer.skip }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon(llamaServer.env);
  });
  after(() => d?.close());

  test("llama-server reports no load progress: one loading event without it, then ready", async () => {
    const feed = await follow(`${d.url}/engines/events`);
    try {
      const res = await fetch(`${d.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }) });
      assert.equal(res.status, 200, await res.text());
      await eventually(() => feed.events.some((e) => e.event === "ready"), 5000, "ready");
      const mine = feed.events.filter((e) => e.data.model === "ai/tiny");
      assert.deepEqual(mine.map((e) => e.event), ["loading", "ready"]);
      assert.equal(mine[0]!.data.engine, "llama-server");
      assert.equal(mine[0]!.data.progress, undefined);
    } finally {
      await feed.stop();
    }
  });
});
