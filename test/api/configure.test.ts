import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { startBareDaemon } from "../helpers/daemon.ts";

interface ErrorBody {
  error: { message: string; param?: string };
}
type Config = Array<{ model: string; runtime_flags: string[] }>;
type Ps = Array<{ model_name: string; pid: number; state: string }>;

const post = (d: TestDaemon, path: string, body: unknown) =>
  fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** The command line of a running engine process (Linux /proc). */
const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");

// DMR's `_configure` body over HTTP against a real daemon: strict, nothing dropped with a 202.
describe("POST /engines/_configure is strict", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon();
  });
  after(() => d?.close());

  test("unknown keys, top level or inside llamacpp, are a 400 naming them", async () => {
    const cases: Array<[object, RegExp, string]> = [
      [{ model: "ai/tiny", "context-sise": 1024 }, /Unknown field "context-sise"/, "context-sise"],
      [{ model: "ai/tiny", foo: 1, bar: 2 }, /Unknown fields "foo", "bar"/, "foo"],
      [{ model: "ai/tiny", llamacpp: { "reasoning-budget": 0, think: true } }, /Unknown field "llamacpp.think"/, "llamacpp.think"],
    ];
    for (const [body, message, param] of cases) {
      const res = await post(d, "/engines/_configure", body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const json = (await res.json()) as ErrorBody;
      assert.match(json.error.message, message);
      assert.equal(json.error.param, param);
    }
  });

  test("vllm is a 400 'not supported', naming the key; speculative is checked (test/api/speculative.test.ts)", async () => {
    const res = await post(d, "/engines/llama.cpp/_configure", { model: "ai/tiny", vllm: { "gpu-memory-utilization": 0.9 } });
    assert.equal(res.status, 400);
    const json = (await res.json()) as ErrorBody;
    assert.match(json.error.message, /^"vllm" is not supported yet/);
    assert.equal(json.error.param, "vllm");
    const draft = await post(d, "/engines/llama.cpp/_configure", { model: "ai/tiny", speculative: { draft_model: "ai/absent" } });
    assert.equal(draft.status, 404);
    // null is DMR's "unset" and is fine.
    assert.equal((await post(d, "/engines/_configure", { model: "ai/tiny", speculative: null, vllm: null, keep_alive: "5m" })).status, 202);
  });

  test("a bad reasoning budget is a 400 naming the field", async () => {
    const res = await post(d, "/engines/_configure", { model: "ai/tiny", llamacpp: { "reasoning-budget": -2 } });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as ErrorBody).error.param, "llamacpp.reasoning-budget");
  });
});

describe("_configure carries engine flags across restarts", () => {
  test("llamacpp.reasoning-budget and sampling/KV-cache flags persist and reach the engine", async (t) => {
    const d = await startTestDaemon();
    let closed = false;
    t.after(() => (closed ? undefined : d.close()));
    const configured = await post(d, "/engines/_configure", {
      model: "ai/tiny",
      "runtime-flags": ["--temp", "0", "-n", "2", "-ctk", "f16", "--reasoning-budget", "7"],
      llamacpp: { "reasoning-budget": 0 },
    });
    assert.equal(configured.status, 202, await configured.clone().text());
    const expected = ["--temp", "0", "--predict", "2", "--cache-type-k", "f16", "--reasoning-budget", "0"];
    assert.deepEqual(((await configured.json()) as { runtime_flags: string[] }).runtime_flags, expected);

    // The defaults take effect through the daemon: 2 tokens when the request sets no limit.
    const chat = await post(d, "/v1/chat/completions", { model: "ai/tiny", messages: [{ role: "user", content: "hi" }] });
    assert.equal(chat.status, 200);
    assert.equal(((await chat.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 2);
    const runner = ((await (await fetch(`${d.url}/engines/ps`)).json()) as Ps).find((r) => r.model_name.startsWith("ai/tiny"))!;
    const args = await cmdline(runner.pid);
    assert.equal(args[args.indexOf("--reasoning-budget") + 1], "0");

    // A later llamacpp-only configure keeps the other flags.
    assert.equal((await post(d, "/engines/_configure", { model: "ai/tiny", llamacpp: { "reasoning-budget": 16 } })).status, 202);

    const home = d.home;
    await d.close();
    closed = true;
    const again = await startBareDaemon({ MODEL_RUNNER_HOME: home, MODEL_RUNNER_LOG_LEVEL: "warn" });
    t.after(() => again.close());
    const shown = (await (await fetch(`${again.url}/engines/_configure?model=ai/tiny`)).json()) as Config;
    assert.deepEqual(shown[0]!.runtime_flags, ["--temp", "0", "--predict", "2", "--cache-type-k", "f16", "--reasoning-budget", "16"]);
  });

  test("a runtime flag the engine would refuse is a 400 at configure time, in the engine's words", async (t) => {
    const d = await startTestDaemon();
    t.after(() => d.close());
    const res = await post(d, "/engines/_configure", { model: "ai/tiny", "runtime-flags": ["--yarn-ext-factor", "0.5"] });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as ErrorBody).error.message, /"--yarn-ext-factor" 0.5 is not supported: node-llama-cpp has no YaRN context parameters/);
  });
});
