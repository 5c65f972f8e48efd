import assert from "node:assert/strict";
import { test } from "node:test";
import { startFakeSearchApis } from "../doubles/fake-search-apis.ts";
import { runMr } from "../helpers/cli.ts";

const hub = Array.from({ length: 7 }, (_, i) => ({
  name: i === 3 ? "smollm2" : `model${i}`,
  description: i === 5 ? "A small llama for tests" : `Model number ${i}`,
  pull_count: 1000 * i,
  star_count: i,
}));
const hf = [
  { id: "bartowski/Llama-3.2-1B-Instruct-GGUF", downloads: 50_000, likes: 40, tags: ["gguf"] },
  { id: "someone/llama-safetensors", downloads: 90_000, likes: 3, tags: ["safetensors"] },
  { id: "unsloth/SmolLM2-GGUF", downloads: 2_000, likes: 9, tags: ["gguf"] },
];

test("mr search: Docker Hub ai/ (all pages) and Hugging Face GGUF repos, table and --json", async (t) => {
  const apis = await startFakeSearchApis({ hub, hf, hubPageSize: 3 });
  t.after(() => apis.close());
  const env = { MODEL_RUNNER_HUB_URL: apis.url, HF_ENDPOINT: apis.url, MODEL_RUNNER_HOST: "127.0.0.1:1" };

  const all = await runMr(["search", "--json", "llama"], { env });
  assert.equal(all.code, 0, all.stderr);
  const results = JSON.parse(all.stdout) as Array<{ name: string; source: string; downloads: number; stars: number; description: string; updated: string | null }>;
  assert.deepEqual(
    results.map((r) => [r.name, r.source]),
    [
      ["ai/model5", "dockerhub"], // matched by description, on the second page
      ["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF", "huggingface"], // the safetensors repo is filtered out
    ],
  );
  assert.equal(results[1]!.downloads, 50_000);

  const table = await runMr(["search", "--source", "dockerhub", "-n", "2"], { env });
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split("\n");
  assert.match(lines[0]!, /^NAME\s+DESCRIPTION\s+SOURCE\s+DOWNLOADS\s+STARS$/);
  assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)[0]), ["ai/model6", "ai/model5"], "most pulled first, -n per source");

  const hfOnly = await runMr(["search", "--source", "huggingface", "smol"], { env });
  assert.match(hfOnly.stdout, /hf\.co\/unsloth\/SmolLM2-GGUF\s.*Hugging Face/);
  assert.ok(apis.requests.some((r) => r.startsWith("GET /api/models?search=smol&filter=gguf")));
});

test("mr search: bad --source is a usage error; one source down is a warning; both down fail", async (t) => {
  const apis = await startFakeSearchApis({ hub, hf, failHub: true });
  t.after(() => apis.close());
  const env = { MODEL_RUNNER_HUB_URL: apis.url, HF_ENDPOINT: apis.url };
  const bad = await runMr(["search", "--source", "github", "x"], { env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--source must be one of all, dockerhub, huggingface/);

  const partial = await runMr(["search", "smol"], { env });
  assert.equal(partial.code, 0, partial.stderr);
  assert.match(partial.stderr, /Warning: Docker Hub search failed: 503/);
  assert.match(partial.stdout, /SmolLM2-GGUF/);

  const down = await runMr(["search", "--source", "dockerhub", "smol"], { env });
  assert.equal(down.code, 1);
  assert.equal(down.stderr.trim().split("\n").length, 1);
  assert.match(down.stderr, /Docker Hub search failed: 503/);
});
