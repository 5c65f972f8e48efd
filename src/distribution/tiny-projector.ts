import { writeGguf, type GgufTensorSpec, type GgufValue } from "./gguf-writer.ts";
import { noise } from "./tiny-model.ts";

/**
 * Generates a small, valid multimodal projector GGUF (`general.architecture
 * = clip`) with deterministic pseudo-random weights, for a text model written
 * by `writeTinyModel`. Tests serve the pair with llama-server's `--mmproj`;
 * nothing is downloaded.
 *
 * The projector type is llama.cpp's plainest, `mlp` (LLaVA-1.5 style,
 * `tools/mtmd/models/llava.cpp`): a conv2d patch embedding, class and
 * position embeddings, pre-LN ViT blocks, then `mm.0` → GELU → `mm.2` into
 * the text model's embedding width. Images are resized to a fixed square
 * with no tiling and no begin/end-of-image tokens, so every image is exactly
 * `(imageSize / patchSize)²` tokens (`tinyProjectorImageTokens`).
 *
 * Traps in clip.cpp this generator avoids: the vision FFN width must differ
 * from the vision embedding width (else clip.cpp swaps up/down for `mlp`),
 * and only `blockCount - 1` blocks run (the second-to-last layer feeds the
 * projector), so `blockCount` is at least 2.
 */
export interface TinyProjectorOptions {
  /** The text model's `embedding_length`: the projector's output width. Required; llama-server refuses a mismatch. */
  textEmbeddingLength: number;
  /** Weights are a pure function of this seed. Default 7. */
  seed?: number;
  /** The square images are resized to, in pixels. Default 32. */
  imageSize?: number;
  /** Default 8; must divide `imageSize`. */
  patchSize?: number;
  /** Vision embedding width. Default 32; a multiple of `heads`. */
  embeddingLength?: number;
  /** Vision FFN width. Default 64; must differ from `embeddingLength`. */
  feedForwardLength?: number;
  /** Vision blocks written (one fewer run). Default 2, at least 2. */
  blockCount?: number;
  /** Default 4. */
  heads?: number;
}

/** How many tokens one image becomes with these options: one per patch. */
export function tinyProjectorImageTokens(options: Pick<TinyProjectorOptions, "imageSize" | "patchSize"> = {}): number {
  const side = (options.imageSize ?? 32) / (options.patchSize ?? 8);
  return side * side;
}

function checked(options: TinyProjectorOptions) {
  const imageSize = options.imageSize ?? 32;
  const patchSize = options.patchSize ?? 8;
  const nEmbd = options.embeddingLength ?? 32;
  const nFf = options.feedForwardLength ?? 64;
  const blocks = options.blockCount ?? 2;
  const heads = options.heads ?? 4;
  const out = options.textEmbeddingLength;
  if (!Number.isInteger(out) || out <= 0) throw new RangeError(`textEmbeddingLength must be a positive integer, not ${out}`);
  if (imageSize % patchSize !== 0) throw new RangeError(`patchSize ${patchSize} does not divide imageSize ${imageSize}`);
  if (nEmbd % heads !== 0) throw new RangeError(`embeddingLength ${nEmbd} is not a multiple of heads ${heads}`);
  if (nFf === nEmbd) throw new RangeError("feedForwardLength must differ from embeddingLength (clip.cpp would swap ffn up/down)");
  if (blocks < 2) throw new RangeError("blockCount must be at least 2: llava runs blockCount - 1 blocks");
  return { imageSize, patchSize, nEmbd, nFf, blocks, heads, out, seed: options.seed ?? 7 };
}

/**
 * Writes the projector to `path` (atomically) and resolves with its size in
 * bytes (about 100 KB with the defaults).
 */
export async function writeTinyProjector(path: string, options: TinyProjectorOptions): Promise<number> {
  const o = checked(options);
  const metadata: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: "clip" },
    "general.name": { type: "string", value: "tiny-projector" },
    "general.file_type": { type: "u32", value: 0 },
    "clip.has_vision_encoder": { type: "bool", value: true },
    "clip.projector_type": { type: "string", value: "mlp" },
    "clip.use_gelu": { type: "bool", value: true },
    "clip.vision.image_size": { type: "u32", value: o.imageSize },
    "clip.vision.patch_size": { type: "u32", value: o.patchSize },
    "clip.vision.embedding_length": { type: "u32", value: o.nEmbd },
    "clip.vision.feed_forward_length": { type: "u32", value: o.nFf },
    "clip.vision.projection_dim": { type: "u32", value: o.out },
    "clip.vision.block_count": { type: "u32", value: o.blocks },
    "clip.vision.attention.head_count": { type: "u32", value: o.heads },
    "clip.vision.attention.layer_norm_epsilon": { type: "f32", value: 1e-6 },
    "clip.vision.image_mean": { type: "f32[]", value: [0.5, 0.5, 0.5] },
    "clip.vision.image_std": { type: "f32[]", value: [0.5, 0.5, 0.5] },
  };
  let tensorIndex = 0;
  const random = (name: string, dims: number[], scale: number): GgufTensorSpec => {
    const id = tensorIndex++;
    return { name, dims, fill: (out, offset) => { for (let i = 0; i < out.length; i++) out[i] = noise(o.seed, id, offset + i) * scale; } };
  };
  const constant = (name: string, dims: number[], value: number): GgufTensorSpec => ({ name, dims, fill: (out) => out.fill(value) });
  const patches = tinyProjectorImageTokens(o);
  const w = 1 / Math.sqrt(o.nEmbd);
  // Dims in ggml order (innermost first), as clip.cpp reads them.
  const tensors: GgufTensorSpec[] = [
    random("v.patch_embd.weight", [o.patchSize, o.patchSize, 3, o.nEmbd], 1 / Math.sqrt(3 * o.patchSize * o.patchSize)),
    random("v.class_embd", [o.nEmbd], 1),
    random("v.position_embd.weight", [o.nEmbd, patches + 1], 0.5),
    constant("v.pre_ln.weight", [o.nEmbd], 1),
    constant("v.pre_ln.bias", [o.nEmbd], 0),
  ];
  for (let i = 0; i < o.blocks; i++) {
    const blk = `v.blk.${i}`;
    tensors.push(
      constant(`${blk}.ln1.weight`, [o.nEmbd], 1),
      constant(`${blk}.ln1.bias`, [o.nEmbd], 0),
      random(`${blk}.attn_q.weight`, [o.nEmbd, o.nEmbd], w),
      random(`${blk}.attn_q.bias`, [o.nEmbd], 0.1),
      random(`${blk}.attn_k.weight`, [o.nEmbd, o.nEmbd], w),
      random(`${blk}.attn_k.bias`, [o.nEmbd], 0.1),
      random(`${blk}.attn_v.weight`, [o.nEmbd, o.nEmbd], w),
      random(`${blk}.attn_v.bias`, [o.nEmbd], 0.1),
      random(`${blk}.attn_out.weight`, [o.nEmbd, o.nEmbd], w),
      random(`${blk}.attn_out.bias`, [o.nEmbd], 0.1),
      constant(`${blk}.ln2.weight`, [o.nEmbd], 1),
      constant(`${blk}.ln2.bias`, [o.nEmbd], 0),
      random(`${blk}.ffn_up.weight`, [o.nEmbd, o.nFf], w),
      random(`${blk}.ffn_up.bias`, [o.nFf], 0.1),
      random(`${blk}.ffn_down.weight`, [o.nFf, o.nEmbd], 1 / Math.sqrt(o.nFf)),
      random(`${blk}.ffn_down.bias`, [o.nEmbd], 0.1),
    );
  }
  tensors.push(
    random("mm.0.weight", [o.nEmbd, o.out], w),
    random("mm.0.bias", [o.out], 0.1),
    random("mm.2.weight", [o.out, o.out], 1 / Math.sqrt(o.out)),
    random("mm.2.bias", [o.out], 0.1),
  );
  return writeGguf(path, metadata, tensors);
}
