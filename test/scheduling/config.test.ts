import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { RunnerBusyError, RuntimeFlagError, createScheduler, parseConfigureBody } from "../../src/scheduling/index.ts";
import { BackendRegistry, LlamaCppBackend } from "../../src/inference/index.ts";
import { ENGINE_SETTINGS, engineRequest, harness } from "./helpers.ts";
import { eventually } from "../helpers/processes.ts";

test("a configuration round-trips, persists across scheduler instances and is what the engine runs with", async (t) => {
  const h = await harness(t);
  const { config, restarted } = await h.scheduler.configure(
    await parseConfigureBody({ model: "a", "context-size": 1024, "raw-runtime-flags": "--threads 1 -np 2", keep_alive: "10m" }),
  );
  assert.equal(restarted, false);
  assert.deepEqual(config, {
    backend: "llama.cpp",
    model: "a",
    modelId: h.models.get("a")!.id,
    mode: "completion",
    contextSize: 1024,
    parallel: 2,
    runtimeFlags: ["--threads", "1"],
    keepAlive: "10m",
  });
  assert.deepEqual(h.scheduler.getConfigs("a"), [config]);
  assert.deepEqual(h.scheduler.getConfigs("zzz"), []);
  assert.equal(JSON.parse(await readFile(h.configPath, "utf8")).configs.length, 1);

  // A new daemon reads the same file: settings are not lost on restart.
  const again = await createScheduler({
    backends: new BackendRegistry([new LlamaCppBackend()]),
    resolveModel: h.resolve,
    runDir: h.runDir,
    configPath: h.configPath,
    memoryBudgetBytes: 1024 ** 3,
    ...ENGINE_SETTINGS,
  });
  assert.deepEqual(again.getConfigs(), [config]);
  await again.shutdown(0);

  const settings = await h.scheduler.effectiveSettings("a", "completion");
  assert.equal(settings.contextSize, 1024);
  assert.equal(settings.trainedContextSize, 4096);
  const lease = await h.scheduler.acquire("a", "completion");
  const row = h.scheduler.ps()[0]!;
  assert.deepEqual([row.contextSize, row.parallel, row.keepAlive], [1024, 2, "10m"]);
  const models = await engineRequest(lease, "GET", "/v1/models");
  assert.equal(models.body.data[0].meta.n_ctx, 2048);
  assert.equal(models.body.data[0].meta.n_ctx_slot, 1024, "each request gets the configured context size");
  lease.release();

  // Fields left out keep their stored values.
  const { config: updated } = await h.scheduler.configure({ model: "a", keepAlive: 30 });
  assert.deepEqual([updated.contextSize, updated.parallel, updated.keepAlive], [1024, 2, "30s"]);
  assert.equal(h.scheduler.ps()[0]!.keepAlive, "30s", "a keep-alive change applies without a restart");
});

test("reconfiguring a busy runner answers 409; an idle one is restarted with the new settings", async (t) => {
  const h = await harness(t);
  const lease = await h.scheduler.acquire("a", "completion");
  const error = await h.scheduler.configure({ model: "a", contextSize: 768 }).then(
    () => assert.fail("should refuse"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RunnerBusyError);
  assert.equal(error.status, 409);
  assert.deepEqual(h.scheduler.getConfigs(), [], "nothing is stored when refused");
  lease.release();

  const oldPid = h.scheduler.ps()[0]!.pid;
  const { restarted } = await h.scheduler.configure({ model: "a", contextSize: 768 });
  assert.equal(restarted, true);
  await eventually(() => {
    const rows = h.scheduler.ps();
    return rows.length === 1 && rows[0]!.state === "ready" && rows[0]!.contextSize === 768;
  }, 10_000, "the runner to come back with the new context");
  assert.notEqual(h.scheduler.ps()[0]!.pid, oldPid);
  assert.ok(h.events.some((e) => e.type === "evict" && e.reason === "reconfigure"));
});

test("runtime flags are checked against the allowlist and errors name the flag", async (t) => {
  const h = await harness(t);
  const cases: Array<[object, RegExp]> = [
    [{ runtimeFlags: ["--host", "0.0.0.0"] }, /"--host".*sets it itself/],
    [{ runtimeFlags: ["--port=8080"] }, /"--port"/],
    [{ runtimeFlags: ["-m", "x"] }, /"-m"/],
    [{ runtimeFlags: ["--threads", "/etc/passwd"] }, /"--threads".*paths/],
    [{ rawRuntimeFlags: "--no-such-flag" }, /"--no-such-flag" is not allowed for backend "llama.cpp"/],
    [{ rawRuntimeFlags: "--yarn-beta-slow 1" }, /"--yarn-beta-slow" 1 is not supported: node-llama-cpp has no YaRN/],
    [{ rawRuntimeFlags: "-b 256 -ub 128" }, /"-ub" 128 is not supported/],
    [{ rawRuntimeFlags: "--api-key-file keys" }, /"--api-key-file".*sets it itself/],
    [{ rawRuntimeFlags: "-c 'big'" }, /"-c" needs an integer/],
    [{ rawRuntimeFlags: "-t" }, /"-t" needs a value/],
    [{ rawRuntimeFlags: "-c 512", contextSize: 1024 }, /disagree/],
  ];
  for (const [fields, message] of cases) {
    await assert.rejects(h.scheduler.configure({ model: "a", ...fields }), (e: Error & { status?: number }) => {
      assert.equal(e.status, 400, e.message);
      assert.match(e.message, message);
      return true;
    });
  }
  await assert.rejects(h.scheduler.configure({ model: "a", rawRuntimeFlags: "--gpu-layers" }), RuntimeFlagError);
  await assert.rejects(h.scheduler.configure({ model: "a", keepAlive: "soon" }), /Invalid duration/);
  await assert.rejects(h.scheduler.configure({ model: "a", mode: "dance" }), /Unknown backend mode/);
  assert.deepEqual(h.scheduler.getConfigs(), []);
});

test("unload stops idle runners now and busy ones when they finish", async (t) => {
  const h = await harness(t);
  const busy = await h.scheduler.acquire("a", "completion");
  (await h.scheduler.acquire("b", "completion")).release();
  assert.deepEqual(await h.scheduler.unload({ models: ["b"] }), { unloaded: 1, deferred: 0 });
  assert.deepEqual(await h.scheduler.unload({ all: true }), { unloaded: 0, deferred: 1 });
  assert.equal(busy.signal.aborted, false);
  busy.release();
  await eventually(() => h.scheduler.ps().length === 0, 10_000, "all runners to stop");
});
