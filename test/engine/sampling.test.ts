import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Token } from "node-llama-cpp";
import { mapOptions } from "../../src/api/ollama/options.ts";
import { completionPlan, chatPlan, generationLimit, promptsOf } from "../../src/engine/request-fields.ts";
import { chatCompletionRequest, completionRequest, parseRequest } from "../../src/engine/requests.ts";
import { dryPenalties } from "../../src/engine/dry.ts";
import { SamplerChain } from "../../src/engine/sampler-chain.ts";
import { DEFAULT_SAMPLING, samplesNatively, samplingFrom, type SamplingParams } from "../../src/engine/sampling.ts";

// How request fields become sampling settings, which path samples them, and the engine's own sampler chain.

const vocab = { size: 100, tokenizeText: (text: string) => [...text].map((c) => c.charCodeAt(0) % 100) as Token[] };
const params = (fields: object, logprobs: SamplingParams["logprobs"] = null) => samplingFrom(fields, null, logprobs, vocab);
const chatBody = (fields: object) => parseRequest(chatCompletionRequest, { messages: [{ role: "user", content: "x" }], ...fields });

describe("sampling settings", () => {
  test("llama-server's defaults when fields are absent; -1 seeds are random", () => {
    const p = params({});
    assert.equal(p.temperature, 0.8);
    assert.equal(p.topK, 40);
    assert.equal(p.repeatLastN, 64);
    assert.deepEqual(p.samplers, DEFAULT_SAMPLING.samplers);
    assert.equal(params({ seed: -1 }).seed, null);
    assert.equal(params({ seed: 5 }).seed, 5);
  });

  test("the generation limit: n_predict, then max_completion_tokens, then max_tokens; -1 is none", () => {
    assert.equal(generationLimit({ n_predict: 3, max_tokens: 10 }, 16), 3);
    assert.equal(generationLimit({ max_completion_tokens: 4, max_tokens: 10 }, 16), 4);
    assert.equal(generationLimit({ max_tokens: -1 }, 16), null);
    assert.equal(generationLimit({}, 16), 16);
  });

  test("samplers: names with llama-server's aliases, or letters; unknown ones are a 400", () => {
    assert.deepEqual(params({ samplers: ["Top-K", "nucleus", "temp", "typ", "minp"] }).samplers, ["top_k", "top_p", "temperature", "typ_p", "min_p"]);
    assert.deepEqual(params({ samplers: "ekypmxt" }).samplers, ["penalties", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]);
    assert.throws(() => params({ samplers: ["wat"] }), /unknown sampler "wat"/);
    assert.throws(() => params({ samplers: "kq" }), /unknown sampler "q"/);
  });

  test("logit_bias forms sum per token; false bans; texts bias each of their tokens", () => {
    const bias = params({ logit_bias: { "5": 1, "7": false } }).logitBias;
    assert.equal(bias.get(5 as Token), 1);
    assert.equal(bias.get(7 as Token), -Infinity);
    const arrays = params({ logit_bias: [[5, 1], [5, 2], ["ab", -3]] }).logitBias;
    assert.equal(arrays.get(5 as Token), 3);
    assert.equal(arrays.get(97 as Token), -3);
    assert.equal(arrays.get(98 as Token), -3);
    assert.throws(() => params({ logit_bias: { "100": 1 } }), /not in the vocabulary/);
  });

  test("the binding samples natively unless the request needs the engine's chain", () => {
    assert.ok(samplesNatively(params({})));
    assert.ok(samplesNatively(params({ samplers: ["top_k", "temperature"] })), "a sub-order of the binding's");
    assert.ok(samplesNatively(params({ samplers: ["top_n_sigma", "top_k"], top_n_sigma: -1 })), "a sampler the binding lacks, off");
    assert.ok(!samplesNatively(params({ samplers: ["temperature", "top_k"] })));
    for (const fields of [{ typical_p: 0.5 }, { mirostat: 2 }, { top_n_sigma: 1 }, { dynatemp_range: 0.5 }, { min_keep: 3 }]) {
      assert.ok(!samplesNatively(params(fields)), JSON.stringify(fields));
    }
    assert.ok(!samplesNatively(params({}, { top: 1, postSampling: false })), "log probabilities");
    assert.ok(!samplesNatively(params({ dry_multiplier: 0.5 })), "DRY must see the prompt");
    assert.ok(samplesNatively(params({ dry_multiplier: 0.5, dry_penalty_last_n: 0 })), "DRY off");
    // top_k 0 stays native, fast on a large vocabulary: the binding's draw order then differs from llama-server's.
    assert.ok(samplesNatively(params({ top_k: 0, top_p: 1 })));
  });

  test("chat and completion plans refuse what llama-server refuses, and n above the slots", () => {
    assert.throws(() => chatPlan(chatBody({ n: 3 }), vocab, 2), /'n' is 3, but this engine has 2 slots/);
    assert.equal(chatPlan(chatBody({ n: 2 }), vocab, 2).choices, 2);
    assert.deepEqual(chatPlan(chatBody({ logprobs: true }), vocab, 1).params.logprobs, { top: 20, postSampling: false });
    assert.deepEqual(chatPlan(chatBody({ n_probs: 4, post_sampling_probs: true }), vocab, 1).params.logprobs, { top: 4, postSampling: true });
    assert.throws(() => chatPlan(chatBody({ modalities: ["audio"] }), vocab, 1), /audio/);
    const completion = (fields: object) => completionPlan(parseRequest(completionRequest, { prompt: "x", ...fields }), vocab, 1);
    assert.throws(() => completion({ echo: true }), /Only no echo/);
    assert.throws(() => completion({ best_of: 2 }), /best_of/);
    assert.equal(completion({ logprobs: 3 }).params.logprobs?.top, 3);
    assert.equal(completion({ logprobs: 3, n_probs: 5 }).params.logprobs?.top, 5, "n_probs wins over its alias");
    assert.equal(completion({}).params.maxTokens, 16);
  });

  test("prompt forms: string, ids, mixed (one prompt), and lists of them (one each)", () => {
    const tokenize = (text: string, addSpecial: boolean) => [...(addSpecial ? [1] : []), ...[...text].map((c) => c.charCodeAt(0))] as Token[];
    assert.deepEqual(promptsOf("ab", tokenize, 1000), [[1, 97, 98]]);
    assert.deepEqual(promptsOf([5, 6], tokenize, 1000), [[5, 6]]);
    assert.deepEqual(promptsOf(["a", 5, "b"], tokenize, 1000), [[1, 97, 5, 98]]);
    assert.deepEqual(promptsOf([5, "b"], tokenize, 1000), [[5, 98]], "BOS only before a leading string");
    assert.deepEqual(promptsOf(["a", [5, 6], ["b", 7]], tokenize, 1000), [[1, 97], [5, 6], [1, 98, 7]]);
    assert.throws(() => promptsOf([5, 2000], tokenize, 1000), /not in the vocabulary/);
  });

  test("Ollama options map onto the engine's samplers", () => {
    const { fields } = mapOptions({ repeat_penalty: 1.3, repeat_last_n: 32, typical_p: 0.7, mirostat: 2, mirostat_tau: 4, mirostat_eta: 0.2, num_predict: -2 });
    assert.deepEqual(fields, { repeat_penalty: 1.3, repeat_last_n: 32, typical_p: 0.7, mirostat: 2, mirostat_tau: 4, mirostat_eta: 0.2, max_tokens: -1 });
  });
});

describe("the engine's sampler chain", () => {
  /** A distribution over tokens 0..n-1, most probable first, as the binding reports it. */
  const dist = (probs: number[]) => new Map(probs.map((p, i) => [i as Token, p] as [Token, number]).sort((a, b) => b[1] - a[1]));
  const chain = (fields: object, bias = new Map<Token, number>()) => new SamplerChain(params(fields), bias, 8, 42);
  const d = dist([0.4, 0.3, 0.15, 0.1, 0.05]);

  test("temperature 0 and top_k 1 pick the most probable token", () => {
    assert.equal(chain({ temperature: 0 }).sample(d, () => []).token, 0);
    assert.equal(chain({ temperature: 5, top_k: 1 }).sample(d, () => []).token, 0);
  });

  test("a ban removes the top token; penalties lower tokens seen in the history", () => {
    assert.equal(chain({ temperature: 0 }, new Map([[0 as Token, -Infinity]])).sample(d, () => []).token, 1);
    assert.equal(chain({ temperature: 0, repeat_penalty: 10 }).sample(d, (n) => [0 as Token].slice(-n)).token, 1);
    assert.equal(chain({ temperature: 0, repeat_penalty: 10, repeat_last_n: 1 }).sample(d, (n) => [0 as Token, 3 as Token].slice(-n)).token, 0, "outside the window");
  });

  test("post-sampling candidates follow the truncating samplers and sum to 1", () => {
    const r = chain({ temperature: 1, top_k: 3, top_p: 1, min_p: 0 }).sample(d, () => []);
    assert.equal(r.candidates.length, 3);
    assert.ok(Math.abs(r.candidates.reduce((n, c) => n + c.probability, 0) - 1) < 1e-9);
    const minP = chain({ temperature: 1, top_k: 0, top_p: 1, min_p: 0.5 }).sample(d, () => []);
    assert.deepEqual(minP.candidates.map((c) => c.token), [0, 1], "p >= 0.5 * p_max");
    const topP = chain({ temperature: 1, top_k: 0, top_p: 0.7, min_p: 0 }).sample(d, () => []);
    assert.deepEqual(topP.candidates.map((c) => c.token), [0, 1]);
    const sigma = chain({ temperature: 1, top_k: 0, top_p: 1, min_p: 0, top_n_sigma: 0.1 }).sample(d, () => []);
    assert.deepEqual(sigma.candidates.map((c) => c.token), [0]);
  });

  test("typical_p keeps the locally typical tokens, which need not include the most probable", () => {
    const r = chain({ temperature: 0, top_k: 0, top_p: 1, min_p: 0, typical_p: 0.2 }).sample(d, () => []);
    assert.equal(r.candidates.length, 1);
    assert.notEqual(r.token, 0);
  });

  test("DRY penalizes the tokens that would extend a repeat (llama.cpp's example), breakers cut it", () => {
    const [a, b, c, y] = [1 as Token, 2 as Token, 3 as Token, 9 as Token];
    const last = [a, b, c, c, b, c, y, a, b, c] as Token[];
    const penalties = dryPenalties({ multiplier: 0.8, base: 2, allowedLength: 2, breakers: new Map() }, last);
    // "a b c" ends the window and occurred before "c": 3 -> 4; "b c" occurred before "y": 2 -> 3.
    assert.deepEqual(Object.fromEntries(penalties), { [c]: 0.8 * 2, [y]: 0.8 });
    // A token that is a sequence breaker is never penalized.
    const breakY = dryPenalties({ multiplier: 0.8, base: 2, allowedLength: 2, breakers: new Map([[y, [[]]]]) }, last);
    assert.deepEqual(Object.fromEntries(breakY), { [c]: 0.8 * 2 });
    // A breaker inside the final "a b c" (at "a") limits the repeat length to the 2 tokens after it.
    const breakA = dryPenalties({ multiplier: 0.8, base: 2, allowedLength: 2, breakers: new Map([[a, [[]]]]) }, last);
    assert.deepEqual(Object.fromEntries(breakA), { [c]: 0.8, [y]: 0.8 });
  });

  test("sampling is reproducible for a seed; mirostat draws from a truncated distribution", () => {
    const draws = (seed: number) => Array.from({ length: 20 }, ((c) => () => c.sample(d, () => []).token)(new SamplerChain(params({ temperature: 1, top_k: 0, top_p: 1, min_p: 0 }), new Map(), 8, seed)));
    assert.deepEqual(draws(1), draws(1));
    assert.notDeepEqual(draws(1), draws(2));
    const m = new SamplerChain(params({ temperature: 1, mirostat: 2, mirostat_tau: 0.5 }), new Map(), 8, 3);
    // A low target surprise keeps mostly the top token once mu has adapted.
    const picks = Array.from({ length: 50 }, () => m.sample(d, () => []).token);
    assert.ok(picks.slice(10).filter((t) => t === 0).length > 30, picks.join(","));
  });
});
