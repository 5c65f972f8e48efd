import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startEngine, type StartedEngine } from "../helpers/engine.ts";
import { tinyModel } from "../helpers/models.ts";
import { THINKING_TEMPLATE } from "../../src/distribution/tiny-model.ts";

// llama-server's request fields on a real `mr engine` with a generated model:
// each one's effect where the tiny model shows it, and a 400 for each refused one.

type Json = Record<string, any>;

interface LogprobEntry {
  id: number;
  token: string;
  bytes: number[];
  logprob: number;
  top_logprobs: Array<{ id: number; token: string; bytes: number[]; logprob: number }>;
}

/** A ChatML template that also writes a `greeting` variable (chat_template_kwargs). */
const GREETING_TEMPLATE =
  "{% if greeting %}<|im_start|>system\n{{ greeting }}<|im_end|>\n{% endif %}" +
  "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

describe("engine request fields", () => {
  let engine: StartedEngine;
  const MESSAGES = [{ role: "user", content: "hello there, how are you" }];

  before(async () => {
    const path = await tinyModel({ seed: 1, chatTemplate: GREETING_TEMPLATE });
    engine = await startEngine(["-m", path, "--alias", "tiny", "-c", "2048", "-np", "2", "-t", "1"]);
  });
  after(() => engine?.stop());

  const post = async (path: string, body: object): Promise<{ status: number; json: Json }> => {
    const res = await fetch(`${engine.baseUrl}${path}`, { method: "POST", body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Json };
  };
  const chat = async (body: object): Promise<Json> => {
    const { status, json } = await post("/v1/chat/completions", { messages: MESSAGES, ...body });
    assert.equal(status, 200, JSON.stringify(json));
    return json;
  };
  const completion = async (body: object): Promise<Json> => {
    const { status, json } = await post("/v1/completions", body);
    assert.equal(status, 200, JSON.stringify(json));
    return json;
  };
  const refused = async (path: string, body: object, param: string, message?: RegExp) => {
    const { status, json } = await post(path, path === "/v1/chat/completions" ? { messages: MESSAGES, ...body } : body);
    assert.equal(status, 400, `${JSON.stringify(body)} → ${JSON.stringify(json)}`);
    assert.equal(json.error.type, "invalid_request_error");
    assert.equal(json.error.param, param, JSON.stringify(json));
    if (message) assert.match(json.error.message, message);
  };
  /** The data events of an SSE response, [DONE] excluded. */
  const stream = async (path: string, body: object): Promise<Json[]> => {
    const res = await fetch(`${engine.baseUrl}${path}`, { method: "POST", body: JSON.stringify({ ...body, stream: true }) });
    assert.equal(res.status, 200);
    const text = await res.text();
    return text
      .split("\n\n")
      .map((e) => e.replace(/^data: /, "").trim())
      .filter((e) => e !== "" && e !== "[DONE]")
      .map((e) => JSON.parse(e) as Json);
  };
  const greedy = { temperature: 0 };
  const tokensOf = async (body: object): Promise<number[]> => (await chat({ ...body, return_tokens: true })).choices[0].tokens as number[];

  test("chat logprobs: one entry per token, alternatives sorted, logprobs <= 0, the greedy token on top", async () => {
    const res = await chat({ ...greedy, max_tokens: 8, logprobs: true, top_logprobs: 3 });
    const entries = res.choices[0].logprobs.content as LogprobEntry[];
    assert.equal(entries.length, res.usage.completion_tokens);
    for (const e of entries) {
      assert.ok(e.logprob <= 0);
      assert.equal(e.top_logprobs.length, 3);
      for (let i = 1; i < e.top_logprobs.length; i++) assert.ok(e.top_logprobs[i - 1]!.logprob >= e.top_logprobs[i]!.logprob);
      for (const alt of e.top_logprobs) assert.ok(alt.logprob <= 0);
      // Temperature 0 picks the most probable token.
      assert.equal(e.id, e.top_logprobs[0]!.id);
      assert.equal(e.logprob, e.top_logprobs[0]!.logprob);
      assert.deepEqual(Buffer.from(e.bytes).toString("utf8"), e.token);
    }
    // Reporting probabilities does not change what is generated.
    const plain = await chat({ ...greedy, max_tokens: 8 });
    assert.equal(res.choices[0].message.content, plain.choices[0].message.content);
    assert.equal(entries.map((e) => e.token).join(""), plain.choices[0].message.content);
    // llama-server's default is 20 alternatives; without logprobs, `logprobs` is null.
    const twenty = await chat({ ...greedy, max_tokens: 1, logprobs: true });
    assert.equal(twenty.choices[0].logprobs.content[0].top_logprobs.length, 20);
    assert.equal(plain.choices[0].logprobs, null);
    await refused("/v1/chat/completions", { top_logprobs: 2 }, "top_logprobs", /requires logprobs/);
  });

  test("chat logprobs in stream chunks; post_sampling_probs reports probabilities after the chain", async () => {
    const events = await stream("/v1/chat/completions", { messages: MESSAGES, ...greedy, max_tokens: 5, logprobs: true, top_logprobs: 2 });
    const entries = events.flatMap((e) => (e.choices?.[0]?.logprobs?.content ?? []) as LogprobEntry[]);
    assert.equal(entries.length, 5);
    const text = events.map((e) => e.choices?.[0]?.delta?.content ?? "").join("");
    assert.equal(entries.map((e) => e.token).join(""), text);

    const post = await chat({ temperature: 1, seed: 3, top_k: 5, max_tokens: 4, logprobs: true, top_logprobs: 10, post_sampling_probs: true });
    for (const e of post.choices[0].logprobs.content as Array<{ prob: number; top_probs: Array<{ prob: number }> }>) {
      assert.ok(e.prob > 0 && e.prob <= 1);
      // top_k 5 leaves at most 5 candidates; their probabilities sum to 1.
      assert.ok(e.top_probs.length <= 5);
      assert.ok(Math.abs(e.top_probs.reduce((n, a) => n + a.prob, 0) - 1) < 1e-4);
    }
  });

  test("/v1/completions logprobs: N gives OpenAI's legacy arrays; n_probs gives llama-server's entries", async () => {
    const res = await completion({ prompt: "hello", ...greedy, max_tokens: 4, logprobs: 2 });
    const lp = res.choices[0].logprobs;
    assert.equal(lp.tokens.length, 4);
    assert.equal(lp.token_logprobs.length, 4);
    assert.equal(lp.top_logprobs.length, 4);
    assert.deepEqual(lp.text_offset[0], 0);
    assert.equal(lp.tokens.join(""), res.choices[0].text);
    for (let i = 0; i < 4; i++) {
      assert.ok(lp.token_logprobs[i] <= 0);
      assert.equal(Object.keys(lp.top_logprobs[i]).length, 2);
      assert.equal(lp.text_offset[i], lp.tokens.slice(0, i).join("").length);
    }
    const probs = await completion({ prompt: "hello", ...greedy, max_tokens: 2, n_probs: 3 });
    assert.equal(probs.choices[0].logprobs.content[0].top_logprobs.length, 3);
  });

  test("logit_bias: -100 on the greedy first token (OpenAI's form) changes it, as do llama-server's array forms", async () => {
    const [first] = await tokensOf({ ...greedy, max_tokens: 3 });
    const biased = await tokensOf({ ...greedy, max_tokens: 3, logit_bias: { [String(first)]: -100 } });
    assert.notEqual(biased[0], first);
    const banned = await tokensOf({ ...greedy, max_tokens: 3, logit_bias: [[first, false]] });
    assert.notEqual(banned[0], first);
    // A positive bias makes a token the greedy choice.
    const favoured = await tokensOf({ ...greedy, max_tokens: 2, logit_bias: [[300, 100]] });
    assert.deepEqual(favoured, [300, 300]);
    // Text keys are tokenized: every token of the text is biased.
    const textual = await tokensOf({ ...greedy, max_tokens: 1, logit_bias: [["the", 100]] });
    const { json } = await post("/tokenize", { content: "the" });
    assert.ok((json.tokens as number[]).includes(textual[0]!));
    await refused("/v1/chat/completions", { logit_bias: { "99999": -100 } }, "logit_bias.99999", /not in the vocabulary/);
  });

  test("repeat_penalty changes greedy output of a model that loops; repeat_last_n 0 turns it off", async () => {
    const plain = (await chat({ ...greedy, max_tokens: 64 })).choices[0].message.content as string;
    const penalized = (await chat({ ...greedy, max_tokens: 64, repeat_penalty: 3 })).choices[0].message.content as string;
    const off = (await chat({ ...greedy, max_tokens: 64, repeat_penalty: 3, repeat_last_n: 0 })).choices[0].message.content as string;
    assert.notEqual(penalized, plain);
    assert.equal(off, plain);
  });

  test("DRY breaks the loop too, scanning the prompt and the reply; off with dry_penalty_last_n 0 or the multiplier at 0", async () => {
    const text = async (extra: object) => (await chat({ ...greedy, max_tokens: 64, ...extra })).choices[0].message.content as string;
    const plain = await text({});
    const dry = await text({ dry_multiplier: 2, dry_allowed_length: 2 });
    assert.notEqual(dry, plain);
    assert.equal(await text({ dry_multiplier: 2, dry_penalty_last_n: 0 }), plain);
    assert.equal(await text({ dry_multiplier: 0, dry_base: 3 }), plain);
  });

  test("samplers the binding lacks run in the engine's chain: typical_p, mirostat, top_n_sigma, dynatemp, samplers order", async () => {
    const base = { temperature: 1.5, seed: 7, max_tokens: 16 };
    const text = async (extra: object) => (await chat({ ...base, ...extra })).choices[0].message.content as string;
    const baseline = await text({});
    assert.equal(await text({}), baseline, "sampling with a seed is reproducible");
    for (const extra of [{ typical_p: 0.05 }, { mirostat: 2 }, { mirostat: 1, mirostat_tau: 2 }, { top_n_sigma: 0.5 }, { dynatemp_range: 1.4 }, { samplers: ["temperature", "top_k"], top_k: 1 }]) {
      const out = await text(extra);
      assert.notEqual(out, baseline, JSON.stringify(extra));
      assert.equal(await text(extra), out, `${JSON.stringify(extra)} is reproducible with a seed`);
    }
    // The engine's chain at temperature 0 is the binding's greedy choice (top_n_sigma always keeps the top token).
    assert.equal(await text({ temperature: 0, top_n_sigma: 1 }), await text({ temperature: 0 }));
    // top_k 1 applied before temperature: greedy whatever the temperature (llama-server's letters form).
    assert.equal(await text({ samplers: "kt", top_k: 1 }), await text({ temperature: 0 }));
  });

  test("n choices: each with its index, in whole replies and in stream chunks; more than the slots is a 400 with both numbers", async () => {
    const res = await chat({ n: 2, temperature: 1.5, max_tokens: 16 });
    assert.deepEqual(res.choices.map((c: Json) => c.index), [0, 1]);
    assert.notEqual(res.choices[0].message.content, res.choices[1].message.content);
    assert.equal(res.usage.completion_tokens, 32);
    const events = await stream("/v1/chat/completions", { messages: MESSAGES, n: 2, temperature: 0, max_tokens: 3 });
    const finishes = events.filter((e) => e.choices?.[0]?.finish_reason).map((e) => e.choices[0].index).sort();
    assert.deepEqual(finishes, [0, 1]);
    const byIndex = [0, 1].map((i) => events.filter((e) => e.choices?.[0]?.index === i).map((e) => e.choices[0].delta?.content ?? "").join(""));
    assert.equal(byIndex[0], byIndex[1], "greedy choices agree");
    await refused("/v1/chat/completions", { n: 3 }, "n", /'n' is 3, but this engine has 2 slots/);
    // Completions: prompts times n, index = prompt * n + choice.
    const multi = await completion({ prompt: ["hello", "world"], n: 2, ...greedy, max_tokens: 2 });
    assert.deepEqual(multi.choices.map((c: Json) => c.index), [0, 1, 2, 3]);
    assert.equal(multi.choices[0].text, multi.choices[1].text);
  });

  test("best_of, echo and suffix are refused by name, as llama-server does", async () => {
    await refused("/v1/completions", { prompt: "x", best_of: 3 }, "best_of", /Unsupported param: best_of/);
    await refused("/v1/completions", { prompt: "x", suffix: "END" }, "suffix", /Unsupported param: suffix/);
    await refused("/v1/completions", { prompt: "x", echo: true }, "echo", /Only no echo/);
    assert.equal((await completion({ prompt: "x", echo: false, max_tokens: 1 })).choices.length, 1);
  });

  test("n_predict wins over max_tokens; max_tokens -1 runs to the end of the context", async () => {
    const res = await chat({ n_predict: 3, max_tokens: 10, ...greedy });
    assert.equal(res.usage.completion_tokens, 3);
    assert.equal((await completion({ prompt: "hi", n_predict: 3, ...greedy })).usage.completion_tokens, 3);
    const unlimited = await completion({ prompt: "hi", max_tokens: -1, ...greedy });
    assert.equal(unlimited.choices[0].finish_reason, "length");
    assert.equal(unlimited.usage.total_tokens, 1024, "the slot's whole context");
  });

  test("ignore_eos: an end token the model would pick is never sampled", async () => {
    // A huge bias makes </s> (id 2) the greedy token: the reply ends at once, unless ignore_eos bans it.
    const ended = await chat({ ...greedy, max_tokens: 5, logit_bias: { "2": 100 } });
    assert.equal(ended.usage.completion_tokens, 0);
    assert.equal(ended.choices[0].finish_reason, "stop");
    const going = await chat({ ...greedy, max_tokens: 5, logit_bias: { "2": 100 }, ignore_eos: true });
    assert.equal(going.usage.completion_tokens, 5);
  });

  test("ignore_eos under a grammar that is complete ends the reply there (llama-server answers 500; the binding would abort the process)", async () => {
    const schema = { type: "boolean" };
    for (const sampling of [greedy, { temperature: 0.8, seed: 3 }, { ...greedy, dry_multiplier: 0.8 }]) {
      const reply = await chat({ ...sampling, max_tokens: 30, ignore_eos: true, response_format: { type: "json_schema", json_schema: { name: "b", schema } } });
      assert.match(reply.choices[0].message.content, /^(true|false)$/, JSON.stringify(reply));
      assert.equal(reply.choices[0].finish_reason, "stop");
      const raw = await post("/completion", { ...sampling, prompt: "hi", n_predict: 30, ignore_eos: true, json_schema: schema });
      assert.equal(raw.status, 200, JSON.stringify(raw.json));
      assert.match(raw.json.content, /^(true|false)$/);
      assert.equal(raw.json.stop_type, "eos");
      // A grammar with no way to go on once matched (the JSON grammars above end on their own stop text first).
      const yes = await post("/completion", { ...sampling, prompt: "hi", n_predict: 30, ignore_eos: true, grammar: 'root ::= "yes"' });
      assert.equal(yes.status, 200, JSON.stringify(yes.json));
      assert.equal(yes.json.content, "yes");
      assert.equal(yes.json.stop_type, "eos");
      const streamed = await stream("/completion", { ...sampling, prompt: "hi", n_predict: 30, ignore_eos: true, grammar: 'root ::= "yes"' });
      assert.equal(streamed.map((e) => e.content).join(""), "yes");
    }
    // The engine is alive and still serves.
    assert.equal((await chat({ ...greedy, max_tokens: 2 })).usage.completion_tokens, 2);
  });

  test("a grammar that allows no token the biases leave is this request's 500, naming it; the engine goes on (node-llama-cpp lost the failure and the process ended)", async () => {
    // Every token whose text starts with "y": the grammar needs one first.
    const banned: Array<[number, boolean]> = [];
    for (let t = 0; t < 4096; t++) {
      const { status, json } = await post("/detokenize", { tokens: [t] });
      if (status !== 200) break;
      if ((json.content as string).startsWith("y")) banned.push([t, false]);
    }
    assert.ok(banned.length > 0);
    for (const stream of [false, true]) {
      const res = await fetch(`${engine.baseUrl}/completion`, {
        method: "POST",
        body: JSON.stringify({ prompt: "hi", n_predict: 5, temperature: 0, grammar: 'root ::= "yes"', logit_bias: banned, stream }),
      });
      // The first token fails: a stream has sent nothing yet, so it is a plain error answer too.
      const text = await res.text();
      assert.equal(res.status, 500, text);
      assert.match(JSON.parse(text).error.message, /^Failed to sample the next token: .*grammar.*logit_bias/);
    }
    // Mid-stream, after text went out: the stream ends with the error event.
    const res = await fetch(`${engine.baseUrl}/completion`, {
      method: "POST",
      body: JSON.stringify({ prompt: "hi", n_predict: 8, temperature: 0, grammar: 'root ::= "ab" "yes"', logit_bias: banned, stream: true }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.match(text, /"content":"a/);
    assert.match(text, /data: \{"error":\{"code":500,"message":"Failed to sample the next token: [^"]*grammar/, text);
    assert.equal((await chat({ ...greedy, max_tokens: 2 })).usage.completion_tokens, 2);
  });

  test("t_max_predict_ms stops at a newline once generation took that long", async () => {
    // Byte token <0x0A> ("\n") is id 13 in the generated vocabulary; a bias makes every token a newline.
    const { json } = await post("/tokenize", { content: "\n" });
    const newline = (json.tokens as number[]).at(-1)!;
    const res = await chat({ ...greedy, max_tokens: 400, logit_bias: [[newline, 100]], t_max_predict_ms: 1 });
    assert.equal(res.choices[0].finish_reason, "length");
    assert.ok(res.usage.completion_tokens < 400, `stopped early (${res.usage.completion_tokens})`);
    const unbounded = await chat({ ...greedy, max_tokens: 40, logit_bias: [[newline, 100]] });
    assert.equal(unbounded.usage.completion_tokens, 40);
  });

  test("cache_prompt false evaluates the whole prompt; id_slot runs on that slot", async () => {
    const body = { messages: [{ role: "user", content: "a prompt about caching" }], ...greedy, max_tokens: 1 };
    await post("/v1/chat/completions", { ...body, id_slot: 0 });
    const cached = (await post("/v1/chat/completions", { ...body, id_slot: 0 })).json;
    assert.ok(cached.timings.cache_n > 0);
    const uncached = (await post("/v1/chat/completions", { ...body, id_slot: 0, cache_prompt: false })).json;
    assert.equal(uncached.timings.cache_n, 0);
    assert.equal(uncached.timings.prompt_n, uncached.usage.prompt_tokens);
    // Slot 1 has not seen the prompt.
    await post("/v1/chat/completions", { messages: [{ role: "user", content: "something else entirely" }], max_tokens: 1, id_slot: 1 });
    const other = (await post("/v1/chat/completions", { ...body, id_slot: 1 })).json;
    assert.ok(other.timings.cache_n < cached.timings.cache_n);
    await refused("/v1/chat/completions", { id_slot: 2 }, "id_slot", /2 slots/);
  });

  test("timings_per_token puts timings on every chunk; return_tokens returns the ids", async () => {
    const events = await stream("/v1/chat/completions", { messages: MESSAGES, max_tokens: 3, timings_per_token: true, return_tokens: true });
    const content = events.filter((e) => e.choices?.[0]?.delta?.content);
    assert.ok(content.length > 0 && content.every((e) => typeof e.timings?.predicted_n === "number"));
    const last = events.find((e) => e.choices?.[0]?.finish_reason);
    assert.equal(last!.choices[0].tokens.length, 3);
    const whole = await chat({ max_tokens: 4, return_tokens: true });
    assert.equal(whole.choices[0].tokens.length, whole.usage.completion_tokens);
  });

  test("prompts as token ids, mixed with text, and several prompts at once", async () => {
    const { json } = await post("/tokenize", { content: "hello world", add_special: true });
    const ids = json.tokens as number[];
    const fromText = await completion({ prompt: "hello world", ...greedy, max_tokens: 4 });
    const fromIds = await completion({ prompt: ids, ...greedy, max_tokens: 4 });
    assert.equal(fromIds.choices[0].text, fromText.choices[0].text);
    assert.equal(fromIds.usage.prompt_tokens, fromText.usage.prompt_tokens);
    // Mixed: one prompt; a leading string gets BOS, the rest is taken as it is.
    const mixed = await completion({ prompt: ["hello", ...ids.slice(-1)], ...greedy, max_tokens: 4 });
    assert.equal(mixed.choices.length, 1);
    const many = await completion({ prompt: [ids, "hello world"], ...greedy, max_tokens: 4 });
    assert.deepEqual(
      many.choices.map((c: Json) => c.text),
      [fromText.choices[0].text, fromText.choices[0].text],
    );
    await refused("/v1/completions", { prompt: [1, 99999] }, "prompt.1", /not in the vocabulary/);
  });

  test("llama-server's /completion takes the same fields: token prompts, n, n_probs, return_tokens", async () => {
    const { json } = await post("/tokenize", { content: "hello world", add_special: true });
    const ids = json.tokens as number[];
    const one = (await post("/completion", { prompt: ids, ...greedy, n_predict: 3, n_probs: 2, return_tokens: true })).json;
    assert.equal(one.tokens.length, 3);
    assert.equal(one.completion_probabilities.length, 3);
    assert.equal(one.completion_probabilities[0].id, one.tokens[0]);
    assert.equal(one.completion_probabilities[0].top_logprobs.length, 2);
    const text = (await completion({ prompt: "hello world", ...greedy, max_tokens: 3 })).choices[0].text;
    assert.equal(one.content, text);
    const two = (await post("/completion", { prompt: [ids, "hello world"], n: 2, ...greedy, n_predict: 2 })).json as Json[];
    assert.deepEqual(two.map((r) => r.index), [0, 1, 2, 3]);
    await refused("/completion", { prompt: "x", n: 3 }, "n");
  });

  test("grammar and a top-level json_schema constrain chat replies", async () => {
    const yesNo = await chat({ grammar: 'root ::= "yes" | "no"', max_tokens: 8, temperature: 1.5, seed: 2 });
    assert.match(yesNo.choices[0].message.content, /^(yes|no)$/);
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    const json = await chat({ json_schema: schema, max_tokens: 40, seed: 3 });
    assert.equal(typeof JSON.parse(json.choices[0].message.content).a, "number");
    await refused("/v1/chat/completions", { grammar: "root ::= \"a\"", json_schema: schema }, "grammar", /both json_schema and grammar/);
    const tools = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {} } } }];
    await refused("/v1/chat/completions", { grammar: "root ::= \"a\"", tools }, "grammar", /with tools/);
  });

  test("chat_template_kwargs reach the template", async () => {
    const plain = await chat({ max_tokens: 1 });
    const greeted = await chat({ max_tokens: 1, chat_template_kwargs: { greeting: "a system line the template writes" } });
    assert.ok(greeted.usage.prompt_tokens > plain.usage.prompt_tokens + 5, `${greeted.usage.prompt_tokens} vs ${plain.usage.prompt_tokens}`);
    await refused("/v1/chat/completions", { chat_template_kwargs: { enable_thinking: "no" } }, "chat_template_kwargs.enable_thinking");
    const applied = (await post("/apply-template", { messages: MESSAGES, chat_template_kwargs: { greeting: "written by the template" } })).json;
    assert.match(applied.prompt, /written by the template/);
  });

  test("OpenAI-only fields are accepted; unknown fields and audio output are refused by name", async () => {
    const res = await chat({ max_tokens: 1, user: "u", store: false, metadata: { k: "v" }, service_tier: "auto", verbosity: "low", prediction: { type: "content", content: "x" }, web_search_options: {} });
    assert.equal(res.choices.length, 1);
    await refused("/v1/chat/completions", { frobnicate: 1 }, "frobnicate", /not supported/);
    await refused("/v1/chat/completions", { stream_options: { include_usage: true, extra: 1 } }, "stream_options.extra");
    await refused("/v1/completions", { prompt: "x", lora: [] }, "lora");
    await refused("/v1/chat/completions", { modalities: ["text", "audio"] }, "modalities", /audio/);
    await refused("/v1/chat/completions", { audio: { voice: "alloy", format: "wav" } }, "audio");
    await refused("/v1/chat/completions", { samplers: ["top_k", "bogus"] }, "samplers.1", /unknown sampler/);
    await refused("/v1/chat/completions", { samplers: ["infill"] }, "samplers.0", /not supported/);
    await refused("/v1/chat/completions", { messages: [{ role: "user", content: "x", name: "bob" }] }, "messages.0.name");
    await refused("/tokenize", { content: "x", bogus: true }, "bogus");
    await refused("/v1/embeddings", { input: "x", extra: 1 }, "extra");
    // /tokenize's parse_special: false reads special-token text as plain text.
    const special = (await post("/tokenize", { content: "<|im_end|>" })).json.tokens as number[];
    const plain = (await post("/tokenize", { content: "<|im_end|>", parse_special: false })).json.tokens as number[];
    assert.equal(special.length, 1);
    assert.ok(plain.length > 1);
    await refused("/v1/chat/completions", { dry_sequence_breakers: [] }, "dry_sequence_breakers");
  });
});

/** Qwen3's way: the template itself writes an empty thought when `enable_thinking` is false. */
const ENABLE_THINKING_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}";

describe("engine reasoning fields on thinking templates", () => {
  const engines: StartedEngine[] = [];
  after(() => Promise.all(engines.map((e) => e.stop())));
  const start = async (template: string) => {
    const path = await tinyModel({ seed: 5, thinking: true, chatTemplate: template });
    const engine = await startEngine(["-m", path, "--alias", "think", "-c", "2048", "-t", "1", "--reasoning-budget", "6"]);
    engines.push(engine);
    return engine;
  };
  const ask = { messages: [{ role: "user", content: "why?" }], max_tokens: 24, temperature: 0 };

  test("reasoning_format deepseek-legacy: split off in whole replies, left in content when streaming", async () => {
    const engine = await start(THINKING_TEMPLATE);
    const res = await fetch(`${engine.baseUrl}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ ...ask, reasoning_format: "deepseek-legacy" }) });
    const whole = (await res.json()) as Json;
    assert.ok(whole.choices[0].message.reasoning_content.length > 0);
    assert.doesNotMatch(whole.choices[0].message.content, /<\/think>/);
    const streamed = await fetch(`${engine.baseUrl}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ ...ask, reasoning_format: "deepseek-legacy", stream: true }) });
    const text = await streamed.text();
    assert.doesNotMatch(text, /reasoning_content/);
    const content = text
      .split("\n\n")
      .map((e) => e.replace(/^data: /, "").trim())
      .filter((e) => e !== "" && e !== "[DONE]")
      .map((e) => (JSON.parse(e) as Json).choices?.[0]?.delta?.content ?? "")
      .join("");
    assert.match(content, /<\/think>/);
  });

  test("chat_template_kwargs enable_thinking false: the prompt is the template's empty thought, written once", async () => {
    const engine = await start(ENABLE_THINKING_TEMPLATE);
    const post = async (body: object) => (await (await fetch(`${engine.baseUrl}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ ...ask, ...body }) })).json()) as Json;
    const off = await post({ chat_template_kwargs: { enable_thinking: false } });
    assert.equal(off.choices[0].message.reasoning_content, undefined);
    assert.equal(off.usage.completion_tokens, 24, "all tokens go to the answer");
    const on = await post({});
    // The template's "<think>\n\n</think>\n\n" replaces its "<think>\n", once.
    const count = async (content: string) => ((await (await fetch(`${engine.baseUrl}/tokenize`, { method: "POST", body: JSON.stringify({ content }) })).json()) as Json).tokens.length as number;
    const expected = (await count("<|im_start|>assistant\n<think>\n\n</think>\n\n")) - (await count("<|im_start|>assistant\n<think>\n"));
    assert.equal(off.usage.prompt_tokens - on.usage.prompt_tokens, expected);
  });
});
