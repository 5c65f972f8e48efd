/**
 * Whether a GGUF model makes embeddings rather than text, by Ollama's rule
 * (its `embedding` capability): the metadata declares a pooling type
 * (`<arch>.pooling_type`, which embedding and reranking conversions write),
 * or the architecture is an encoder (BERT and its kin) or named for
 * embedding. One rule for `/api/show`'s capabilities and for the scheduler,
 * which refuses to generate text with such a model.
 */
export function isEmbeddingModel(architecture: string, declaresPooling: boolean): boolean {
  return declaresPooling || /bert|embed/i.test(architecture);
}
