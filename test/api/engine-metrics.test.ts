import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { withLabels } from "../../src/api/engine-metrics.ts";
import { tinyModel } from "../helpers/models.ts";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";

describe("engine metrics in the daemon's /metrics", () => {
  test("a sample gets the labels added, whatever labels it had", () => {
    const extra = 'backend="llama.cpp",model="ai/x",mode="completion"';
    assert.deepEqual(withLabels("llamacpp:n_decode_total 7", extra), { name: "llamacpp:n_decode_total", line: `llamacpp:n_decode_total{${extra}} 7` });
    assert.equal(withLabels('x_bucket{le="0.5"} 3 1700000000', extra)!.line, `x_bucket{le="0.5",${extra}} 3 1700000000`);
    // A `}` or escaped quote inside a label value does not end the label set.
    assert.equal(withLabels('x{a="}\\"{"} 1', extra)!.line, `x{a="}\\"{",${extra}} 1`);
    assert.equal(withLabels("x{} 1", extra)!.line, `x{${extra}} 1`);
    assert.equal(withLabels("{le=\"1\"} 3", extra), null);
    assert.equal(withLabels("x{a=\"unterminated} 1", extra), null);
  });

  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon();
    // A second chat model (an embedding model makes no text).
    await d.addModel(await tinyModel({ seed: 8 }), "ai/tiny-two:latest");
  });
  after(() => d?.close());

  test("two models served: each engine's llamacpp: series, labelled with backend, model and mode, HELP and TYPE once", async () => {
    const chat = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }),
    });
    assert.equal(chat.status, 200, await chat.text());
    const embed = await fetch(`${d.url}/v1/embeddings`, { method: "POST", body: JSON.stringify({ model: "ai/tiny-embed", input: "hello" }) });
    assert.equal(embed.status, 200, await embed.text());

    const res = await fetch(`${d.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain/);
    const text = await res.text();
    const lines = text.split("\n");
    // The daemon's own series are still there.
    assert.ok(lines.some((l) => l.startsWith("model_runner_inference_requests_total{")), "daemon metrics kept");

    const sample = (name: string, model: string, mode: string) => {
      const line = lines.find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`) && l.includes(`mode="${mode}"`));
      assert.ok(line, `${name} for ${model} (${mode}) in:\n${lines.filter((l) => l.startsWith(name)).join("\n")}`);
      assert.match(line, /backend="llama\.cpp"/);
      return Number(line.split(" ").at(-1));
    };
    assert.ok(sample("llamacpp:tokens_predicted_total", "ai/tiny", "completion") >= 3);
    assert.ok(sample("llamacpp:prompt_tokens_total", "ai/tiny", "completion") > 0);
    sample("llamacpp:prompt_tokens_total", "ai/tiny-embed", "embedding");
    sample("llamacpp:requests_processing", "ai/tiny-embed", "embedding");

    for (const kind of ["HELP", "TYPE"]) {
      assert.equal(lines.filter((l) => l.startsWith(`# ${kind} llamacpp:prompt_tokens_total `)).length, 1, kind);
    }
    // Both engines' samples of a family follow its one header.
    const header = lines.indexOf(lines.find((l) => l.startsWith("# TYPE llamacpp:prompt_tokens_total "))!);
    assert.ok(lines[header + 1]!.startsWith("llamacpp:prompt_tokens_total{") && lines[header + 2]!.startsWith("llamacpp:prompt_tokens_total{"));
  });

  test("two models in the same mode: each its own series, told apart by `model`; an unloaded engine's series go with it", async () => {
    for (const [model, n] of [["ai/tiny", 2], ["ai/tiny-two", 5]] as const) {
      const res = await fetch(`${d.url}/v1/completions`, { method: "POST", body: JSON.stringify({ model, prompt: "count", max_tokens: n, ignore_eos: true }) });
      assert.equal(res.status, 200, await res.text());
    }
    const scrape = async () => (await (await fetch(`${d.url}/metrics`)).text()).split("\n");
    const predicted = (lines: string[], model: string) =>
      lines.filter((l) => l.startsWith("llamacpp:tokens_predicted_total{") && l.includes(`model="${model}"`) && l.includes('mode="completion"'));
    let lines = await scrape();
    const tiny = predicted(lines, "ai/tiny");
    const other = predicted(lines, "ai/tiny-two");
    assert.equal(tiny.length, 1, tiny.join("\n"));
    assert.equal(other.length, 1, other.join("\n"));
    assert.match(other[0]!, /backend="llama\.cpp"/);
    assert.notEqual(tiny[0], other[0]);
    assert.ok(Number(other[0]!.split(" ").at(-1)) >= 5, other[0]);

    const unloaded = await fetch(`${d.url}/engines/unload`, { method: "POST", body: JSON.stringify({ models: ["ai/tiny-two"] }) });
    assert.equal(unloaded.status, 200, await unloaded.text());
    lines = await scrape();
    assert.deepEqual(predicted(lines, "ai/tiny-two"), []);
    assert.equal(lines.filter((l) => l.startsWith("llamacpp:") && l.includes('model="ai/tiny-two"')).length, 0);
    assert.equal(predicted(lines, "ai/tiny").length, 1, "the other engine's series stay");
  });
});
