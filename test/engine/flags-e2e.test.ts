import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { MR_BIN, startEngine, type StartedEngine } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";

interface Chat {
  choices: Array<{ message: { content: string }; finish_reason: string }>;
  usage: { prompt_tokens: number; completion_tokens: number };
}

async function chat(engine: StartedEngine, body: object, headers: Record<string, string> = {}): Promise<{ status: number; json: Chat }> {
  const res = await fetch(`${engine.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ messages: [{ role: "user", content: "hello there" }], ...body }),
  });
  return { status: res.status, json: (await res.json()) as Chat };
}

/** Runs `mr engine ARGS` to its end (it is expected to refuse to start). */
async function refusedStart(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [MR_BIN, "engine", ...args, "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stderr };
}

// Real `mr engine` processes on generated models: the flags take effect, or the engine will not start.
describe("engine flags, end to end", () => {
  let path: string;
  before(async () => {
    path = await tinyModel({ seed: 7 });
  });

  test("--temp 0 -n 3: greedy and 3 tokens by default; a request's own fields override both", async (t) => {
    const engine = await startEngine(["-m", path, "-c", "512", "-t", "1", "--temp", "0", "-n", "3"]);
    t.after(() => engine.stop());
    const a = await chat(engine, {});
    const b = await chat(engine, {});
    assert.equal(a.status, 200);
    assert.equal(a.json.usage.completion_tokens, 3);
    assert.equal(a.json.choices[0]!.finish_reason, "length");
    assert.equal(a.json.choices[0]!.message.content, b.json.choices[0]!.message.content, "temperature 0 is deterministic");
    const longer = await chat(engine, { max_tokens: 6 });
    assert.equal(longer.json.usage.completion_tokens, 6);
    assert.ok(longer.json.choices[0]!.message.content.startsWith(a.json.choices[0]!.message.content), "still greedy");
    const hot = await Promise.all([1, 2, 3, 4].map((seed) => chat(engine, { temperature: 5, seed, max_tokens: 12 })));
    assert.ok(new Set(hot.map((r) => r.json.choices[0]!.message.content)).size > 1, "the request's temperature replaces the default");
  });

  test("--context-shift lets a generation run past the context; without it the slot's end stops it", async (t) => {
    const body = { max_tokens: 400, temperature: 0 };
    const plain = await startEngine(["-m", path, "-c", "256", "-t", "1"]);
    t.after(() => plain.stop());
    const stopped = await chat(plain, body);
    await plain.stop();
    assert.equal(stopped.json.choices[0]!.finish_reason, "length");
    assert.equal(stopped.json.usage.prompt_tokens + stopped.json.usage.completion_tokens, 256);

    const shifting = await startEngine(["-m", path, "-c", "256", "-t", "1", "--context-shift", "--keep", "4"]);
    t.after(() => shifting.stop());
    const shifted = await chat(shifting, body);
    assert.equal(shifted.status, 200);
    assert.equal(shifted.json.usage.completion_tokens, 400);
    // Up to the first shift the output is the same as without one.
    assert.ok(shifted.json.choices[0]!.message.content.startsWith(stopped.json.choices[0]!.message.content.slice(0, 100)));
    // The prompt itself must still fit: that stays llama-server's 400.
    const tooLong = await chat(shifting, { messages: [{ role: "user", content: "hello there ".repeat(200) }] });
    assert.equal(tooLong.status, 400);
    // A request's n_keep replaces --keep: keeping the whole prompt through the shifts changes what follows them.
    const keepAll = await chat(shifting, { ...body, n_keep: -1 });
    assert.equal(keepAll.status, 200);
    assert.equal(keepAll.json.usage.completion_tokens, 400);
    assert.notEqual(keepAll.json.choices[0]!.message.content, shifted.json.choices[0]!.message.content);
    const again = await chat(shifting, body);
    assert.equal(again.json.choices[0]!.message.content, shifted.json.choices[0]!.message.content, "greedy and --keep 4: the same text twice");
  });

  test("memory and KV-cache flags start an engine that generates", async (t) => {
    // q8_0 blocks are 32 wide, so the heads must be at least that.
    const wide = await tinyModel({ seed: 7, embeddingLength: 128, heads: 4 });
    const engine = await startEngine(["-m", wide, "-c", "256", "-t", "1", "--no-mmap", "--mlock", "-fa", "on", "-ctk", "q8_0", "-ctv", "q8_0", "-ub", "64", "-tb", "1", "-dev", "none"]);
    t.after(() => engine.stop());
    const res = await chat(engine, { max_tokens: 4 });
    assert.equal(res.status, 200);
    assert.equal(res.json.usage.completion_tokens, 4);
  });

  test("RoPE flags change greedy output as llama-server's do (GGUF overrides at load)", async () => {
    const body = { messages: [{ role: "user", content: "hello there, how are you doing today my friend" }], max_tokens: 12, temperature: 0 };
    const greedy = async (args: string[]) => {
      const engine = await startEngine(["-m", path, "-c", "256", "-t", "1", ...args]);
      try {
        return (await chat(engine, body)).json.choices[0]!.message.content;
      } finally {
        await engine.stop();
      }
    };
    const base = await greedy([]);
    assert.notEqual(await greedy(["--rope-freq-base", "50"]), base, "an integral --rope-freq-base is applied");
    const scaled = await greedy(["--rope-scale", "4"]);
    assert.notEqual(scaled, base);
    assert.equal(await greedy(["--rope-freq-scale", "0.25"]), scaled, "--rope-freq-scale N is --rope-scale 1/N");
    assert.equal(await greedy(["--rope-scaling", "none", "--rope-scale", "4"]), base, "scaling none never scales");
  });

  test("--api-key-file: every listed key opens the API, comments are not keys", async (t) => {
    const keys = join(await tempDir(), "keys");
    await writeFile(keys, "# team keys\nkey-one\nkey-two\n");
    const engine = await startEngine(["-m", path, "-c", "256", "-t", "1", "--api-key-file", keys, "--api-key", "key-three"]);
    t.after(() => engine.stop());
    for (const key of ["key-one", "key-two", "key-three"]) {
      assert.equal((await chat(engine, { max_tokens: 1 }, { authorization: `Bearer ${key}` })).status, 200, key);
    }
    assert.equal((await chat(engine, { max_tokens: 1 }, { authorization: "Bearer # team keys" })).status, 401);
    assert.equal((await chat(engine, { max_tokens: 1 })).status, 401);
  });

  test("--timeout closes a connection that stays silent", async (t) => {
    const engine = await startEngine(["-m", path, "-c", "256", "-t", "1", "--timeout", "1"]);
    t.after(() => engine.stop());
    const { hostname, port } = new URL(engine.baseUrl);
    const socket = connect(Number(port), hostname);
    const started = Date.now();
    await once(socket, "close");
    const ms = Date.now() - started;
    assert.ok(ms >= 900 && ms < 10_000, `closed after ${ms} ms`);
  });

  test("refused flags: the engine exits non-zero with one line naming the flag and why", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [["--yarn-ext-factor", "1"], 2, /^mr engine: --yarn-ext-factor 1 is not supported: node-llama-cpp has no YaRN/],
      [["-sm", "row"], 2, /^mr engine: -sm row is not supported/],
      [["--no-kv-offload"], 2, /^mr engine: --no-kv-offload is not supported/],
      [["--embeddings", "--pooling", "mean"], 1, /^mr engine: --pooling mean is not supported: node-llama-cpp uses the model's own pooling type \(none\)/],
      [["--api-key-file", "/nonexistent/keys"], 1, /^mr engine: --api-key-file: cannot read \/nonexistent\/keys/],
    ];
    for (const [args, code, message] of cases) {
      const { code: got, stderr } = await refusedStart(["-m", path, "-t", "1", ...args]);
      assert.equal(got, code, `${args.join(" ")}: ${stderr}`);
      const last = stderr.trim().split("\n").at(-1)!;
      assert.match(last, message, args.join(" "));
    }
  });
});
