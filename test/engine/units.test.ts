import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createEngineApp } from "../../src/engine/server.ts";
import { defaultThreads, parseEngineArgs } from "../../src/engine/options.ts";
import { SlotPool } from "../../src/engine/slot-pool.ts";
import { StopMatcher } from "../../src/engine/stop-matcher.ts";
import { ReasoningSplitter } from "../../src/engine/reasoning.ts";
import { HERMES_CALL_SYNTAX, prefixGbnfRules, ToolCallParser } from "../../src/engine/tools.ts";

describe("engine arguments", () => {
  test("llama-server flag names and a .sock host", () => {
    const o = parseEngineArgs(["-m", "a.gguf", "--host", "/run/x.sock", "-c", "8192", "-np", "4", "--embeddings", "-a", "ai/x", "-t", "3", "-ngl", "0", "--jinja"]);
    assert.deepEqual(o.listen, { kind: "socket", path: "/run/x.sock" });
    assert.equal(o.contextSize, 8192);
    assert.equal(o.parallel, 4);
    assert.equal(o.embeddings, true);
    assert.equal(o.alias, "ai/x");
    assert.equal(o.threads, 3);
    assert.equal(o.gpuLayers, 0);
  });

  test("long forms with = and TCP defaults", () => {
    const o = parseEngineArgs(["--model=a.gguf", "--ctx-size=0", "--parallel=2", "--port", "9000"]);
    assert.deepEqual(o.listen, { kind: "tcp", host: "127.0.0.1", port: 9000 });
    assert.equal(o.contextSize, 0);
    assert.equal(o.parallel, 2);
    assert.equal(o.threads, defaultThreads());
  });

  test("--metrics and --slots/--no-slots, with llama-server's defaults (metrics off, slots on)", () => {
    const d = parseEngineArgs(["-m", "a.gguf"]);
    assert.equal(d.metrics, false);
    assert.equal(d.slots, true);
    const o = parseEngineArgs(["-m", "a.gguf", "--metrics", "--no-slots"]);
    assert.equal(o.metrics, true);
    assert.equal(o.slots, false);
    assert.equal(parseEngineArgs(["-m", "a.gguf", "--no-slots", "--slots"]).slots, true);
  });

  test("unknown flags and bad values are refused with the flag named", () => {
    assert.throws(() => parseEngineArgs(["-m", "a", "--ctx-sise", "5"]), /unknown argument: --ctx-sise \(did you mean --ctx-size\?\)/);
    assert.throws(() => parseEngineArgs(["-m", "a", "-c", "big"]), /-c needs an integer/);
    assert.throws(() => parseEngineArgs(["-m", "a", "-np", "0"]), /-np must be at least 1/);
    assert.throws(() => parseEngineArgs(["-c", "5"]), /--model is required/);
    assert.throws(() => parseEngineArgs(["-m"]), /-m needs a value/);
  });

  test("threads leave a core free and never drop below one", () => {
    assert.equal(defaultThreads(1), 1);
    assert.equal(defaultThreads(2), 1);
    assert.equal(defaultThreads(16), 15);
  });
});

describe("stop sequences", () => {
  test("holds back a possible prefix and stops at the match", () => {
    const m = new StopMatcher(["STOP"]);
    assert.deepEqual(m.push("hello S"), { emit: "hello ", stopped: null });
    assert.deepEqual(m.push("T"), { emit: "", stopped: null });
    assert.deepEqual(m.push("Xy"), { emit: "STXy", stopped: null });
    assert.deepEqual(m.push(" and STO"), { emit: " and ", stopped: null });
    assert.deepEqual(m.push("P tail"), { emit: "", stopped: "STOP" });
  });

  test("the earliest of several stops wins; flush returns held text", () => {
    const m = new StopMatcher(["bb", "a"]);
    assert.deepEqual(m.push("xxbba"), { emit: "xx", stopped: "bb" });
    const n = new StopMatcher(["end"]);
    assert.deepEqual(n.push("the en"), { emit: "the ", stopped: null });
    assert.equal(n.flush(), "en");
  });
});

describe("slot pool", () => {
  test("first come, first served; aborted waiters leave the queue", async () => {
    const pool = new SlotPool(["a"]);
    const signal = new AbortController().signal;
    const first = await pool.acquire(signal);
    const controller = new AbortController();
    const order: string[] = [];
    const second = pool.acquire(controller.signal).then((s) => order.push(`second:${s}`));
    const third = pool.acquire(signal).then((s) => order.push(`third:${s}`));
    assert.equal(pool.waiting, 2);
    controller.abort(new Error("gone"));
    await assert.rejects(second, /gone/);
    assert.equal(pool.waiting, 1);
    pool.release(first);
    await third;
    assert.deepEqual(order, ["third:a"]);
  });

  test("pick chooses among free slots", async () => {
    const pool = new SlotPool([1, 2, 3]);
    const got = await pool.acquire(new AbortController().signal, (free) => free.indexOf(3));
    assert.equal(got, 3);
    assert.equal(pool.idle, 2);
  });

  test("pick -1 waits for one given slot without holding up the others", async () => {
    const pool = new SlotPool(["a", "b"]);
    const signal = new AbortController().signal;
    const a = await pool.acquire(signal, (free) => free.indexOf("a"));
    let erased = false;
    const waitsForA = pool.acquire(signal, (free) => free.indexOf("a")).then((s) => ((erased = true), s));
    assert.equal(pool.waiting, 1);
    // A request that takes any slot gets the free one at once.
    assert.equal(await pool.acquire(signal), "b");
    assert.equal(erased, false);
    pool.release(a);
    assert.equal(await waitsForA, "a");
    assert.equal(pool.waiting, 0);
  });
});

describe("engine while loading", () => {
  test("/health and inference answer 503 Loading model", async (t) => {
    const app = createEngineApp({ host: null, apiKeys: [], samplingDefaults: {}, modelId: "m" });
    t.after(() => app.close());
    const health = await app.inject({ method: "GET", url: "/health" });
    assert.equal(health.statusCode, 503);
    assert.deepEqual(health.json(), { error: { code: 503, message: "Loading model", type: "unavailable_error" } });
    const chat = await app.inject({ method: "POST", url: "/v1/chat/completions", payload: { messages: [{ role: "user", content: "x" }] } });
    assert.equal(chat.statusCode, 503);
  });

  test("an API key guards all but health and models", async (t) => {
    const app = createEngineApp({ host: null, apiKeys: ["k"], samplingDefaults: {}, modelId: "m" });
    t.after(() => app.close());
    assert.equal((await app.inject({ method: "GET", url: "/health" })).statusCode, 503);
    assert.equal((await app.inject({ method: "GET", url: "/v1/models" })).statusCode, 200);
    const denied = await app.inject({ method: "POST", url: "/v1/chat/completions", payload: {} });
    assert.equal(denied.statusCode, 401);
    assert.equal(denied.json().error.type, "authentication_error");
    const bearer = await app.inject({ method: "POST", url: "/tokenize", headers: { authorization: "Bearer k" }, payload: { content: "x" } });
    assert.equal(bearer.statusCode, 503);
    const header = await app.inject({ method: "POST", url: "/tokenize", headers: { "x-api-key": "k" }, payload: { content: "x" } });
    assert.equal(header.statusCode, 503);
  });
});

describe("capability flags and stream parsers", () => {
  test("reranking, pooling and reasoning flags parse as llama-server's", () => {
    const rr = parseEngineArgs(["-m", "m.gguf", "--reranking"]);
    assert.equal(rr.reranking, true);
    assert.equal(parseEngineArgs(["-m", "m.gguf", "--embeddings", "--pooling", "rank"]).reranking, true);
    assert.equal(parseEngineArgs(["-m", "m.gguf", "--rerank"]).reranking, true);
    assert.equal(parseEngineArgs(["-m", "m.gguf"]).reasoningBudget, -1);
    assert.equal(parseEngineArgs(["-m", "m.gguf", "--reasoning-budget", "0"]).reasoningBudget, 0);
    assert.throws(() => parseEngineArgs(["-m", "m.gguf", "--pooling", "max"]), /--pooling/);
    assert.throws(() => parseEngineArgs(["-m", "m.gguf", "--reasoning-format", "x"]), /--reasoning-format/);
  });

  test("the reasoning splitter finds tags split across chunks", () => {
    const text = "  <think>plan it</think>\n\nthe answer";
    for (const size of [1, 2, 3, 7, text.length]) {
      const s = new ReasoningSplitter("<think>", "</think>", false);
      let reasoning = "";
      let content = "";
      for (let i = 0; i < text.length; i += size) {
        const part = s.push(text.slice(i, i + size));
        reasoning += part.reasoning;
        content += part.content;
      }
      const rest = s.flush();
      assert.equal(reasoning + rest.reasoning, "plan it", `chunk size ${size}`);
      assert.equal(content + rest.content, "the answer", `chunk size ${size}`);
    }
    const plain = new ReasoningSplitter("<think>", "</think>", false);
    assert.deepEqual(plain.push("<b>no thought"), { reasoning: "", content: "<b>no thought" });
  });

  test("call text in the template's syntax streams as the name once, then the exact arguments", () => {
    const text = 'xx", "arguments": {"a": {"b": [1, 2]}, "c": "}"}\n}\n</tool_call>\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>';
    for (const size of [1, 4, text.length]) {
      let n = 0;
      const p = new ToolCallParser(HERMES_CALL_SYNTAX, ["f", "xx"], () => `call-${n++}`, { afterTrigger: false, parallel: true });
      const deltas: any[] = [];
      deltas.push(...p.push('<tool_call>\n{"name": "'));
      for (let i = 0; i < text.length; i += size) deltas.push(...p.push(text.slice(i, i + size)));
      assert.deepEqual(deltas[0], { index: 0, id: "call-0", type: "function", function: { name: "xx", arguments: "" } });
      assert.equal(p.calls.length, 2);
      assert.deepEqual(JSON.parse(p.calls[0]!.function.arguments), { a: { b: [1, 2] }, c: "}" });
      assert.equal(p.calls[1]!.function.name, "f");
      assert.equal(deltas.filter((d) => d.index === 0 && !d.id).map((d) => d.function.arguments).join(""), p.calls[0]!.function.arguments);
      assert.equal(p.isDone, false, "parallel calls may go on");
    }
    const single = new ToolCallParser(HERMES_CALL_SYNTAX, ["f"], () => "c", { afterTrigger: true, parallel: false });
    single.push('\n{"name": "f", "arguments": {"x": 1}\n\n}\n</tool_call>');
    assert.equal(single.isDone, true);
    assert.equal(single.calls[0]!.function.arguments, '{"x": 1}');
  });

  test("GBNF rules are renamed, literals and classes are not", () => {
    const g = 'root ::= "root" item [a-z]{1,3} # root\nitem ::= "\\"" root-x\nroot-x ::= [\\]item]';
    assert.equal(prefixGbnfRules(g, "p-"), 'p-root ::= "root" p-item [a-z]{1,3} # root\np-item ::= "\\"" p-root-x\np-root-x ::= [\\]item]');
  });
});
