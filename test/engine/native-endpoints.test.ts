import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { FIM_TOKENS } from "../../src/distribution/tiny-model.ts";
import { startEngine, type StartedEngine } from "../helpers/engine.ts";
import { tinyModel } from "../helpers/models.ts";

// llama-server's own endpoints on the real engine process, with a generated model.

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
type Json = Record<string, any>;

async function call(base: string, path: string, body?: unknown): Promise<{ status: number; json: Json; type: string | null; text: string; headers: Headers }> {
  const res = await fetch(`${base}${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  const text = await res.text();
  let json: Json = {};
  try {
    json = JSON.parse(text) as Json;
  } catch {
    // text answers (/metrics, streams)
  }
  return { status: res.status, json, type: res.headers.get("content-type"), text, headers: res.headers };
}

/** A metric's value in Prometheus text. */
function metric(text: string, name: string): number {
  const m = new RegExp(`^llamacpp:${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `llamacpp:${name} is missing`);
  return Number(m[1]);
}

const METRICS = {
  counter: [
    "prompt_tokens_total",
    "prompt_tokens_cached_total",
    "prompt_seconds_total",
    "tokens_predicted_total",
    "tokens_predicted_seconds_total",
    "n_decode_total",
    "n_tokens_max",
    "spec_decode_num_draft_tokens_total",
    "spec_decode_num_accepted_tokens_total",
    "spec_decode_num_drafts_total",
  ],
  gauge: ["prompt_tokens_seconds", "predicted_tokens_seconds", "requests_processing", "requests_deferred", "n_busy_slots_per_decode"],
};

describe("llama-server's own endpoints (completion mode, FIM model, --metrics)", () => {
  let engine: StartedEngine;
  let base: string;
  let modelPath: string;

  before(async () => {
    modelPath = await tinyModel({ seed: 7, fim: true });
    engine = await startEngine(["-m", modelPath, "--alias", "tiny", "-c", "2048", "-np", "2", "-t", "1", "--metrics"]);
    base = engine.baseUrl;
  });
  after(() => engine?.stop());

  test("/health and /v1/health", async () => {
    assert.deepEqual((await call(base, "/health")).json, { status: "ok" });
    assert.deepEqual((await call(base, "/v1/health")).json, { status: "ok" });
  });

  test("/completion: n_predict gives that many tokens, in llama-server's shape", async () => {
    const { status, json } = await call(base, "/completion", { prompt: "hello world", n_predict: 3, temperature: 0 });
    assert.equal(status, 200);
    assert.equal(json.tokens_predicted, 3);
    assert.equal(json.stop, true);
    assert.equal(json.stop_type, "limit");
    assert.equal(json.stopping_word, "");
    assert.equal(json.model, "tiny");
    assert.equal(typeof json.content, "string");
    assert.ok(json.content.length > 0);
    assert.deepEqual(json.tokens, []);
    assert.equal(typeof json.id_slot, "number");
    const tokens = (await call(base, "/tokenize", { content: "hello world", add_special: true })).json.tokens as number[];
    assert.equal(json.tokens_evaluated, tokens.length);
    assert.equal(json.generation_settings.n_predict, 3);
    assert.equal(json.generation_settings.temperature, 0);
    assert.equal(json.truncated, false);
    for (const key of ["prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_n", "predicted_ms", "predicted_per_token_ms", "predicted_per_second", "cache_n"]) {
      assert.equal(typeof json.timings[key], "number", key);
    }
    assert.equal(json.timings.predicted_n, 3);
    // The same greedy text as the OpenAI completions route.
    const oai = await call(base, "/v1/completions", { prompt: "hello world", max_tokens: 3, temperature: 0 });
    assert.equal(oai.json.choices[0].text, json.content);
    // n_predict wins over max_tokens, as in llama-server.
    assert.equal((await call(base, "/completion", { prompt: "hello world", n_predict: 2, max_tokens: 5, temperature: 0 })).json.tokens_predicted, 2);
  });

  test("/completion: a stop word gives stop_type word and the text before it", async () => {
    const full = (await call(base, "/completion", { prompt: "the model", n_predict: 12, temperature: 0 })).json.content as string;
    const stop = full.slice(4, 6);
    const { json } = await call(base, "/completion", { prompt: "the model", n_predict: 12, temperature: 0, stop: [stop] });
    assert.equal(json.stop_type, "word");
    assert.equal(json.stopping_word, stop);
    assert.equal(json.content, full.slice(0, full.indexOf(stop)));
  });

  test("/completion streams data: lines, partial then final, without [DONE]", async () => {
    const whole = (await call(base, "/completion", { prompt: "hello world", n_predict: 4, temperature: 0 })).json.content;
    const { status, type, text } = await call(base, "/completion", { prompt: "hello world", n_predict: 4, temperature: 0, stream: true });
    assert.equal(status, 200);
    assert.match(type ?? "", /text\/event-stream/);
    assert.ok(!text.includes("[DONE]"));
    const events = text
      .split("\n\n")
      .filter((e) => e.trim() !== "")
      .map((e) => {
        assert.ok(e.startsWith("data: "), e);
        return JSON.parse(e.slice(6)) as Json;
      });
    const last = events.at(-1)!;
    const partials = events.slice(0, -1);
    assert.ok(partials.length > 0);
    for (const p of partials) {
      assert.equal(p.stop, false);
      assert.deepEqual(Object.keys(p).sort(), ["content", "id_slot", "index", "stop", "tokens", "tokens_evaluated", "tokens_predicted"]);
    }
    assert.deepEqual(partials.map((p) => p.tokens_predicted), [...partials.map((p) => p.tokens_predicted)].sort((a, b) => a - b));
    assert.equal(partials.map((p) => p.content).join(""), whole);
    assert.equal(last.stop, true);
    assert.equal(last.content, "");
    assert.equal(last.tokens_predicted, 4);
    assert.equal(last.generation_settings.stream, true);
  });

  test("/completion: several prompts give an array; bad fields a 400 naming them", async () => {
    const { json } = await call(base, "/completion", { prompt: ["hello", "world"], n_predict: 1, temperature: 0 });
    assert.ok(Array.isArray(json));
    assert.deepEqual((json as unknown as Json[]).map((r) => r.index), [0, 1]);
    const bad = await call(base, "/completion", { prompt: "hello", n_predict: -2 });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "n_predict");
  });

  test("/props: default generation settings, slots, model path, template, build", async () => {
    const { json } = await call(base, "/props");
    assert.equal(json.total_slots, 2);
    assert.equal(json.default_generation_settings.n_ctx, 1024);
    assert.equal(json.default_generation_settings.params.temperature, 0.8);
    assert.equal(json.default_generation_settings.params.top_k, 40);
    assert.equal(json.default_generation_settings.params.n_predict, -1);
    assert.equal(json.model_path, modelPath);
    assert.equal(json.model_alias, "tiny");
    assert.match(json.chat_template, /<\|im_start\|>/);
    assert.deepEqual(json.modalities, { vision: false, video: false, audio: false });
    assert.match(json.build_info, /llama\.cpp/);
    assert.equal(json.endpoint_slots, true);
    assert.equal(json.endpoint_metrics, true);
    assert.equal(json.bos_token, "<s>");
    const change = await call(base, "/props", {});
    assert.equal(change.status, 501);
    assert.equal(change.json.error.type, "not_supported_error");
  });

  test("/slots: each slot with its last task's params; erase empties the slot's cache", async () => {
    const req = { prompt: "hello world, the model runner is here", n_predict: 2, temperature: 0 };
    const first = (await call(base, "/completion", req)).json;
    const again = (await call(base, "/completion", req)).json;
    assert.ok(again.timings.cache_n > 0, "the repeated prompt comes from the slot's cache");
    const slots = (await call(base, "/slots")).json as unknown as Json[];
    assert.equal(slots.length, 2);
    const used = slots.find((s) => s.id === again.id_slot)!;
    assert.equal(used.is_processing, false);
    assert.equal(used.n_ctx, 1024);
    assert.equal(used.params.n_predict, 2);
    assert.equal(used.n_prompt_tokens, first.tokens_evaluated);
    assert.equal(used.next_token[0].n_decoded, 2);

    for (const id of [0, 1]) {
      const erased = await call(base, `/slots/${id}?action=erase`, {});
      assert.equal(erased.status, 200);
      assert.equal(erased.json.id_slot, id);
      if (id === again.id_slot) assert.ok(erased.json.n_erased > 0);
    }
    assert.equal((await call(base, `/slots/${again.id_slot}?action=erase`, {})).json.n_erased, 0);
    const afterErase = (await call(base, "/completion", req)).json;
    assert.equal(afterErase.timings.cache_n, 0);
    assert.equal(afterErase.content, first.content);
  });

  test("erase on a generating slot waits until its generation ends", async () => {
    const res = await fetch(`${base}/completion`, { method: "POST", body: JSON.stringify({ prompt: "a long one", n_predict: 40, temperature: 0, stream: true }) });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (!text.includes("\n\n")) text += decoder.decode((await reader.read()).value, { stream: true });
    const slot = (JSON.parse(text.slice(6, text.indexOf("\n\n"))) as Json).id_slot as number;
    // Sent while the slot generates: it may only run once the generation is over.
    const erase = call(base, `/slots/${slot}?action=erase`, {});
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const erased = await erase;
    const final = JSON.parse(text.trim().split("\n\n").at(-1)!.slice(6)) as Json;
    assert.equal(final.stop, true);
    assert.equal(final.tokens_predicted, 40);
    assert.equal(erased.status, 200);
    assert.ok(erased.json.n_erased >= final.tokens_evaluated + 39, `erased ${erased.json.n_erased} tokens: the prompt and what was generated`);
  });

  test("/slots actions: save/restore refused naming them, bad ids and actions 400", async () => {
    for (const action of ["save", "restore"]) {
      const r = await call(base, `/slots/0?action=${action}`, {});
      assert.equal(r.status, 501);
      assert.equal(r.json.error.type, "not_supported_error");
      assert.match(r.json.error.message, new RegExp(`"${action}"`));
    }
    assert.equal((await call(base, "/slots/0?action=melt", {})).status, 400);
    assert.equal((await call(base, "/slots/7?action=erase", {})).status, 400);
    assert.equal((await call(base, "/slots/x?action=erase", {})).status, 400);
  });

  test("/metrics: llama-server's names and types; counters grow after a request", async () => {
    const before = await call(base, "/metrics");
    assert.equal(before.status, 200);
    assert.equal(before.type, "text/plain; version=0.0.4");
    assert.ok(Number(before.headers.get("process-start-time-unix")) > 1_600_000_000);
    for (const [type, names] of Object.entries(METRICS)) {
      for (const name of names) {
        assert.match(before.text, new RegExp(`^# HELP llamacpp:${name} .+$`, "m"));
        assert.match(before.text, new RegExp(`^# TYPE llamacpp:${name} ${type}$`, "m"));
        metric(before.text, name);
      }
    }
    const res = (await call(base, "/completion", { prompt: "some other prompt for metrics", n_predict: 4, temperature: 0 })).json;
    const after = (await call(base, "/metrics")).text;
    assert.equal(metric(after, "tokens_predicted_total") - metric(before.text, "tokens_predicted_total"), 4);
    assert.equal(metric(after, "prompt_tokens_total") - metric(before.text, "prompt_tokens_total"), res.timings.prompt_n);
    assert.ok(metric(after, "n_decode_total") >= metric(before.text, "n_decode_total") + 4);
    assert.ok(metric(after, "prompt_seconds_total") > metric(before.text, "prompt_seconds_total"));
    assert.ok(metric(after, "predicted_tokens_seconds") > 0, "the window since the last scrape saw generation");
    assert.equal(metric(after, "requests_processing"), 0);
    assert.ok(metric(after, "n_busy_slots_per_decode") >= 1);
  });

  test("/apply-template: the chat template's text, without generating", async () => {
    const { status, json } = await call(base, "/apply-template", { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }] });
    assert.equal(status, 200);
    assert.equal(json.prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    assert.equal((await call(base, "/apply-template", { messages: [] })).status, 400);
  });

  test("/infill: the FIM prompt is built from the model's FIM tokens, as llama-server builds it", async () => {
    const { status, json } = await call(base, "/infill", {
      input_prefix: "def f(",
      input_suffix: ")",
      input_extra: [{ filename: "a.py", text: "x = 1" }],
      n_predict: 2,
      temperature: 0,
    });
    assert.equal(status, 200);
    assert.equal(json.tokens_predicted, 2);
    // [REPO]myproject\n [SEP]a.py\n x = 1 [SEP]filename\n <s>[PRE]prefix[SUF]suffix[MID]
    const rep = FIM_TOKENS.fim_rep_token_id;
    const sep = FIM_TOKENS.fim_sep_token_id;
    const expected = [rep, "myproject\n", sep, "a.py\n", "x = 1", sep, "filename\n", "<s>", FIM_TOKENS.fim_pre_token_id, "def f(", FIM_TOKENS.fim_suf_token_id, ")", FIM_TOKENS.fim_mid_token_id];
    // Pieces tokenized on their own, as llama-server does (text without special-token parsing).
    const ids: number[] = [];
    for (const piece of expected) ids.push(...((await call(base, "/tokenize", { content: piece, add_special: false })).json.tokens as number[]));
    assert.equal(json.tokens_evaluated, ids.length);
    assert.equal(json.prompt, (await call(base, "/detokenize", { tokens: ids })).json.content);
    const missing = await call(base, "/infill", { input_prefix: "a" });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.param, "input_suffix");
  });
});

describe("llama-server's own endpoints off, and a model without FIM tokens", () => {
  let engine: StartedEngine;

  before(async () => {
    engine = await startEngine(["-m", await tinyModel({ seed: 7 }), "-c", "1024", "-t", "1", "--no-slots"]);
  });
  after(() => engine?.stop());

  test("--no-slots and no --metrics: 501 naming the flag", async () => {
    const slots = await call(engine.baseUrl, "/slots");
    assert.equal(slots.status, 501);
    assert.equal(slots.json.error.type, "not_supported_error");
    assert.match(slots.json.error.message, /--slots/);
    const metrics = await call(engine.baseUrl, "/metrics");
    assert.equal(metrics.status, 501);
    assert.match(metrics.json.error.message, /--metrics/);
    assert.equal((await call(engine.baseUrl, "/props")).json.endpoint_slots, false);
  });

  test("/infill on a model without FIM tokens is a 400", async () => {
    const r = await call(engine.baseUrl, "/infill", { input_prefix: "a", input_suffix: "b" });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /Infill is not supported by this model/);
  });
});

describe("embeddings: llama-server's /embedding, dimensions", () => {
  let mean: StartedEngine;
  let none: StartedEngine;

  before(async () => {
    [mean, none] = await Promise.all([
      startEngine(["-m", await tinyModel({ seed: 5, pooling: "mean" }), "--embeddings", "-c", "512", "-t", "1"]),
      startEngine(["-m", await tinyModel({ seed: 5 }), "--embeddings", "-c", "512", "-t", "1"]),
    ]);
  });
  after(async () => {
    await mean?.stop();
    await none?.stop();
  });

  const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

  test("pooled: one row per input, Euclidean-normalized as /v1/embeddings; embd_normalize -1 leaves it raw", async () => {
    const native = await call(mean.baseUrl, "/embedding", { content: "hello world" });
    assert.equal(native.status, 200);
    const rows = native.json as unknown as Array<{ index: number; embedding: number[][] }>;
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.index, 0);
    assert.equal(rows[0]!.embedding.length, 1);
    const v = rows[0]!.embedding[0]!;
    assert.equal(v.length, 64);
    assert.ok(Math.abs(norm(v) - 1) < 1e-6);
    const oai = (await call(mean.baseUrl, "/v1/embeddings", { input: "hello world" })).json;
    assert.deepEqual(oai.data[0].embedding, v);
    const raw = ((await call(mean.baseUrl, "/embedding", { content: "hello world", embd_normalize: -1 })).json as unknown as Json[])[0]!.embedding[0] as number[];
    assert.ok(Math.abs(norm(raw) - 1) > 1e-3);
    raw.forEach((x, i) => assert.ok(Math.abs(x / norm(raw) - v[i]!) < 1e-6));
    const two = (await call(mean.baseUrl, "/embedding", { input: ["hello", "world"] })).json as unknown as Json[];
    assert.deepEqual(two.map((r) => r.index), [0, 1]);
  });

  test("'dimensions' shortens each vector to unit length (float and base64); above the model's size it is a 400 naming it", async () => {
    const full = (await call(mean.baseUrl, "/v1/embeddings", { input: "hello" })).json.data[0].embedding as number[];
    const short = await call(mean.baseUrl, "/v1/embeddings", { input: "hello", dimensions: 4 });
    assert.equal(short.status, 200);
    const v = short.json.data[0].embedding as number[];
    assert.equal(v.length, 4);
    assert.ok(Math.abs(norm(v) - 1) < 1e-6);
    const head = norm(full.slice(0, 4));
    v.forEach((x, i) => assert.ok(Math.abs(x - full[i]! / head) < 1e-6));
    const b64 = await call(mean.baseUrl, "/v1/embeddings", { input: "hello", dimensions: 4, encoding_format: "base64" });
    const floats = floatsOf(b64.json.data[0].embedding as string);
    assert.equal(floats.length, 4);
    floats.forEach((x, i) => assert.ok(Math.abs(x - v[i]!) < 1e-6));
    assert.deepEqual((await call(mean.baseUrl, "/v1/embeddings", { input: "hello", dimensions: 64 })).json.data[0].embedding, full);
    const bad = await call(mean.baseUrl, "/v1/embeddings", { input: "hello", dimensions: 65 });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "dimensions");
    assert.match(bad.json.error.message, /65.*64 dimensions/);
  });

  test("pooling none: one row per prompt token, each the token's own state; /v1/embeddings refuses it", async () => {
    const tokens = (await call(none.baseUrl, "/tokenize", { content: "hello world", add_special: true })).json.tokens as number[];
    const rows = ((await call(none.baseUrl, "/embedding", { content: "hello world" })).json as unknown as Json[])[0]!.embedding as number[][];
    assert.equal(rows.length, tokens.length);
    for (const r of rows) assert.equal(r.length, 64);
    // A causal model: the rows of a prefix are the first rows of the whole.
    const prefix = ((await call(none.baseUrl, "/embedding", { content: tokens.slice(0, 2) })).json as unknown as Json[])[0]!.embedding as number[][];
    assert.equal(prefix.length, 2);
    prefix.forEach((row, i) => row.forEach((x, j) => assert.ok(Math.abs(x - rows[i]![j]!) < 1e-4)));
    assert.notDeepEqual(rows[0], rows[1]);
    const oai = await call(none.baseUrl, "/v1/embeddings", { input: "hello world" });
    assert.equal(oai.status, 400);
    assert.match(oai.json.error.message, /Pooling type 'none' is not OAI compatible/);
    const normalize = await call(none.baseUrl, "/embedding", { content: "hi", embd_normalize: 2 });
    assert.equal(normalize.status, 400);
    assert.equal(normalize.json.error.param, "embd_normalize");
  });

  test("/embedding needs content or input", async () => {
    assert.equal((await call(mean.baseUrl, "/embedding", {})).status, 400);
  });
});

/** A base64 embedding's float32 values (a decoded Buffer may share a larger pool, so its own bytes are copied out). */
function floatsOf(base64: string): Float32Array {
  const bytes = Buffer.from(base64, "base64");
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}
