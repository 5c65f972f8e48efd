import { readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { formatBytes } from "../format-bytes.ts";
import type { Digest } from "./digest.ts";
import { InvalidArtifactError } from "./errors.ts";
import { MediaTypes, type Descriptor, type ImageManifest, type ModelConfig, type ModelConfigFile } from "./media-types.ts";
import type { ModelStore } from "./store.ts";

/** What `packageModel` builds an artifact from. Paths are local files. */
export interface PackageOptions {
  /** A GGUF file, or the first shard (`name-00001-of-0000N.gguf`; the others are found beside it). */
  gguf: string;
  licenses?: string[];
  /** A Jinja chat template file. */
  chatTemplate?: string;
  /** A multimodal projector GGUF. */
  mmproj?: string;
  /** Written to the config as `context_size`. */
  contextSize?: number;
  /** Tags to give the model (normalized references). */
  tags?: string[];
  /** The config's `descriptor.created`; default now. */
  created?: Date;
  signal?: AbortSignal;
}

const SHARD_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/** The shard files of a GGUF in order: just `[path]` unless it is `…-00001-of-0000N.gguf`. */
export async function discoverShards(path: string): Promise<string[]> {
  const m = SHARD_RE.exec(basename(path));
  if (!m) return [path];
  const total = Number(m[3]);
  const dir = dirname(path);
  const present = new Set(await readdir(dir));
  const shards: string[] = [];
  for (let i = 1; i <= total; i++) {
    const name = `${m[1]}-${String(i).padStart(5, "0")}-of-${m[3]}.gguf`;
    if (!present.has(name)) throw new InvalidArtifactError(`Shard ${name} of ${basename(path)} is missing from ${dir}.`);
    shards.push(join(dir, name));
  }
  return shards;
}

/** `general.file_type` → llama.cpp's name for it (llama.h `llama_ftype`). */
const FILE_TYPES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M",
  13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS",
  21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
  29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
};

/** Arrays longer than this are elided from the config's `gguf` map (tokenizer vocabularies), as DMR does. */
const MAX_ARRAY_ELEMENTS = 50;

/**
 * Reads the GGUF header (only the header: @huggingface/gguf reads the file in
 * ranges) and builds the Docker model `config` object.
 */
export async function readGgufConfig(shards: string[], contextSize?: number): Promise<ModelConfig> {
  let parameters = 0;
  let totalBytes = 0;
  let first: Record<string, unknown> | null = null;
  for (const s of shards) {
    let parsed: { metadata: Record<string, unknown>; parameterCount: number };
    try {
      parsed = (await (await import("@huggingface/gguf")).gguf(s, { allowLocalFile: true, computeParametersCount: true })) as unknown as typeof parsed;
    } catch (e) {
      throw new InvalidArtifactError(`${s} is not a readable GGUF file.`, { cause: e });
    }
    parameters += parsed.parameterCount;
    totalBytes += (await stat(s)).size;
    first ??= parsed.metadata;
  }
  const md = first ?? {};
  const map = ggufMetadataMap(md);
  const fileType = md["general.file_type"];
  const config: ModelConfig = {
    format: "gguf",
    quantization: typeof fileType === "number" ? (FILE_TYPES[fileType] ?? `type ${fileType}`) : "unknown",
    parameters: formatCount(parameters),
    architecture: typeof md["general.architecture"] === "string" ? md["general.architecture"] : "",
    size: formatBytes(totalBytes, { compact: true }),
    gguf: map,
  };
  if (contextSize !== undefined) config.context_size = contextSize;
  return config;
}

/**
 * GGUF header metadata as the config's `gguf` map stores it (DMR's
 * format/gguf.go): every key as a string, arrays as `[a b c]`, arrays longer
 * than MAX_ARRAY_ELEMENTS (tokenizer vocabularies) and the header counts left out.
 */
export function ggufMetadataMap(md: Record<string, unknown>): Record<string, string> {
  const map: Record<string, string> = {};
  for (const key of Object.keys(md).sort()) {
    const v = md[key];
    if (key === "version" || key === "tensor_count" || key === "kv_count") continue;
    if (Array.isArray(v) && v.length > MAX_ARRAY_ELEMENTS) continue;
    map[key] = Array.isArray(v) ? `[${v.map(String).join(" ")}]` : String(v);
  }
  return map;
}

/** `361821056` → `"361.82M"` (decimal units, like DMR's parameters field). */
export function formatCount(n: number): string {
  const units = ["", "K", "M", "B", "T"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(2)}${units[i]}`;
}

/** The result of packaging: the model ID and its manifest, already committed to the store. */
export interface PackagedModel {
  id: Digest;
  manifest: ImageManifest;
  rawManifest: Buffer;
}

/**
 * Builds a Docker model artifact from local files into the store: each file is
 * streamed in (hashed, never held in memory), the config blob is made from
 * the GGUF header, and the OCI manifest is committed with `tags`.
 */
export async function packageModel(store: ModelStore, opts: PackageOptions): Promise<PackagedModel> {
  const shards = await discoverShards(opts.gguf);
  const config = await readGgufConfig(shards, opts.contextSize);
  const layers: Descriptor[] = [];
  const add = async (path: string, mediaType: string) => {
    const { digest, size } = await store.ingestFile(path, opts.signal);
    layers.push({ mediaType, size, digest });
  };
  for (const s of shards) await add(s, MediaTypes.gguf);
  for (const l of opts.licenses ?? []) await add(l, MediaTypes.license);
  if (opts.mmproj) await add(opts.mmproj, MediaTypes.mmproj);
  if (opts.chatTemplate) await add(opts.chatTemplate, MediaTypes.chatTemplate);
  return commitArtifact(store, config, layers, opts.tags ?? [], opts.created ?? new Date(), opts.signal);
}

/** Writes the config blob and manifest for `layers` (already stored) and commits the model. */
export async function commitArtifact(
  store: ModelStore,
  config: ModelConfig,
  layers: Descriptor[],
  tags: string[],
  created: Date,
  signal?: AbortSignal,
): Promise<PackagedModel> {
  const configFile: ModelConfigFile = {
    config,
    descriptor: { created: created.toISOString() },
    rootfs: { type: "rootfs", diff_ids: layers.map((l) => l.digest) },
  };
  const configBytes = Buffer.from(JSON.stringify(configFile));
  const configDigest = await store.putSmallBlob(configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.modelConfigV01, size: configBytes.length, digest: configDigest },
    layers,
  };
  const rawManifest = Buffer.from(JSON.stringify(manifest));
  const id = await store.commitModel(rawManifest, tags, signal);
  return { id, manifest, rawManifest };
}
