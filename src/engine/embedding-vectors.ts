/**
 * Embedding vectors after the model: llama.cpp's normalizations and the
 * shortening that OpenAI's and Ollama's `dimensions` ask for. No engine here:
 * the llama-server wrapper uses the same code on llama-server's answers.
 */

/**
 * llama.cpp's `common_embd_normalize`: -1 none, 0 max absolute value scaled
 * to int16, 1 taxicab, 2 Euclidean, >2 p-norm.
 */
export function normalizeEmbedding(v: readonly number[], norm: number): number[] {
  let sum: number;
  if (norm < 0) sum = 1;
  else if (norm === 0) sum = v.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / 32760;
  else if (norm === 1) sum = v.reduce((s, x) => s + Math.abs(x), 0);
  else if (norm === 2) sum = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  else sum = v.reduce((s, x) => s + Math.abs(x) ** norm, 0) ** (1 / norm);
  const scale = sum > 0 ? 1 / sum : 0;
  return v.map((x) => x * scale);
}

/**
 * The first `dimensions` values of `v`, scaled back to unit length: what
 * OpenAI does for `dimensions` ("removing numbers from the end of the
 * sequence" of a normalized embedding) and Ollama's `/api/embed` does for any
 * model. A vector of `dimensions` or fewer values is returned as it is.
 */
export function shortenEmbedding(v: readonly number[], dimensions: number): number[] {
  if (v.length <= dimensions) return [...v];
  return normalizeEmbedding(v.slice(0, dimensions), 2);
}

/** The `dimensions` check both engines make: a size above the model's is refused (it cannot be made up). */
export function dimensionsError(dimensions: number, length: number): string | null {
  if (dimensions <= length) return null;
  return `'dimensions' is ${dimensions}, but this model's embeddings have ${length} dimensions: ask for ${length} or fewer.`;
}

/** A vector as OpenAI's `encoding_format: "base64"` sends it: its float32 values' bytes, little-endian. */
export function float32Base64(v: readonly number[]): string {
  return Buffer.from(new Float32Array(v).buffer).toString("base64");
}

/** `shortenEmbedding` on a base64 vector of little-endian float32 values (OpenAI's `encoding_format: "base64"`). */
export function shortenBase64Embedding(base64: string, dimensions: number): string {
  const bytes = Buffer.from(base64, "base64");
  // A copy: a decoded Buffer may sit at an offset a Float32Array cannot start at.
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length - (bytes.length % 4)));
  return float32Base64(shortenEmbedding(Array.from(floats), dimensions));
}
