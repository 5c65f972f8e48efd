import { createHash } from "node:crypto";

/** One blob of a hand-made artifact. */
export interface RawLayer {
  mediaType: string;
  data: Buffer;
}

const digestOf = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/**
 * Pushes an artifact built by hand (config blob and layers exactly as given)
 * to a registry over the plain OCI distribution API, as a tool other than
 * ours would: for artifacts our packager would never write (a config
 * without the `gguf` map, say). Resolves with the manifest digest.
 */
export async function pushRawArtifact(
  registryUrl: string,
  repo: string,
  tag: string,
  artifact: { config: unknown; configMediaType: string; layers: RawLayer[] },
): Promise<string> {
  const upload = async (data: Buffer) => {
    const digest = digestOf(data);
    const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: "POST" });
    await start.arrayBuffer();
    if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
    const location = new URL(start.headers.get("location")!, registryUrl);
    location.searchParams.set("digest", digest);
    const put = await fetch(location, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: data });
    await put.arrayBuffer();
    if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
    return { digest, size: data.length };
  };
  const configBytes = Buffer.from(JSON.stringify(artifact.config));
  const config = { mediaType: artifact.configMediaType, ...(await upload(configBytes)) };
  const layers = [];
  for (const l of artifact.layers) layers.push({ mediaType: l.mediaType, ...(await upload(l.data)) });
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers }));
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
    body: manifest,
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`manifest put: ${res.status}`);
  return digestOf(manifest);
}
