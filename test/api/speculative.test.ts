import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runMr } from "../helpers/cli.ts";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { ENGINE_VARIANTS } from "../helpers/engines.ts";
import { tinyModel } from "../helpers/models.ts";

interface ErrorBody {
  error: { message: string; param?: string; code?: string | number };
}
interface Timings {
  predicted_n: number;
  draft_n?: number;
  draft_n_accepted?: number;
}
type Ps = Array<{ model_name: string; pid: number; memory_bytes: number }>;

const post = (d: TestDaemon, path: string, body: unknown) =>
  fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A target whose blocks barely move the residual stream, and its first block alone as a draft: same vocabulary, good acceptance. */
const TARGET = { seed: 11, embeddingLength: 128, blockCount: 4, feedForwardLength: 256, blockScale: 0.2 } as const;

/** Adds the speculative test models: ai/target, its draft ai/target-draft, and two models whose vocabularies differ (ai/think, ai/tools). */
async function addModels(d: TestDaemon): Promise<void> {
  await d.addModel(await tinyModel(TARGET), "ai/target:latest");
  await d.addModel(await tinyModel({ ...TARGET, draftBlocks: 1 }), "ai/target-draft:latest");
  // Same size, a different token at the same id (<think> vs <tool_call>): llama.cpp refuses such a pair.
  await d.addModel(await tinyModel({ seed: 5, thinking: true }), "ai/think:latest");
  await d.addModel(await tinyModel({ seed: 6, toolCallTokens: true }), "ai/tools:latest");
}

/** The command line of a running process (Linux /proc). */
const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");

describe("_configure speculative: DMR's {draft_model, num_tokens, min_acceptance_rate}", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", MODEL_RUNNER_LLAMA_CPP_ENGINE: "built-in" });
    await addModels(d);
  });
  after(() => d?.close());

  test("stored, shown in DMR's field names and persisted; draft_model \"\" turns it off", async () => {
    const res = await post(d, "/engines/_configure", { model: "ai/target", speculative: { draft_model: "ai/target-draft", num_tokens: 5, min_acceptance_rate: 0.25 } });
    assert.equal(res.status, 202, await res.clone().text());
    const rows = (await (await fetch(`${d.url}/engines/_configure?model=ai/target`)).json()) as Array<{ speculative: unknown }>;
    assert.deepEqual(rows[0]!.speculative, { draft_model: "ai/target-draft", num_tokens: 5, min_acceptance_rate: 0.25 });
    const stored = JSON.parse(await readFile(join(d.home, "config", "runners.json"), "utf8")) as { configs: Array<{ speculative?: unknown }> };
    assert.deepEqual(stored.configs[0]!.speculative, { draftModel: "ai/target-draft", numTokens: 5, minAcceptanceRate: 0.25 });
    // Another setting leaves it as it is; "" removes it.
    assert.equal((await post(d, "/engines/_configure", { model: "ai/target", keep_alive: "1m" })).status, 202);
    let again = (await (await fetch(`${d.url}/engines/_configure?model=ai/target`)).json()) as Array<{ speculative: unknown }>;
    assert.deepEqual(again[0]!.speculative, { draft_model: "ai/target-draft", num_tokens: 5, min_acceptance_rate: 0.25 });
    assert.equal((await post(d, "/engines/_configure", { model: "ai/target", speculative: { draft_model: "" } })).status, 202);
    again = (await (await fetch(`${d.url}/engines/_configure?model=ai/target`)).json()) as Array<{ speculative: unknown }>;
    assert.equal(again[0]!.speculative, null);
  });

  test("a draft with another vocabulary is a 400 naming both models; nothing is stored", async () => {
    const res = await post(d, "/engines/_configure", { model: "ai/think", speculative: { draft_model: "ai/tools" } });
    assert.equal(res.status, 400);
    const body = (await res.json()) as ErrorBody;
    assert.match(body.error.message, /The draft model ai\/tools cannot be used for speculative decoding with ai\/think: their vocabularies do not match \(token \d+ differs \("<think>" vs "<tool_call>"\)\)/);
    assert.equal(body.error.param, "speculative.draft_model");
    const rows = (await (await fetch(`${d.url}/engines/_configure?model=ai/think`)).json()) as unknown[];
    assert.deepEqual(rows, []);
  });

  test("a draft not in the store is a 404 naming it; bad fields and modes are 400s naming them", async () => {
    const missing = await post(d, "/engines/_configure", { model: "ai/target", speculative: { draft_model: "ai/nope" } });
    assert.equal(missing.status, 404);
    assert.match(((await missing.json()) as ErrorBody).error.message, /The draft model ai\/nope configured for ai\/target is not in the store/);
    const cases: Array<[object, string]> = [
      [{ draft_model: "ai/target-draft", num_tokens: -1 }, "speculative.num_tokens"],
      [{ draft_model: "ai/target-draft", num_tokens: 2.5 }, "speculative.num_tokens"],
      [{ draft_model: "ai/target-draft", min_acceptance_rate: 1.5 }, "speculative.min_acceptance_rate"],
      [{ draft_model: "ai/target-draft", draft_tokens: 3 }, "speculative.draft_tokens"],
      [{ num_tokens: 3 }, "speculative.draft_model"],
    ];
    for (const [speculative, param] of cases) {
      const res = await post(d, "/engines/_configure", { model: "ai/target", speculative });
      assert.equal(res.status, 400, JSON.stringify(speculative));
      assert.equal(((await res.json()) as ErrorBody).error.param, param);
    }
    const embedding = await post(d, "/engines/_configure", { model: "ai/target", mode: "embedding", speculative: { draft_model: "ai/target-draft" } });
    assert.equal(embedding.status, 400);
    assert.match(((await embedding.json()) as ErrorBody).error.message, /speculative decoding is for generation/);
    // The draft's flags are the configuration's, not runtime flags.
    const flags = await post(d, "/engines/_configure", { model: "ai/target", "runtime-flags": ["--spec-draft-n-max", "4"] });
    assert.equal(flags.status, 400);
  });

  test("mr configure --speculative-*: sent, shown; bad values are one line and a non-zero exit", async () => {
    const env = { MODEL_RUNNER_HOST: d.url, MODEL_RUNNER_HOME: d.home };
    const ok = await runMr(["configure", "--speculative-draft-model", "ai/target-draft", "--speculative-num-tokens", "4", "--speculative-min-acceptance-rate", "0.1", "ai/target"], { env });
    assert.equal(ok.code, 0, ok.stderr);
    const shown = await runMr(["configure", "show", "--json", "ai/target"], { env });
    assert.deepEqual((JSON.parse(shown.stdout) as Array<{ speculative: unknown }>)[0]!.speculative, { draft_model: "ai/target-draft:latest", num_tokens: 4, min_acceptance_rate: 0.1 });
    const table = await runMr(["configure", "show", "ai/target"], { env });
    assert.match(table.stdout, /DRAFT[\s\S]*ai\/target-draft:latest \(4 tokens\)/);
    for (const [args, message] of [
      [["--speculative-num-tokens", "4", "ai/target"], /need --speculative-draft-model/],
      [["--speculative-draft-model", "ai/target-draft", "--speculative-min-acceptance-rate", "2", "ai/target"], /from 0 to 1/],
      [["--speculative-draft-model", "ai/tools", "ai/think"], /ai\/tools:latest cannot be used for speculative decoding with ai\/think:latest: their vocabularies do not match/],
    ] as const) {
      const bad = await runMr(["configure", ...args], { env });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    }
    assert.equal((await runMr(["configure", "--speculative-draft-model", "", "ai/target"], { env })).code, 0);
  });
});

// Speculative decoding must not change greedy output; each engine reports how many draft tokens it took.
for (const variant of ENGINE_VARIANTS) describe(`speculative decoding with a generated draft [${variant.engine}]`, { skip: variant.skip }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...variant.env });
    await addModels(d);
  });
  after(() => d?.close());

  const complete = async () => {
    const res = await post(d, "/engines/v1/completions", { model: "ai/target", prompt: "hello the world is", max_tokens: 40, temperature: 0 });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as { choices: Array<{ text: string }>; timings?: Timings };
  };
  const ps = async () => ((await (await fetch(`${d.url}/engines/ps`)).json()) as Ps).find((r) => r.model_name === "ai/target")!;

  test("temperature 0: the same text with and without the draft; draft_n and draft_n_accepted in timings; -md on the command line", async () => {
    const plain = await complete();
    assert.equal(plain.timings?.draft_n, undefined);
    const plainMemory = (await ps()).memory_bytes;
    const configured = await post(d, "/engines/_configure", { model: "ai/target", speculative: { draft_model: "ai/target-draft", num_tokens: 4 } });
    assert.equal(configured.status, 202, await configured.clone().text());
    const drafted = await complete();
    assert.equal(drafted.choices[0]!.text, plain.choices[0]!.text);
    assert.ok(plain.choices[0]!.text.length > 10, plain.choices[0]!.text);
    const t = drafted.timings!;
    assert.ok(t.draft_n! > 0, JSON.stringify(t));
    assert.ok(t.draft_n_accepted! > 0 && t.draft_n_accepted! <= t.draft_n!, JSON.stringify(t));
    const runner = await ps();
    assert.ok(runner.memory_bytes > plainMemory, "the estimate counts the draft model");
    const args = await cmdline(runner.pid);
    const md = args.indexOf("-md");
    assert.ok(md > 0 && args[md + 1]!.endsWith(".gguf"), args.join(" "));
    assert.equal(args[args.indexOf("--spec-type") + 1], "draft-simple");
    assert.equal(args[args.indexOf("--spec-draft-n-max") + 1], "4");
  });
});
