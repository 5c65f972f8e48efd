import { z } from "zod";
import { completionRequest } from "./requests.ts";

/**
 * Request bodies of llama-server's own endpoints. They take the same
 * sampling and structured-output fields as `/v1/completions` (llama-server
 * reads both through one parser), plus their own.
 */

/** llama-server's `n_predict`: tokens to generate, -1 until a stop or the end of the context. */
const nPredict = z.number().int().min(-1).nullish();

/** `POST /completion`. */
export const nativeCompletionRequest = completionRequest.extend({ n_predict: nPredict });

/** `POST /infill`: fill in the middle between `input_prefix` and `input_suffix`. */
export const infillRequest = completionRequest.omit({ prompt: true }).extend({
  n_predict: nPredict,
  input_prefix: z.string(),
  input_suffix: z.string(),
  input_extra: z.array(z.strictObject({ text: z.string(), filename: z.string().optional() })).optional(),
  /** Text the infill starts with, after the prefix. */
  prompt: z.string().optional(),
});

const tokenArray = z.array(z.number().int().min(0));
const embeddingInput = z.union([z.string(), z.array(z.string()).min(1), tokenArray.min(1), z.array(tokenArray.min(1)).min(1)]);

/** `POST /embedding`: `content` (or `input`), answered in llama-server's own shape. */
export const nativeEmbeddingRequest = z
  .strictObject({
    model: z.string().optional(),
    content: embeddingInput.optional(),
    input: embeddingInput.optional(),
    /** -1 none, 0 max-abs (int16 range), 1 taxicab, 2 Euclidean (default), >2 p-norm. */
    embd_normalize: z.number().int().min(-1).optional(),
    /** Only "float": llama-server parses "base64" here but never encodes the native shape with it. */
    encoding_format: z.literal("float").optional(),
  })
  .refine((b) => b.content !== undefined || b.input !== undefined, { message: '"input" or "content" must be provided', path: ["content"] });

/** `POST /slots/{id}?action=...`. */
export const slotActionQuery = z.strictObject({ action: z.string() });
