/**
 * The distribution layer: references, the local store, OCI registries,
 * Hugging Face, packaging and model archives. The daemon builds one store
 * (`openStore`) and one `createModelDistribution` in main.ts and calls only
 * what this file exports. See docs/distribution.md.
 */
export { openStore, ModelStore, findByPartialName } from "./store.ts";
export type { IndexEntry, RemoveResult, RunnableFiles, StoredModel, OpenStoreOptions } from "./store.ts";
export { createModelDistribution } from "./distribution.ts";
export type { DistributionOptions, ModelDistribution, RemoteModel, RemoteOptions, RepackageOptions, TransferOptions } from "./distribution.ts";
export { parseReference, parseAnyReference, normalizeReference, checkInsecureAllowed } from "./reference.ts";
export type { ModelReference, ParsedReference } from "./reference.ts";
export { toDmrProgressLine } from "./progress.ts";
export type { ProgressEvent, ProgressListener, DmrProgressLine, TransferMode } from "./progress.ts";
export type { PackageOptions } from "./package.ts";
export { discoverShards, readGgufConfig } from "./package.ts";
export type { Digest } from "./digest.ts";
export type { ModelConfig, ModelConfigFile, ImageManifest, Descriptor } from "./media-types.ts";
export { MediaTypes } from "./media-types.ts";
export { isEmbeddingModel } from "./model-kind.ts";
export type { DownloadTuning } from "./download.ts";
export type { StatFs } from "./disk-space.ts";
export * from "./errors.ts";
