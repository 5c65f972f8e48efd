import assert from "node:assert/strict";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Agent, fetch as undiciFetch } from "undici";
import { startBareDaemon } from "../helpers/daemon.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";

// DMR's MODEL_RUNNER_SOCK: the routes on a Unix socket beside TCP.
test("MODEL_RUNNER_SOCK serves every route on a Unix socket (mode 0600) beside TCP, and removes it on close", async (t) => {
  const dir = await tempDir("mr-sock-");
  const path = join(dir, "model-runner.sock");
  const d = await startBareDaemon({ MODEL_RUNNER_SOCK: path });
  const agent = new Agent({ connect: { socketPath: path } });
  t.after(() => agent.close());
  try {
    assert.equal(d.daemon.socketPath, path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    await d.addModel(await tinyModel({ seed: 73 }), "ai/sock:latest");
    const models = await undiciFetch("http://localhost/models", { dispatcher: agent });
    assert.equal(models.status, 200);
    assert.equal(((await models.json()) as unknown[]).length, 1);
    const chat = await undiciFetch("http://localhost/engines/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "ai/sock", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      dispatcher: agent,
    });
    assert.equal(chat.status, 200, await chat.clone().text());
    assert.equal((await fetch(`${d.url}/models`)).status, 200, "TCP still answers");
  } finally {
    await d.close();
  }
  await assert.rejects(stat(path), "the socket file is removed on close");

  const taken = join(dir, "a-file");
  await writeFile(taken, "not a socket");
  await assert.rejects(startBareDaemon({ MODEL_RUNNER_SOCK: taken }), /MODEL_RUNNER_SOCK: .*a-file exists and is not a socket/);
});
