import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import { getLlama, LlamaGrammarEvaluationState, LlamaLogLevel, type Llama, type LlamaContext, type LlamaGrammar, type LlamaModel, type Token } from "node-llama-cpp";
import { HERMES_TOOLS_TEMPLATE } from "../../src/distribution/tiny-model.ts";
import { DEFAULT_SAMPLING, generate } from "../../src/engine/generate.ts";
import { acceptOnGrammar, grammarAllows } from "../../src/engine/grammar-state.ts";
import { schemaGbnf } from "../../src/engine/grammar/schema-gbnf.ts";
import { DraftSlot, MAX_GRAMMAR_PAUSE } from "../../src/engine/speculative.ts";
import { MR_BIN, startEngine, type StartedEngine } from "../helpers/engine.ts";
import { tinyModel } from "../helpers/models.ts";

/**
 * A target whose blocks barely move the residual stream, so its first block alone drafts it well (test/api/speculative.test.ts
 * has the daemon side); a tool-call template, for forced calls.
 */
const TARGET = { seed: 12, embeddingLength: 128, blockCount: 4, feedForwardLength: 256, blockScale: 0.2, chatTemplate: HERMES_TOOLS_TEMPLATE } as const;

const SCHEMA = { type: "object", properties: { items: { type: "array", items: { type: "string" }, minItems: 4 } }, required: ["items"] } as const;
/** Words of the model's own kind, so most of its unconstrained tokens fit. */
const LIST_GBNF = 'root ::= item ("," item){3,} "."\nitem ::= [ a-z]{1,24}';

interface Timings {
  draft_n?: number;
  draft_n_accepted?: number;
}
interface Completion {
  content: string;
  timings: Timings;
}

const TOOLS = [
  {
    type: "function",
    function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"] } },
  },
];

describe("the engine's speculative decoding (--spec-type draft-simple -md)", () => {
  let plain: StartedEngine;
  let drafted: StartedEngine;
  /** The model drafting for itself: greedy, every draft token is the model's own choice. */
  let itself: StartedEngine;
  let target: string;
  before(async () => {
    target = await tinyModel(TARGET);
    const draft = await tinyModel({ ...TARGET, draftBlocks: 1 }, "draft.gguf");
    const common = ["-m", target, "-c", "2048", "-np", "2", "-t", "1", "--metrics"];
    plain = await startEngine(common);
    drafted = await startEngine([...common, "--spec-type", "draft-simple", "-md", draft, "--spec-draft-n-max", "4"]);
    itself = await startEngine([...common, "--spec-type", "draft-simple", "-md", target, "--spec-draft-n-max", "4"]);
  });
  after(async () => {
    await plain?.stop();
    await drafted?.stop();
    await itself?.stop();
  });

  const complete = async (engine: StartedEngine, body: object) => {
    const res = await fetch(`${engine.baseUrl}/completion`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Completion;
  };

  test("greedy text is the same with and without the draft, whatever constrains sampling; timings count the draft", async () => {
    /** The body, and whether the draft must have drafted for it. */
    const bodies: Array<[object, boolean]> = [
      [{ prompt: "hello the world is", n_predict: 40, temperature: 0 }, true],
      // Token biases: the draft gets them too (on its own tokenizer).
      [{ prompt: "hello the world", n_predict: 40, temperature: 0, ignore_eos: true }, true],
      // Penalties need the whole history at each token: such a request is decoded without the draft.
      [{ prompt: "hello", n_predict: 40, temperature: 0, repeat_penalty: 1.3, presence_penalty: 0.5 }, false],
      [{ prompt: "hello", n_predict: 30, temperature: 0, dry_multiplier: 0.8 }, false],
      // Under a grammar the draft drafts too (grammar-based rejection sampling, as llama.cpp verifies).
      [{ prompt: "hello", n_predict: 60, temperature: 0, json_schema: SCHEMA }, true],
      [{ prompt: "hello the world is", n_predict: 60, temperature: 0, grammar: LIST_GBNF }, true],
      // A grammar complete under ignore_eos ends the reply (sampling on would fail in the binding).
      [{ prompt: "hello", n_predict: 30, temperature: 0, ignore_eos: true, grammar: 'root ::= "yes" | "no"' }, false],
      // The sampler-chain path (DRY) under a grammar is decoded without the draft.
      [{ prompt: "hello", n_predict: 40, temperature: 0, dry_multiplier: 0.8, json_schema: SCHEMA }, false],
    ];
    let drafts = 0;
    for (const [body, drafting] of bodies) {
      const [a, b] = await Promise.all([complete(plain, body), complete(drafted, body)]);
      assert.equal(b.content, a.content, JSON.stringify(body));
      assert.equal(a.timings.draft_n, undefined);
      assert.ok((b.timings.draft_n_accepted ?? 0) <= (b.timings.draft_n ?? 0), JSON.stringify(b.timings));
      if (drafting) assert.ok((b.timings.draft_n ?? 0) > 0, `${JSON.stringify(body)}: ${JSON.stringify(b.timings)}`);
      if ("json_schema" in body && !drafting) assert.equal(b.timings.draft_n, undefined, JSON.stringify(body));
      drafts += b.timings.draft_n ?? 0;
    }
    assert.ok(drafts > 0, "something was drafted");
    // A forced tool call: the call grammar constrains the whole reply.
    const chat = async (engine: StartedEngine) => {
      const res = await fetch(`${engine.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "the weather in Paris?" }], tools: TOOLS, tool_choice: "required", temperature: 0, max_tokens: 300 }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      const reply = (await res.json()) as { choices: Array<{ message: { tool_calls?: Array<{ function: unknown }> } }>; timings: Timings };
      // Call ids are random: the calls are their functions.
      return { calls: (reply.choices[0]!.message.tool_calls ?? []).map((c) => c.function), timings: reply.timings };
    };
    const [a, b] = await Promise.all([chat(plain), chat(drafted)]);
    assert.ok(a.calls.length > 0, "the call is made");
    assert.deepEqual(b.calls, a.calls);
    assert.ok((b.timings.draft_n ?? 0) > 0, `a forced call drafts: ${JSON.stringify(b.timings)}`);
    // Both slots at once, each with its own draft sequence.
    const body = { prompt: "the model runner", n_predict: 30, temperature: 0 };
    const [x, y] = await Promise.all([complete(drafted, body), complete(drafted, { ...body, prompt: "water people time" })]);
    assert.equal(x.content, (await complete(plain, body)).content);
    assert.equal(y.content, (await complete(plain, { ...body, prompt: "water people time" })).content);
  });

  test("tool calls the model starts itself (auto): the same content and calls with the draft, which drafts", async () => {
    // A model whose output layer favours <tool_call>, as in test/engine/tools.test.ts, and its first block as the draft.
    const options = { seed: 7, chatTemplate: HERMES_TOOLS_TEMPLATE, toolCallBias: 6, blockCount: 4, blockScale: 0.2 } as const;
    const model = await tinyModel(options);
    const draft = await tinyModel({ ...options, draftBlocks: 1 }, "draft.gguf");
    const args = ["-m", model, "-c", "2048", "-np", "1", "-t", "1"];
    const engines: StartedEngine[] = [];
    try {
      // One at a time, so that whichever started is stopped if the other fails to.
      engines.push(await startEngine(args));
      engines.push(await startEngine([...args, "--spec-type", "draft-simple", "-md", draft, "--spec-draft-n-max", "4"]));
      const [without, withDraft] = engines as [StartedEngine, StartedEngine];
      const ask = async (engine: StartedEngine, content: string) => {
        const res = await fetch(`${engine.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ role: "user", content }], tools: TOOLS, temperature: 0, max_tokens: 300 }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        const reply = (await res.json()) as { choices: Array<{ message: { content: string | null; tool_calls?: Array<{ function: unknown }> } }>; timings: Timings };
        const message = reply.choices[0]!.message;
        return { content: message.content, calls: (message.tool_calls ?? []).map((c) => c.function), timings: reply.timings };
      };
      let called = 0;
      for (const content of ["the weather in Paris?", "what is it like in Rome", "hello"]) {
        const [a, b] = await Promise.all([ask(without, content), ask(withDraft, content)]);
        assert.deepEqual(b.calls, a.calls, content);
        assert.equal(b.content, a.content, content);
        assert.ok((b.timings.draft_n ?? 0) > 0, `${content}: ${JSON.stringify(b.timings)}`);
        if (a.calls.length > 0) called++;
      }
      assert.ok(called > 0, "some reply calls the tool");
    } finally {
      await Promise.all(engines.map((e) => e.stop()));
    }
  });

  test("temperature > 0 with a seed: the same text every time with the draft, which drafts (under a grammar too)", async () => {
    // cache_prompt false: both evaluate the whole prompt, so nothing but the seed decides.
    const plainBody = { prompt: "hello the world", n_predict: 40, temperature: 0.8, seed: 7, ignore_eos: true, cache_prompt: false };
    // (Not ignore_eos under the grammar: once it is complete only end-of-generation fits, which ignore_eos bans.)
    for (const body of [plainBody, { ...plainBody, n_predict: 60, ignore_eos: false, grammar: LIST_GBNF }]) {
      const first = await complete(drafted, body);
      const second = await complete(drafted, body);
      assert.equal(second.content, first.content);
      assert.ok((first.timings.draft_n ?? 0) > 0, JSON.stringify(first.timings));
      assert.equal(second.timings.draft_n, first.timings.draft_n);
    }
  });

  test("/slots says speculative, /metrics counts draft tokens", async () => {
    const slots = (await (await fetch(`${drafted.baseUrl}/slots`)).json()) as Array<{ speculative: boolean }>;
    assert.deepEqual(slots.map((s) => s.speculative), [true, true]);
    assert.deepEqual(((await (await fetch(`${plain.baseUrl}/slots`)).json()) as Array<{ speculative: boolean }>).map((s) => s.speculative), [false, false]);
    const metrics = await (await fetch(`${drafted.baseUrl}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^llamacpp:${name} (\\S+)$`, "m").exec(metrics)?.[1]);
    assert.ok(value("spec_decode_num_draft_tokens_total") > 0, metrics);
    assert.ok(value("spec_decode_num_accepted_tokens_total") <= value("spec_decode_num_draft_tokens_total"));
  });

  test("the model as its own draft: greedy, every drafted token is accepted, several a step (/metrics and timings agree)", async () => {
    // node-llama-cpp 3.21.1's own predictor kept at most one draft token per verification step: it accepted under a
    // third of these (at most 1 of each 4 drafted), and its slowness was the symptom.
    const scrape = async () => {
      const metrics = await (await fetch(`${itself.baseUrl}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^llamacpp:${name} (\\S+)$`, "m").exec(metrics)?.[1]);
      return { drafted: value("spec_decode_num_draft_tokens_total"), accepted: value("spec_decode_num_accepted_tokens_total"), steps: value("spec_decode_num_drafts_total") };
    };
    const before = await scrape();
    let drafted = 0;
    let accepted = 0;
    for (const prompt of ["hello the world is", "water people time", "the model runner"]) {
      const body = { prompt, n_predict: 48, temperature: 0, ignore_eos: true };
      const [a, b] = await Promise.all([complete(plain, body), complete(itself, body)]);
      assert.equal(b.content, a.content, prompt);
      drafted += b.timings.draft_n ?? 0;
      accepted += b.timings.draft_n_accepted ?? 0;
    }
    const after = await scrape();
    assert.equal(after.drafted - before.drafted, drafted);
    assert.equal(after.accepted - before.accepted, accepted);
    // Batched and one-by-one evaluation may round differently; a tie flipped by that is the only way to lose one.
    assert.ok(accepted >= 0.95 * drafted, `accepted ${accepted} of ${drafted}`);
    assert.ok(drafted >= 3 * 30, `drafted ${drafted}: most of the 3 × 48 tokens were drafted`);
    // Each step drafts at most 4, and at most the tokens still to come less one (llama-server's n_draft_max).
    const steps = after.steps - before.steps;
    assert.ok(steps > 0 && drafted <= 4 * steps, JSON.stringify({ drafted, steps }));
    assert.ok(accepted > 2 * steps, `accepted ${accepted} in ${steps} steps: several a step`);
  });

  test("a draft with another vocabulary: the engine refuses to start, naming both files", async () => {
    const think = await tinyModel({ seed: 5, thinking: true });
    const tools = await tinyModel({ seed: 6, toolCallTokens: true });
    // Spawned directly: the engine listens before it loads, then exits 1 (startEngine would wait for /health).
    const child = spawn(process.execPath, [MR_BIN, "engine", "-m", think, "--spec-type", "draft-simple", "-md", tools, "-t", "1", "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => void (stderr += d));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 1, stderr);
    assert.ok(stderr.includes(`the draft model ${tools} cannot draft for ${think}: their vocabularies do not match (token`), stderr);
  });
});

/**
 * Under a grammar, in-process: generate() with and without a DraftSlot, so the
 * draft's counts (re-decodes included, which no HTTP answer carries) can be read.
 */
describe("speculative decoding under a grammar (generate() with a DraftSlot)", () => {
  let llama: Llama;
  let target: LlamaModel;
  let plainContext: LlamaContext;
  let targetContext: LlamaContext;
  let draftContext: LlamaContext;
  let selfContext: LlamaContext;
  let grammars: Record<"schema" | "list" | "strict", LlamaGrammar>;
  before(async () => {
    llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, progressLogs: false });
    target = await llama.loadModel({ modelPath: await tinyModel(TARGET) });
    const draft = await llama.loadModel({ modelPath: await tinyModel({ ...TARGET, draftBlocks: 1 }, "draft.gguf") });
    [plainContext, targetContext, draftContext, selfContext] = await Promise.all([
      target.createContext({ contextSize: 1024, threads: 1 }),
      target.createContext({ contextSize: 1024, threads: 1 }),
      draft.createContext({ contextSize: 1024, threads: 1 }),
      target.createContext({ contextSize: 1024, threads: 1 }),
    ]);
    grammars = {
      schema: await llama.createGrammar({ grammar: await schemaGbnf(llama, SCHEMA as never) }),
      list: await llama.createGrammar({ grammar: LIST_GBNF }),
      // Digits only: the model's unconstrained token is nearly never one.
      strict: await llama.createGrammar({ grammar: "root ::= [0-9]{200}" }),
    };
  });
  after(async () => {
    await llama?.dispose();
  });

  const run = async (context: LlamaContext, draft: DraftSlot | null, grammar: LlamaGrammar, prompt: string, maxTokens: number) => {
    const sequence = context.getSequence();
    let text = "";
    try {
      const result = await generate({
        sequence,
        model: target,
        prompt: target.tokenize(prompt),
        params: { ...DEFAULT_SAMPLING, temperature: 0, stop: [], maxTokens },
        stopTokens: new Set(),
        onText: (t) => void (text += t),
        signal: new AbortController().signal,
        grammar,
        draft,
      });
      return { text, result };
    } finally {
      sequence.dispose();
    }
  };
  const slotOf = (context: LlamaContext) => new DraftSlot(context.getSequence(), { maxTokens: 4, minProbability: 0 });

  /** Asserts that the grammar allows `tokens` in turn, from its start. */
  const assertAllowed = (grammar: LlamaGrammar, tokens: readonly Token[], where: string) => {
    const state = new LlamaGrammarEvaluationState({ model: target, grammar });
    tokens.forEach((token, i) => {
      assert.ok(grammarAllows(target, state, token), `${where}: token ${i} (${token}) is not allowed`);
      acceptOnGrammar(target, state, token);
    });
  };

  test("greedy tokens are the same with the draft, which drafts under the grammar; the grammar allows every one", async () => {
    for (const [name, grammar, prompt] of [["schema", grammars.schema, "hello"], ["list", grammars.list, "hello the world is"]] as const) {
      const plain = await run(plainContext, null, grammar, prompt, 60);
      const slot = slotOf(draftContext);
      try {
        const { text, result: r } = await run(targetContext, slot, grammar, prompt, 60);
        assert.equal(text, plain.text, name);
        assert.deepEqual(r.tokens, plain.result.tokens, name);
        assertAllowed(grammar, r.tokens, name);
        assert.ok(r.draftTokens > 0 && r.draftAccepted > 0 && r.draftAccepted <= r.draftTokens, `${name}: ${JSON.stringify(r)}`);
      } finally {
        slot.sequence.dispose();
      }
    }
  });

  test("the model as its own draft under a grammar: a draft token is lost only where the grammar made the model decode again", async () => {
    let drafted = 0;
    let accepted = 0;
    for (const [name, grammar, prompt] of [["schema", grammars.schema, "hello"], ["list", grammars.list, "hello the world is"]] as const) {
      const plain = await run(plainContext, null, grammar, prompt, 60);
      const slot = slotOf(selfContext);
      try {
        const { text, result: r } = await run(targetContext, slot, grammar, prompt, 60);
        assert.equal(text, plain.text, name);
        assertAllowed(grammar, r.tokens, name);
        // Greedy, the draft proposes the model's own unconstrained choice: it is kept wherever the grammar allows
        // it, and a re-decode drops the rest of its step's draft (at most 4). Batched and one-by-one evaluation may
        // round a tie differently: 5% slack, as above.
        assert.ok(r.draftTokens > 0, `${name}: ${JSON.stringify(r)}`);
        assert.ok(r.draftTokens - r.draftAccepted <= 4 * r.draftRedecodes + 0.05 * r.draftTokens, `${name}: ${JSON.stringify(r)}`);
        drafted += r.draftTokens;
        accepted += r.draftAccepted;
      } finally {
        slot.sequence.dispose();
      }
    }
    assert.ok(accepted >= 0.5 * drafted, `accepted ${accepted} of ${drafted}`);
  });

  test("a grammar the model's own tokens nearly never fit: a bounded number of re-decodes, drafting mostly paused", async () => {
    const n = 200;
    const plain = await run(plainContext, null, grammars.strict, "hello", n);
    const slot = slotOf(selfContext);
    try {
      const { text, result: r } = await run(targetContext, slot, grammars.strict, "hello", n);
      assert.equal(text, plain.text);
      assert.match(text, /^[0-9]{200}$/);
      // Without the pacing every step re-decodes (measured: 198 of 200 tokens); with it, the pauses double to
      // MAX_GRAMMAR_PAUSE (log2 of it + 1 re-decodes) and then one re-decode per pause.
      const bound = Math.log2(MAX_GRAMMAR_PAUSE) + 1 + Math.ceil(n / MAX_GRAMMAR_PAUSE);
      assert.ok(r.draftRedecodes > 0 && r.draftRedecodes <= bound, `${r.draftRedecodes} re-decodes (bound ${bound}): ${JSON.stringify(r)}`);
      assert.ok(r.draftSteps <= bound, JSON.stringify(r));
    } finally {
      slot.sequence.dispose();
    }
  });
});
