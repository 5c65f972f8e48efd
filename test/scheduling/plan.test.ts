import assert from "node:assert/strict";
import { test } from "node:test";
import { LlamaCppBackend } from "../../src/inference/index.ts";
import { chooseVictims, type EvictionCandidate } from "../../src/scheduling/admission.ts";
import type { RunnerConfig } from "../../src/scheduling/config-store.ts";
import type { GgufShape } from "../../src/scheduling/memory-estimate.ts";
import { ModelCapabilityError } from "../../src/scheduling/errors.ts";
import { checkCapability, checkConfigure, engineConfigOf, mergeConfigure, planRunner, type PlanDefaults } from "../../src/scheduling/plan.ts";

// Pure functions: no engine, no files.
const backend = new LlamaCppBackend();
const defaults: PlanDefaults = { contextSize: 4096, parallel: 1, keepAliveMs: 300_000, overheadBytes: 1000 };
const model = { id: "sha256:m", files: { name: "m", ggufPath: "/nonexistent.gguf" }, sizeBytes: 10_000 };
const shape = (contextLength: number): GgufShape => ({
  architecture: "llama", blockCount: 2, embeddingLength: 64, headCount: 4, headCountKv: 4, keyLength: 16, valueLength: 16, contextLength, hasRankingHead: false, isEmbeddingModel: false,
});
const config = (extra: Partial<RunnerConfig>): RunnerConfig => ({ backend: "llama.cpp", model: "m", modelId: "sha256:m", mode: "completion", runtimeFlags: [], ...extra });

test("planRunner: context size from config, then the model's packaging, then the default capped to the trained length", () => {
  assert.equal(planRunner(defaults, backend, "m", model, "completion", shape(2048), undefined).contextSize, 2048);
  assert.equal(planRunner(defaults, backend, "m", model, "completion", shape(32768), undefined).contextSize, 4096);
  assert.equal(planRunner(defaults, backend, "m", model, "completion", null, undefined).contextSize, 4096);
  assert.equal(planRunner(defaults, backend, "m", { ...model, contextSize: 1024 }, "completion", shape(32768), undefined).contextSize, 1024);
  assert.equal(planRunner(defaults, backend, "m", model, "completion", shape(32768), config({ contextSize: 8192 })).contextSize, 8192);
  // 0 = the model's trained length.
  assert.equal(planRunner(defaults, backend, "m", model, "completion", shape(32768), config({ contextSize: 0 })).contextSize, 32768);
});

test("planRunner: slots, flags, keep-alive and the memory estimate follow the configuration", () => {
  const plan = planRunner(defaults, backend, "m", model, "embedding", shape(4096), config({ parallel: 3, runtimeFlags: ["--temp", "0"], keepAlive: "10s", mode: "embedding" }));
  assert.equal(plan.parallel, 3);
  assert.deepEqual(plan.runtimeFlags, ["--temp", "0"]);
  assert.equal(plan.keepAliveMs, 10_000);
  assert.equal(plan.key, "llama.cpp\u0000sha256:m\u0000embedding");
  const single = planRunner(defaults, backend, "m", model, "embedding", shape(4096), config({ mode: "embedding" }));
  assert.ok(plan.memory.totalBytes > single.memory.totalBytes, "three slots need a bigger KV cache");
  assert.equal(single.keepAliveMs, 300_000);
  assert.notEqual(plan.engineConfig, single.engineConfig);
  assert.equal(engineConfigOf(config({ keepAlive: "1m" })), engineConfigOf(undefined), "keep-alive needs no restart");
});

test("the _configure merge: absent fields keep stored values; given flags replace flags and their parallel count", () => {
  const previous = config({ contextSize: 2048, parallel: 2, runtimeFlags: ["--temp", "0.5"], keepAlive: "5m" });
  const keep = mergeConfigure(checkConfigure({ model: "m", keepAlive: "1m" }, "llama.cpp"), "m", "sha256:m", previous);
  assert.deepEqual(keep, { ...previous, keepAlive: "1m" });
  const flags = mergeConfigure(checkConfigure({ model: "m", rawRuntimeFlags: "--ctx-size 1024" }, "llama.cpp"), "m", "sha256:m", previous);
  assert.equal(flags.contextSize, 1024);
  assert.equal(flags.parallel, undefined);
  assert.deepEqual(flags.runtimeFlags, []);
  assert.equal(flags.keepAlive, "5m");
  const fresh = mergeConfigure(checkConfigure({ model: "m", mode: "embedding" }, "llama.cpp"), "m", "sha256:m", undefined);
  assert.deepEqual(fresh, { backend: "llama.cpp", model: "m", modelId: "sha256:m", mode: "embedding", runtimeFlags: [] });
  assert.throws(() => checkConfigure({ model: "m", contextSize: 512, rawRuntimeFlags: "-c 1024" }, "llama.cpp"), /disagree/);
  assert.throws(() => checkConfigure({ model: "m", keepAlive: "soon" }, "llama.cpp"), /keep_alive/);
});

interface Fake extends EvictionCandidate {
  name: string;
}
const r = (name: string, memoryBytes: number, lastUseSeq: number, state: "idle" | "busy" | "stopping" = "idle"): Fake => ({
  name, memoryBytes, lastUseSeq, idle: state === "idle", stopping: state === "stopping",
});

test("chooseVictims: null when it fits; least recently used idle runners first; none if eviction cannot make room", () => {
  const names = (v: Fake[] | null) => v?.map((x) => x.name) ?? null;
  assert.equal(chooseVictims([r("a", 30, 1)], 50, 100, 8), null);
  assert.deepEqual(names(chooseVictims([r("a", 40, 2), r("b", 40, 1), r("c", 10, 3)], 40, 100, 8)), ["b"]);
  assert.deepEqual(names(chooseVictims([r("a", 40, 2), r("b", 40, 1)], 90, 100, 8)), ["b", "a"]);
  // Busy runners cannot go, and evicting the idle one alone would not be enough: evict nothing.
  assert.deepEqual(names(chooseVictims([r("a", 50, 1, "busy"), r("b", 40, 2)], 60, 100, 8)), []);
  // A stopping runner's memory counts until it exits, so nothing fits now, but there is nothing more to evict.
  assert.deepEqual(names(chooseVictims([r("a", 80, 1, "stopping")], 50, 100, 8)), []);
  // The runner count limit evicts too.
  assert.deepEqual(names(chooseVictims([r("a", 1, 2), r("b", 1, 1)], 1, 100, 2)), ["b"]);
});

test("_configure context-size: an int32 of at least 0 (-1 = unset at the wire); anything else is a 400 naming it", async () => {
  const { parseConfigureBody } = await import("../../src/scheduling/index.ts");
  for (const bad of [1e12, 2 ** 31, -5, -2, 1.5]) {
    const request = await parseConfigureBody({ model: "m", "context-size": bad }).catch((e: unknown) => e);
    const error = request instanceof Error ? request : (() => { try { checkConfigure(request as never, "llama.cpp"); } catch (e) { return e; } return null; })();
    assert.ok(error instanceof Error && (error as { status?: number }).status === 400, `${bad}: ${String(error)}`);
    assert.match((error as Error).message, /context-size/, String(bad));
  }
  assert.equal((await parseConfigureBody({ model: "m", "context-size": -1 })).contextSize, undefined);
  assert.equal(checkConfigure(await parseConfigureBody({ model: "m", "context-size": 2 ** 31 - 1 }), "llama.cpp").contextSize, 2 ** 31 - 1);
});

test("checkCapability: reranking needs a ranking head when the header can tell", () => {
  const withHead = (hasRankingHead: boolean | null) => planRunner(defaults, backend, "m", model, "reranking", { ...shape(512), hasRankingHead }, undefined);
  assert.throws(() => checkCapability(withHead(false)), (e: unknown) => e instanceof ModelCapabilityError && e.status === 400 && /cannot rerank/.test(e.message));
  checkCapability(withHead(true));
  checkCapability(withHead(null)); // a split model's other shards may hold the head: the engine decides
  checkCapability(planRunner(defaults, backend, "m", model, "reranking", null, undefined));
  checkCapability(planRunner(defaults, backend, "m", model, "embedding", { ...shape(512), hasRankingHead: false }, undefined));
});

test("speculative: merged (\"\" removes it), part of the engine configuration, and the draft counted in the memory estimate", () => {
  const checked = (speculative: { draftModel: string; numTokens?: number } | undefined) =>
    checkConfigure({ model: "m", ...(speculative ? { speculative } : {}) }, "llama.cpp");
  const withDraft = mergeConfigure(checked({ draftModel: "d", numTokens: 4 }), "m", "sha256:m", undefined);
  assert.deepEqual(withDraft.speculative, { draftModel: "d", numTokens: 4 });
  assert.deepEqual(mergeConfigure(checked(undefined), "m", "sha256:m", withDraft).speculative, { draftModel: "d", numTokens: 4 });
  assert.equal("speculative" in mergeConfigure(checked({ draftModel: "" }), "m", "sha256:m", withDraft), false);
  assert.notEqual(engineConfigOf(withDraft), engineConfigOf(config({})));
  assert.throws(() => checkConfigure({ model: "m", mode: "embedding", speculative: { draftModel: "d" } }, "llama.cpp"), /speculative decoding is for generation/);

  const draftModel = { id: "sha256:d", files: { name: "d", ggufPath: "/draft.gguf" }, sizeBytes: 3_000 };
  const draft = { ref: "d", model: draftModel, shape: shape(4096), numTokens: 4, minAcceptanceRate: undefined };
  const without = planRunner(defaults, backend, "m", model, "completion", shape(4096), withDraft);
  const withIt = planRunner(defaults, backend, "m", model, "completion", shape(4096), withDraft, {}, draft);
  // The draft's weights and a KV cache as long as the model's (same shape here).
  assert.equal(withIt.memory.draftBytes, 3_000 + without.memory.kvCacheBytes);
  assert.ok(withIt.memory.totalBytes >= without.memory.totalBytes + withIt.memory.draftBytes);
  assert.equal(without.memory.draftBytes, 0);
});
