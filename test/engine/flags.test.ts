import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { JinjaTemplateChatWrapper } from "node-llama-cpp";
import { builtinTemplates, EngineUsageError, FLAGS, flagNames, parseEngineArgs, type FlagDef } from "../../src/engine/options.ts";
import { chatCompletionRequest, checkSamplingDefaults, completionRequest, withSamplingDefaults } from "../../src/engine/requests.ts";
import { validateRuntimeFlags, withReasoningBudget } from "../../src/scheduling/runtime-flags.ts";
import { RuntimeFlagError } from "../../src/scheduling/errors.ts";
import { MR_BIN } from "../helpers/engine.ts";

/** A value each flag accepts (its minimum, first choice, or a known-good string). */
function sampleValue(def: FlagDef): string | null {
  const v = def.value;
  if (v === null) return null;
  switch (v.kind) {
    case "int":
      return String(v.min ?? 1);
    case "float":
      return String(v.max !== undefined ? v.max / 2 : (v.min ?? 0) + 0.5);
    case "choice":
      return v.choices[0]!;
    case "string": {
      const known: Record<string, string> = { "--chat-template": "chatml", "-ngl": "auto", "-dev": "none", "--samplers": "top_k;temperature" };
      return known[def.names[0]!] ?? "x";
    }
  }
}

/** Flags that take effect only with others (the draft flags need a draft model), given those others. */
const NEEDS: Record<string, string[]> = {
  "-md": ["--spec-type", "draft-simple"],
  "--spec-draft-n-max": ["--spec-type", "draft-simple", "-md", "d.gguf"],
  "--spec-draft-p-min": ["--spec-type", "draft-simple", "-md", "d.gguf"],
};

/** Flags refused whatever their value: the table says so in its effect text. */
const isRefused = (def: FlagDef, negated: boolean) =>
  def.effect.startsWith("refused") || (negated && /--no-[\w-]+ refused|--no-jinja is refused/.test(def.effect));

describe("the engine's flag table", () => {
  test("every spelling parses: short, long, --flag=value; a refused one names itself", () => {
    for (const def of FLAGS) {
      const value = sampleValue(def);
      const spellings = [...def.names.map((n) => [n, false] as const), ...(def.negations ?? []).map((n) => [n, true] as const)];
      for (const [name, negated] of spellings) {
        const forms = value === null ? [[name]] : [[name, value], ...(name.startsWith("--") ? [[`${name}=${value}`]] : [])];
        for (const form of forms) {
          const argv = [...(name === "-m" || name === "--model" ? form : ["-m", "x.gguf", ...form]), ...(NEEDS[def.names[0]!] ?? [])];
          if (isRefused(def, negated)) {
            assert.throws(() => parseEngineArgs(argv), (e: Error) => e instanceof EngineUsageError && e.message.startsWith(name) && /not supported: /.test(e.message), form.join(" "));
          } else {
            assert.doesNotThrow(() => parseEngineArgs(argv), form.join(" "));
          }
        }
      }
    }
  });

  test("no spelling belongs to two flags, and every flag says what it does", () => {
    const names = FLAGS.flatMap((d) => [...d.names, ...(d.negations ?? [])]);
    assert.equal(new Set(names).size, names.length);
    for (const def of FLAGS) {
      assert.ok(def.help.length > 0 && def.effect.length > 0, def.names.join());
    }
  });

  test("flags reach the options node-llama-cpp gets", () => {
    const o = parseEngineArgs([
      "-m", "a.gguf", "-fa", "off", "-ctk", "q8_0", "--cache-type-v=q4_0", "--no-mmap", "--mlock", "--context-shift", "--keep", "8",
      "-ub", "256", "-tb", "-1", "-dev", "none", "-ngl", "99", "--timeout", "30", "--api-key", "a,b", "--api-key", "c", "--chat-template", "chatml",
      "--reasoning-budget", "0", "--reasoning-format", "none", "--cache-reuse", "0", "--jinja", "--kv-offload",
    ]);
    assert.equal(o.flashAttention, false);
    assert.equal(o.kvCacheKeyType, "Q8_0");
    assert.equal(o.kvCacheValueType, "Q4_0");
    assert.equal(o.useMmap, false);
    assert.equal(o.useMlock, true);
    assert.deepEqual(o.contextShift, { keep: 8 });
    assert.equal(o.batchSize, 256);
    assert.equal(o.gpuLayers, 0, "-dev none means CPU only, whatever -ngl says");
    assert.equal(o.cpuOnly, true);
    assert.equal(o.timeoutSeconds, 30);
    assert.deepEqual(o.apiKeys, ["a", "b", "c"]);
    assert.equal(o.chatTemplate?.kind, "text");
    assert.equal(o.reasoningBudget, 0);
    assert.equal(o.reasoningFormat, "none");
    assert.deepEqual(parseEngineArgs(["-m", "a", "--rope-scaling", "yarn", "--rope-freq-base", "5e5", "--rope-freq-scale", "0.25", "--yarn-orig-ctx", "4096"]).ropeOverrides, {
      "rope.scaling.type": { kind: "string", value: "yarn" },
      "rope.freq_base": { kind: "float", value: 500000 },
      "rope.scaling.factor": { kind: "float", value: 4 },
      "rope.scaling.original_context_length": { kind: "int", value: 4096 },
    });
    assert.deepEqual(parseEngineArgs(["-m", "a", "--rope-scale", "4", "--rope-scale", "0", "--yarn-orig-ctx", "0"]).ropeOverrides, {}, "0 = the model's own");
    const d = parseEngineArgs(["-m", "a.gguf"]);
    assert.equal(d.flashAttention, "auto");
    assert.equal(d.useMmap, null);
    assert.equal(d.contextShift, null);
    assert.deepEqual(d.samplingDefaults, {});
    assert.equal(parseEngineArgs(["-m", "a", "--context-shift", "--no-context-shift"]).contextShift, null, "the last one wins");
    assert.equal(parseEngineArgs(["-m", "a", "--mmap"]).useMmap, true);
    assert.equal(parseEngineArgs(["-m", "a", "-fa", "on"]).flashAttention, true);
    assert.deepEqual(parseEngineArgs(["-m", "a", "--chat-template", "{{ messages }}"]).chatTemplate, { kind: "text", template: "{{ messages }}" });
  });

  test("sampling flags set defaults under the request fields' names", () => {
    const o = parseEngineArgs([
      "-m", "a", "-n", "3", "--temp", "0", "--top-k=5", "--top-p", "0.9", "--min-p", "0.1", "-s", "42", "--repeat-penalty", "1.3",
      "--repeat-last-n", "32", "--presence-penalty", "0.5", "--frequency-penalty", "-0.5", "--mirostat", "2", "--mirostat-lr", "0.2",
      "--mirostat-ent", "4", "--typical", "0.7", "--dry-multiplier", "0.8", "--dry-base", "1.5", "--dry-allowed-length", "3",
      "--dry-penalty-last-n", "-1", "--dry-sequence-breaker", "x", "--dry-sequence-breaker", "y", "--xtc-probability", "0.5",
      "--xtc-threshold", "0.2", "--top-nsigma", "1.5", "--dynatemp-range", "0.3", "--dynatemp-exp", "1.2", "--samplers", "top_k;temperature",
      "--ignore-eos",
    ]);
    assert.deepEqual(o.samplingDefaults, {
      n_predict: 3, temperature: 0, top_k: 5, top_p: 0.9, min_p: 0.1, seed: 42, repeat_penalty: 1.3, repeat_last_n: 32,
      presence_penalty: 0.5, frequency_penalty: -0.5, mirostat: 2, mirostat_eta: 0.2, mirostat_tau: 4, typical_p: 0.7,
      dry_multiplier: 0.8, dry_base: 1.5, dry_allowed_length: 3, dry_penalty_last_n: -1, dry_sequence_breakers: ["x", "y"],
      xtc_probability: 0.5, xtc_threshold: 0.2, top_n_sigma: 1.5, dynatemp_range: 0.3, dynatemp_exponent: 1.2,
      samplers: ["top_k", "temperature"], ignore_eos: true,
    });
    assert.deepEqual(parseEngineArgs(["-m", "a", "--dry-sequence-breaker", "x", "--dry-sequence-breaker", "none"]).samplingDefaults, { dry_sequence_breakers: [] });
    assert.deepEqual(parseEngineArgs(["-m", "a", "-s", "-1", "-n", "-1"]).samplingDefaults, {}, "-1 = llama-server's own default (random seed, no limit)");
  });

  test("bad values and refusals are one line naming the flag", () => {
    const cases: Array<[string[], RegExp]> = [
      [["--temp", "hot"], /^--temp needs a number, got "hot"$/],
      [["--top-p", "2"], /^--top-p must be at most 1, got 2$/],
      [["-fa", "yes"], /^-fa must be one of on, off, auto, got "yes"$/],
      [["-ctk", "q3_k"], /^-ctk must be one of f32, f16/],
      [["--mirostat", "3"], /^--mirostat must be at most 2/],
      [["--samplers", "top_k;bogus"], /^--samplers: unknown sampler "bogus"/],
      [["--mlock=1"], /^--mlock takes no value$/],
      [["-b", "512", "-ub", "128"], /^-ub 128 is not supported: node-llama-cpp uses the batch size/],
      [["-t", "2", "-tb", "4"], /^-tb 4 is not supported: node-llama-cpp uses one thread count/],
      [["--cache-reuse", "256"], /^--cache-reuse 256 is not supported/],
      [["-dev", "CUDA0"], /^-dev CUDA0 is not supported/],
      [["--no-kv-offload"], /^--no-kv-offload is not supported/],
      [["-nkvo"], /^-nkvo is not supported/],
      [["--no-jinja"], /^--no-jinja is not supported/],
      [["--chat-template", "phi3"], /^--chat-template phi3 is not supported: built-in templates here are chatml, llama3, gemma/],
      [["--yarn-beta-fast", "32"], /^--yarn-beta-fast 32 is not supported: node-llama-cpp has no YaRN context parameters/],
      [["-sm", "row"], /^-sm row is not supported/],
      [["-ts", "3,1"], /^-ts 3,1 is not supported/],
      [["-mg", "1"], /^-mg 1 is not supported/],
      [["--reasoning-format", "deepseek-legacy"], /^--reasoning-format deepseek-legacy is not supported: thoughts go either/],
      [["--reasoning-format", "x"], /^--reasoning-format must be one of none, deepseek, deepseek-legacy, auto, got "x"$/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseEngineArgs(["-m", "a", ...args]), (e: Error) => e instanceof EngineUsageError && message.test(e.message) && !e.message.includes("\n"), args.join(" "));
    }
  });

  test("mr engine --help and shell completion list every spelling of every flag", () => {
    const help = spawnSync(process.execPath, [MR_BIN, "engine", "--help"], { encoding: "utf8" });
    assert.equal(help.status, 0);
    const bash = spawnSync(process.execPath, [MR_BIN, "completion", "bash"], { encoding: "utf8" });
    assert.equal(bash.status, 0, bash.stderr);
    const engineCase = bash.stdout.split("\n").find((l) => l.trim().startsWith("engine)"))!;
    const fish = spawnSync(process.execPath, [MR_BIN, "completion", "fish"], { encoding: "utf8" }).stdout;
    for (const name of flagNames()) {
      assert.ok(new RegExp(`(^|[\\s,])${name}([\\s,]|$)`, "m").test(help.stdout), `--help lacks ${name}`);
      assert.ok(engineCase.split(/[\s"]/).includes(name), `bash completion lacks ${name}`);
      const fishOpt = name.startsWith("--") ? `-l ${name.slice(2)}` : name.length === 2 ? `-s ${name.slice(1)}` : `-o ${name.slice(1)}`;
      assert.ok(fish.includes(`__fish_seen_subcommand_from engine' ${fishOpt}\n`), `fish completion lacks ${name}`);
    }
  });
});

describe("sampling defaults under a request", () => {
  test("a request's own field wins; null counts as absent", () => {
    const defaults = { temperature: 0, top_k: 5 };
    assert.deepEqual(withSamplingDefaults({ messages: [], temperature: 1, top_k: null }, defaults), { messages: [], temperature: 1, top_k: 5 });
  });

  test("-n stands in only when the request has no n_predict, max_tokens or max_completion_tokens", () => {
    assert.equal((withSamplingDefaults({}, { n_predict: 3 }) as { max_tokens: number }).max_tokens, 3);
    for (const field of ["n_predict", "max_tokens", "max_completion_tokens"]) {
      const merged = withSamplingDefaults({ [field]: 9 }, { n_predict: 3 }) as Record<string, unknown>;
      assert.deepEqual(merged, { [field]: 9 }, field);
    }
  });

  test("a default whose request field the engine does not know is refused, never dropped", () => {
    for (const def of FLAGS) {
      const field = def.samplingField;
      if (field === undefined || field === "n_predict") continue;
      const known = field in chatCompletionRequest.shape && field in completionRequest.shape;
      if (known) assert.doesNotThrow(() => checkSamplingDefaults({ [field]: 1 }), field);
      else assert.throws(() => checkSamplingDefaults({ [field]: 1 }), (e: Error) => e.message.startsWith(`${def.names.at(-1)} is not supported yet: `) && e.message.includes(`"${field}"`), field);
    }
    assert.doesNotThrow(() => checkSamplingDefaults({ temperature: 0, top_k: 1, n_predict: 3 }));
  });
});

describe("runtime flags come from the same table", () => {
  test("every flag the runner does not own is allowed, checked by the engine's parser", () => {
    for (const def of FLAGS) {
      const value = sampleValue(def);
      for (const name of def.names) {
        const flags = value === null ? [name] : [name, value];
        if (!def.runtime) {
          assert.throws(() => validateRuntimeFlags("llama.cpp", flags), (e: Error) => e instanceof RuntimeFlagError && /sets it itself/.test(e.message), name);
        } else if (isRefused(def, false)) {
          assert.throws(() => validateRuntimeFlags("llama.cpp", flags), (e: Error) => e instanceof RuntimeFlagError && /is not supported: /.test(e.message), name);
        } else {
          assert.doesNotThrow(() => validateRuntimeFlags("llama.cpp", flags), name);
        }
      }
    }
  });

  test("spellings are normalized, the last occurrence wins, a repeatable flag keeps each", () => {
    assert.deepEqual(
      validateRuntimeFlags("llama.cpp", ["--temp", "0.5", "-ctk", "q8_0", "--temperature=0.7", "--no-mmap", "-fa", "on", "--mmap", "--dry-sequence-breaker", "a", "--dry-sequence-breaker", "b"]).passThrough,
      ["--cache-type-k", "q8_0", "--temp", "0.7", "--flash-attn", "on", "--mmap", "--dry-sequence-breaker", "a", "--dry-sequence-breaker", "b"],
    );
    assert.throws(() => validateRuntimeFlags("llama.cpp", ["--chat-template", "{{ '</s>' }}"]), /may not contain paths/);
    assert.throws(() => validateRuntimeFlags("llama.cpp", ["--top-p", "7"]), /"--top-p" must be at most 1/);
  });

  test("llamacpp.reasoning-budget becomes --reasoning-budget, replacing an earlier one", () => {
    assert.deepEqual(withReasoningBudget(["-t", "1", "--reasoning-budget", "5"], 0), ["-t", "1", "--reasoning-budget", "0"]);
    assert.deepEqual(withReasoningBudget(["-t", "1"], undefined), ["-t", "1"]);
  });
});

describe("docs/engine.md", () => {
  test("its Flags table has a row for every flag of the table", async () => {
    const { readFile } = await import("node:fs/promises");
    const doc = await readFile(new URL("../../docs/engine.md", import.meta.url), "utf8");
    const section = doc.slice(doc.indexOf("## Flags\n"), doc.indexOf("\n## ", doc.indexOf("## Flags\n") + 1));
    const rows = section.split("\n").filter((l) => l.startsWith("| `"));
    for (const def of FLAGS) {
      assert.ok(rows.some((r) => r.startsWith(`| \`${def.names[0]}\``)), `docs/engine.md has no row for ${def.names[0]}`);
    }
  });
});

describe("--chat-template built-in names", () => {
  test("each writes what llama.cpp's llm_chat_apply_template writes for that name", () => {
    const history = [
      { type: "system" as const, text: "Be brief." },
      { type: "user" as const, text: "hi" },
      { type: "model" as const, response: ["yo"] },
      { type: "user" as const, text: "again" },
      { type: "model" as const, response: [] },
    ];
    // Expected texts follow src/llama-chat.cpp of the bundled llama.cpp release.
    const expected: Record<string, string> = {
      chatml: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n",
      llama3:
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      gemma: "<start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n",
    };
    assert.deepEqual(Object.keys(builtinTemplates()), Object.keys(expected));
    for (const [name, template] of Object.entries(builtinTemplates())) {
      const wrapper = new JinjaTemplateChatWrapper({ template });
      assert.equal(wrapper.generateContextState({ chatHistory: history }).contextText.toString(), expected[name], name);
      assert.deepEqual(parseEngineArgs(["-m", "a", "--chat-template", name]).chatTemplate, { kind: "text", template });
    }
  });
});

describe("speculative decoding flags (llama-server's of this release)", () => {
  test("--spec-type draft-simple -md FILE --spec-draft-n-max N --spec-draft-p-min P; llama-server's defaults", () => {
    assert.equal(parseEngineArgs(["-m", "a"]).draft, null);
    assert.deepEqual(parseEngineArgs(["-m", "a", "--spec-type", "draft-simple", "--model-draft", "d"]).draft, { modelPath: "d", maxTokens: 3, minProbability: 0 });
    assert.deepEqual(parseEngineArgs(["-m", "a", "--spec-type", "draft-simple", "-md", "d", "--spec-draft-n-max", "8", "--draft-p-min", "0.5"]).draft, { modelPath: "d", maxTokens: 8, minProbability: 0.5 });
    assert.equal(parseEngineArgs(["-m", "a", "--spec-type", "none"]).draft, null);
  });

  test("settings that would do nothing are refused, naming what is missing", () => {
    const cases: Array<[string[], RegExp]> = [
      [["-md", "d"], /-md needs --spec-type draft-simple/],
      [["--spec-draft-n-max", "4"], /need --spec-type draft-simple and a draft model/],
      [["--spec-type", "draft-simple"], /needs a draft model \(-md FILE\)/],
      [["--spec-type", "ngram-simple"], /--spec-type ngram-simple is not supported: only draft-simple/],
      [["--spec-type", "draft-simple", "-md", "d", "--embeddings"], /-md is not supported with --embeddings/],
      [["--draft-max", "4"], /unknown argument: --draft-max/],
      [["--spec-type", "draft-simple", "-md", "d", "--spec-draft-n-max", "0"], /--spec-draft-n-max must be at least 1/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseEngineArgs(["-m", "a", ...args]), (e: Error) => e instanceof EngineUsageError && message.test(e.message), args.join(" "));
    }
  });

  test("they are the configuration's, not runtime flags", () => {
    for (const flag of ["-md", "--spec-type", "--spec-draft-n-max", "--spec-draft-p-min"]) {
      assert.throws(() => validateRuntimeFlags("llama.cpp", [flag, "1"]), RuntimeFlagError, flag);
    }
  });
});
