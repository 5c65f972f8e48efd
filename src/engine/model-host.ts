import { basename } from "node:path";
import {
  getLlama,
  LlamaLogLevel,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { ContextSizeExceededError } from "./errors.ts";
import { createChatPrompter, type ChatMessage, type ChatPrompter } from "./chat-prompt.ts";
import { generate, cachedPrefixLength, type GenerationResult, type SamplingParams } from "./generate.ts";
import type { EngineOptions } from "./options.ts";
import { SlotPool } from "./slot-pool.ts";

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
  mode: "completion" | "embedding";
  chatTemplate: string | null;
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
      busy: Set<LlamaContextSequence>;
      prompter: ChatPrompter;
    } | null,
    private readonly embedding: { context: LlamaEmbeddingContext; queue: SlotPool<LlamaEmbeddingContext> } | null,
  ) {}

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
        { context, sequences, slots: new SlotPool(sequences), busy: new Set(), prompter },
        null,
      );
    } catch (error) {
      await llama.dispose();
      throw error;
    }
  }

  get mode(): "completion" | "embedding" {
    return this.info.mode;
  }

  /** Slots currently decoding, and requests waiting for one. */
  get load(): { busy: number; waiting: number } {
    const pool = this.completion?.slots ?? this.embedding?.queue;
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

  chatPrompt(messages: readonly ChatMessage[]): Token[] {
    return this.requireCompletion().prompter.render(messages);
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
  ): Promise<GenerationResult> {
    const { slots, prompter, busy } = this.requireCompletion();
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
      return await generate({ sequence, model: this.model, prompt, params, stopTokens: prompter.stopTokens, onText, signal });
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

  async dispose(): Promise<void> {
    await this.llama.dispose();
  }

  private requireCompletion() {
    if (!this.completion) throw new Error("completion requested from an embedding engine");
    return this.completion;
  }

  private requireEmbedding() {
    if (!this.embedding) throw new Error("embedding requested from a completion engine");
    return this.embedding;
  }
}
