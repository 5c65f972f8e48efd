import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, readFile, writeFile, stat } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { EngineFailedError, LlamaCppBackend, type RunRequest } from "../../src/inference/index.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { ENGINE_VARIANTS, LLAMA_SERVER_PATH, llamaServerDouble, type EngineVariant } from "../helpers/engines.ts";
import { eventually, isAlive, pidsMatching } from "../helpers/processes.ts";

/** The engine's own pid among the processes of a runner (not llama-server's wrapper). */
async function enginePids(socket: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await pidsMatching(socket)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes("llama-server-wrapper")) pids.push(pid);
  }
  return pids;
}

const backendFor = (variant: EngineVariant, extra: ConstructorParameters<typeof LlamaCppBackend>[0] = {}) =>
  new LlamaCppBackend({ llamaServerPath: variant.engine === "llama-server" ? LLAMA_SERVER_PATH : null, defaultEngine: variant.engine, ...extra });

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
  let dir: string;
  before(async () => {
    dir = await tempDir("mr-backend-");
  });

  test("is named llama.cpp and uses the shared model store", () => {
    const backend = new LlamaCppBackend();
    assert.equal(backend.name, "llama.cpp");
    assert.equal(backend.usesExternalModelManagement, false);
    assert.equal(backend.defaultEngine, "built-in");
    assert.equal(new LlamaCppBackend({ llamaServerPath: "/x/llama-server" }).defaultEngine, "llama-server");
    assert.equal(new LlamaCppBackend({ llamaServerPath: "/x/llama-server", defaultEngine: "built-in" }).defaultEngine, "built-in");
    assert.equal(backend.engineFor({ engine: "llama-server" }), "llama-server");
    assert.throws(() => backend.engineFor({ engine: "vllm" }), (e: Error & { status?: number }) => e.status === 400 && /"vllm".*built-in, llama-server/.test(e.message));
  });

  test("status goes from Not Installed to Running with the engine variant", async () => {
    const backend = new LlamaCppBackend();
    assert.match(backend.status(), /^Not Installed: /);
    await backend.install(AbortSignal.timeout(60_000));
    assert.match(backend.status(), /^Running: llama\.cpp built-in \(node-llama-cpp 3\.21\.1, (native|prebuilt) (CPU|CUDA|Vulkan|Metal) (build|binary)\)/);
    await backend.install(AbortSignal.timeout(60_000)); // idempotent
  });

  test("a missing MODEL_RUNNER_LLAMA_SERVER binary is an Error status and a rejected install", async () => {
    const backend = new LlamaCppBackend({ llamaServerPath: join(dir, "no-such-llama-server") });
    await assert.rejects(backend.install(AbortSignal.timeout(10_000)), EngineFailedError);
    assert.match(backend.status(), /^Error: .*binary not found/);
  });

  test("a model configured for llama-server when none is installed: 412 naming the install command", async () => {
    const backend = new LlamaCppBackend();
    const req: RunRequest = {
      socket: join(dir, "none.sock"),
      model: { name: "m", ggufPath: await tinyModel({ seed: 1 }) },
      mode: "completion",
      config: { engine: "llama-server" },
    };
    await assert.rejects(backend.run(req, new AbortController().signal), (e: Error & { status?: number }) => {
      assert.equal(e.status, 412);
      assert.match(e.message, /"llama-server" is not installed; run: mr install-runner --engine llama-server/);
      return true;
    });
  });
});

for (const variant of ENGINE_VARIANTS) {
  describe(`llama.cpp backend run contract [${variant.engine}]`, { skip: variant.skip }, () => {
    let modelPath: string;
    let dir: string;
    /** Processes per runner: the engine, plus llama-server's name-checking wrapper. */
    const processCount = variant.engine === "built-in" ? 1 : 2;

    before(async () => {
      modelPath = await tinyModel({ seed: 11 });
      dir = await tempDir("mr-backend-");
    });

    const request = (name: string, extra: Partial<RunRequest> = {}): RunRequest => ({
      socket: join(dir, `${name}.sock`),
      model: { name: `test/${name}`, ggufPath: modelPath },
      mode: "completion",
      config: { contextSize: 1024, parallel: 1, runtimeFlags: ["--threads", "1"] },
      ...extra,
    });

    test("serves its model on the socket, 421 for others, and resolves on abort with no process left", async () => {
      const backend = backendFor(variant);
      const controller = new AbortController();
      const req = request("serve");
      const { running } = await runUntilReady(backend, req, controller.signal);
      const pids = await pidsMatching(req.socket);
      assert.equal(pids.length, processCount);

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
      for (const pid of pids) assert.equal(isAlive(pid), false, "engine exited before run resolved");
      await assert.rejects(() => stat(req.socket), { code: "ENOENT" });
    });

    test(`load progress: ${variant.engine === "built-in" ? "rising fractions, the last 1, before ready" : "none (llama-server reports none)"}`, async () => {
      const backend = backendFor(variant);
      const controller = new AbortController();
      const progress: number[] = [];
      let readyAfter = -1;
      const { running } = await runUntilReady(backend, request("progress", { onLoadProgress: (f) => progress.push(f) }), controller.signal);
      readyAfter = progress.length;
      controller.abort();
      await running;
      if (variant.engine === "llama-server") {
        assert.deepEqual(progress, []);
        return;
      }
      assert.ok(progress.length >= 2, JSON.stringify(progress));
      assert.ok(progress.every((p, i) => p > 0 && p <= 1 && (i === 0 || p > progress[i - 1]!)), JSON.stringify(progress));
      assert.equal(progress.at(-1), 1);
      assert.equal(readyAfter, progress.length, "all of it before the engine is ready");
    });

    test("embedding mode serves /v1/embeddings (mean pooling for a model that declares none)", async () => {
      for (const pooling of ["mean", undefined] as const) {
        if (pooling === undefined && variant.engine === "built-in") continue; // our engine pools by mean regardless
        const embedModel = await tinyModel({ seed: 2, ...(pooling ? { pooling } : {}) });
        const backend = backendFor(variant);
        const controller = new AbortController();
        const req = request(`embed-${pooling ?? "none"}`, { mode: "embedding", model: { name: "e", ggufPath: embedModel } });
        const { running } = await runUntilReady(backend, req, controller.signal);
        const res = await postOverSocket(req.socket, "/v1/embeddings", { model: "e", input: "hello" });
        assert.equal(res.status, 200, JSON.stringify(res.json));
        assert.equal(res.json.data[0].embedding.length, 64);
        controller.abort();
        await running;
      }
    });

    test("an engine killed with SIGKILL rejects run with the cause, and is not restarted", async () => {
      const backend = backendFor(variant);
      const controller = new AbortController();
      const req = request("crash");
      const { running } = await runUntilReady(backend, req, controller.signal);
      const [pid] = await enginePids(req.socket);
      process.kill(pid!, "SIGKILL");
      await assert.rejects(running, (e: Error) => e instanceof EngineFailedError && /killed by SIGKILL/.test(e.message));
      await delay(300);
      assert.deepEqual(await pidsMatching(req.socket), [], "one-shot: no new engine was started");
    });

    test("a model that cannot load rejects with the engine's output tail", async () => {
      const bad = join(dir, "broken.gguf");
      await writeFile(bad, "this is not a gguf file");
      const backend = backendFor(variant);
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
      await backendFor(variant).run(req, controller.signal);
      assert.deepEqual(await pidsMatching(req.socket), []);
    });

    test("abort during loading resolves and leaves nothing", async () => {
      const backend = backendFor(variant);
      const controller = new AbortController();
      const req = request("early-abort");
      const running = backend.run(req, controller.signal);
      await eventually(async () => (await enginePids(req.socket)).length === 1, 5000, "engine to spawn");
      controller.abort();
      await running;
      assert.deepEqual(await pidsMatching(req.socket), []);
    });
  });
}

describe(`llama-server's wrapper (${LLAMA_SERVER_PATH ? "real llama-server" : "llama-server double: our engine behind its command line"})`, () => {
  let dir: string;
  let modelPath: string;
  let server: string;
  before(async () => {
    dir = await tempDir("mr-wrap-");
    modelPath = await tinyModel({ seed: 12 });
    server = LLAMA_SERVER_PATH ?? (await llamaServerDouble(dir));
  });

  test("llama-server gets llama-server's flags for our behaviour; the wrapper answers 421 for other models", async () => {
    // Records its argv, then runs the real binary (or the double).
    const script = join(dir, "recording-llama-server");
    const argsFile = join(dir, "llama-server.args");
    await writeFile(script, `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\nexec '${server}' "$@"\n`);
    await chmod(script, 0o755);
    const backend = new LlamaCppBackend({ llamaServerPath: script });
    await backend.install(AbortSignal.timeout(60_000));
    assert.match(backend.status(), /^Running: llama\.cpp llama-server \(.*recording-llama-server\)/);
    const controller = new AbortController();
    const req: RunRequest = {
      socket: join(dir, "external.sock"),
      model: { name: "test/external", ggufPath: modelPath },
      mode: "completion",
      config: { contextSize: 2048, parallel: 2, runtimeFlags: ["--threads", "1"] },
    };
    const { running } = await runUntilReady(backend, req, controller.signal);
    const res = await postOverSocket(req.socket, "/v1/completions", { model: "test/external", prompt: "hi", max_tokens: 2 });
    assert.equal(res.status, 200);
    const unnamed = await postOverSocket(req.socket, "/v1/completions", { prompt: "hi", max_tokens: 1 });
    assert.equal(unnamed.status, 200, "a request without a model name is served");
    const other = await postOverSocket(req.socket, "/v1/embeddings", { model: "x", input: "hi" });
    assert.equal(other.status, 421);
    assert.match(other.json.error.message, /serves only "test\/external", not "x"/);
    const argv = (await readFile(argsFile, "utf8")).trim().split("\n");
    assert.deepEqual(argv.slice(0, 6), ["-m", modelPath, "--host", `${req.socket}.llama-server.sock`, "--alias", "test/external"]);
    for (const [flag, value] of [["-c", "2048"], ["-np", "2"], ["--threads", "1"]] as const) assert.equal(argv[argv.indexOf(flag) + 1], value, flag);
    for (const flag of ["--jinja", "--metrics", "--no-webui", "-t"]) assert.ok(argv.includes(flag), flag);
    controller.abort();
    await running;
    assert.deepEqual(await pidsMatching(req.socket), []);
  });

  test("stopping it signals llama-server once: a clean shutdown, not its 'second interrupt' exit", async () => {
    // The daemon signals the runner's process group; the wrapper passes a SIGTERM on only when it was
    // sent to the wrapper alone. Twice, llama-server exits from its signal handler mid-shutdown (and may
    // crash there, seconds long), which left the runner "stopping" (daemon-inference's unload count).
    const lines: string[] = [];
    const backend = new LlamaCppBackend({ llamaServerPath: server });
    await backend.install(AbortSignal.timeout(60_000));
    const controller = new AbortController();
    const req: RunRequest = {
      socket: join(dir, "once.sock"),
      model: { name: "test/once", ggufPath: modelPath },
      mode: "completion",
      config: { contextSize: 1024, parallel: 1, runtimeFlags: ["--threads", "1"] },
      onLog: (line) => lines.push(line),
    };
    const { running } = await runUntilReady(backend, req, controller.signal);
    assert.equal((await postOverSocket(req.socket, "/v1/completions", { prompt: "hi", max_tokens: 2 })).status, 200);
    const stopping = performance.now();
    controller.abort();
    await running;
    assert.ok(performance.now() - stopping < 2500, "stopped without waiting for the wrapper to pass the signal on");
    assert.equal(lines.filter((l) => /second interrupt|terminating immediately/i.test(l)).length, 0, lines.slice(-5).join("\n"));
    assert.deepEqual(await pidsMatching(req.socket), []);
  });

  test("no orphan: when the daemon dies without stopping it, llama-server and its wrapper exit", async () => {
    // A shell stands in for the daemon; SIGKILL leaves it no chance to clean up.
    const socket = join(dir, "orphan.sock");
    const inner = `${socket}.llama-server.sock`;
    const daemon = spawn("sh", ["-c", `'${process.execPath}' '${MR_BIN}' llama-server-wrapper '${socket}' m '${server}' -m '${modelPath}' --host '${inner}' -t 1 & wait`], {
      stdio: "ignore",
    });
    const started = async () => (await pidsMatching(inner)).filter((p) => p !== daemon.pid);
    await eventually(async () => (await started()).length === 2, 10_000, "wrapper and llama-server to start");
    const pids = await started();
    daemon.kill("SIGKILL");
    await eventually(() => pids.every((p) => !isAlive(p)), 5000, "llama-server and its wrapper to exit");
  });

  test("an engine that never becomes healthy is stopped after the timeout, with its output, and its whole group dies", async () => {
    // Fault double: a real llama-server always becomes healthy, so a script that
    // prints, forks a helper and never listens stands in for a hung one.
    const script = join(dir, "hung-engine");
    await writeFile(script, `#!/bin/sh\necho "loading forever"\nsleep 300 &\nsleep 300\n`);
    await chmod(script, 0o755);
    const backend = new LlamaCppBackend({ llamaServerPath: script, readyTimeoutMs: 800, stopGraceMs: 500 });
    const req: RunRequest = { socket: join(dir, "hung.sock"), model: { name: "h", ggufPath: modelPath }, mode: "completion" };
    const before = new Set(await pidsMatching("sleep 300"));
    await assert.rejects(backend.run(req, new AbortController().signal), (e: Error) => {
      assert.ok(e instanceof EngineFailedError);
      assert.match(e.message, /did not become healthy within 1 s/);
      assert.match(e.message, /loading forever/);
      return true;
    });
    await eventually(async () => (await pidsMatching("sleep 300")).every((p) => before.has(p)), 3000, "forked helper to die");
  });
});

test("a model with a projector is given llama-server when one is installed; image refusals say what to do", async () => {
  const vision = { name: "ai/v", ggufPath: "/x/model.gguf", mmprojPath: "/x/model.mmproj" };
  const text = { name: "ai/t", ggufPath: "/x/model.gguf" };
  const withServer = new LlamaCppBackend({ llamaServerPath: "/opt/llama-server", defaultEngine: "built-in" });
  assert.equal(await withServer.chooseEngine(vision, undefined), "llama-server");
  assert.equal(await withServer.chooseEngine(text, undefined), "built-in");
  assert.equal(await withServer.chooseEngine(vision, { engine: "built-in" }), "built-in", "a configured engine wins");
  const without = new LlamaCppBackend({ defaultEngine: "built-in" });
  assert.equal(await without.chooseEngine(vision, undefined), "built-in");
  assert.equal(withServer.imageInputRefusal("llama-server", false), null);
  assert.match(without.imageInputRefusal("built-in", false)!, /run: mr install-runner --engine llama-server/);
  assert.match(without.imageInputRefusal("built-in", true)!, /configured to run on the built-in engine/);
});
