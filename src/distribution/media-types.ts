/** Media types of Docker model artifacts (DMR `pkg/distribution/types/config.go`) and OCI. */
export const MediaTypes = {
  modelConfigV01: "application/vnd.docker.ai.model.config.v0.1+json",
  modelConfigV02: "application/vnd.docker.ai.model.config.v0.2+json",
  gguf: "application/vnd.docker.ai.gguf.v3",
  safetensors: "application/vnd.docker.ai.safetensors",
  license: "application/vnd.docker.ai.license",
  mmproj: "application/vnd.docker.ai.mmproj",
  chatTemplate: "application/vnd.docker.ai.chat.template.jinja",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
} as const;

export const SUPPORTED_CONFIG_MEDIA_TYPES: readonly string[] = [MediaTypes.modelConfigV01, MediaTypes.modelConfigV02];

/** What a manifest GET asks for: single manifests and indexes, OCI and Docker. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
  MediaTypes.ociIndex,
  MediaTypes.dockerManifestList,
].join(", ");

export const AnnotationFilePath = "org.cncf.model.filepath";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Array<Descriptor & { platform?: unknown }>;
}

/** The `config` object of a Docker model config blob (DMR `types.Config`). */
export interface ModelConfig {
  format?: string;
  quantization?: string;
  parameters?: string;
  architecture?: string;
  size?: string;
  gguf?: Record<string, string>;
  safetensors?: Record<string, string>;
  diffusers?: Record<string, string>;
  context_size?: number;
}

/** The whole config blob (DMR `types.ConfigFile`). */
export interface ModelConfigFile {
  config: ModelConfig;
  descriptor: { created?: string };
  rootfs: { type: "rootfs"; diff_ids: string[] };
}
