import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runMr } from "../helpers/cli.ts";
import { buildToolsPathWithout } from "../helpers/processes.ts";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { LLAMA_SERVER_PATH } from "../helpers/engines.ts";

const post = (d: TestDaemon, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

/** Runs `body` with this process's PATH (the in-process daemon's builds use it) lacking cmake. */
async function withoutCmake(body: () => Promise<void>): Promise<void> {
  const saved = process.env.PATH;
  process.env.PATH = await buildToolsPathWithout("cmake");
  try {
    await body();
  } finally {
    process.env.PATH = saved;
  }
}

describe("llama.cpp engine selection and install routes (no llama-server installed)", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({ MODEL_RUNNER_LLAMA_CPP_ENGINE: "built-in" });
  });
  after(() => d?.close());

  test("_configure engine is checked, persisted and shown; a model set to an uninstalled llama-server is a 412", async () => {
    const bad = await post(d, "/engines/_configure", { model: "ai/tiny", engine: "vllm" });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /Unknown engine "vllm".*built-in, llama-server/);
    const ok = await post(d, "/engines/_configure", { model: "ai/tiny", engine: "llama-server" });
    assert.equal(ok.status, 202);
    assert.equal(((await ok.json()) as { engine: string }).engine, "llama-server");
    const stored = JSON.parse(await readFile(join(d.home, "config", "runners.json"), "utf8")) as { configs: Array<{ engine?: string }> };
    assert.equal(stored.configs[0]!.engine, "llama-server");
    const rows = (await (await fetch(`${d.url}/engines/_configure?model=ai/tiny`)).json()) as Array<{ engine: string }>;
    assert.equal(rows[0]!.engine, "llama-server");
    const chat = await post(d, "/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    assert.equal(chat.status, 412);
    assert.match(((await chat.json()) as { error: { message: string } }).error.message, /run: mr install-runner --engine llama-server/);
    // Back to the built-in engine: it serves, and ps says which engine does.
    assert.equal((await post(d, "/engines/_configure", { model: "ai/tiny", engine: "built-in" })).status, 202);
    const served = await post(d, "/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    assert.equal(served.status, 200);
    const ps = (await (await fetch(`${d.url}/engines/ps`)).json()) as Array<{ engine: string }>;
    assert.equal(ps[0]!.engine, "built-in");
    const ollamaPs = (await (await fetch(`${d.url}/api/ps`)).json()) as { models: Array<{ engine: string }> };
    assert.equal(ollamaPs.models[0]!.engine, "built-in");
  });

  test("install-backend / uninstall-backend: DMR's routes, strict bodies", async () => {
    const version = await post(d, "/engines/install-backend", { backend: "llama.cpp", version: "b1234" });
    assert.equal(version.status, 400);
    assert.match(((await version.json()) as { error: { message: string } }).error.message, /"version" cannot be chosen/);
    assert.equal((await post(d, "/engines/install-backend", { engine: "nope" })).status, 400);
    assert.equal((await post(d, "/engines/install-backend", { backend: "vllm" })).status, 404);
    assert.equal((await post(d, "/engines/install-backend", { engine: "built-in", gpu: "rocm" })).status, 400);
    // Installing the built-in engine compiles it (~15 minutes): without cmake on PATH it stops at the tool check.
    await withoutCmake(async () => {
      const builtIn = await post(d, "/engines/install-backend", { engine: "built-in", gpu: "cpu" });
      const status = ((await (await fetch(`${d.url}/engines/status`)).json()) as Record<string, string>)["llama.cpp"]!;
      assert.match(status, /^Running: llama\.cpp built-in/, "the checked engine still serves");
      if (/native CPU build/.test(status)) {
        assert.equal(builtIn.status, 200);
      } else {
        assert.equal(builtIn.status, 500);
        const body = (await builtIn.json()) as { error: { code: string; message: string } };
        assert.equal(body.error.code, "build_tool_missing");
        assert.match(body.error.message, /^Cannot build the built-in engine for this machine: cmake not found on PATH/);
      }
    });
    const removed = await post(d, "/engines/uninstall-backend", { engine: "llama-server" });
    assert.equal(removed.status, 200);
    assert.deepEqual(await removed.json(), { backend: "llama.cpp", engine: "llama-server", removed: false, status: ((await (await fetch(`${d.url}/engines/status`)).json()) as Record<string, string>)["llama.cpp"] });
  });

  test("mr install-runner / uninstall-runner / configure --engine talk to those routes", async () => {
    const env = { MODEL_RUNNER_HOST: d.url, MODEL_RUNNER_HOME: d.home };
    await withoutCmake(async () => {
      const installed = await runMr(["install-runner", "--engine", "built-in", "--gpu", "cpu"], { env });
      if (installed.code === 0) {
        assert.match(installed.stdout, /^llama\.cpp \(built-in\) is installed \(Running: llama\.cpp built-in \(.*native CPU build/);
      } else {
        assert.equal(installed.code, 1);
        assert.match(installed.stderr, /^checking the engine\n/);
        assert.match(installed.stderr.trim().split("\n").at(-1)!, /^Error: Cannot build the built-in engine for this machine: cmake not found on PATH/);
      }
    });
    const badGpu = await runMr(["install-runner", "--gpu", "rocm"], { env });
    assert.equal(badGpu.code, 2);
    assert.match(badGpu.stderr, /--gpu must be one of auto, cpu, cuda, vulkan, metal, got "rocm"/);
    const wrong = await runMr(["install-runner", "--engine", "vllm"], { env });
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--engine must be one of built-in, llama-server, got "vllm"/);
    const removed = await runMr(["uninstall-runner", "--engine", "llama-server"], { env });
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, "Nothing of llama.cpp (llama-server) was installed.\n");
    const configured = await runMr(["configure", "--engine", "llama-server", "ai/tiny-embed"], { env });
    assert.equal(configured.code, 0, configured.stderr);
    const shown = await runMr(["configure", "show", "--json", "ai/tiny-embed"], { env });
    assert.equal((JSON.parse(shown.stdout) as Array<{ engine: string }>)[0]!.engine, "llama-server");
  });
});

describe("mr reinstall-runner", () => {
  test("removes what install-runner put there, then installs again (here the llama-server MODEL_RUNNER_LLAMA_SERVER names)", { skip: LLAMA_SERVER_PATH ? false : "no llama-server binary: set MR_TEST_LLAMA_SERVER" }, async () => {
    const d = await startTestDaemon({ MODEL_RUNNER_LLAMA_SERVER: LLAMA_SERVER_PATH! });
    try {
      const env = { MODEL_RUNNER_HOST: d.url, MODEL_RUNNER_HOME: d.home };
      const r = await runMr(["reinstall-runner"], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Nothing of llama\.cpp \(llama-server\) was installed\.\nllama\.cpp \(llama-server\) is installed/);
      const builtIn = await runMr(["reinstall-runner", "--engine", "built-in"], { env });
      assert.equal(builtIn.code, 2);
      assert.match(builtIn.stderr, /the built-in engine ships inside mr: run mr install-runner --engine built-in/);
    } finally {
      await d.close();
    }
  });
});
