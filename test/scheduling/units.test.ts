import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import {
  computeMemoryBudget,
  estimateRunnerMemory,
  formatDuration,
  parseByteSize,
  parseConfigureBody,
  parseDuration,
  parseUnloadBody,
  readGgufShape,
  shellSplit,
  validateRuntimeFlags,
} from "../../src/scheduling/index.ts";
import { tempDir } from "../helpers/models.ts";

test("durations: seconds, Go-style units, 0 and negatives", () => {
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("-1"), Infinity);
  assert.equal(parseDuration("-5m"), Infinity);
  assert.equal(parseDuration(90), 90_000);
  assert.equal(parseDuration("90"), 90_000);
  assert.equal(parseDuration(-1), Infinity);
  for (const bad of ["", "5 minutes", "m", "1d", "abc"]) assert.throws(() => parseDuration(bad), /Invalid duration/);
  for (const ms of [0, Infinity, 300_000, 3_600_000, 90_000, 250]) assert.equal(parseDuration(formatDuration(ms)), ms);
});

test("shell splitting of raw runtime flags", () => {
  assert.deepEqual(shellSplit(`-c 4096  --threads "2" 'a b' c\\ d ""`), ["-c", "4096", "--threads", "2", "a b", "c d", ""]);
  assert.throws(() => shellSplit(`-c "4096`), /unterminated/);
});

test("runtime flag validation lifts context and parallel out and normalizes the rest", () => {
  assert.deepEqual(validateRuntimeFlags("llama.cpp", ["-c", "8192", "--parallel=4", "-t", "2", "-ngl", "all", "-b=256", "--threads", "3"]), {
    contextSize: 8192,
    parallel: 4,
    passThrough: ["--gpu-layers", "all", "--batch-size", "256", "--threads", "3"],
  });
  assert.throws(() => validateRuntimeFlags("vllm", ["-t", "1"]), /"-t" is not allowed for backend "vllm"/);
  assert.throws(() => validateRuntimeFlags("llama.cpp", ["4096"]), /values must follow their flag/);
  assert.throws(() => validateRuntimeFlags("llama.cpp", ["-np", "0"]), /at least 1/);
});

async function writeReranker(path: string): Promise<string> {
  await writeTinyModel(path, { reranker: true });
  return path;
}

test("the memory estimate reads the GGUF header: weights + f16 KV cache + overhead", async (t) => {
  const dir = await tempDir("mr-s-");
  const path = join(dir, "m.gguf");
  await writeTinyModel(path, { blockCount: 3, embeddingLength: 128, heads: 8, contextLength: 2048 });
  const shape = await readGgufShape(path);
  assert.deepEqual(shape, {
    architecture: "llama",
    blockCount: 3,
    embeddingLength: 128,
    headCount: 8,
    headCountKv: 8,
    keyLength: 16,
    valueLength: 16,
    contextLength: 2048,
    hasRankingHead: false,
    isEmbeddingModel: false,
  });
  assert.equal((await readGgufShape(await writeReranker(join(dir, "r.gguf"))))?.hasRankingHead, true, "cls.output.weight is a ranking head");
  const estimate = estimateRunnerMemory({ weightsBytes: 1_000_000, shape, contextTokens: 1000, overheadBytes: 10 });
  // 3 layers × 1000 tokens × 8 KV heads × (16 + 16) × 2 bytes
  assert.equal(estimate.kvCacheBytes, 3 * 1000 * 8 * 32 * 2);
  assert.equal(estimate.totalBytes, estimate.weightsBytes + estimate.kvCacheBytes + estimate.overheadBytes);
  assert.equal(estimate.overheadBytes, 10 + Math.ceil(0.05 * (1_000_000 + estimate.kvCacheBytes)));
});

test("budget and byte sizes", () => {
  assert.equal(computeMemoryBudget({ overrideBytes: 123 }), 123);
  assert.equal(computeMemoryBudget({ totalRamBytes: 10_000, reserveBytes: 1000 }), 9000);
  assert.equal(computeMemoryBudget({ gpuFreeBytes: 5000, totalRamBytes: 10_000, reserveBytes: 1000 }), 4000);
  assert.equal(parseByteSize("16GiB"), 16 * 1024 ** 3);
  assert.equal(parseByteSize("8g"), 8e9);
  assert.equal(parseByteSize("1024"), 1024);
  assert.throws(() => parseByteSize("lots"), /MODEL_RUNNER_MEMORY/);
});

test("DMR request bodies map onto the scheduler's requests", async () => {
  assert.deepEqual(await parseConfigureBody({ model: "m", "context-size": -1, "runtime-flags": ["-t", "1"], keep_alive: "-1" }, "llama.cpp"), {
    model: "m",
    backend: "llama.cpp",
    mode: undefined,
    contextSize: undefined,
    runtimeFlags: ["-t", "1"],
    rawRuntimeFlags: undefined,
    keepAlive: "-1",
  });
  await assert.rejects(parseConfigureBody({ "context-size": 5 }), /"model"/);
  assert.deepEqual(await parseUnloadBody({ all: true }), { all: true, backend: undefined, models: undefined });
  await assert.rejects(parseUnloadBody({}), /"all": true or a non-empty "models"/);
});
