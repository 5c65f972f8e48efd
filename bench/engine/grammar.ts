// Constrained vs unconstrained decoding speed on one model, in one process.
//
//   node --import tsx bench/engine/grammar.ts [model.gguf] [--tokens N] [--runs N]
//
// Without a model path it generates a ~26M-parameter random llama (n_embd 512,
// 8 layers) so that the model, not the sampler, dominates as with real models;
// `--tiny` uses the 0.5 MB test model instead (where per-token overhead is
// everything). Both modes sample the same prompt with the same settings; the
// constrained one uses a JSON-schema grammar whose documents are long enough
// that every run stops at the token limit, so both time the same token count.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { DEFAULT_SAMPLING } from "../../src/engine/generate.ts";
import { ModelHost } from "../../src/engine/model-host.ts";
import { parseEngineArgs } from "../../src/engine/options.ts";
import { grammarForJsonSchema } from "../../src/engine/grammar/schema-gbnf.ts";

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const tokens = flag("--tokens", 256);
const runs = flag("--runs", 5);
const tiny = argv.includes("--tiny");
let modelPath = argv.find((a, i) => !a.startsWith("--") && !["--tokens", "--runs"].includes(argv[i - 1] ?? ""));
let dir: string | null = null;
if (!modelPath) {
  dir = await mkdtemp(join(tmpdir(), "bench-grammar-"));
  modelPath = join(dir, "bench.gguf");
  await writeTinyModel(modelPath, tiny ? { seed: 1 } : { seed: 1, embeddingLength: 512, blockCount: 8, feedForwardLength: 1024, heads: 8 });
}

const schema = {
  type: "object",
  properties: {
    title: { type: "string", maxLength: 40 },
    items: {
      type: "array",
      minItems: 64,
      maxItems: 64,
      items: { type: "object", properties: { name: { type: "string", maxLength: 24 }, count: { type: "integer" }, ok: { type: "boolean" } } },
    },
  },
};

const host = await ModelHost.load(parseEngineArgs(["-m", modelPath, "-c", "2048"]));
try {
  const grammar = await grammarForJsonSchema(host.grammars, schema, "schema");
  const prompt = host.chatPrompt([{ role: "user", content: "list the things in the model runner as json" }]);
  const signal = new AbortController().signal;
  const once = async (constrained: boolean, seed: number) => {
    const params = { ...DEFAULT_SAMPLING, seed, maxTokens: tokens, stop: [] };
    const r = await host.complete(prompt, params, () => {}, signal, constrained ? { grammar } : {});
    return { perSecond: (r.completionTokens / r.generationMs) * 1000, n: r.completionTokens, finish: r.finishReason };
  };
  await once(false, 0); // warm-up
  await once(true, 0);
  const free: number[] = [];
  const json: number[] = [];
  const counts = { free: 0, json: 0 };
  for (let i = 1; i <= runs; i++) {
    // Alternate, so drift on a noisy machine hits both sides alike.
    const a = await once(false, i);
    const b = await once(true, i);
    free.push(a.perSecond);
    json.push(b.perSecond);
    counts.free += a.n;
    counts.json += b.n;
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const f = median(free);
  const j = median(json);
  console.log(`model: ${modelPath}${dir ? (tiny ? " (generated, tiny)" : " (generated, n_embd 512, 8 layers)") : ""}`);
  console.log(`threads: ${parseEngineArgs(["-m", modelPath]).threads}, ${runs} runs of up to ${tokens} tokens each, median tokens/s`);
  console.log(`${"mode".padEnd(16)}${"tokens/s".padStart(10)}${"tokens".padStart(10)}`);
  console.log(`${"unconstrained".padEnd(16)}${f.toFixed(1).padStart(10)}${String(counts.free).padStart(10)}`);
  console.log(`${"json_schema".padEnd(16)}${j.toFixed(1).padStart(10)}${String(counts.json).padStart(10)}`);
  console.log(`constrained / unconstrained: ${((j / f) * 100).toFixed(1)}% (goal >= 80%)`);
} finally {
  await host.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
}
