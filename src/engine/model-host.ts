import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import {
  getLlama,
  LlamaLogLevel,
  readGgufFileInfo,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  type LlamaModel,
  type LlamaRankingContext,
  type Token,
} from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import { ContextSizeExceededError, NotSupportedError } from "./errors.ts";
import { createChatPrompter, type ChatMessage, type ChatPrompter, type ThinkingSyntax } from "./chat-prompt.ts";
import type { ChatModelFunctions } from "node-llama-cpp";
import { generate, cachedPrefixLength, type GenerationResult, type LiveStats, type ReasoningControl, type SamplingParams, type ToolCallControl } from "./generate.ts";
import type { CallSyntax } from "./tools.ts";
import type { TokenProbabilities } from "./logprobs.ts";
import { GrammarCache } from "./grammar/schema-gbnf.ts";
import type { EngineOptions } from "./options.ts";
import type { Vocabulary } from "./sampling.ts";
import { slotOrderStrategy } from "./batch-order.ts";
import { SlotPool } from "./slot-pool.ts";
import { EngineMetrics } from "./metrics.ts";
import { generationSettings } from "./llama-shapes.ts";
import { StepGate } from "./step-gate.ts";
import { EngineUsageError } from "./options.ts";
import { readVocabulary, vocabularyMismatch } from "./draft-vocabulary.ts";
import { guardSampling } from "./sampling-guard.ts";
import { DraftSlot } from "./speculative.ts";
import { normalizeEmbedding } from "./embedding-vectors.ts";

const POOLING_NAMES = ["none", "mean", "cls", "last", "rank"] as const;

/**
 * The RoPE flags as node-llama-cpp's `metadataOverrides` under the model's
 * architecture. node-llama-cpp types a JS number by whether it is an
 * integer, and llama.cpp drops an override of the wrong type with only a
 * warning, so an integral float (`--rope-freq-base 10000`) is nudged by one
 * part in 2^40: not an integer in JS, the same float32 in llama.cpp.
 */
async function metadataOverrides(modelPath: string, overrides: EngineOptions["ropeOverrides"]): Promise<Record<string, unknown>> {
  const info = await readGgufFileInfo(modelPath, { readTensorInfo: false });
  const root: Record<string, unknown> = {};
  const arch: Record<string, unknown> = (root[info.metadata.general.architecture] = {});
  for (const [key, o] of Object.entries(overrides)) {
    const path = key.split(".");
    let node = arch;
    for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[path.at(-1)!] = o.kind === "float" && Number.isInteger(o.value) ? o.value * (1 + 2 ** -40) : o.value;
  }
  return root;
}

/**
 * `--pooling` other than rank: node-llama-cpp has no pooling option, so the
 * model's own pooling type (GGUF `<arch>.pooling_type`, none when absent) is
 * what embeddings get. A flag that asks for another one is refused.
 */
function checkPooling(model: LlamaModel, wanted: EngineOptions["pooling"]): void {
  if (wanted === null) return;
  const metadata = model.fileInfo.metadata as unknown as Record<string, { pooling_type?: number } | undefined>;
  const arch = model.fileInfo.metadata.general.architecture;
  const own = POOLING_NAMES[metadata[arch]?.pooling_type ?? 0] ?? "none";
  if (own !== wanted) {
    throw new EngineUsageError(`--pooling ${wanted} is not supported: node-llama-cpp uses the model's own pooling type (${own}) and cannot change it`);
  }
}

/** What `/v1/models` reports about the loaded model. */
export interface ModelInfo {
  id: string;
  created: number;
  contextSize: number;
  slotContextSize: number;
  parallel: number;
  trainContextSize: number;
  parameters: number;
  embeddingLength: number;
  vocabSize: number;
  sizeBytes: number;
  mode: EngineMode;
  chatTemplate: string | null;
  /** The Jinja source of the chat template in use ("" when the model has none). */
  chatTemplateSource: string;
  /** The GGUF file, as given with `-m`. */
  modelPath: string;
  /** How embeddings are pooled (the model's `pooling_type`; "none" when it declares none). */
  pooling: PoolingType;
  /** The model's fill-in-the-middle tokens, or null when it has none (no `/infill`). */
  fim: FimTokens | null;
  /** The llama.cpp release the binding was built from, as `/props` reports it. */
  buildInfo: string;
  /** Attention is causal (decoder models): a token's hidden state depends only on the tokens before it. */
  causal: boolean;
  /** The draft model's file for speculative decoding (`-md`), or null. */
  draftModelPath: string | null;
}

export type PoolingType = "none" | "mean" | "cls" | "last" | "rank";

/** Fill-in-the-middle special tokens (llama.cpp's `llama_vocab_fim_*`); repo and file-separator ones are optional. */
export interface FimTokens {
  prefix: Token;
  suffix: Token;
  middle: Token;
  repo: Token | null;
  fileSeparator: Token | null;
}

/** What `/slots` reports about a slot's last (or current) task. */
interface SlotTask {
  id: number;
  params: SamplingParams;
  prompt: readonly Token[];
  promptProcessed: number;
  promptCached: number;
  decoded: number;
  generated: string;
  done: boolean;
}

export type EngineMode = "completion" | "embedding" | "reranking";

/** Per-generation constraints beyond sampling. */
export interface CompletionExtras {
  grammar?: LlamaGrammar | null;
  reasoning?: ReasoningControl | null;
  toolCalls?: ToolCallControl | null;
  /** llama-server's `id_slot`: run on this slot, waiting for it if busy (null = any free slot). */
  slot?: number | null;
  /** Filled in as generation goes (llama-server's `timings_per_token`). */
  stats?: LiveStats | null;
  onProbabilities?: ((probabilities: TokenProbabilities) => void) | null;
  /** Told the slot's number once the generation has one. */
  onSlot?: (slot: number) => void;
  /** Told the number of tokens generated so far, after each one. */
  onToken?: (generated: number) => void;
}

/** A generation's result and the slot it ran on. */
export type SlotResult = GenerationResult & { slot: number };

/**
 * One loaded model and its contexts: the engine's whole inference state.
 * Completion mode holds one context with `parallel` sequences (slots), each
 * with `contextSize / parallel` tokens, decoded together in shared batches.
 * Embedding mode holds one embedding context and serves requests in order.
 */
export class ModelHost {
  private constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly info: ModelInfo,
    private readonly completion: {
      context: LlamaContext;
      sequences: readonly LlamaContextSequence[];
      slots: SlotPool<LlamaContextSequence>;
      /** Keeps the generating sequences in step, one batch per token. */
      gate: StepGate;
      busy: Set<LlamaContextSequence>;
      prompter: ChatPrompter;
      /** Per slot (same order as `sequences`), its draft for speculative decoding; null without `-md`. */
      drafts: readonly DraftSlot[] | null;
    } | null,
    private readonly embedding: { context: LlamaEmbeddingContext; queue: SlotPool<LlamaEmbeddingContext> } | null,
    private readonly ranking: { context: LlamaRankingContext; queue: SlotPool<LlamaRankingContext> } | null = null,
    /** Engine-wide thinking budget (`--reasoning-budget`). */
    readonly reasoningBudget = -1,
    readonly reasoningFormat: EngineOptions["reasoningFormat"] = "auto",
    /** `--context-shift`: how a generation that fills its slot goes on; null = it ends. */
    readonly contextShift: EngineOptions["contextShift"] = null,
  ) {
    this.grammars = new GrammarCache(llama);
  }

  /** llama-server's `/metrics` counters for this engine. */
  readonly metrics = new EngineMetrics();
  private readonly slotTasks = new Map<LlamaContextSequence, SlotTask>();
  private nextTaskId = 0;

  /** Compiled grammars for structured output and forced tool calls. */
  readonly grammars: GrammarCache;

  /**
   * Loads the model named in `options`. Rejects with the loader's error.
   * `onLoadProgress` gets node-llama-cpp's load progress (0..1], per tensor.
   */
  static async load(options: EngineOptions, onLoadProgress?: (fraction: number) => void): Promise<ModelHost> {
    const useGpu = options.gpuLayers !== 0 && !options.cpuOnly;
    const llama = await getLlama({
      gpu: useGpu ? "auto" : false,
      build: "never",
      maxThreads: options.threads,
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
      skipDownload: true,
    });
    try {
      if (options.draft) await checkDraftVocabulary(options.modelPath, options.draft.modelPath);
      // Flash attention and KV-cache types are the model's context defaults, so
      // completion, embedding and ranking contexts all get them.
      const model = await llama.loadModel({
        modelPath: options.modelPath,
        ...(onLoadProgress ? { onLoadProgress } : {}),
        gpuLayers: options.gpuLayers === "all" ? "max" : options.gpuLayers,
        ...(options.useMmap !== null ? { useMmap: options.useMmap } : {}),
        ...(options.useMlock ? { useMlock: true } : {}),
        defaultContextFlashAttention: options.flashAttention,
        ...(options.kvCacheKeyType !== null ? { experimentalDefaultContextKvCacheKeyType: options.kvCacheKeyType } : {}),
        ...(options.kvCacheValueType !== null ? { experimentalDefaultContextKvCacheValueType: options.kvCacheValueType } : {}),
        ...(Object.keys(options.ropeOverrides).length > 0 ? { metadataOverrides: await metadataOverrides(options.modelPath, options.ropeOverrides) } : {}),
      });
      checkPooling(model, options.pooling);
      const total = options.contextSize === 0 ? model.trainContextSize : options.contextSize;
      const slotContext = Math.max(8, Math.floor(total / options.parallel));
      const arch = model.fileInfo.metadata.general?.architecture;
      const poolingCode = (model.fileInfo.architectureMetadata as { pooling_type?: number }).pooling_type;
      const given = options.chatTemplate;
      const templateSource = given === null ? model.fileInfo.metadata.tokenizer?.chat_template : given.kind === "file" ? await readFile(given.path, "utf8") : given.template;
      const infoBase = {
        id: options.alias ?? basename(options.modelPath),
        modelPath: options.modelPath,
        chatTemplateSource: typeof templateSource === "string" ? templateSource : "",
        pooling: options.reranking ? "rank" : ((["none", "mean", "cls", "last", "rank"] as const)[poolingCode ?? 0] ?? "none"),
        fim: fimTokensOf(model),
        buildInfo: `llama.cpp ${llama.llamaCppRelease.release} (node-llama-cpp binding, ${llama.gpu === false ? "CPU" : llama.gpu})`,
        causal: !NON_CAUSAL_ARCHITECTURES.has(String(arch)),
        draftModelPath: options.draft?.modelPath ?? null,
        created: Math.floor(Date.now() / 1000),
        parallel: options.parallel,
        trainContextSize: model.trainContextSize,
        parameters: Number(model.fileInsights.totalParameters ?? 0),
        embeddingLength: model.embeddingVectorSize,
        vocabSize: model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0,
        sizeBytes: model.size,
      };
      if (options.reranking) {
        const context = await model.createRankingContext({
          contextSize: slotContext,
          threads: options.threads,
          ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
        });
        const info: ModelInfo = { ...infoBase, contextSize: slotContext, slotContextSize: slotContext, mode: "reranking", chatTemplate: null };
        return new ModelHost(llama, model, info, null, null, { context, queue: new SlotPool([context]) });
      }
      if (options.embeddings) {
        const context = await model.createEmbeddingContext({
          // node-llama-cpp refuses an input as long as its context (`>=`); llama-server takes up to n_ctx tokens.
          contextSize: slotContext + 1,
          threads: options.threads,
          ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
        });
        const info: ModelInfo = { ...infoBase, contextSize: slotContext, slotContextSize: slotContext, mode: "embedding", chatTemplate: null };
        return new ModelHost(llama, model, info, null, { context, queue: new SlotPool([context]) });
      }
      // Each call of the strategy builds one batch for one llama_decode: /metrics counts them.
      let onDecode = () => {};
      const context = await model.createContext({
        contextSize: slotContext,
        sequences: options.parallel,
        threads: options.threads,
        batching: {
          itemPrioritizationStrategy: (input) => {
            onDecode();
            return slotOrderStrategy(input);
          },
        },
        ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
      });
      guardSampling(context);
      const drafts = options.draft ? await draftSlots(llama, options, slotContext) : null;
      const sequences = Array.from({ length: options.parallel }, () => context.getSequence());
      const prompter = await createChatPrompter(model, options.chatTemplate);
      const info: ModelInfo = {
        ...infoBase,
        contextSize: context.contextSize * options.parallel,
        slotContextSize: context.contextSize,
        mode: "completion",
        chatTemplate: prompter.templateName,
      };
      const busy = new Set<LlamaContextSequence>();
      const host = new ModelHost(
        llama,
        model,
        info,
        { context, sequences, slots: new SlotPool(sequences), busy, prompter, gate: new StepGate(), drafts },
        null,
        null,
        options.reasoningBudget,
        options.reasoningFormat,
        options.contextShift,
      );
      onDecode = () => host.metrics.recordDecode(busy.size);
      return host;
    } catch (error) {
      await llama.dispose();
      throw error;
    }
  }

  get mode(): EngineMode {
    return this.info.mode;
  }

  /** Slots currently decoding, and requests waiting for one. */
  get load(): { busy: number; waiting: number } {
    const pool = this.completion?.slots ?? this.embedding?.queue ?? this.ranking?.queue;
    if (!pool) return { busy: 0, waiting: 0 };
    return { busy: (this.completion ? this.info.parallel : 1) - pool.idle, waiting: pool.waiting };
  }

  /**
   * Per-slot state, as llama-server's `/slots` reports it: with the last (or
   * current) task's prompt sizes, sampling `params` and progress.
   */
  slots(): object[] {
    const c = this.completion;
    if (!c) return [{ id: 0, n_ctx: this.info.slotContextSize, speculative: false, is_processing: this.load.busy > 0 }];
    return c.sequences.map((s, id) => {
      const task = this.slotTasks.get(s);
      const base = { id, n_ctx: this.info.slotContextSize, speculative: c.drafts !== null, is_processing: c.busy.has(s) };
      if (!task) return base;
      const limit = task.params.maxTokens;
      return {
        ...base,
        id_task: task.id,
        n_prompt_tokens: task.prompt.length,
        n_prompt_tokens_processed: task.promptProcessed,
        n_prompt_tokens_cache: task.promptCached,
        params: generationSettings(task.params),
        next_token: [
          {
            has_next_token: !task.done,
            has_new_line: task.generated.includes("\n"),
            n_remain: limit === null ? -1 : Math.max(0, limit - task.decoded),
            n_decoded: task.decoded,
          },
        ],
        prompt: this.detokenize(task.prompt),
        generated: task.generated,
      };
    });
  }

  /**
   * Empties slot `id`'s KV cache (llama-server's `POST /slots/{id}?action=erase`),
   * waiting for it if it is generating. Resolves with the tokens it held; throws
   * RangeError for a slot that does not exist.
   */
  async eraseSlot(id: number, signal: AbortSignal): Promise<number> {
    const { sequences, slots } = this.requireCompletion();
    const sequence = sequences[id];
    if (sequence === undefined) throw new RangeError(`slot ${id} does not exist`);
    await slots.acquire(signal, (free) => free.indexOf(sequence));
    try {
      const erased = sequence.nextTokenIndex;
      await sequence.clearHistory();
      return erased;
    } finally {
      slots.release(sequence);
    }
  }

  /** Prompt-processing batch size of the completion context (llama-server's `n_batch`). */
  get batchSize(): number {
    return this.requireCompletion().context.batchSize;
  }

  /**
   * Tokens of `text`: special-token text (`<|im_start|>`) becomes those tokens
   * unless `parseSpecial` is false; `addSpecial` prepends BOS as the model asks.
   */
  tokenize(text: string, addSpecial: boolean, parseSpecial = true): Token[] {
    const tokens = this.model.tokenize(text, parseSpecial);
    const bos = this.model.tokens.bos;
    if (addSpecial && bos !== null && this.model.tokens.shouldPrependBosToken && tokens[0] !== bos) {
      return [bos, ...tokens];
    }
    return tokens;
  }

  /** What request parsing needs of the vocabulary (logit_bias texts and ids). */
  get vocabulary(): Vocabulary {
    return { size: this.info.vocabSize, tokenizeText: (text) => this.model.tokenize(text, false) };
  }

  /** Slots (parallel sequences) of a completion engine: `n` may ask for at most this many choices. */
  get slotCount(): number {
    return this.completion ? this.info.parallel : 1;
  }

  detokenize(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens, true);
  }

  /** The token's own text, leading space included (detokenizing at the start of a text drops it). */
  tokenPiece(token: Token): string {
    return this.model.detokenize([token], true, [token]);
  }

  chatPrompt(messages: readonly ChatMessage[], functions?: ChatModelFunctions, templateKwargs?: Readonly<Record<string, unknown>>): Token[] {
    return this.requireCompletion().prompter.render(messages, functions, templateKwargs);
  }

  /** The chat prompt as the template writes it (text, for `/apply-template`). */
  chatPromptText(messages: readonly ChatMessage[], functions?: ChatModelFunctions, templateKwargs?: Readonly<Record<string, unknown>>): string {
    return this.requireCompletion().prompter.renderText(messages, functions, templateKwargs);
  }

  /** How the model's template writes tool calls. */
  get callSyntax(): CallSyntax {
    return this.requireCompletion().prompter.callSyntax;
  }

  /** The model's thinking syntax, or null if its template has none. */
  get thinking(): ThinkingSyntax | null {
    return this.completion?.prompter.thinking ?? null;
  }

  /**
   * Runs one generation on a free slot, waiting for one if all are busy.
   * Throws ContextSizeExceededError before waiting when the prompt can never fit.
   */
  async complete(
    prompt: readonly Token[],
    params: SamplingParams,
    onText: (text: string) => Promise<void> | void,
    signal: AbortSignal,
    extras: CompletionExtras = {},
  ): Promise<SlotResult> {
    const { sequences, slots, prompter, busy, gate, drafts } = this.requireCompletion();
    if (prompt.length >= this.info.slotContextSize) {
      throw new ContextSizeExceededError(prompt.length, this.info.slotContextSize);
    }
    const { slot: wantedSlot, onSlot, onToken, ...constraints } = extras;
    if (wantedSlot != null && (wantedSlot < 0 || wantedSlot >= sequences.length)) {
      throw new InvalidRequestError(`'id_slot' is ${wantedSlot}, but this engine has ${sequences.length} slots (0-${sequences.length - 1}).`, "id_slot");
    }
    // Prefer the free slot whose cache shares the longest prefix with this prompt.
    const sequence = await slots.acquire(signal, (free) => {
      if (wantedSlot != null) return free.indexOf(sequences[wantedSlot]!);
      let best = 0;
      let bestLength = -1;
      free.forEach((s, i) => {
        const n = cachedPrefixLength(s, prompt);
        if (n > bestLength) [best, bestLength] = [i, n];
      });
      return best;
    });
    busy.add(sequence);
    const slot = sequences.indexOf(sequence);
    const task: SlotTask = { id: this.nextTaskId++, params, prompt, promptProcessed: 0, promptCached: 0, decoded: 0, generated: "", done: false };
    this.slotTasks.set(sequence, task);
    try {
      onSlot?.(slot);
      const result = await generate({
        sequence,
        model: this.model,
        prompt,
        params,
        stopTokens: prompter.stopTokens,
        onText: (text) => {
          task.generated += text;
          return onText(text);
        },
        onToken: (n) => {
          task.decoded = n;
          onToken?.(n);
        },
        signal,
        gate,
        slot,
        draft: drafts?.[slot] ?? null,
        // A request's n_keep replaces --keep, as in llama-server; without --context-shift nothing shifts.
        contextShift: this.contextShift && params.nKeep !== null ? { keep: params.nKeep } : this.contextShift,
        ...constraints,
      });
      Object.assign(task, { promptProcessed: result.promptTokensEvaluated, promptCached: result.promptTokens - result.promptTokensEvaluated, decoded: result.completionTokens });
      this.metrics.recordGeneration(result);
      return { ...result, slot };
    } finally {
      task.done = true;
      busy.delete(sequence);
      slots.release(sequence);
    }
  }

  /**
   * Embeddings per input, in order, and the tokens they used. With pooling,
   * one vector per input, normalized as llama-server's `embd_normalize` says
   * (2, Euclidean, by default). With pooling "none", one vector per token
   * (not normalized, as in llama-server).
   */
  async embed(
    inputs: ReadonlyArray<string | readonly Token[]>,
    signal: AbortSignal,
    normalize = 2,
  ): Promise<{ rows: number[][][]; tokens: number }> {
    const { queue, context: embedding } = this.requireEmbedding();
    const tokenized = inputs.map((input) => (typeof input === "string" ? this.tokenize(input, true) : [...input]));
    for (const tokens of tokenized) {
      // The length as evaluated: with the beginning and end tokens the model's vocabulary adds (BERT's [CLS] and [SEP]).
      const length = embedding.calculateInputLength(tokens);
      if (length > this.info.slotContextSize) throw new ContextSizeExceededError(length, this.info.slotContextSize);
    }
    const perToken = this.info.pooling === "none";
    if (perToken && !this.info.causal) {
      const arch = this.model.fileInfo.metadata.general?.architecture;
      throw new NotSupportedError(`Per-token embeddings (pooling 'none') need a causal model; this ${arch} model is not. Give it a pooling type.`);
    }
    const context = await queue.acquire(signal);
    try {
      const started = performance.now();
      const rows: number[][][] = [];
      for (const tokens of tokenized) {
        signal.throwIfAborted();
        if (!perToken) {
          rows.push([normalizeEmbedding([...(await context.getEmbeddingFor(tokens)).vector], normalize)]);
          continue;
        }
        // node-llama-cpp reads only the last token's output; in a causal model
        // token i's state depends on tokens 0..i alone, so each prefix gives one row.
        const perTokenRows: number[][] = [];
        for (let i = 1; i <= tokens.length; i++) {
          signal.throwIfAborted();
          perTokenRows.push([...(await context.getEmbeddingFor(tokens.slice(0, i))).vector]);
        }
        rows.push(perTokenRows);
      }
      const tokens = tokenized.reduce((n, t) => n + t.length, 0);
      this.metrics.recordPrompt(tokens, performance.now() - started);
      return { rows, tokens };
    } finally {
      queue.release(context);
    }
  }

  /**
   * Relevance of each document to the query, in document order: the ranking
   * head's probability in [0, 1]. Documents are scored one after another.
   */
  async rank(query: string, documents: readonly string[], signal: AbortSignal): Promise<{ scores: number[]; tokens: number }> {
    const { queue, context } = this.requireRanking();
    const queryTokens = this.model.tokenize(query, false);
    const docTokens = documents.map((d) => this.model.tokenize(d, false));
    let tokens = 0;
    for (const doc of docTokens) {
      const n = context.calculateInputLength(queryTokens, doc);
      if (n > this.info.slotContextSize) throw new ContextSizeExceededError(n, this.info.slotContextSize);
      tokens += n;
    }
    const ranker = await queue.acquire(signal);
    try {
      const scores: number[] = [];
      for (const doc of docTokens) {
        signal.throwIfAborted();
        scores.push(await ranker.rank(queryTokens, doc));
      }
      return { scores, tokens };
    } finally {
      queue.release(ranker);
    }
  }

  /**
   * Layers on a GPU as llama.cpp counts them (the output layer included), or
   * null when the engine runs without a GPU backend, where llama.cpp says nothing either.
   */
  get gpuOffload(): { offloadedLayers: number; totalLayers: number } | null {
    return this.llama.gpu === false ? null : { offloadedLayers: this.model.gpuLayers, totalLayers: this.model.fileInsights.totalLayers };
  }

  async dispose(): Promise<void> {
    await this.llama.dispose();
  }

  private requireCompletion() {
    if (!this.completion) throw new Error("completion requested from an embedding engine");
    return this.completion;
  }

  private requireRanking() {
    if (!this.ranking) throw new Error("ranking requested from an engine not in reranking mode");
    return this.ranking;
  }

  private requireEmbedding() {
    if (!this.embedding) throw new Error("embedding requested from a completion engine");
    return this.embedding;
  }
}

/** A draft whose vocabulary differs from the model's cannot draft for it: refused before anything is loaded. */
async function checkDraftVocabulary(modelPath: string, draftPath: string): Promise<void> {
  const [target, draft] = await Promise.all([readVocabulary(modelPath), readVocabulary(draftPath)]);
  const why = vocabularyMismatch(target, draft);
  if (why !== null) throw new EngineUsageError(`the draft model ${draftPath} cannot draft for ${modelPath}: their vocabularies do not match (${why})`);
}

/**
 * One draft per slot: the draft model in its own context with as many
 * sequences, each as long as a slot (llama-server gives its draft context
 * the target's size). speculative.ts drafts as llama-server's draft-simple.
 */
async function draftSlots(llama: Llama, options: EngineOptions, slotContext: number): Promise<DraftSlot[]> {
  const draft = options.draft!;
  const model = await llama.loadModel({
    modelPath: draft.modelPath,
    gpuLayers: options.gpuLayers === "all" ? "max" : options.gpuLayers,
    ...(options.useMmap !== null ? { useMmap: options.useMmap } : {}),
    defaultContextFlashAttention: options.flashAttention,
  });
  const context = await model.createContext({
    contextSize: slotContext,
    sequences: options.parallel,
    threads: options.threads,
    ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
  });
  guardSampling(context);
  const settings = { maxTokens: draft.maxTokens, minProbability: draft.minProbability };
  return Array.from({ length: options.parallel }, () => new DraftSlot(context.getSequence(), settings));
}

/** Architectures whose attention is not causal (llama.cpp's encoders). */
const NON_CAUSAL_ARCHITECTURES = new Set(["bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3", "modern-bert", "eurobert", "t5encoder"]);

/** Token texts llama.cpp recognises as FIM repo / file-separator tokens when the GGUF names none (llama-vocab.cpp). */
const FIM_REPO_TEXTS = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS = ["<|file_sep|>"];

/** The model's FIM tokens as llama.cpp resolved them, or null when it lacks prefix, suffix or middle. */
function fimTokensOf(model: LlamaModel): FimTokens | null {
  const { prefix, suffix, middle } = model.tokens.infill;
  if (prefix === null || suffix === null || middle === null) return null;
  const ggml = model.fileInfo.metadata.tokenizer?.ggml;
  const vocab = ggml?.tokens ?? [];
  const find = (id: number | undefined, texts: readonly string[]): Token | null => {
    if (typeof id === "number" && id >= 0 && id < vocab.length) return id as Token;
    const i = vocab.findIndex((t) => texts.includes(t));
    return i >= 0 ? (i as Token) : null;
  };
  return { prefix, suffix, middle, repo: find(ggml?.fim_rep_token_id, FIM_REPO_TEXTS), fileSeparator: find(ggml?.fim_sep_token_id, FIM_SEP_TEXTS) };
}
