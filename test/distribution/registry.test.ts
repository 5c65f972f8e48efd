import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startTestRegistry } from "../doubles/test-registry.ts";
import { startRegistryProxy } from "../doubles/registry-proxy.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";
import {
  DigestMismatchError, RegistryAuthError, UnsupportedMediaTypeError, MediaTypes, type ProgressEvent,
} from "../../src/distribution/index.ts";
import { sha256Digest } from "../../src/distribution/digest.ts";

const run = promisify(execFile);

test("package → push → rm → pull round trip; skopeo reads what we push and we pull what skopeo copies", async (t) => {
  const registry = await startTestRegistry();
  t.after(() => registry.close());
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const dist = await freshDistribution(t);
  const ref = `${registry.host}/team/tiny:v1`;
  const packaged = await dist.packageModel({ gguf: files.gguf, licenses: [files.license], chatTemplate: files.template, contextSize: 2048, tags: [ref] });
  assert.equal(packaged.config.format, "gguf");
  assert.equal(packaged.config.architecture, "llama");
  assert.equal(packaged.config.context_size, 2048);
  assert.ok(packaged.config.gguf?.["general.name"]);
  assert.equal(packaged.config.gguf?.["tokenizer.ggml.tokens"], undefined, "long arrays are elided");
  const events: ProgressEvent[] = [];
  await dist.push(ref, { onProgress: (e) => events.push(e) });
  assert.ok(events.some((e) => e.type === "success"));

  const { stdout } = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`]);
  assert.equal(sha256Digest(Buffer.from(stdout)), packaged.id, "skopeo sees our manifest byte for byte");
  const { raw } = await dist.store.readManifest(packaged.id);
  assert.equal(stdout, raw.toString());

  const removed = await dist.remove(ref);
  assert.deepEqual(removed, [{ Untagged: ref }, { Deleted: packaged.id }]);
  assert.deepEqual(await dist.list(), []);
  const pulled = await dist.pull(ref);
  assert.equal(pulled.id, packaged.id);
  assert.deepEqual(pulled.manifest, packaged.manifest);
  assert.ok(pulled.files.ggufPath);
  assert.ok((await stat(pulled.files.ggufPath!)).nlink >= 2, "runnable file is a hard link to the blob");
  assert.ok(pulled.files.chatTemplatePath);
  assert.equal(pulled.files.licensePaths.length, 1);
  assert.deepEqual(await dist.store.check(), []);

  // skopeo copies our artifact to an OCI layout and from there into another repo; we pull that.
  const layout = join(dir, "oci");
  await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${ref}`, `oci:${layout}:v1`]);
  const other = `${registry.host}/copied/by-skopeo:v1`;
  await run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${other}`]);
  const dist2 = await freshDistribution(t);
  const copied = await dist2.pull(other);
  assert.deepEqual(copied.manifest.layers.map((l) => [l.mediaType, l.digest]), packaged.manifest.layers.map((l) => [l.mediaType, l.digest]));
  assert.equal(copied.manifest.config.mediaType, MediaTypes.modelConfigV01);
  assert.deepEqual(await dist2.store.check(), []);

  // Chunked upload + cross-repo mount: push the same model under another repo of the same registry.
  const dist3 = await freshDistribution(t, { pushChunkSizeBytes: 64 << 10 });
  await dist3.packageModel({ gguf: files.gguf, tags: [`${registry.host}/chunked/a:v1`] });
  await dist3.push(`${registry.host}/chunked/a:v1`);
  await dist3.tag(`${registry.host}/chunked/a:v1`, `${registry.host}/chunked/b:v1`);
  await dist3.push(`${registry.host}/chunked/b:v1`);
  const dist4 = await freshDistribution(t);
  const b = await dist4.pull(`${registry.host}/chunked/b:v1`);
  assert.equal(b.id, (await dist3.get(`${registry.host}/chunked/a:v1`)).id);
});

test("Basic (htpasswd) and Bearer token auth, from options and from docker config", async (t) => {
  const user = { user: "alice", password: "s3cret" };
  const basic = await startTestRegistry({ basicAuth: user });
  t.after(() => basic.close());
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const anon = await freshDistribution(t);
  const ref = `${basic.host}/private/tiny:v1`;
  await anon.packageModel({ gguf: files.gguf, tags: [ref] });
  await assert.rejects(anon.push(ref), (e) => e instanceof RegistryAuthError && e.status === 401);
  const withOpts = await freshDistribution(t, { dockerUsername: user.user, dockerPassword: user.password });
  const m = await withOpts.packageModel({ gguf: files.gguf, tags: [ref] });
  await withOpts.push(ref);
  const dockerConfig = join(dir, "config.json");
  await writeFile(dockerConfig, JSON.stringify({ auths: { [basic.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
  const viaConfig = await freshDistribution(t, { dockerConfigPath: dockerConfig });
  assert.equal((await viaConfig.pull(ref)).id, m.id);

  // Bearer: our token service in front of an anonymous registry, Docker Hub's challenge flow.
  const backend = await startTestRegistry();
  t.after(() => backend.close());
  const proxy = await startRegistryProxy(backend.url, { bearer: user });
  t.after(() => proxy.close());
  const bref = `${proxy.host}/bearer/tiny:v1`;
  await withOpts.tag(ref, bref);
  await anon.tag(ref, bref);
  await assert.rejects(anon.push(bref), RegistryAuthError);
  await withOpts.push(bref);
  assert.ok(proxy.tokensIssued > 0);
  const helperConfig = join(dir, "helper.json");
  await writeFile(helperConfig, JSON.stringify({ credsStore: "fake" }));
  const viaHelper = await freshDistribution(t, {
    dockerConfigPath: helperConfig,
    runCredentialHelper: async (helper, server) => (helper === "fake" && server === proxy.host ? { username: "alice", password: "s3cret" } : null),
  });
  assert.equal((await viaHelper.pull(bref)).id, m.id);
  const wrong = await freshDistribution(t, { dockerUsername: "alice", dockerPassword: "nope" });
  await assert.rejects(wrong.pull(bref), RegistryAuthError);
});

test("faults: resume after a cut, 503 retry, stall, corrupt byte rejected, abort leaves a resumable partial, shared downloads", async (t) => {
  const backend = await startTestRegistry();
  t.after(() => backend.close());
  const proxy = await startRegistryProxy(backend.url);
  t.after(() => proxy.close());
  const dir = await tempDir();
  const files = await makeModelFiles(dir, { embeddingLength: 512 });
  const src = await freshDistribution(t);
  const ref = `${proxy.host}/faults/big:v1`;
  const model = await src.packageModel({ gguf: files.gguf, tags: [ref] });
  await src.push(ref);
  const gguf = model.manifest.layers[0]!;
  assert.ok(gguf.size > 4 << 20, `model is ${gguf.size} bytes`);

  // Cut mid-blob, then a 503: the pull resumes with Range and completes.
  proxy.faults = { dropAfterBytes: { bytes: 1 << 20, times: 1 }, serviceUnavailable: { times: 1 } };
  proxy.blobGets.length = 0;
  const d1 = await freshDistribution(t);
  assert.equal((await d1.pull(ref)).id, model.id);
  assert.ok(proxy.blobGets.some((g) => g.range && !g.range.startsWith("bytes=0-")), JSON.stringify(proxy.blobGets));
  assert.deepEqual(await d1.store.check(), []);

  // A stalled body is abandoned and resumed.
  proxy.faults = { stallAfterBytes: { bytes: 1 << 20, times: 1 } };
  const d2 = await freshDistribution(t, { download: { stallTimeoutMs: 300 } });
  assert.equal((await d2.pull(ref)).id, model.id);

  // A flipped byte: rejected, nothing of it kept; the next pull is clean.
  proxy.faults = { corruptAt: { offset: 12345, times: 4 } };
  const d3 = await freshDistribution(t);
  await assert.rejects(d3.pull(ref), DigestMismatchError);
  assert.deepEqual(await d3.list(), []);
  const gd = gguf.digest as Parameters<typeof d3.store.blobPath>[0];
  assert.equal(await d3.store.hasBlob(gd), false);
  await assert.rejects(stat(d3.store.partialPath(gd)));
  proxy.faults = {};
  assert.equal((await d3.pull(ref)).id, model.id);

  // Abort mid-blob: a partial file stays; the next pull continues it with Range.
  const d4 = await freshDistribution(t);
  const ac = new AbortController();
  await assert.rejects(
    d4.pull(ref, {
      signal: ac.signal,
      onProgress: (e) => {
        if (e.type === "progress" && e.layer.id === gguf.digest && e.layer.current >= 2 << 20) ac.abort(new Error("user cancelled"));
      },
    }),
    /user cancelled/,
  );
  const partial = await stat(d4.store.partialPath(gd));
  assert.ok(partial.size > 0);
  proxy.blobGets.length = 0;
  assert.equal((await d4.pull(ref)).id, model.id);
  assert.ok(proxy.blobGets.some((g) => g.range && !g.range.startsWith("bytes=0-")), JSON.stringify(proxy.blobGets));

  // Two concurrent pulls of the same model share one download per blob.
  const d5 = await freshDistribution(t);
  proxy.blobGets.length = 0;
  const [a, b] = await Promise.all([d5.pull(ref), d5.pull(ref)]);
  assert.equal(a.id, b.id);
  const perBlob = new Map<string, number>();
  for (const g of proxy.blobGets) perBlob.set(g.path, (perBlob.get(g.path) ?? 0) + 1);
  assert.deepEqual([...perBlob.values()], [1, 1], JSON.stringify(proxy.blobGets));
});

test("unsupported config media type is a 422; an image index is followed", async (t) => {
  const registry = await startTestRegistry();
  t.after(() => registry.close());
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const dist = await freshDistribution(t);
  const ref = `${registry.host}/odd/model:v1`;
  const m = await dist.packageModel({ gguf: files.gguf, tags: [ref] });
  await dist.push(ref);
  const { raw } = await dist.store.readManifest(m.id);
  const put = async (tag: string, body: Buffer, type: string) => {
    const res = await fetch(`http://${registry.host}/v2/odd/model/manifests/${tag}`, { method: "PUT", headers: { "content-type": type }, body });
    assert.equal(res.status, 201, await res.text());
  };
  const index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [{ mediaType: MediaTypes.ociManifest, digest: m.id, size: raw.length }] };
  await put("idx", Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex);
  const d2 = await freshDistribution(t);
  assert.equal((await d2.pull(`${registry.host}/odd/model:idx`)).id, m.id);

  const odd = JSON.parse(raw.toString());
  odd.config.mediaType = "application/vnd.oci.image.config.v1+json";
  await put("odd", Buffer.from(JSON.stringify(odd)), MediaTypes.ociManifest);
  await assert.rejects(d2.pull(`${registry.host}/odd/model:odd`), (e) => e instanceof UnsupportedMediaTypeError && e.status === 422);
});
