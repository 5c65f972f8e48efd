import { isDigest } from "./digest.ts";
import { InvalidArtifactError } from "./errors.ts";
import type { ImageManifest, ModelConfigFile } from "./media-types.ts";

/**
 * Parsing of the two JSON documents of an artifact: the OCI manifest and the
 * model config blob. Every reader (store, pull, push, archives) goes through
 * these, so a damaged or hostile document is one InvalidArtifactError (400)
 * wherever it is read, never a TypeError from a bare `JSON.parse … as`.
 */

/** Parses and checks a raw OCI image manifest: a config and layers with valid digests and sizes. */
export function parseManifest(raw: Buffer): ImageManifest {
  let m: ImageManifest;
  try {
    m = JSON.parse(raw.toString("utf8")) as ImageManifest;
  } catch (e) {
    throw new InvalidArtifactError("The manifest is not valid JSON.", { cause: e });
  }
  if (!m || typeof m !== "object" || !m.config || !Array.isArray(m.layers)) {
    throw new InvalidArtifactError("The manifest has no config or layers.");
  }
  for (const d of [m.config, ...m.layers]) {
    if (!isDigest(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
      throw new InvalidArtifactError(`The manifest has an invalid descriptor (${JSON.stringify(d).slice(0, 200)}).`);
    }
  }
  return m;
}

/** Parses a model config blob (`{"config":{…},"descriptor":{…},"rootfs":{…}}`); it must be a JSON object. */
export function parseConfigFile(bytes: Buffer): ModelConfigFile {
  try {
    const parsed = JSON.parse(bytes.toString("utf8")) as ModelConfigFile;
    if (parsed && typeof parsed === "object") return parsed;
  } catch (e) {
    throw new InvalidArtifactError("The model config blob is not valid JSON.", { cause: e });
  }
  throw new InvalidArtifactError("The model config blob is not a JSON object.");
}
