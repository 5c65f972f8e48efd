import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";
import { tinyModel } from "../helpers/models.ts";

type Body = Record<string, any>;

const post = async (d: TestDaemon, path: string, body: unknown) => {
  const res = await fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: (text.includes("\n{") ? text.trim().split("\n").map((l) => JSON.parse(l)) : JSON.parse(text)) as Body };
};
const create = async (d: TestDaemon, body: Body) => {
  const res = await post(d, "/api/create", { stream: false, ...body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.status, "success");
};
const show = async (d: TestDaemon, model: string) => (await post(d, "/api/show", { model })).body;
const chat = async (d: TestDaemon, model: string, extra: Body = {}) => {
  const res = await post(d, "/api/chat", { model, messages: [{ role: "user", content: "hello" }], stream: false, ...extra });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { prompt_eval_count: number; eval_count: number; message: { content: string } };
};
const idOf = async (d: TestDaemon, name: string) => ((await fetch(`${d.url}/models/${name}`).then((r) => r.json())) as { id: string }).id;

const SYSTEM = "You are a pirate. Answer every question like a pirate would, with many arrs.";
const JINJA = "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}<|assistant|>";

for (const variant of ENGINE_VARIANTS) describe(`Ollama POST /api/create with Modelfile parts [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...variant.env });
    await d.addModel(await tinyModel({ seed: 3 }), "ai/tiny:latest");
  });
  after(() => d?.close());

  test("from + system + parameters + messages: a new model with its own ID and preset; the source is unchanged", async () => {
    const plain = await chat(d, "ai/tiny", { options: { num_predict: 2 } });
    await create(d, {
      model: "pirate",
      from: "ai/tiny",
      system: SYSTEM,
      parameters: { temperature: 0.3, num_predict: 3, stop: ["<|end|>", "\n\n"], num_ctx: 1024 },
      messages: [{ role: "user", content: "Who are you?" }, { role: "assistant", content: "A pirate, arr." }],
    });
    assert.notEqual(await idOf(d, "pirate"), await idOf(d, "ai/tiny"));
    const got = await chat(d, "pirate");
    assert.equal(got.eval_count, 3);
    assert.ok(got.prompt_eval_count > plain.prompt_eval_count + 20, `${got.prompt_eval_count} vs ${plain.prompt_eval_count}`);
    // The source has no preset: its prompt is as before.
    assert.equal((await chat(d, "ai/tiny", { options: { num_predict: 2 } })).prompt_eval_count, plain.prompt_eval_count);

    const s = await show(d, "pirate");
    assert.equal(s.system, SYSTEM);
    assert.deepEqual(s.messages, [{ role: "user", content: "Who are you?" }, { role: "assistant", content: "A pirate, arr." }]);
    const params = (s.parameters as string).split("\n").map((l) => l.replace(/\s+/, " "));
    assert.deepEqual(params, ["num_ctx 1024", "temperature 0.3", "num_predict 3", 'stop "<|end|>"', 'stop "\\n\\n"']);
    assert.match(s.modelfile, /^FROM ai\/pirate:latest$/m);
    assert.match(s.modelfile, new RegExp(`^SYSTEM """${SYSTEM}"""$`, "m"));
    assert.match(s.modelfile, /^PARAMETER temperature 0\.3$/m);
    assert.match(s.modelfile, /^MESSAGE assistant """A pirate, arr\."""$/m);
    const ps = (await fetch(`${d.url}/engines/ps`).then((r) => r.json())) as Array<{ model_id: string; context_size: number }>;
    assert.equal(ps.find((r) => r.model_id === s.digest || r.context_size === 1024)?.context_size, 1024);
    const plainShow = await show(d, "ai/tiny");
    assert.equal(plainShow.system, undefined);
  });

  test("a model created from one with a preset keeps it; the request's parts go over it", async () => {
    await create(d, { model: "pirate2", from: "pirate", parameters: { temperature: 0.9 } });
    const s = await show(d, "pirate2");
    assert.equal(s.system, SYSTEM);
    assert.match(s.parameters, /^temperature\s+0\.9$/m);
    assert.match(s.parameters, /^num_predict\s+3$/m);
    assert.match(s.parameters, /^num_ctx\s+1024$/m);
    assert.equal((await chat(d, "pirate2")).eval_count, 3);
    // The source keeps its own.
    assert.match((await show(d, "pirate")).parameters, /^temperature\s+0\.3$/m);
  });

  test("from with nothing else is a new name for the same model", async () => {
    await create(d, { model: "tiny-copy", from: "ai/tiny" });
    assert.equal(await idOf(d, "tiny-copy"), await idOf(d, "ai/tiny"));
  });

  test("a Jinja template and a license become the new model's layers and are used", async () => {
    const before = await chat(d, "ai/tiny", { options: { num_predict: 2 } });
    await create(d, { model: "templated", from: "ai/tiny", template: `${"PREAMBLE ".repeat(30)}${JINJA}`, license: "MIT, for the test" });
    const s = await show(d, "templated");
    assert.equal(s.template, `${"PREAMBLE ".repeat(30)}${JINJA}`);
    assert.match(s.license, /MIT, for the test/);
    assert.match(s.modelfile, /^LICENSE """/m);
    const got = await chat(d, "templated", { options: { num_predict: 2 } });
    assert.ok(got.prompt_eval_count > before.prompt_eval_count + 25, `the template was not applied: ${got.prompt_eval_count} vs ${before.prompt_eval_count}`);
  });

  test("an Ollama (Go) template is a 400 that says this engine takes Jinja", async () => {
    for (const template of ["{{ .System }} {{ .Prompt }}", "{{ if .System }}<|system|>{{ .System }}{{ end }}", "{{- range .Messages }}{{ .Content }}{{ end }}"]) {
      const res = await post(d, "/api/create", { model: "gotpl", from: "ai/tiny", template, stream: false });
      assert.equal(res.status, 400, template);
      assert.match(res.body.error, /Ollama \(Go\) template.*Jinja/);
    }
    const broken = await post(d, "/api/create", { model: "gotpl", from: "ai/tiny", template: "{% for m in messages %}", stream: false });
    assert.equal(broken.status, 400);
    assert.match(broken.body.error, /not a valid Jinja chat template/);
    assert.equal((await fetch(`${d.url}/models/gotpl`)).status, 404);
  });

  test("bad parts are 400s naming them, before anything is written", async () => {
    const cases: Array<[Body, RegExp]> = [
      [{ parameters: { temprature: 0.5 } }, /Unknown parameter 'temprature'/],
      [{ parameters: { top_k: "many" } }, /'parameters.top_k' must be a number/],
      [{ parameters: { num_ctx: 0 } }, /num_ctx/],
      [{ messages: [{ role: "robot", content: "x" }] }, /messages\[0\]\.role/],
      [{ system: 5 }, /system/],
      [{ adapters: { "a.gguf": "sha256:00" } }, /'adapters'.*not supported/],
      [{ quantize: "q4_K_M" }, /'quantize' is not supported/],
      [{ modelfile: "FROM x" }, /'modelfile'/],
      [{ sistem: "x" }, /Unknown field 'sistem'/],
    ];
    for (const [extra, message] of cases) {
      const res = await post(d, "/api/create", { model: "bad", from: "ai/tiny", stream: false, ...extra });
      assert.equal(res.status, 400, JSON.stringify(extra));
      assert.match(res.body.error, message);
    }
    assert.equal((await fetch(`${d.url}/models/bad`)).status, 404);
    assert.equal((await post(d, "/api/create", { model: "bad", from: "no/such-model", system: "x", stream: false })).status, 404);
  });

  test("a preset that cannot be stored (a context too large for memory) leaves no model behind", async () => {
    const res = await post(d, "/api/create", { model: "huge", from: "ai/tiny", system: "x", parameters: { num_ctx: 2147483647 }, stream: false });
    assert.ok(res.status >= 400, JSON.stringify(res.body));
    assert.equal((await fetch(`${d.url}/models/huge`)).status, 404);
  });

  test("files + system: an uploaded GGUF with a preset", async () => {
    const { readFile } = await import("node:fs/promises");
    const { createHash } = await import("node:crypto");
    const bytes = await readFile(await tinyModel({ seed: 5 }));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    assert.equal((await fetch(`${d.url}/api/blobs/${digest}`, { method: "POST", body: bytes, headers: { "content-type": "application/octet-stream" } })).status, 201);
    await create(d, { model: "uploaded", files: { "m.gguf": digest }, system: SYSTEM, parameters: { num_predict: 3 } });
    assert.equal((await show(d, "uploaded")).system, SYSTEM);
    assert.equal((await chat(d, "uploaded")).eval_count, 3);
  });

  test("streamed: Ollama's progress lines end in success", async () => {
    const res = await post(d, "/api/create", { model: "streamed", from: "ai/tiny", system: "Be brief." });
    assert.equal(res.status, 200);
    const lines = res.body as unknown as Body[];
    assert.ok(lines.some((l) => /^using existing layer sha256:/.test(l.status)));
    assert.deepEqual(lines.at(-1), { status: "success" });
  });
});
