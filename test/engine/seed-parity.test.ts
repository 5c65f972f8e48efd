import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, test } from "node:test";
import { Mt19937 } from "../../src/engine/mt19937.ts";
import { startEngine } from "../helpers/engine.ts";
import { LLAMA_SERVER_PATH } from "../helpers/engines.ts";
import { tinyModel } from "../helpers/models.ts";

// A seeded request samples the same tokens on both of the engine's sampling paths and in llama-server.

describe("llama.cpp's random numbers", () => {
  test("mt19937 as the C++ standard defines it (its 10000th output from the default seed)", () => {
    const rng = new Mt19937(5489);
    let value = 0;
    for (let i = 0; i < 10000; i++) value = rng.next();
    assert.equal(value, 4123659995);
  });

  test("the values libstdc++'s distributions give for the same seeds (printed by a C++ program built with g++ 12)", () => {
    const d = new Mt19937(42);
    assert.deepEqual([d.uniformDouble(), d.uniformDouble(), d.uniformDouble()], [0.79654298428784598, 0.18343478789336848, 0.77969099761266125]);
    const f = new Mt19937(42);
    assert.deepEqual([f.uniformFloat(), f.uniformFloat(), f.uniformFloat()].map((x) => x.toPrecision(9)), ["0.374540120", "0.796543002", "0.950714290"]);
    const c = new Mt19937(7);
    const weights = [0.1, 0.5, 0.2, 0.2].map(Math.fround);
    assert.deepEqual(Array.from({ length: 8 }, () => c.discrete(weights)), [1, 1, 3, 1, 1, 1, 0, 1]);
    // One weight: no draw, as std::discrete_distribution.
    const e = new Mt19937(7);
    assert.equal(e.discrete([1]), 0);
    assert.equal(e.next(), 327741615);
  });
});

/** Seeded requests at temperature 1 that both paths sample alike. */
const CASES: Array<Record<string, unknown>> = [
  {},
  { top_k: 0, top_p: 0.9 },
  { temperature: 0.7, top_k: 20 },
  { xtc_probability: 0.5, xtc_threshold: 0.05 },
  { repeat_penalty: 1.5, presence_penalty: 0.5, frequency_penalty: 0.3 },
  { repeat_penalty: 1.3, logit_bias: [[5, 2.5], [9, -1]] },
];
/**
 * Requests the chain samples as llama-server does: samplers only the chain
 * has, and `top_k: 0` with no sampler that sorts, where llama-server draws in
 * vocabulary order and the binding's native path (which sorts) does not.
 */
const CHAIN_CASES: Array<Record<string, unknown>> = [
  { top_k: 0 },
  { top_k: 0, min_p: 0.2, seed: 9 },
  { top_k: 0, top_p: 1, min_p: 0, seed: 7 },
  { repeat_penalty: 1.3, top_k: 0 },
  { typical_p: 0.9 },
  { repeat_penalty: 1.3, typical_p: 0.8, seed: 3 },
  { mirostat: 2 },
  { repeat_penalty: 1.3, mirostat: 2 },
  { dynatemp_range: 0.5 },
  { top_n_sigma: 1.5, top_k: 0 },
  { repeat_penalty: 1.2, dry_multiplier: 0.8 },
];

async function completion(baseUrl: string, fields: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${baseUrl}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "hello there", n_predict: 24, seed: 42, temperature: 1, cache_prompt: false, ...fields }),
  });
  const body = (await res.json()) as { content?: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.content!;
}

describe("seeded sampling", () => {
  test("the sampler chain (n_probs) draws the tokens the binding's native sampler draws", async (t) => {
    const engine = await startEngine(["-m", await tinyModel({ seed: 11 }), "-t", "1", "-c", "512", "-np", "1"]);
    t.after(() => engine.stop());
    for (const fields of CASES) {
      assert.equal(await completion(engine.baseUrl, { ...fields, n_probs: 1 }), await completion(engine.baseUrl, fields), JSON.stringify(fields));
    }
  });

  test("both paths draw what llama-server draws; the chain also with its own samplers and with top_k 0", { skip: LLAMA_SERVER_PATH ? false : "no llama-server binary: set MR_TEST_LLAMA_SERVER" }, async (t) => {
    const gguf = await tinyModel({ seed: 11 });
    const engine = await startEngine(["-m", gguf, "-t", "1", "-c", "512", "-np", "1"]);
    t.after(() => engine.stop());
    const server = spawn(LLAMA_SERVER_PATH!, ["-m", gguf, "-t", "1", "-c", "512", "-np", "1", "--host", "127.0.0.1", "--port", "0", "--no-webui"], { stdio: ["ignore", "ignore", "pipe"] });
    t.after(async () => {
      if (server.exitCode === null && server.signalCode === null) {
        server.kill("SIGKILL");
        await once(server, "exit");
      }
    });
    const url = await new Promise<string>((resolve, reject) => {
      let log = "";
      server.stderr!.on("data", (d: Buffer) => {
        log += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
        if (m) resolve(m[1]!);
      });
      server.once("exit", (code) => reject(new Error(`llama-server exited with ${code}:\n${log}`)));
    });
    for (;;) {
      const res = await fetch(`${url}/health`).catch(() => null);
      if (res?.status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const fields of [...CASES, ...CHAIN_CASES]) {
      const theirs = await completion(url, fields);
      if (CASES.includes(fields)) assert.equal(await completion(engine.baseUrl, fields), theirs, JSON.stringify(fields));
      assert.equal(await completion(engine.baseUrl, { ...fields, n_probs: 1 }), theirs, `${JSON.stringify(fields)} on the chain path`);
    }
  });
});
