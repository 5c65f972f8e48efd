import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { waitForHealth } from "../../src/inference/engine-process.ts";
import { ENGINE_PARENT_PIPE_ENV } from "../../src/config.ts";
import { cleanEnv } from "../helpers/cli.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, isAlive, pidsMatching } from "../helpers/processes.ts";
import { createModelDistribution, openStore } from "../../src/distribution/index.ts";

/** Starts `mr serve` as a real process and resolves with its URL once it listens. */
async function serve(home: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [MR_BIN, "serve", "--port", "0"], {
    env: cleanEnv({ MODEL_RUNNER_HOME: home, ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /listening on (\S+)/.exec(line);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`mr serve exited with ${code}: ${stderr}`)));
  });
  return { child, url };
}

async function chat(url: string, model: string, extra: object = {}) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model, messages: [{ role: "user", content: "x" }], max_tokens: 2, ...extra }),
  });
}

describe("mr serve as a process", () => {
  test("SIGTERM lets the in-flight request finish, then stops every engine", async (t) => {
    const home = await tempDir("mr-serve-");
    const dist = createModelDistribution({ store: await openStore({ root: join(home, "models") }) });
    const slow = await tinyModel({ seed: 51, embeddingLength: 384, blockCount: 6, feedForwardLength: 768, heads: 6 });
    await dist.packageModel({ gguf: slow, tags: ["ai/p:latest"] });
    const { child, url } = await serve(home);
    t.after(() => child.kill("SIGKILL"));
    assert.equal((await chat(url, "ai/p")).status, 200);
    const engines = await pidsMatching(join(home, "run"));
    assert.equal(engines.length, 1);
    // Long enough to be in flight when SIGTERM comes (~2-3 s here), short enough to end well inside the 10 s grace
    // even with other test files on the same cores (1,500 tokens took 9 s alone and missed it under load).
    const inFlight = chat(url, "ai/p", { max_tokens: 400 });
    await eventually(async () => {
      const runners = (await (await fetch(`${url}/engines/ps`)).json()) as Array<{ in_flight: number }>;
      return runners[0]?.in_flight === 1;
    }, 5000, "request to be in flight");
    child.kill("SIGTERM");
    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 400);
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
    assert.equal(isAlive(engines[0]!), false);
    assert.deepEqual(await pidsMatching(join(home, "run")), []);
  });

  test("engines die with a SIGKILLed daemon, within 2 s", async (t) => {
    const home = await tempDir("mr-serve-");
    const dist = createModelDistribution({ store: await openStore({ root: join(home, "models") }) });
    await dist.packageModel({ gguf: await tinyModel({ seed: 52 }), tags: ["ai/o:latest"] });
    await dist.packageModel({ gguf: await tinyModel({ seed: 53 }), tags: ["ai/o2:latest"] });
    const first = await serve(home);
    t.after(() => first.child.kill("SIGKILL"));
    assert.equal((await chat(first.url, "ai/o")).status, 200);
    assert.equal((await chat(first.url, "ai/o2")).status, 200);
    const engines = await pidsMatching(join(home, "run"));
    assert.equal(engines.length, 2);
    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    const killedAt = Date.now();
    await eventually(() => engines.every((pid) => !isAlive(pid)), 2000, "engines to exit after their daemon was killed");
    t.diagnostic(`engines gone ${Date.now() - killedAt} ms after the daemon`);
    assert.deepEqual(await pidsMatching(join(home, "run")), []);
    // The next daemon on this home starts clean and serves.
    const second = await serve(home);
    t.after(() => second.child.kill("SIGKILL"));
    assert.equal((await chat(second.url, "ai/o")).status, 200);
    second.child.kill("SIGTERM");
    await once(second.child, "exit");
    assert.deepEqual(await pidsMatching(join(home, "run")), []);
  });

  test("mr engine started by hand does not exit when its stdin closes", async (t) => {
    const dir = await tempDir("mr-eng-");
    const socket = join(dir, "e.sock");
    const child = spawn(process.execPath, [MR_BIN, "engine", "-m", await tinyModel({ seed: 54 }), "--host", socket, "-c", "256"], {
      stdio: ["pipe", "ignore", "pipe"],
      env: cleanEnv({}),
    });
    t.after(() => child.kill("SIGKILL"));
    await waitForHealth(socket, AbortSignal.timeout(30_000));
    child.stdin!.end(); // what a daemon's death looks like to an engine that watches its stdin
    await delay(1000);
    assert.equal(isAlive(child.pid!), true, "a hand-run engine must ignore stdin");
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
  });

  test("an engine the daemon started exits within 1 s of its stdin closing, even while loading", async (t) => {
    const dir = await tempDir("mr-eng-");
    const socket = join(dir, "e.sock");
    const child = spawn(process.execPath, [MR_BIN, "engine", "-m", await tinyModel({ seed: 55 }), "--host", socket, "-c", "256"], {
      stdio: ["pipe", "ignore", "pipe"],
      env: cleanEnv({ [ENGINE_PARENT_PIPE_ENV]: "stdin" }),
    });
    t.after(() => child.kill("SIGKILL"));
    // It listens before it loads: closing stdin now is a daemon dying during the load.
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stderr! }).on("line", (line) => line.includes("listening on") && resolve());
      child.once("exit", (code) => reject(new Error(`engine exited early with ${code}`)));
    });
    const closedAt = Date.now();
    child.stdin!.end();
    await once(child, "exit");
    const ms = Date.now() - closedAt;
    t.diagnostic(`engine exited ${ms} ms after its stdin closed`);
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  test("bad configuration is one clear line and exit code 2", async () => {
    const home = await tempDir("mr-serve-");
    const child = spawn(process.execPath, [MR_BIN, "serve", "--port", "0"], {
      env: cleanEnv({ MODEL_RUNNER_HOME: home, MODEL_RUNNER_MEMORY: "lots" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const [code] = await once(child, "exit");
    assert.equal(code, 2);
    assert.match(stderr, /^Error: MODEL_RUNNER_MEMORY: .*lots/, "the CLI's one error format");
    assert.equal(stderr.trim().split("\n").length, 1);
  });
});
