import assert from "node:assert/strict";
import type { RecordedPair } from "../../../src/api/recorder/request-recorder.ts";
import { SseReader } from "../../../src/http/sse-reader.ts";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "../daemon-helper.ts";
import { runMr, spawnMr, collect } from "../../helpers/cli.ts";
import { eventually } from "../../helpers/processes.ts";
import { tinyModel } from "../../helpers/models.ts";

// GET /engines/requests on a real daemon with an API key: what OpenAI and
// Ollama requests leave there, a stream recorded as its assembled answer,
// following with include_existing, the per-model count bound, the CLI.

type Pair = RecordedPair;
interface Group {
  count: number;
  model: string;
  config: Record<string, unknown>;
  records: Pair[];
}

const KEY = "sekrit-key";
const auth = { authorization: `Bearer ${KEY}` };

describe("the request recorder through the daemon", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({ MODEL_RUNNER_API_KEY: KEY });
  });
  after(() => d?.close());

  const post = (path: string, body: unknown) => fetch(`${d.url}${path}`, { method: "POST", headers: { ...auth, "user-agent": "recorder-test/1" }, body: JSON.stringify(body) });
  const records = async (query = "") => {
    const res = await fetch(`${d.url}/engines/requests${query}`, { headers: auth });
    assert.equal(res.status, 200);
    return (await res.json()) as Group[];
  };

  test("without the key: 401, for the list and the follow alike", async () => {
    assert.equal((await fetch(`${d.url}/engines/requests`)).status, 401);
    const follow = await fetch(`${d.url}/engines/requests`, { headers: { accept: "text/event-stream", authorization: "Bearer wrong" } });
    assert.equal(follow.status, 401);
    await follow.body?.cancel();
  });

  test("a JSON answer and a streamed one (recorded as the assembled completion), with DMR's fields", async () => {
    const plain = await post("/engines/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 3 });
    const plainBody = await plain.text();
    assert.equal(plain.status, 200, plainBody);
    const streamed = await post("/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "yo" }], max_tokens: 4, stream: true });
    const sse = await streamed.text();
    assert.equal(streamed.status, 200, sse);
    const content = sse
      .split("\n")
      .filter((l) => l.startsWith("data: {"))
      .map((l) => (JSON.parse(l.slice(6)) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta?.content ?? "")
      .join("");

    const [group, ...others] = await records("?model=ai/tiny");
    assert.equal(others.length, 0);
    assert.equal(group!.model, "ai/tiny:latest");
    assert.equal(typeof group!.config["context-size"], "number");
    const [a, b] = group!.records.slice(-2);
    assert.equal(a!.model, "ai/tiny");
    assert.equal(a!.method, "POST");
    assert.equal(a!.url, "/engines/v1/chat/completions");
    assert.equal(a!.status_code, 200);
    assert.equal(a!.origin, "openai");
    assert.equal(a!.user_agent, "recorder-test/1");
    assert.ok(Number.isInteger(a!.timestamp) && Math.abs(a!.timestamp - Date.now() / 1000) < 120);
    assert.deepEqual(JSON.parse(a!.request).messages, [{ role: "user", content: "hi" }]);
    assert.deepEqual(JSON.parse(a!.response!), JSON.parse(plainBody));
    assert.equal(b!.url, "/v1/chat/completions");
    const final = JSON.parse(b!.response!) as { object: string; choices: Array<{ message: { role: string; content: string }; finish_reason: string }> };
    assert.equal(final.object, "chat.completion");
    assert.equal(final.choices[0]!.message.content, content);
    assert.equal(final.choices[0]!.message.role, "assistant");
    assert.ok(final.choices[0]!.finish_reason);
    assert.notEqual(a!.id, b!.id);
    // The key is never part of a record.
    assert.ok(!JSON.stringify(group).includes(KEY));
  });

  test("every dialect is recorded as its client sent it and got it: method, path, body; the answer (a stream's assembled) in the dialect's shape", async () => {
    await d.addModel(await tinyModel({ seed: 80 }), "ai/dialects:latest");
    const last = async (model: string) => (await records(`?model=${model}`))[0]!.records.at(-1)!;
    const sent = { model: "ai/dialects", messages: [{ role: "user", content: "ola" }], stream: false, options: { num_predict: 2 } };
    const ollama = await post("/api/chat", sent);
    const ollamaBody = await ollama.text();
    assert.equal(ollama.status, 200, ollamaBody);
    let r = await last("ai/dialects");
    assert.equal(r.origin, "ollama");
    assert.equal(r.method, "POST");
    assert.equal(r.url, "/api/chat");
    assert.equal(r.status_code, 200);
    assert.equal(r.user_agent, "recorder-test/1");
    assert.deepEqual(JSON.parse(r.request), sent);
    assert.deepEqual(JSON.parse(r.response!), JSON.parse(ollamaBody));

    // Ollama's NDJSON stream: recorded as the one object `stream: false` gets.
    const lines = (await (await post("/api/generate", { model: "ai/dialects", prompt: "go", options: { num_predict: 4 } })).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { response: string; done: boolean; done_reason?: string; eval_count?: number });
    r = await last("ai/dialects");
    assert.equal(r.url, "/api/generate");
    const generated = JSON.parse(r.response!) as { response: string; done: boolean; done_reason: string; eval_count: number };
    assert.equal(generated.response, lines.map((l) => l.response).join(""));
    assert.equal(generated.done, true);
    assert.equal(generated.done_reason, lines.at(-1)!.done_reason);
    assert.equal(generated.eval_count, lines.at(-1)!.eval_count);

    const message = await post("/anthropic/v1/messages", { model: "ai/dialects", max_tokens: 3, messages: [{ role: "user", content: "hi" }] });
    const messageBody = await message.text();
    assert.equal(message.status, 200, messageBody);
    r = await last("ai/dialects");
    assert.equal(r.origin, "anthropic");
    assert.equal(r.url, "/anthropic/v1/messages");
    assert.deepEqual(JSON.parse(r.request), { model: "ai/dialects", max_tokens: 3, messages: [{ role: "user", content: "hi" }] });
    assert.deepEqual(JSON.parse(r.response!), JSON.parse(messageBody));

    // Anthropic's event stream: recorded as the message it adds up to.
    const events = SseReader.readAll(await (await post("/v1/messages", { model: "ai/dialects", max_tokens: 4, stream: true, messages: [{ role: "user", content: "hi" }] })).text()).map(
      (e) => JSON.parse(e.data) as { type: string; message?: { id: string }; delta?: { text?: string; stop_reason?: string } },
    );
    r = await last("ai/dialects");
    assert.equal(r.url, "/v1/messages");
    const assembled = JSON.parse(r.response!) as { id: string; type: string; content: Array<{ type: string; text: string }>; stop_reason: string; usage: { output_tokens: number } };
    assert.equal(assembled.type, "message");
    assert.equal(assembled.id, events[0]!.message!.id);
    assert.deepEqual(assembled.content, [{ type: "text", text: events.map((e) => e.delta?.text ?? "").join("") }]);
    assert.equal(assembled.stop_reason, events.find((e) => e.type === "message_delta")!.delta!.stop_reason);
    assert.equal(assembled.usage.output_tokens, 4);

    const counted = await post("/v1/messages/count_tokens", { model: "ai/dialects", messages: [{ role: "user", content: "count me" }] });
    const countedBody = await counted.text();
    r = await last("ai/dialects");
    assert.equal(r.url, "/v1/messages/count_tokens");
    assert.deepEqual(JSON.parse(r.response!), JSON.parse(countedBody));

    const response = await post("/v1/responses", { model: "ai/dialects", input: "hi", max_output_tokens: 3 });
    const responseBody = await response.text();
    assert.equal(response.status, 200, responseBody);
    r = await last("ai/dialects");
    assert.equal(r.origin, "responses");
    assert.equal(r.url, "/v1/responses");
    assert.deepEqual(JSON.parse(r.request), { model: "ai/dialects", input: "hi", max_output_tokens: 3 });
    assert.deepEqual(JSON.parse(r.response!), JSON.parse(responseBody));

    // The Responses stream: recorded as the response its last event carries.
    const streamed = SseReader.readAll(await (await post("/v1/responses", { model: "ai/dialects", input: "hi", max_output_tokens: 3, stream: true })).text());
    r = await last("ai/dialects");
    assert.deepEqual(JSON.parse(r.response!), (JSON.parse(streamed.at(-1)!.data) as { response: unknown }).response);
  });

  test("a dialect's failure is recorded in its own error shape; Ollama's embed truncated and sent again is one record", async () => {
    await d.addModel(await tinyModel({ seed: 81, contextLength: 128 }), "ai/short:latest");
    await d.addModel(await tinyModel({ seed: 82, contextLength: 128, pooling: "mean" }), "ai/short-embed:latest");
    const long = "many words in a row ".repeat(100);
    const refused = await post("/v1/messages", { model: "ai/short", max_tokens: 2, messages: [{ role: "user", content: long }] });
    const refusedBody = await refused.text();
    assert.equal(refused.status, 400, refusedBody);
    const r = (await records("?model=ai/short"))[0]!.records.at(-1)!;
    assert.equal(r.status_code, 400);
    assert.equal(r.response, undefined);
    assert.deepEqual(JSON.parse(r.error!), JSON.parse(refusedBody));
    assert.equal((JSON.parse(r.error!) as { type: string }).type, "error");

    const ollama = await post("/api/generate", { model: "ai/short", prompt: long, stream: false });
    const ollamaBody = await ollama.text();
    assert.equal(ollama.status, 400, ollamaBody);
    assert.deepEqual(JSON.parse((await records("?model=ai/short"))[0]!.records.at(-1)!.error!), JSON.parse(ollamaBody));

    // Too long for the context: refused, truncated, sent again. The refusal is not recorded; the retry is,
    // with the client's body and the answer it got.
    const embed = await post("/api/embed", { model: "ai/short-embed", input: long });
    const embedBody = await embed.text();
    assert.equal(embed.status, 200, embedBody);
    assert.equal((JSON.parse(embedBody) as { embeddings: number[][] }).embeddings.length, 1);
    const [group] = await records("?model=ai/short-embed");
    assert.equal(group!.count, 1, JSON.stringify(group!.records.map((x) => [x.status_code, x.error])));
    const retry = group!.records[0]!;
    assert.equal(retry.url, "/api/embed");
    assert.equal(retry.status_code, embed.status);
    assert.deepEqual(JSON.parse(retry.request), { model: "ai/short-embed", input: long });
    assert.deepEqual(JSON.parse(embed.status === 200 ? retry.response! : retry.error!), JSON.parse(embedBody));
    assert.doesNotMatch(retry.error ?? "", /exceeds the available context size/, "the first, refused attempt is not the record");
  });

  test("an engine error on the OpenAI routes: recorded with the engine's body", async () => {
    const bad = await post("/v1/embeddings", { model: "ai/tiny-embed", input: [] });
    const badText = await bad.text();
    assert.ok(bad.status >= 400, badText);
    // Refused by the engine (the daemon's own checks pass it): recorded with the engine's error body.
    const last = (await records("?model=ai/tiny-embed"))[0]!.records.at(-1)!;
    assert.equal(last.status_code, bad.status);
    assert.equal(last.response, undefined);
    assert.deepEqual(JSON.parse(last.error!), JSON.parse(badText));
    // Both models listed when no model is named.
    assert.ok((await records()).some((g) => g.model === "ai/tiny:latest"));
    // A model that is not there has none.
    assert.deepEqual(await records("?model=ai/none"), []);
  });

  test("follow: existing records first with include_existing, then connected, then each new exchange once complete", async () => {
    const controller = new AbortController();
    const res = await fetch(`${d.url}/engines/requests?model=ai/tiny&include_existing=true`, { headers: { ...auth, accept: "text/event-stream" }, signal: controller.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const existing = (await records("?model=ai/tiny"))[0]!.count;
    const events: Array<{ event: string; data: unknown }> = [];
    const reading = (async () => {
      const reader = new SseReader();
      try {
        for await (const chunk of res.body!.pipeThrough(new TextDecoderStream()) as unknown as AsyncIterable<string>) {
          for (const { event, data } of reader.push(chunk)) if (event) events.push({ event, data: JSON.parse(data) });
        }
      } catch {
        // aborted below
      }
    })();
    await eventually(() => events.some((e) => e.event === "connected"), 5000, "the connected event");
    assert.equal(events.filter((e) => e.event === "existing_request").length, existing);
    assert.equal(events.findIndex((e) => e.event === "connected"), existing, "existing ones come before connected");
    // Another model's request does not show in a follow of ai/tiny.
    assert.equal((await post("/v1/embeddings", { model: "ai/tiny-embed", input: "x" })).status, 200);
    const chat = await post("/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "follow me" }], max_tokens: 2, stream: true });
    await chat.text();
    await eventually(() => events.some((e) => e.event === "new_request"), 5000, "the new_request event");
    controller.abort();
    await reading;
    const fresh = events.filter((e) => e.event === "new_request");
    assert.equal(fresh.length, 1);
    const [group] = fresh[0]!.data as Group[];
    assert.equal(group!.count, 1);
    assert.equal(group!.model, "ai/tiny:latest");
    assert.equal(group!.records[0]!.status_code, 200);
    assert.match(group!.records[0]!.request, /follow me/);
    assert.equal(JSON.parse(group!.records[0]!.response!).object, "chat.completion");
  });

  test("bounded: a model keeps its last 10", async () => {
    for (let i = 0; i < 12; i++) {
      const res = await post("/v1/completions", { model: "ai/tiny", prompt: `n${i}`, max_tokens: 1 });
      assert.equal(res.status, 200, await res.text());
    }
    const [group] = await records("?model=ai/tiny");
    assert.equal(group!.count, 10);
    assert.equal(group!.records.length, 10);
    assert.deepEqual(group!.records.slice(-10).map((r) => JSON.parse(r.request).prompt), Array.from({ length: 10 }, (_, i) => `n${i + 2}`));
  });

  test("mr requests: the list, --model, the key from MODEL_RUNNER_API_KEY; -f prints new ones; --include-existing needs -f", async () => {
    const env = { MODEL_RUNNER_HOST: d.url.replace(/^http:\/\//, ""), MODEL_RUNNER_API_KEY: KEY };
    const list = await runMr(["requests", "--model", "ai/tiny"], { env });
    assert.equal(list.code, 0, list.stderr);
    const groups = JSON.parse(list.stdout) as Group[];
    assert.equal(groups[0]!.model, "ai/tiny:latest");
    const noKey = await runMr(["requests"], { env: { MODEL_RUNNER_HOST: env.MODEL_RUNNER_HOST } });
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /API key/);
    const usage = await runMr(["requests", "--include-existing"], { env });
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--include-existing works only with --follow/);

    const child = spawnMr(["requests", "-f", "--model", "ai/tiny"], { env });
    child.stdin!.end();
    const done = collect(child, 30_000);
    let out = "";
    child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    // The follow is connected once the daemon has a subscriber: send until one shows.
    await eventually(async () => {
      await (await post("/v1/completions", { model: "ai/tiny", prompt: "cli", max_tokens: 1 })).text();
      return out.includes('"cli"') || out.includes("\\\"cli\\\"");
    }, 15_000, "mr requests -f to print the new request");
    child.kill("SIGINT");
    const r = await done;
    const line = JSON.parse(r.stdout.trim().split("\n")[0]!) as Group[];
    assert.equal(line[0]!.records[0]!.status_code, 200);
  });
});

describe("MODEL_RUNNER_RECORD_REQUESTS=0", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({ MODEL_RUNNER_RECORD_REQUESTS: "0" });
  });
  after(() => d?.close());

  test("nothing is kept, and the route says why", async () => {
    const chat = await fetch(`${d.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }) });
    assert.equal(chat.status, 200, await chat.text());
    const res = await fetch(`${d.url}/engines/requests`);
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "recording_disabled");
    assert.match(body.error.message, /MODEL_RUNNER_RECORD_REQUESTS=0/);
    const cli = await runMr(["requests"], { env: { MODEL_RUNNER_HOST: d.url.replace(/^http:\/\//, "") } });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /MODEL_RUNNER_RECORD_REQUESTS=0/);
  });
});
