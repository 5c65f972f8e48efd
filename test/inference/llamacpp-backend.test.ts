import assert from "node:assert/strict";
import { chmod, writeFile, stat } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { EngineFailedError, LlamaCppBackend, type RunRequest } from "../../src/inference/index.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, isAlive, pidsMatching } from "../helpers/processes.ts";

/** POSTs JSON over a Unix socket. */
function postOverSocket(socketPath: string, path: string, body: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let data = "";
      res.on("data", (d) => (data += d));
      res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(data) }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

/**
 * Starts `backend.run` and resolves once the engine is ready. The run's own
 * promise is returned boxed: an async function returning it would await it.
 */
async function runUntilReady(backend: LlamaCppBackend, req: Omit<RunRequest, "onReady">, signal: AbortSignal) {
  let ready!: () => void;
  const readyPromise = new Promise<void>((r) => (ready = r));
  const running = backend.run({ ...req, onReady: ready }, signal);
  await Promise.race([readyPromise, running]);
  return { running };
}

describe("llama.cpp backend", () => {
  let modelPath: string;
  let dir: string;

  before(async () => {
    modelPath = await tinyModel({ seed: 11 });
    dir = await tempDir("mr-backend-");
  });

  const request = (name: string, extra: Partial<RunRequest> = {}): RunRequest => ({
    socket: join(dir, `${name}.sock`),
    model: { name: `test/${name}`, ggufPath: modelPath },
    mode: "completion",
    config: { contextSize: 1024, parallel: 1, runtimeFlags: ["-t", "1"] },
    ...extra,
  });

  test("is named llama.cpp and uses the shared model store", () => {
    const backend = new LlamaCppBackend();
    assert.equal(backend.name, "llama.cpp");
    assert.equal(backend.usesExternalModelManagement, false);
  });

  test("status goes from Not Installed to Running with the engine variant", async () => {
    const backend = new LlamaCppBackend();
    assert.match(backend.status(), /^Not Installed: /);
    await backend.install(AbortSignal.timeout(60_000));
    assert.match(backend.status(), /^Running: llama\.cpp built-in \(node-llama-cpp 3\.21\.1, (CPU|CUDA|Vulkan|Metal)\)$/);
    await backend.install(AbortSignal.timeout(60_000)); // idempotent
  });

  test("a missing external llama-server is an Error status and a rejected install", async () => {
    const backend = new LlamaCppBackend({ llamaServerPath: join(dir, "no-such-llama-server") });
    await assert.rejects(backend.install(AbortSignal.timeout(10_000)), EngineFailedError);
    assert.match(backend.status(), /^Error: /);
  });

  test("serves its model on the socket, 421 for others, and resolves on abort with no process left", async () => {
    const backend = new LlamaCppBackend();
    const controller = new AbortController();
    const req = request("serve");
    const { running } = await runUntilReady(backend, req, controller.signal);
    const pids = await pidsMatching(req.socket);
    assert.equal(pids.length, 1, "one engine process");

    const ok = await postOverSocket(req.socket, "/v1/chat/completions", {
      model: "test/serve",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 3,
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.usage.completion_tokens, 3);
    const other = await postOverSocket(req.socket, "/v1/chat/completions", {
      model: "someone/else",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(other.status, 421);
    assert.equal(other.json.error.type, "invalid_request_error");

    controller.abort();
    await running; // resolves, not rejects, on cancellation
    assert.equal(isAlive(pids[0]!), false, "engine exited before run resolved");
    await assert.rejects(() => stat(req.socket), { code: "ENOENT" });
  });

  test("embedding mode starts the engine with --embeddings", async () => {
    const embedModel = await tinyModel({ seed: 2, pooling: "mean" });
    const backend = new LlamaCppBackend();
    const controller = new AbortController();
    const req = request("embed", { mode: "embedding", model: { name: "e", ggufPath: embedModel } });
    const { running } = await runUntilReady(backend, req, controller.signal);
    const res = await postOverSocket(req.socket, "/v1/embeddings", { model: "e", input: "hello" });
    assert.equal(res.status, 200);
    assert.equal(res.json.data[0].embedding.length, 64);
    controller.abort();
    await running;
  });

  test("an engine killed with SIGKILL rejects run with the cause, and is not restarted", async () => {
    const backend = new LlamaCppBackend();
    const controller = new AbortController();
    const req = request("crash");
    const { running } = await runUntilReady(backend, req, controller.signal);
    const [pid] = await pidsMatching(req.socket);
    process.kill(pid!, "SIGKILL");
    await assert.rejects(running, (e: Error) => e instanceof EngineFailedError && /killed by SIGKILL/.test(e.message));
    await delay(300);
    assert.deepEqual(await pidsMatching(req.socket), [], "one-shot: no new engine was started");
  });

  test("a model that cannot load rejects with the engine's output tail", async () => {
    const bad = join(dir, "broken.gguf");
    await writeFile(bad, "this is not a gguf file");
    const backend = new LlamaCppBackend();
    const req = request("broken", { model: { name: "b", ggufPath: bad } });
    await assert.rejects(backend.run(req, new AbortController().signal), (e: Error) => {
      assert.ok(e instanceof EngineFailedError);
      assert.match(e.message, /exited with code 1/);
      assert.match(e.message, /engine output/);
      return true;
    });
    assert.deepEqual(await pidsMatching(req.socket), []);
  });

  test("an already-aborted signal starts nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    const req = request("never");
    await new LlamaCppBackend().run(req, controller.signal);
    assert.deepEqual(await pidsMatching(req.socket), []);
  });

  test("MODEL_RUNNER_LLAMA_SERVER: an external binary gets the same arguments", async () => {
    // Test double for a real llama-server binary, which this machine does not
    // have: a script that records its argv and execs our own engine.
    const script = join(dir, "llama-server");
    const argsFile = join(dir, "llama-server.args");
    await writeFile(
      script,
      `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\nexec '${process.execPath}' '${MR_BIN}' engine "$@"\n`,
    );
    await chmod(script, 0o755);
    const backend = new LlamaCppBackend({ llamaServerPath: script });
    await backend.install(AbortSignal.timeout(60_000));
    assert.match(backend.status(), /^Running: llama\.cpp external llama-server \(.*llama-server\) \(node-llama-cpp 3\.21\.1/);
    const controller = new AbortController();
    const req = request("external");
    const { running } = await runUntilReady(backend, req, controller.signal);
    const res = await postOverSocket(req.socket, "/v1/completions", { model: "test/external", prompt: "hi", max_tokens: 2 });
    assert.equal(res.status, 200);
    const { readFile } = await import("node:fs/promises");
    const argv = (await readFile(argsFile, "utf8")).trim().split("\n");
    assert.deepEqual(argv.slice(0, 6), ["-m", modelPath, "--host", req.socket, "--alias", "test/external"]);
    assert.ok(argv.includes("-c") && argv.includes("1024"));
    controller.abort();
    await running;
    assert.deepEqual(await pidsMatching(req.socket), []);
  });

  test("an engine that never becomes healthy is stopped after the timeout, with its output, and its whole group dies", async () => {
    // Fault double: the real engine always becomes healthy, so a script that
    // prints, forks a helper and never listens stands in for a hung one.
    const script = join(dir, "hung-engine");
    await writeFile(script, `#!/bin/sh\necho "loading forever"\nsleep 300 &\nsleep 300\n`);
    await chmod(script, 0o755);
    const backend = new LlamaCppBackend({ llamaServerPath: script, readyTimeoutMs: 800, stopGraceMs: 500 });
    const req = request("hung");
    const before = new Set(await pidsMatching("sleep 300"));
    await assert.rejects(backend.run(req, new AbortController().signal), (e: Error) => {
      assert.ok(e instanceof EngineFailedError);
      assert.match(e.message, /did not become healthy within 1 s/);
      assert.match(e.message, /loading forever/);
      return true;
    });
    await eventually(async () => (await pidsMatching("sleep 300")).every((p) => before.has(p)), 3000, "forked helper to die");
  });

  test("abort during loading resolves and leaves nothing", async () => {
    const backend = new LlamaCppBackend();
    const controller = new AbortController();
    const req = request("early-abort");
    const running = backend.run(req, controller.signal);
    await eventually(async () => (await pidsMatching(req.socket)).length === 1, 5000, "engine to spawn");
    controller.abort();
    await running;
    assert.deepEqual(await pidsMatching(req.socket), []);
  });
});
