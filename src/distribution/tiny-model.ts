import { writeGguf, type GgufTensorSpec, type GgufValue } from "./gguf-writer.ts";

/**
 * Generates small, valid llama-architecture GGUF models with deterministic
 * pseudo-random weights. Tests and benchmarks make their models with this;
 * nothing is ever downloaded. The text such a model writes is gibberish, but
 * it goes through the same loading, tokenizing, templating and sampling code
 * as a real model.
 */
export interface TinyModelOptions {
  /** Weights are a pure function of this seed. Default 1. */
  seed?: number;
  /** Default 64. Must be a multiple of `heads`. */
  embeddingLength?: number;
  /** Default 2. */
  blockCount?: number;
  /** Default 128. */
  feedForwardLength?: number;
  /** Default 4. */
  heads?: number;
  /** Trained context length written to the metadata. Default 4096. */
  contextLength?: number;
  /** `general.name`. Default "tiny-llama". */
  name?: string;
  /** Jinja chat template; `null` writes none. Default: ChatML. */
  chatTemplate?: string | null;
  /** Pooling for embedding models (`llama.pooling_type`). Default: none written. */
  pooling?: "mean" | "cls" | "last";
  /**
   * Leaves byte and special tokens reachable by the output layer. By default
   * their output rows are zeroed so greedy text is readable ASCII gibberish
   * that never ends early on `</s>`.
   */
  keepSpecialLogits?: boolean;
  /**
   * Adds `<think>`/`</think>` tokens (user-defined, so they detokenize as
   * text, and silent by default) for models with a thinking template; pair
   * with `THINKING_TEMPLATE`.
   */
  thinking?: boolean;
  /**
   * Writes a reranker instead: a `qwen3` architecture (llama.cpp loads a
   * classifier head only for reranking architectures such as qwen3 and bert)
   * with `pooling_type` rank, two classifier labels ("yes", "no") and a
   * `cls.output.weight` head; node-llama-cpp's LlamaRankingContext then
   * scores P(yes) from the last token. Embedding length must equal
   * heads × rope dimension, as qwen3 requires.
   */
  reranker?: boolean;
  /**
   * How the matrices are stored: F32 (default), Q8_0 or Q4_0, the formats
   * real models are often shipped in (llama.cpp's batched kernels differ
   * between them, which benchmarks care about). Norms stay F32 as in real files.
   */
  weights?: "F32" | "Q8_0" | "Q4_0";
  /**
   * Adds `<tool_call>`/`</tool_call>` tokens (user-defined, so they
   * detokenize as text, and silent by default) for Hermes/Qwen-style tool
   * templates; pair with `HERMES_TOOLS_TEMPLATE`.
   */
  toolCallTokens?: boolean;
  /**
   * Raises `<tool_call>`'s logit by about this much at every position, so a
   * random model starts tool calls on its own (needs `toolCallTokens`).
   * Embedding dimension 0 becomes a constant feature that only this token's
   * output row reads.
   */
  toolCallBias?: number;
  /**
   * Adds Qwen2.5-Coder-style fill-in-the-middle control tokens
   * (`<|fim_prefix|>`, `<|fim_suffix|>`, `<|fim_middle|>`, `<|fim_pad|>`,
   * `<|fim_repo|>`, `<|file_sep|>`) and names them in the metadata
   * (`tokenizer.ggml.fim_*_token_id`, as llama-vocab.cpp reads them), so
   * `/infill` can be served. Silent by default.
   */
  fim?: boolean;
  /**
   * False writes `tokenizer.ggml.add_space_prefix: false`: text after a
   * special token gets no leading space, as in BPE models (Qwen, Llama 3).
   * llama-server checks a tool-call or JSON grammar against the generation
   * prompt's tokens, which fails when `assistant` comes back as ` assistant`.
   * Default true (SentencePiece's behaviour, llama.cpp's default).
   */
  spacePrefix?: boolean;
  /**
   * Scales the blocks' output projections (`attn_output`, `ffn_down`), so
   * the residual stream is dominated by the token embedding: a model whose
   * next token depends mostly on the current one. Default 1. With
   * `draftBlocks`, it makes a truncated copy predict the full model well.
   */
  blockScale?: number;
  /**
   * Writes a draft of the model these options describe: only its first N
   * blocks, every tensor (embedding, blocks, output) identical to the full
   * model's. Same vocabulary, so it can serve as a speculative-decoding draft.
   */
  draftBlocks?: number;
}

/** The FIM tokens `fim: true` adds, by the metadata key that names each. */
export const FIM_TOKENS = {
  fim_pre_token_id: "<|fim_prefix|>",
  fim_suf_token_id: "<|fim_suffix|>",
  fim_mid_token_id: "<|fim_middle|>",
  fim_pad_token_id: "<|fim_pad|>",
  fim_rep_token_id: "<|fim_repo|>",
  fim_sep_token_id: "<|file_sep|>",
} as const;

/** ChatML whose generation prompt opens a thought, as Qwen3-style thinking templates do. */
export const THINKING_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}";

/**
 * ChatML as Qwen3's thinking template has it: the generation prompt opens a
 * thought unless `enable_thinking` is false (then it writes an empty one),
 * and an assistant message's `reasoning_content` is rendered in
 * `<think>`…`</think>`. llama-server's template analysis finds the reasoning
 * markers from these two differences (THINKING_TEMPLATE shows neither, so
 * llama-server treats it as content-only).
 */
export const REASONING_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}" +
  "{% if message['role'] == 'assistant' and message['reasoning_content'] %}{{'<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n'}}{% endif %}" +
  "{{message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}" +
  "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}";

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * A Qwen2.5-style template with Hermes tool calls (`<tool_call>{"name", "arguments"}</tool_call>`,
 * results in `<tool_response>`); node-llama-cpp reads its call syntax from it.
 */
export const HERMES_TOOLS_TEMPLATE = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}";

/**
 * HERMES_TOOLS_TEMPLATE with each call written on one line, `<tool_call>{"name": …}</tool_call>`.
 * llama-server derives its tool-call grammar and lazy trigger from how the template writes a call,
 * and a tiny model never writes the newline after `<tool_call>` that the original has, so
 * llama-server would never see a call start; with this template it does. (node-llama-cpp, our
 * engine, finds the call syntax in HERMES_TOOLS_TEMPLATE only.)
 */
export const HERMES_INLINE_TOOLS_TEMPLATE = HERMES_TOOLS_TEMPLATE.replace(`{{- '\\n<tool_call>\\n{"name": "' }}`, `{{- '<tool_call>{"name": "' }}`).replace(
  `{{- '}\\n</tool_call>' }}`,
  `{{- '}</tool_call>' }}`,
);

const WORDS = [
  "the", "hello", "world", "is", "a", "an", "of", "and", "to", "in", "it", "you", "that", "was", "for", "on", "are",
  "with", "as", "be", "at", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all",
  "were", "we", "when", "your", "can", "said", "there", "use", "each", "which", "she", "do", "how", "their", "if",
  "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
  "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
  "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down",
  "day", "did", "get", "come", "made", "may", "part", "model", "runner", "user", "assistant", "system",
];

/** Token types as llama.cpp reads them (`llama_token_type`). */
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_BYTE = 6;

interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Tokens the output layer should never pick by default. */
  silent: Set<number>;
}

function buildVocab(options: TinyModelOptions = {}): Vocab {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const silent = new Set<number>();
  const add = (t: string, score: number, type: number, isSilent: boolean) => {
    if (isSilent) silent.add(tokens.length);
    tokens.push(t);
    scores.push(score);
    types.push(type);
  };
  add("<unk>", 0, TOKEN_UNKNOWN, true);
  add("<s>", 0, TOKEN_CONTROL, true);
  add("</s>", 0, TOKEN_CONTROL, true);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 0, TOKEN_BYTE, true);
  add("<|im_start|>", 0, TOKEN_CONTROL, true);
  add("<|im_end|>", 0, TOKEN_CONTROL, true);
  // SentencePiece merges prefer higher scores: longer pieces score higher.
  const pieces = new Set<string>(["\u2581"]);
  for (const c of "abcdefghijklmnopqrstuvwxyz") {
    pieces.add(c);
    pieces.add(`\u2581${c}`);
  }
  for (const c of ".,!?:;'-0123456789") pieces.add(c);
  // SentencePiece builds a word by merging pairs, so every prefix must be a piece too.
  for (const w of WORDS) {
    for (let n = 2; n <= w.length; n++) {
      pieces.add(`\u2581${w.slice(0, n)}`);
      pieces.add(w.slice(0, n));
    }
  }
  for (const p of pieces) add(p, -1000 + p.length * 10, TOKEN_NORMAL, false);
  // Appended last, so the other tokens keep their ids (and their weights).
  if (options.thinking) {
    add("<think>", 0, TOKEN_USER_DEFINED, true);
    add("</think>", 0, TOKEN_USER_DEFINED, true);
  }
  if (options.toolCallTokens || options.toolCallBias !== undefined) {
    add("<tool_call>", 0, TOKEN_USER_DEFINED, true);
    add("</tool_call>", 0, TOKEN_USER_DEFINED, true);
  }
  if (options.fim) for (const text of Object.values(FIM_TOKENS)) add(text, 0, TOKEN_CONTROL, true);
  return { tokens, scores, types, silent };
}

/** The constant embedding feature behind `toolCallBias`. */
const BIAS_FEATURE = 4;

/** A stateless hash of (seed, tensor, index) → [-1, 1): chunking cannot change the weights (also the projector's). */
export function noise(seed: number, tensor: number, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(tensor + 1, 0xc2b2ae35) ^ index;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 2147483648 - 1;
}

/** Parameter count of the model these options describe. */
export function tinyModelParameterCount(options: TinyModelOptions = {}): number {
  const spec = tinyModelTensors(options, buildVocab(options));
  return spec.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
}

function tinyModelTensors(options: TinyModelOptions, vocab: Vocab): GgufTensorSpec[] {
  const seed = options.seed ?? 1;
  const nEmbd = options.embeddingLength ?? 64;
  const nFf = options.feedForwardLength ?? 128;
  const nLayers = options.blockCount ?? 2;
  const written = Math.min(nLayers, options.draftBlocks ?? nLayers);
  const blockScale = options.blockScale ?? 1;
  const nVocab = vocab.tokens.length;
  let tensorIndex = 0;
  const random = (name: string, dims: number[], scale: number): GgufTensorSpec => {
    const id = tensorIndex++;
    return {
      name,
      dims,
      ...(options.weights && options.weights !== "F32" && dims.length === 2 && dims[0]! % 32 === 0 ? { type: options.weights } : {}),
      fill: (out, offset) => {
        for (let i = 0; i < out.length; i++) out[i] = noise(seed, id, offset + i) * scale;
      },
    };
  };
  const ones = (name: string, dims: number[]): GgufTensorSpec => ({ name, dims, fill: (out) => out.fill(1) });
  const w = 1 / Math.sqrt(nEmbd);
  const embeddings = random("token_embd.weight", [nEmbd, nVocab], 1);
  const bias = options.toolCallBias;
  const biased = bias === undefined ? -1 : vocab.tokens.indexOf("<tool_call>");
  if (biased >= 0) {
    const fillRandom = embeddings.fill;
    embeddings.fill = (out, offset) => {
      fillRandom(out, offset);
      for (let i = 0; i < out.length; i++) if ((offset + i) % nEmbd === 0) out[i] = BIAS_FEATURE;
    };
  }
  const tensors: GgufTensorSpec[] = [embeddings];
  const headDim = nEmbd / (options.heads ?? 4);
  for (let i = 0; i < nLayers; i++) {
    if (i === written) {
      // A draft's tensors keep the full model's ids (and so its weights): the dropped blocks' ids are skipped.
      tensorIndex += 7 * (nLayers - written);
      break;
    }
    if (options.reranker) tensors.push(ones(`blk.${i}.attn_q_norm.weight`, [headDim]), ones(`blk.${i}.attn_k_norm.weight`, [headDim]));
    tensors.push(
      ones(`blk.${i}.attn_norm.weight`, [nEmbd]),
      random(`blk.${i}.attn_q.weight`, [nEmbd, nEmbd], w),
      random(`blk.${i}.attn_k.weight`, [nEmbd, nEmbd], w),
      random(`blk.${i}.attn_v.weight`, [nEmbd, nEmbd], w),
      random(`blk.${i}.attn_output.weight`, [nEmbd, nEmbd], w * blockScale),
      ones(`blk.${i}.ffn_norm.weight`, [nEmbd]),
      random(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf], w),
      random(`blk.${i}.ffn_up.weight`, [nEmbd, nFf], w),
      random(`blk.${i}.ffn_down.weight`, [nFf, nEmbd], blockScale / Math.sqrt(nFf)),
    );
  }
  tensors.push(ones("output_norm.weight", [nEmbd]));
  const output = random("output.weight", [nEmbd, nVocab], w * 4);
  if (!options.keepSpecialLogits) {
    const fillRandom = output.fill;
    output.fill = (out, offset) => {
      fillRandom(out, offset);
      for (let i = 0; i < out.length; i++) {
        if (vocab.silent.has(Math.floor((offset + i) / nEmbd))) out[i] = 0;
      }
    };
  }
  if (biased >= 0) {
    const fillOutput = output.fill;
    output.fill = (out, offset) => {
      fillOutput(out, offset);
      for (let i = 0; i < out.length; i++) {
        const token = Math.floor((offset + i) / nEmbd);
        // Dimension 0 is about BIAS_FEATURE after the final norm: only the biased token reads it.
        if ((offset + i) % nEmbd === 0) out[i] = token === biased ? bias! / BIAS_FEATURE : 0;
      }
    };
  }
  tensors.push(output);
  // The classifier head: one row per label ("yes", "no").
  if (options.reranker) tensors.push(random("cls.output.weight", [nEmbd, 2], w * 4));
  return tensors;
}

/**
 * Writes a tiny llama GGUF to `path` (atomically) and resolves with its size
 * in bytes. The defaults give a ~0.5 MB model with a ChatML template.
 */
export async function writeTinyModel(path: string, options: TinyModelOptions = {}): Promise<number> {
  const nEmbd = options.embeddingLength ?? 64;
  const heads = options.heads ?? 4;
  if (nEmbd % heads !== 0) throw new RangeError(`embeddingLength ${nEmbd} is not a multiple of heads ${heads}`);
  const vocab = buildVocab(options);
  const arch = options.reranker ? "qwen3" : "llama";
  const metadata: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: arch },
    "general.name": { type: "string", value: options.name ?? (options.reranker ? "tiny-reranker" : "tiny-llama") },
    // llama_ftype: 0 = all F32, 2 = mostly Q4_0, 7 = mostly Q8_0.
    "general.file_type": { type: "u32", value: { F32: 0, Q4_0: 2, Q8_0: 7 }[options.weights ?? "F32"] },
    [`${arch}.context_length`]: { type: "u32", value: options.contextLength ?? 4096 },
    [`${arch}.embedding_length`]: { type: "u32", value: nEmbd },
    [`${arch}.block_count`]: { type: "u32", value: Math.min(options.blockCount ?? 2, options.draftBlocks ?? Infinity) },
    [`${arch}.feed_forward_length`]: { type: "u32", value: options.feedForwardLength ?? 128 },
    [`${arch}.attention.head_count`]: { type: "u32", value: heads },
    [`${arch}.attention.head_count_kv`]: { type: "u32", value: heads },
    [`${arch}.rope.dimension_count`]: { type: "u32", value: nEmbd / heads },
    [`${arch}.attention.layer_norm_rms_epsilon`]: { type: "f32", value: 1e-5 },
    [`${arch}.vocab_size`]: { type: "u32", value: vocab.tokens.length },
    "tokenizer.ggml.model": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "string[]", value: vocab.tokens },
    "tokenizer.ggml.scores": { type: "f32[]", value: vocab.scores },
    "tokenizer.ggml.token_type": { type: "i32[]", value: vocab.types },
    "tokenizer.ggml.unknown_token_id": { type: "u32", value: 0 },
    "tokenizer.ggml.bos_token_id": { type: "u32", value: 1 },
    "tokenizer.ggml.eos_token_id": { type: "u32", value: 2 },
    "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
    "tokenizer.ggml.add_eos_token": { type: "bool", value: false },
  };
  if (options.spacePrefix === false) metadata["tokenizer.ggml.add_space_prefix"] = { type: "bool", value: false };
  if (options.fim) {
    for (const [key, text] of Object.entries(FIM_TOKENS)) metadata[`tokenizer.ggml.${key}`] = { type: "u32", value: vocab.tokens.indexOf(text) };
  }
  const template = options.chatTemplate === undefined ? CHATML_TEMPLATE : options.chatTemplate;
  if (template !== null) metadata["tokenizer.chat_template"] = { type: "string", value: template };
  if (options.pooling) {
    metadata[`${arch}.pooling_type`] = { type: "u32", value: { mean: 1, cls: 2, last: 3 }[options.pooling] };
  }
  if (options.reranker) {
    metadata[`${arch}.pooling_type`] = { type: "u32", value: 4 }; // LLAMA_POOLING_TYPE_RANK
    metadata[`${arch}.classifier.output_labels`] = { type: "string[]", value: ["yes", "no"] };
  }
  return writeGguf(path, metadata, tinyModelTensors(options, vocab));
}
