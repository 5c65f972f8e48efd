import { copyFile, link, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BlobStore } from "./blob-store.ts";
import { parseDigest } from "./digest.ts";
import { parseConfigFile } from "./manifest.ts";
import { MediaTypes, type ImageManifest } from "./media-types.ts";

/**
 * A model's runnable layout, `bundles/sha256/<id>/`: `model/model.gguf` (or
 * `model-0000i-of-0000N.gguf` shards), `model.mmproj`, `template.jinja`, all
 * hard links to the blobs, and `config.json`, the runtime config. Built in
 * `tmp/` and renamed into place, so a bundle with `config.json` is complete.
 */

/** The runnable files of a stored model; every path is inside the store and hard-linked to a blob. */
export interface RunnableFiles {
  bundleDir: string;
  /** First (or only) GGUF file; null for a model without GGUF layers. */
  ggufPath: string | null;
  /** All GGUF files in shard order. */
  ggufPaths: string[];
  chatTemplatePath: string | null;
  mmprojPath: string | null;
  licensePaths: string[];
  /** The runtime config (`{"context_size":N}`), if the model sets one. */
  runtimeConfigPath: string;
}

/** Builds the bundle of model `id` at `dir` unless a complete one is there. */
export async function buildBundle(blobs: BlobStore, dir: string, manifest: ImageManifest): Promise<void> {
  if (await exists(join(dir, "config.json"))) return;
  const tmp = blobs.tmpPath();
  await mkdir(join(tmp, "model"), { recursive: true });
  const ggufs = manifest.layers.filter((l) => l.mediaType === MediaTypes.gguf);
  const width = 5;
  for (const [i, l] of ggufs.entries()) {
    const name = ggufs.length === 1
      ? "model.gguf"
      : `model-${String(i + 1).padStart(width, "0")}-of-${String(ggufs.length).padStart(width, "0")}.gguf`;
    await hardLink(blobs.blobPath(parseDigest(l.digest)), join(tmp, "model", name));
  }
  const mmproj = manifest.layers.find((l) => l.mediaType === MediaTypes.mmproj);
  if (mmproj) await hardLink(blobs.blobPath(parseDigest(mmproj.digest)), join(tmp, "model", "model.mmproj"));
  const template = manifest.layers.find((l) => l.mediaType === MediaTypes.chatTemplate);
  if (template) await hardLink(blobs.blobPath(parseDigest(template.digest)), join(tmp, "model", "template.jinja"));
  const configFile = parseConfigFile(await blobs.readBlob(parseDigest(manifest.config.digest)));
  const runtime = configFile.config?.context_size ? { context_size: configFile.config.context_size } : {};
  await writeFile(join(tmp, "config.json"), JSON.stringify(runtime));
  await rm(dir, { recursive: true, force: true }); // an incomplete leftover of a killed writer
  await rename(tmp, dir);
}

/** The runnable files in the bundle at `dir` of the model `manifest` describes. */
export async function readBundle(blobs: BlobStore, dir: string, manifest: ImageManifest): Promise<RunnableFiles> {
  const modelDir = join(dir, "model");
  const names = (await readdir(modelDir).catch(() => [] as string[])).sort();
  const ggufPaths = names.filter((n) => n.endsWith(".gguf")).map((n) => join(modelDir, n));
  return {
    bundleDir: dir,
    ggufPath: ggufPaths[0] ?? null,
    ggufPaths,
    chatTemplatePath: names.includes("template.jinja") ? join(modelDir, "template.jinja") : null,
    mmprojPath: names.includes("model.mmproj") ? join(modelDir, "model.mmproj") : null,
    licensePaths: manifest.layers
      .filter((l) => l.mediaType === MediaTypes.license)
      .map((l) => blobs.blobPath(parseDigest(l.digest))),
    runtimeConfigPath: join(dir, "config.json"),
  };
}

export async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null)) !== null;
}

async function hardLink(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (e) {
    // Filesystems without hard links (some FUSE/SMB mounts): a copy still runs.
    if ((e as NodeJS.ErrnoException).code === "EPERM" || (e as NodeJS.ErrnoException).code === "ENOTSUP") await copyFile(from, to);
    else throw e;
  }
}
