import { basename } from "node:path";
import {
  getLlama,
  LlamaLogLevel,
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
import { ContextSizeExceededError } from "./errors.ts";
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
import { StepGate } from "./step-gate.ts";

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
  /** llama-server's `id_slot`: run on this slot, waiting for it if busy (null = any free slot). */
  slot?: number | null;
  /** Filled in as generation goes (llama-server's `timings_per_token`). */
  stats?: LiveStats | null;
  onProbabilities?: ((probabilities: TokenProbabilities) => void) | null;
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
  ) {
    this.grammars = new GrammarCache(llama);
  }

  /** Compiled grammars for structured output and forced tool calls. */
  readonly grammars: GrammarCache;

  /** Loads the model named in `options`. Rejects with the loader's error. */
  static async load(options: EngineOptions): Promise<ModelHost> {
    const useGpu = options.gpuLayers !== 0;
    const llama = await getLlama({
      gpu: useGpu ? "auto" : false,
      build: "never",
      maxThreads: options.threads,
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
      skipDownload: true,
    });
    try {
      const model = await llama.loadModel({
        modelPath: options.modelPath,
        gpuLayers: options.gpuLayers === "all" ? "max" : options.gpuLayers,
      });
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
      const prompter = await createChatPrompter(model, options.chatTemplateFile);
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
    const { slot: wantedSlot, ...generation } = extras;
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
    try {
      return await generate({ sequence, model: this.model, prompt, params, stopTokens: prompter.stopTokens, onText, signal, gate, slot: sequences.indexOf(sequence), ...generation });
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
