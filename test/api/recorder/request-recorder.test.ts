import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleStream } from "../../../src/api/recorder/assemble.ts";
import { RequestRecorder, type RecordingStart } from "../../../src/api/recorder/request-recorder.ts";
import { ConfigError, loadDaemonConfig } from "../../../src/config.ts";

const start = (over: Partial<RecordingStart> = {}): RecordingStart => ({
  modelId: "sha256:aaa",
  modelName: "ai/x:latest",
  body: { model: "ai/x", messages: [{ role: "user", content: "hi" }] },
  method: "POST",
  url: "/v1/chat/completions",
  origin: "openai",
  contextSize: 4096,
  ...over,
});

test("a ring per model: the oldest records go past the count", () => {
  const r = new RequestRecorder({ maxRecordsPerModel: 3 });
  for (let i = 0; i < 5; i++) r.begin(start({ body: { model: "ai/x", n: i } })).end(200);
  r.begin(start({ modelId: "sha256:bbb", modelName: "ai/y:latest" })).end(200);
  const [x, y] = r.list();
  assert.equal(x!.count, 3);
  assert.deepEqual(x!.records.map((p) => JSON.parse(p.request).n), [2, 3, 4]);
  assert.equal(x!.model, "ai/x:latest");
  assert.deepEqual(x!.config, { "context-size": 4096 });
  assert.equal(y!.count, 1);
  assert.deepEqual(r.list("sha256:bbb").map((g) => g.model), ["ai/y:latest"]);
  assert.deepEqual(r.list("sha256:none"), []);
});

test("a ring per model: bounded by bytes, a record too big for it is cut, the newest always stays", () => {
  const r = new RequestRecorder({ maxBytesPerModel: 4000 });
  for (let i = 0; i < 3; i++) {
    const tap = r.begin(start({ body: { model: "ai/x", n: i } }));
    tap.chunk(Buffer.from(JSON.stringify({ text: "a".repeat(1500) })));
    tap.end(200);
  }
  const kept = r.list()[0]!.records;
  // Each pair takes ~1.6 kB: two fit in 4000 bytes, the first went.
  assert.deepEqual(kept.map((p) => JSON.parse(p.request).n), [1, 2]);
  const big = r.begin(start());
  big.chunk("x".repeat(3000));
  big.chunk("y".repeat(3000));
  big.end(200);
  const last = r.list()[0]!.records;
  assert.equal(last.length, 1, "the big one pushed out the others");
  assert.equal(last[0]!.response, `${"x".repeat(3000)}...[truncated 3000 bytes]`);
});

test("in flight: listed with status 0, then complete; subscribers get only completed exchanges", () => {
  const r = new RequestRecorder();
  const seen: unknown[] = [];
  const stop = r.subscribe((id, group) => seen.push([id, group.count, group.records[0]!.status_code, group.records[0]!.response]));
  const tap = r.begin(start());
  assert.equal(r.list()[0]!.records[0]!.status_code, 0);
  assert.deepEqual(seen, []);
  tap.chunk('{"ok":');
  tap.chunk("true}");
  tap.end(200);
  assert.deepEqual(seen, [["sha256:aaa", 1, 200, '{"ok":true}']]);
  stop();
  r.begin(start()).end(200);
  assert.equal(seen.length, 1);
});

test("errors: an engine's error body, a failure's body, a non-JSON error wrapped", () => {
  const r = new RequestRecorder();
  const a = r.begin(start());
  a.chunk('{"error":{"message":"bad"}}');
  a.end(400);
  const b = r.begin(start());
  b.end(499, { error: { message: "the client closed the connection", code: "client_closed" } });
  const c = r.begin(start());
  c.chunk("plain words");
  c.end(502);
  const [ra, rb, rc] = r.list()[0]!.records;
  assert.equal(ra!.error, '{"error":{"message":"bad"}}');
  assert.equal(ra!.response, undefined);
  assert.equal(rb!.status_code, 499);
  assert.match(rb!.error!, /client_closed/);
  assert.equal(rc!.error, '{"error":"plain words"}');
});

test("base64 media in the request is cut short; plain image URLs and other fields are kept", () => {
  const r = new RequestRecorder({ maxMediaChars: 10 });
  const data = `data:image/png;base64,${"A".repeat(50)}`;
  const url = `https://example.com/${"p".repeat(50)}.png`;
  const body = {
    model: "ai/x",
    data: "D".repeat(50),
    messages: [
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: data } },
          { type: "image_url", image_url: { url } },
          { type: "input_audio", input_audio: { data: "B".repeat(50), format: "wav" } },
        ],
      },
    ],
  };
  r.begin(start({ body })).end(200);
  const recorded = JSON.parse(r.list()[0]!.records[0]!.request);
  const parts = recorded.messages[0].content;
  assert.equal(parts[0].image_url.url, `data:image/png;base64,${"A".repeat(10)}...[truncated 40 chars]`);
  assert.equal(parts[1].image_url.url, url);
  assert.equal(parts[2].input_audio.data, `${"B".repeat(10)}...[truncated 40 chars]`);
  assert.equal(recorded.data, "D".repeat(50));
  assert.equal(body.messages[0]!.content[0]!.image_url!.url, data, "the request itself is untouched");
});

test("the other dialects' base64 media is cut too: Anthropic's image source, the Responses input_image, Ollama's images", () => {
  const r = new RequestRecorder({ maxMediaChars: 10 });
  const b64 = "Q".repeat(50);
  const body = {
    model: "ai/x",
    messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: b64 } }], images: [b64, "short"] }],
    input: [{ role: "user", content: [{ type: "input_image", image_url: `data:image/png;base64,${b64}` }] }],
    images: [b64],
  };
  r.begin(start({ body, url: "/api/chat" })).end(200);
  const recorded = JSON.parse(r.list()[0]!.records[0]!.request);
  const cut = `${"Q".repeat(10)}...[truncated 40 chars]`;
  assert.equal(recorded.messages[0].content[0].source.data, cut);
  assert.equal(recorded.messages[0].content[0].source.media_type, "image/png");
  assert.deepEqual(recorded.messages[0].images, [cut, "short"]);
  assert.equal(recorded.input[0].content[0].image_url, `data:image/png;base64,${cut}`);
  assert.deepEqual(recorded.images, [cut]);
});

test("a cancelled exchange leaves its ring unseen: not listed, no subscriber told, its bytes freed", () => {
  const r = new RequestRecorder({ maxRecordsPerModel: 2 });
  const seen: unknown[] = [];
  r.subscribe((_id, group) => seen.push(group.records[0]!.request));
  r.begin(start({ body: { model: "ai/x", n: 1 } })).end(200);
  const tap = r.begin(start({ body: { model: "ai/x", n: 2 } }));
  tap.chunk("partial");
  tap.cancel();
  tap.end(200); // after cancel: nothing
  r.begin(start({ body: { model: "ai/x", n: 3 } })).end(200);
  const kept = r.list()[0]!.records.map((p) => JSON.parse(p.request).n);
  assert.deepEqual(kept, [1, 3], "the cancelled one took no place in the count");
  assert.equal(seen.length, 2);
  const one = r.begin(start());
  one.end(200);
  one.cancel(); // after end: the record stays
  assert.equal(r.list()[0]!.records.length, 2);
});

test("`model` names the record when the body's own field is not it (Ollama's `name`)", () => {
  const r = new RequestRecorder();
  r.begin(start({ body: { name: "ai/x", prompt: "hi" }, model: "ai/x" })).end(200);
  r.begin(start({ body: { prompt: "hi" } })).end(200);
  assert.deepEqual(r.list()[0]!.records.map((p) => p.model), ["ai/x", "ai/x:latest"]);
});

test("a streamed chat answer is recorded as the completion it adds up to", () => {
  const events = [
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { role: "assistant", content: "Hel" } }] },
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { reasoning_content: "think" } }] },
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { content: "lo" } }] },
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "t1", type: "function", function: { name: "get", arguments: '{"a"' } }] } }] },
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ":1}" } }] } }] },
    { id: "c1", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }], usage: { completion_tokens: 5 } },
  ];
  const text = `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n`;
  const out = assembleStream(text);
  assert.ok("response" in out);
  const final = JSON.parse(out.response);
  assert.equal(final.object, "chat.completion");
  assert.deepEqual(final.usage, { completion_tokens: 5 });
  assert.deepEqual(final.choices, [
    {
      index: 0,
      finish_reason: "tool_calls",
      message: {
        role: "assistant",
        content: "Hello",
        reasoning_content: "think",
        tool_calls: [{ id: "t1", type: "function", function: { name: "get", arguments: '{"a":1}' } }],
      },
    },
  ]);
  const completion = assembleStream('data: {"choices":[{"index":0,"text":"a"}]}\n\ndata: {"choices":[{"index":0,"text":"b","finish_reason":"length"}]}\n\n');
  assert.ok("response" in completion);
  assert.deepEqual(JSON.parse(completion.response), { object: "text_completion", choices: [{ index: 0, text: "ab", finish_reason: "length" }] });
  const native = assembleStream('data: {"content":"x","stop":false}\n\ndata: {"content":"y","stop":true}\n\n');
  assert.ok("response" in native);
  assert.deepEqual(JSON.parse(native.response), { content: "xy", stop: true });
  assert.deepEqual(assembleStream('data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"boom"}}\n\n'), { error: '{"error":{"message":"boom"}}' });
});

test("MODEL_RUNNER_RECORD_REQUESTS: on by default, 0 turns it off, nonsense names the variable", () => {
  const home = { MODEL_RUNNER_HOME: "/tmp/mr-none" };
  assert.equal(loadDaemonConfig([], home).recordRequests, true);
  assert.equal(loadDaemonConfig([], { ...home, MODEL_RUNNER_RECORD_REQUESTS: "0" }).recordRequests, false);
  assert.equal(loadDaemonConfig([], { ...home, MODEL_RUNNER_RECORD_REQUESTS: "true" }).recordRequests, true);
  assert.throws(() => loadDaemonConfig([], { ...home, MODEL_RUNNER_RECORD_REQUESTS: "sometimes" }), (e: unknown) => e instanceof ConfigError && /MODEL_RUNNER_RECORD_REQUESTS/.test(e.message));
});

test("the body's text as it arrived is recorded as it is, unless it may hold media to cut", () => {
  const r = new RequestRecorder({ maxMediaChars: 10 });
  const plain = '{ "model": "ai/x",\n  "messages": [{"role": "user", "content": "hi"}] }';
  r.begin(start({ body: JSON.parse(plain), text: plain })).end(200);
  assert.equal(r.list()[0]!.records[0]!.request, plain, "the client's bytes, spacing included");
  const data = `data:image/png;base64,${"A".repeat(50)}`;
  const withImage = JSON.stringify({ model: "ai/x", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: data } }] }] });
  r.begin(start({ body: JSON.parse(withImage), text: withImage })).end(200);
  const cut = JSON.parse(r.list()[0]!.records[1]!.request);
  assert.equal(cut.messages[0].content[0].image_url.url, `data:image/png;base64,${"A".repeat(10)}...[truncated 40 chars]`);
  // An escape could spell a media key in disguise: such text is serialized again, and cut.
  const escaped = `{"model":"ai/x","d\\u0061ta":"${"B".repeat(50)}","format":"wav"}`;
  r.begin(start({ body: JSON.parse(escaped), text: escaped })).end(200);
  assert.equal(JSON.parse(r.list()[0]!.records[2]!.request).data, `${"B".repeat(10)}...[truncated 40 chars]`);
});
