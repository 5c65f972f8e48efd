import { totalmem } from "node:os";
import { isEmbeddingModel } from "../distribution/model-kind.ts";

/** What the KV-cache size depends on, read from a GGUF's metadata. */
export interface GgufShape {
  architecture: string;
  blockCount: number;
  embeddingLength: number;
  headCount: number;
  headCountKv: number;
  /** Per-head K and V widths (`attention.key_length` / `value_length`), default `embeddingLength / headCount`. */
  keyLength: number;
  valueLength: number;
  /** Trained context length, when the file states one. */
  contextLength: number | null;
  /**
   * Whether the model has a ranking (classifier) head, the `cls.weight` or
   * `cls.output.weight` tensor llama.cpp and node-llama-cpp need to rerank;
   * null when this file cannot tell (a split model's other shards may hold it).
   */
  hasRankingHead: boolean | null;
  /** It makes embeddings, not text (distribution/model-kind.ts): no completion runner is started for it. */
  isEmbeddingModel: boolean;
}

/**
 * Reads the shape of a model from its GGUF header. Only the header is read
 * (in chunks, by @huggingface/gguf), never the tensor data. Returns null for
 * files without transformer attention metadata: their KV cache is then
 * counted as zero.
 */
export async function readGgufShape(path: string): Promise<GgufShape | null> {
  const { metadata, tensorInfos } = await (await import("@huggingface/gguf")).gguf(path, { allowLocalFile: true });
  const meta = metadata as Record<string, unknown>;
  const hasRankingHead = tensorInfos.some((t) => t.name === "cls.weight" || t.name === "cls.output.weight")
    ? true
    : Number(meta["split.count"] ?? 1) > 1
      ? null
      : false;
  return shapeOf(meta, hasRankingHead);
}

/**
 * The shape a model's config `gguf` map describes (the header's values as
 * strings, arrays as `[a b c]`, as artifacts carry it): for an estimate
 * before the model is pulled. Its tensors are unknown, so is its ranking head.
 */
export const shapeFromConfigMap = (map: Readonly<Record<string, string>>): GgufShape | null => shapeOf(map, null);

/** A metadata value as a number: numbers, bigints, numeric strings; for arrays (per-layer counts) and `[a b]` strings, the largest. */
function numberOf(v: unknown): number | null {
  if (Array.isArray(v)) return v.length > 0 ? Math.max(...v.map(Number)) : null;
  if (typeof v === "number" || typeof v === "bigint") return Number(v);
  if (typeof v !== "string" || v.trim() === "") return null;
  const text = v.trim();
  if (text.startsWith("[") && text.endsWith("]")) {
    const values = text.slice(1, -1).trim().split(/\s+/).filter(Boolean).map(Number);
    return values.length > 0 && values.every(Number.isFinite) ? Math.max(...values) : null;
  }
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

function shapeOf(meta: Readonly<Record<string, unknown>>, hasRankingHead: boolean | null): GgufShape | null {
  const arch = String(meta["general.architecture"] ?? "");
  // Some architectures give per-layer head counts; the largest one bounds the cache.
  const num = (key: string): number | null => numberOf(meta[`${arch}.${key}`]);
  const blockCount = num("block_count");
  const embeddingLength = num("embedding_length");
  const headCount = num("attention.head_count");
  if (!arch || !blockCount || !embeddingLength || !headCount) return null;
  const headDim = Math.floor(embeddingLength / headCount);
  return {
    architecture: arch,
    blockCount,
    embeddingLength,
    headCount,
    headCountKv: num("attention.head_count_kv") ?? headCount,
    keyLength: num("attention.key_length") ?? headDim,
    valueLength: num("attention.value_length") ?? headDim,
    contextLength: num("context_length"),
    hasRankingHead,
    isEmbeddingModel: isEmbeddingModel(arch, meta[`${arch}.pooling_type`] !== undefined),
  };
}

export interface MemoryEstimateInput {
  /** Bytes of weights: the model files' total size. */
  weightsBytes: number;
  shape: GgufShape | null;
  /** Total context tokens the engine allocates (all slots together). */
  contextTokens: number;
  /** Fixed cost of one engine process (runtime, compute buffers). */
  overheadBytes: number;
  /** A speculative-decoding draft model: its weights and a KV cache of the same number of tokens. */
  draft?: { weightsBytes: number; shape: GgufShape | null } | null | undefined;
}

export interface MemoryEstimate {
  totalBytes: number;
  weightsBytes: number;
  kvCacheBytes: number;
  overheadBytes: number;
  /** The draft model's weights and KV cache (0 without one). */
  draftBytes: number;
}

/** Bytes per KV-cache element: llama.cpp's default cache type is f16. */
const KV_ELEMENT_BYTES = 2;

/**
 * Estimates what one runner needs: weights + KV cache + overhead, where the
 * KV cache is `n_layer × ctx × (n_embd_k + n_embd_v) × 2 bytes` (f16, K and V
 * each `head_count_kv × key/value_length` wide), and the overhead is a fixed
 * per-process cost plus 5% of the rest for compute buffers and fragmentation.
 * It is deliberately on the high side: an estimate that is too low crashes
 * engines with out-of-memory, one that is too high only evicts a bit early.
 */
export function estimateRunnerMemory(input: MemoryEstimateInput): MemoryEstimate {
  const kvOf = (shape: GgufShape | null) =>
    shape ? shape.blockCount * input.contextTokens * shape.headCountKv * (shape.keyLength + shape.valueLength) * KV_ELEMENT_BYTES : 0;
  const kvCacheBytes = kvOf(input.shape);
  // The draft runs in the same process with a context as long as the model's (llama-server sizes it so).
  const draftBytes = input.draft ? input.draft.weightsBytes + kvOf(input.draft.shape) : 0;
  const overheadBytes = input.overheadBytes + Math.ceil(0.05 * (input.weightsBytes + kvCacheBytes + draftBytes));
  return { totalBytes: input.weightsBytes + kvCacheBytes + draftBytes + overheadBytes, weightsBytes: input.weightsBytes, kvCacheBytes, overheadBytes, draftBytes };
}

/** Default fixed cost of one engine process: our engine is a Node process with node-llama-cpp loaded. */
export const DEFAULT_RUNNER_OVERHEAD_BYTES = 256 * 1024 * 1024;

/**
 * The memory budget runners share: an explicit override (MODEL_RUNNER_MEMORY)
 * wins; otherwise free VRAM when a GPU is used, else total RAM, less a reserve
 * for the system and the daemon itself.
 */
export function computeMemoryBudget(options: {
  overrideBytes?: number | null | undefined;
  gpuFreeBytes?: number | null | undefined;
  totalRamBytes?: number | undefined;
  reserveBytes?: number | undefined;
}): number {
  if (options.overrideBytes != null) return options.overrideBytes;
  const base = options.gpuFreeBytes ?? options.totalRamBytes ?? totalmem();
  const reserve = options.reserveBytes ?? Math.min(2 * 1024 ** 3, Math.floor(base * 0.1));
  return Math.max(0, base - reserve);
}
