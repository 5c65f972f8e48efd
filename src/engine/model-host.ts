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
import { ContextSizeExceededError } from "./errors.ts";
import { createChatPrompter, type ChatMessage, type ChatPrompter, type ThinkingSyntax } from "./chat-prompt.ts";
import type { ChatModelFunctions } from "node-llama-cpp";
import { generate, cachedPrefixLength, type GenerationResult, type ReasoningControl, type SamplingParams, type ToolCallControl } from "./generate.ts";
import type { CallSyntax } from "./tools.ts";
import { GrammarCache } from "./structured.ts";
import type { EngineOptions } from "./options.ts";
import { slotOrderStrategy } from "./batch-order.ts";
import { SlotPool } from "./slot-pool.ts";
import { StepGate } from "./step-gate.ts";
import { EngineUsageError } from "./options.ts";

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
}

export type EngineMode = "completion" | "embedding" | "reranking";

/** Per-generation constraints beyond sampling. */
export interface CompletionExtras {
  grammar?: LlamaGrammar | null;
  reasoning?: ReasoningControl | null;
  toolCalls?: ToolCallControl | null;
}

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

  /** Compiled grammars for structured output and forced tool calls. */
  readonly grammars: GrammarCache;

  /** Loads the model named in `options`. Rejects with the loader's error. */
  static async load(options: EngineOptions): Promise<ModelHost> {
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
      // Flash attention and KV-cache types are the model's context defaults, so
      // completion, embedding and ranking contexts all get them.
      const model = await llama.loadModel({
        modelPath: options.modelPath,
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
      const infoBase = {
        id: options.alias ?? basename(options.modelPath),
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
          contextSize: slotContext,
          threads: options.threads,
          ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
        });
        const info: ModelInfo = { ...infoBase, contextSize: slotContext, slotContextSize: slotContext, mode: "embedding", chatTemplate: null };
        return new ModelHost(llama, model, info, null, { context, queue: new SlotPool([context]) });
      }
      const context = await model.createContext({
        contextSize: slotContext,
        sequences: options.parallel,
        threads: options.threads,
        batching: { itemPrioritizationStrategy: slotOrderStrategy },
        ...(options.batchSize !== null ? { batchSize: options.batchSize } : {}),
      });
      const sequences = Array.from({ length: options.parallel }, () => context.getSequence());
      const prompter = await createChatPrompter(model, options.chatTemplate);
      const info: ModelInfo = {
        ...infoBase,
        contextSize: context.contextSize * options.parallel,
        slotContextSize: context.contextSize,
        mode: "completion",
        chatTemplate: prompter.templateName,
      };
      return new ModelHost(
        llama,
        model,
        info,
        { context, sequences, slots: new SlotPool(sequences), busy: new Set(), prompter, gate: new StepGate() },
        null,
        null,
        options.reasoningBudget,
        options.reasoningFormat,
        options.contextShift,
      );
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

  /** Per-slot state, as llama-server's `/slots` reports it. */
  slots(): Array<{ id: number; is_processing: boolean; n_ctx: number }> {
    const c = this.completion;
    if (!c) return [{ id: 0, is_processing: this.load.busy > 0, n_ctx: this.info.slotContextSize }];
    return c.sequences.map((s, id) => ({ id, is_processing: c.busy.has(s), n_ctx: this.info.slotContextSize }));
  }

  tokenize(text: string, addSpecial: boolean): Token[] {
    const tokens = this.model.tokenize(text, true);
    const bos = this.model.tokens.bos;
    if (addSpecial && bos !== null && this.model.tokens.shouldPrependBosToken && tokens[0] !== bos) {
      return [bos, ...tokens];
    }
    return tokens;
  }

  detokenize(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens, true);
  }

  /** The token's own text, leading space included (detokenizing at the start of a text drops it). */
  tokenPiece(token: Token): string {
    return this.model.detokenize([token], true, [token]);
  }

  chatPrompt(messages: readonly ChatMessage[], functions?: ChatModelFunctions): Token[] {
    return this.requireCompletion().prompter.render(messages, functions);
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
  ): Promise<GenerationResult> {
    const { sequences, slots, prompter, busy, gate } = this.requireCompletion();
    if (prompt.length >= this.info.slotContextSize) {
      throw new ContextSizeExceededError(prompt.length, this.info.slotContextSize);
    }
    // Prefer the free slot whose cache shares the longest prefix with this prompt.
    const sequence = await slots.acquire(signal, (free) => {
      let best = 0;
      let bestLength = -1;
      free.forEach((s, i) => {
        const n = cachedPrefixLength(s, prompt);
        if (n > bestLength) [best, bestLength] = [i, n];
      });
      return best;
    });
    busy.add(sequence);
    try {
      return await generate({
        sequence,
        model: this.model,
        prompt,
        params,
        stopTokens: prompter.stopTokens,
        onText,
        signal,
        gate,
        slot: sequences.indexOf(sequence),
        contextShift: this.contextShift,
        ...extras,
      });
    } finally {
      busy.delete(sequence);
      slots.release(sequence);
    }
  }

  /** One embedding vector per input, in order, and the tokens they used. */
  async embed(inputs: ReadonlyArray<string | readonly Token[]>, signal: AbortSignal): Promise<{ vectors: number[][]; tokens: number }> {
    const { queue } = this.requireEmbedding();
    const tokenized = inputs.map((input) => (typeof input === "string" ? this.tokenize(input, true) : [...input]));
    for (const tokens of tokenized) {
      if (tokens.length > this.info.slotContextSize) {
        throw new ContextSizeExceededError(tokens.length, this.info.slotContextSize);
      }
    }
    const context = await queue.acquire(signal);
    try {
      const vectors: number[][] = [];
      for (const tokens of tokenized) {
        signal.throwIfAborted();
        const embedding = await context.getEmbeddingFor(tokens);
        vectors.push([...embedding.vector]);
      }
      return { vectors, tokens: tokenized.reduce((n, t) => n + t.length, 0) };
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
