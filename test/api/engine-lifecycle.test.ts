import assert from "node:assert/strict";
import { chmod, writeFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { runMr } from "../helpers/cli.ts";
import { tinyModel } from "../helpers/models.ts";
import { eventually, isAlive, pidsMatching } from "../helpers/processes.ts";

// What the daemon does with engines around faults and removals: failed loads
// back off, incapable models are refused before an engine starts, removed
// models stop serving, and _configure refuses context sizes DMR would.

interface PsRow {
  model_name: string;
  state: string;
  pid: number | null;
  error?: string;
  error_code?: string;
  retry_at?: string;
}

describe("engines around faults and removals", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon();
  });
  after(() => d?.close());

  const ps = async () => (await (await fetch(`${d.url}/engines/ps`)).json()) as PsRow[];
  const chat = (model: string) =>
    fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
    });
  const engines = () => pidsMatching(d.home);

  test("a model that failed to load gets the same error during its back-off, without a new engine; ps shows it", async () => {
    const id = await d.addModel(await tinyModel({ seed: 71 }), "ai/broken:latest");
    const { files } = await d.daemon.distribution.resolve(id);
    await chmod(files.ggufPath!, 0o600);
    await writeFile(files.ggufPath!, "this is not a GGUF file\n".repeat(64));
    const first = await chat("ai/broken");
    const firstBody = (await first.json()) as { error: { code: string; message: string } };
    assert.equal(first.status, 500);
    assert.equal(firstBody.error.code, "engine_failed");
    assert.match(firstBody.error.message, /GGUF/);
    await eventually(async () => (await engines()).length === 0, 5000, "the failed engine to exit");
    const second = await chat("ai/broken");
    const secondBody = (await second.json()) as { error: { code: string; message: string } };
    assert.equal(second.status, 500);
    assert.equal(secondBody.error.code, "engine_failed");
    assert.ok(secondBody.error.message.includes(firstBody.error.message), secondBody.error.message);
    assert.match(secondBody.error.message, /not retried for another \d+ s/);
    assert.ok(Number(second.headers.get("retry-after")) > 0);
    assert.deepEqual(await engines(), [], "no second engine was started");
    const row = (await ps()).find((r) => r.model_name === "ai/broken");
    assert.equal(row?.state, "failed");
    assert.equal(row?.error_code, "engine_failed");
    assert.equal(row?.error, firstBody.error.message);
    assert.ok(row?.retry_at && Date.parse(row.retry_at) > Date.now());
    const cli = await runMr(["ps"], { env: { MODEL_RUNNER_HOST: d.url.replace(/^http:\/\//, "") } });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /ai\/broken\s.*\sfailed\s.*retry in/);
    assert.match(cli.stdout, /^ai\/broken: failed to load: .*GGUF/m);
    // Unloading it ends the back-off, and removes the row.
    await fetch(`${d.url}/engines/unload`, { method: "POST", body: JSON.stringify({ models: ["ai/broken"] }), headers: { "content-type": "application/json" } });
    assert.equal((await ps()).find((r) => r.model_name === "ai/broken"), undefined);
  });

  test("reranking on a model without a ranking head is a 400 decided before any engine starts", async () => {
    const res = await fetch(`${d.url}/v1/rerank`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "ai/tiny", query: "q", documents: ["a", "b"] }),
    });
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(res.status, 400);
    assert.equal(body.error.code, "model_not_capable");
    assert.match(body.error.message, /ai\/tiny cannot rerank: it has no ranking head/);
    assert.deepEqual(await engines(), []);
    assert.deepEqual(await ps(), []);
  });

  test("rm of a loaded model stops its runner, whatever name either used", async () => {
    await d.addModel(await tinyModel({ seed: 72 }), "ai/gone:latest");
    assert.equal((await chat("ai/gone")).status, 200);
    const [row] = (await ps()).filter((r) => r.model_name === "ai/gone");
    assert.ok(row?.pid && isAlive(row.pid));
    // Loaded as "ai/gone", removed as "ai/gone:latest": the same model.
    const res = await fetch(`${d.url}/models/ai/gone:latest`, { method: "DELETE" });
    assert.equal(res.status, 200);
    await eventually(async () => !(await ps()).some((r) => r.model_name === "ai/gone"), 5000, "the runner to stop");
    await eventually(() => !isAlive(row.pid!), 5000, "the engine to exit");
    assert.equal((await chat("ai/gone")).status, 404);
  });

  test("Ollama's DELETE /api/delete of a loaded model stops its runner too", async () => {
    await d.addModel(await tinyModel({ seed: 73 }), "ai/olgone:latest");
    assert.equal((await chat("ai/olgone")).status, 200);
    const [row] = (await ps()).filter((r) => r.model_name === "ai/olgone");
    assert.ok(row?.pid && isAlive(row.pid));
    const res = await fetch(`${d.url}/api/delete`, { method: "DELETE", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "ai/olgone:latest" }) });
    assert.equal(res.status, 200);
    await eventually(async () => !(await ps()).some((r) => r.model_name === "ai/olgone"), 5000, "the runner to stop");
    await eventually(() => !isAlive(row.pid!), 5000, "the engine to exit");
  });

  test("_configure refuses context sizes DMR's int32 > 0 field cannot hold, and stores nothing", async () => {
    for (const size of [1e12, -5, 1.5, 2 ** 31]) {
      const res = await fetch(`${d.url}/engines/_configure`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "ai/tiny", "context-size": size }),
      });
      assert.equal(res.status, 400, `context-size ${size}`);
      const body = (await res.json()) as { error: { message: string } };
      assert.match(body.error.message, /context-size/);
    }
    assert.deepEqual(await (await fetch(`${d.url}/engines/_configure?model=ai/tiny`)).json(), []);
  });

  // Last: it removes every model.
  test("purge stops every runner", async () => {
    assert.equal((await chat("ai/tiny")).status, 200);
    assert.equal((await ps()).filter((r) => r.state !== "failed").length, 1);
    const res = await fetch(`${d.url}/models/purge`, { method: "DELETE" });
    assert.equal(res.status, 200);
    await eventually(async () => (await ps()).length === 0, 5000, "runners to stop after purge");
    await eventually(async () => (await engines()).length === 0, 5000, "engines to exit after purge");
    assert.equal((await chat("ai/tiny")).status, 404);
  });
});
