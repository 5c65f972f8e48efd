import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";
import { tinyModel } from "../helpers/models.ts";

type Body = Record<string, any>;

const post = async (d: TestDaemon, path: string, body: unknown) => {
  const res = await fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Body };
};
const ok = async (d: TestDaemon, path: string, body: unknown) => {
  const res = await post(d, path, body);
  assert.ok(res.status < 300, `${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
};

const SYSTEM = "You are a careful assistant who answers every question in exactly three short words.";
const USER = "hello there";

/** Prompt and completion tokens of one request, per dialect. */
const dialects = {
  async openai(d: TestDaemon, extra: Body = {}) {
    const b = await ok(d, "/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: USER }], ...extra });
    return { prompt: b.usage.prompt_tokens as number, completion: b.usage.completion_tokens as number };
  },
  async completions(d: TestDaemon, extra: Body = {}) {
    const b = await ok(d, "/v1/completions", { model: "ai/tiny", prompt: USER, ...extra });
    return { prompt: b.usage.prompt_tokens as number, completion: b.usage.completion_tokens as number };
  },
  async ollamaChat(d: TestDaemon, extra: Body = {}) {
    const b = await ok(d, "/api/chat", { model: "ai/tiny", messages: [{ role: "user", content: USER }], stream: false, ...extra });
    return { prompt: b.prompt_eval_count as number, completion: b.eval_count as number };
  },
  async ollamaGenerate(d: TestDaemon, extra: Body = {}) {
    const b = await ok(d, "/api/generate", { model: "ai/tiny", prompt: USER, stream: false, ...extra });
    return { prompt: b.prompt_eval_count as number, completion: b.eval_count as number };
  },
  async responses(d: TestDaemon, extra: Body = {}) {
    const b = await ok(d, "/v1/responses", { model: "ai/tiny", input: USER, ...extra });
    return { prompt: b.usage.input_tokens as number, completion: b.usage.output_tokens as number };
  },
  async anthropic(d: TestDaemon, extra: Body = {}) {
    // Anthropic requires max_tokens: a request value, so the preset's num_predict never applies here.
    const b = await ok(d, "/v1/messages", { model: "ai/tiny", max_tokens: 4, messages: [{ role: "user", content: USER }], ...extra });
    return { prompt: b.usage.input_tokens as number, completion: b.usage.output_tokens as number };
  },
};

for (const variant of ENGINE_VARIANTS) describe(`model presets on every dialect [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  const baseline: Record<string, { prompt: number; completion: number }> = {};
  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...variant.env });
    await d.addModel(await tinyModel({ seed: 3 }), "ai/tiny:latest");
    // Before any preset: what each dialect's prompt costs without a system prompt (max_tokens given so the answer is short).
    for (const [name, run] of Object.entries(dialects)) {
      baseline[name] = await run(d, name === "anthropic" ? {} : name.startsWith("ollama") ? { options: { num_predict: 2 } } : name === "responses" ? { max_output_tokens: 2 } : { max_tokens: 2 });
    }
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { system: SYSTEM, parameters: { num_predict: 3, temperature: 0.7, seed: 42 } } });
  });
  after(() => d?.close());

  for (const name of (Object.keys(dialects) as Array<keyof typeof dialects>).filter((n) => n !== "completions")) {
    test(`${name}: the preset's system prompt and num_predict apply to a request that sets neither`, async () => {
      const got = await dialects[name](d);
      assert.ok(got.prompt > baseline[name]!.prompt + 10, `${name}: prompt ${got.prompt} vs baseline ${baseline[name]!.prompt}: the system prompt is missing`);
      if (name === "anthropic") assert.equal(got.completion, 4);
      else assert.equal(got.completion, 3, `${name}: num_predict 3 did not apply`);
    });
  }

  test("a request's own values win: max_tokens / options / max_output_tokens and its own system message", async () => {
    assert.equal((await dialects.openai(d, { max_tokens: 5 })).completion, 5);
    assert.equal((await dialects.openai(d, { max_completion_tokens: 4 })).completion, 4);
    assert.equal((await dialects.completions(d, { max_tokens: 5 })).completion, 5);
    assert.equal((await dialects.ollamaChat(d, { options: { num_predict: 5 } })).completion, 5);
    assert.equal((await dialects.responses(d, { max_output_tokens: 5 })).completion, 5);
    // A conversation with its own (short) system message keeps it and gets no preset system prompt.
    const own = await dialects.openai(d, { messages: [{ role: "system", content: "Hi." }, { role: "user", content: USER }] });
    const preset = await dialects.openai(d);
    assert.ok(own.prompt < preset.prompt - 10, `own system ${own.prompt} vs preset ${preset.prompt}`);
    const generate = await dialects.ollamaGenerate(d, { system: "Hi." });
    assert.ok(generate.prompt < (await dialects.ollamaGenerate(d)).prompt - 10);
    const anthropic = await dialects.anthropic(d, { system: "Hi." });
    assert.ok(anthropic.prompt < (await dialects.anthropic(d)).prompt - 10);
  });

  test("a raw completion gets the parameters but no system prompt", async () => {
    const got = await dialects.completions(d);
    assert.equal(got.prompt, baseline.completions!.prompt);
    assert.equal(got.completion, 3);
  });

  test("seed and temperature from the preset make answers repeatable; a request's temperature overrides", async () => {
    const text = async (extra: Body = {}) =>
      (await ok(d, "/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: USER }], max_tokens: 12, ...extra })).choices[0].message.content as string;
    const a = await text();
    assert.equal(await text(), a);
    // The same seed at the preset's temperature, sent explicitly: the same answer (so the preset's values were what applied).
    assert.equal(await text({ temperature: 0.7, seed: 42 }), a);
  });

  test("a preset change applies to the next request without reloading the model, and null clears a parameter", async () => {
    const pid = () => fetch(`${d.url}/engines/ps`).then((r) => r.json() as Promise<Array<{ pid: number }>>).then((rows) => rows[0]?.pid);
    const before = await pid();
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { parameters: { num_predict: 2 } } });
    assert.equal((await dialects.openai(d)).completion, 2);
    assert.equal(await pid(), before, "the runner was restarted for a preset change");
    const rows = (await fetch(`${d.url}/engines/_configure?model=ai/tiny`).then((r) => r.json())) as Body[];
    // The other parameters and the system prompt were kept (a patch, not a replacement).
    assert.deepEqual(rows[0]!.preset, { system: SYSTEM, parameters: { num_predict: 2, temperature: 0.7, seed: 42 } });
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { parameters: { num_predict: null } } });
    const rows2 = (await fetch(`${d.url}/engines/_configure?model=ai/tiny`).then((r) => r.json())) as Body[];
    assert.deepEqual(rows2[0]!.preset.parameters, { temperature: 0.7, seed: 42 });
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { parameters: { num_predict: 3 } } });
  });

  test("strict validation: an unknown parameter or field is a 400 naming it; nothing is stored", async () => {
    const cases: Array<[Body, string, RegExp]> = [
      [{ parameters: { temprature: 0.5 } }, "preset.parameters.temprature", /Unknown parameter 'temprature'/],
      [{ parameters: { top_k: 1.5 } }, "preset.parameters.top_k", /whole number/],
      [{ parameters: { top_p: 2 } }, "preset.parameters.top_p", /at most 1/],
      [{ parameters: { stop: [1] } }, "preset.parameters.stop", /string/],
      [{ parameters: { num_ctx: 100 } }, "preset.parameters.num_ctx", /context-size/],
      [{ sytem: "x" }, "preset.sytem", /Unknown field "preset.sytem"/],
      [{ messages: [{ role: "tool", content: "x" }] }, "preset.messages.0.role", /system, user or assistant/],
    ];
    for (const [preset, param, message] of cases) {
      const res = await post(d, "/engines/_configure", { model: "ai/tiny", preset });
      assert.equal(res.status, 400, JSON.stringify(preset));
      assert.equal(res.body.error.param, param);
      assert.match(res.body.error.message, message);
    }
    const embed = await post(d, "/engines/_configure", { model: "ai/tiny", mode: "embedding", preset: { system: "x" } });
    assert.equal(embed.status, 400);
    assert.equal(embed.body.error.param, "preset");
    const rows = (await fetch(`${d.url}/engines/_configure?model=ai/tiny`).then((r) => r.json())) as Body[];
    assert.deepEqual(rows[0]!.preset.parameters, { temperature: 0.7, seed: 42, num_predict: 3 });
  });

  test("preset messages go after the system prompt and before the request's turns", async () => {
    const before = await dialects.openai(d);
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { messages: [{ role: "user", content: "Say yes." }, { role: "assistant", content: "Yes, certainly." }] } });
    const withMessages = await dialects.openai(d);
    assert.ok(withMessages.prompt > before.prompt + 5, `${withMessages.prompt} vs ${before.prompt}`);
    await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { messages: null } });
    assert.equal((await dialects.openai(d)).prompt, before.prompt);
  });
});

describe("a preset survives a daemon restart", () => {
  test("stored in the configuration file, applied after a restart", async () => {
    const d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn" });
    let again: TestDaemon | null = null;
    try {
      await d.addModel(await tinyModel({ seed: 3 }), "ai/tiny:latest");
      await ok(d, "/engines/_configure", { model: "ai/tiny", preset: { system: SYSTEM, parameters: { num_predict: 3, stop: ["\n\n"] } } });
      await d.close();
      again = await startBareDaemon({ MODEL_RUNNER_HOME: d.home, MODEL_RUNNER_LOG_LEVEL: "warn" });
      const rows = (await fetch(`${again.url}/engines/_configure`).then((r) => r.json())) as Body[];
      assert.deepEqual(rows[0]!.preset, { system: SYSTEM, parameters: { num_predict: 3, stop: ["\n\n"] } });
      assert.equal((await dialects.ollamaChat(again)).completion, 3);
    } finally {
      await again?.close();
      await d.close().catch(() => undefined);
    }
  });
});
