import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { startRegistryProxy } from "../doubles/registry-proxy.ts";
import { startFakeHfHub } from "../doubles/fake-hf-hub.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { MediaTypes } from "../../src/distribution/index.ts";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { runMr } from "../helpers/cli.ts";

const json = { accept: "application/json", "content-type": "application/json" };

async function ndjson(res: Response): Promise<Array<Record<string, any>>> {
  const text = await res.text();
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * Pushes `ref` through the daemon's push route and waits for its end: the 200 comes before the upload ends, so a
 * caller that reads only the status may find the registry without the manifest yet.
 */
async function pushThrough(daemonUrl: string, ref: string): Promise<void> {
  const lines = await ndjson(await fetch(`${daemonUrl}/models/${ref}/push`, { method: "POST", headers: json, body: "{}" }));
  assert.equal(lines.at(-1)!.type, "success", JSON.stringify(lines.at(-1)));
}

// The daemon's model routes against a real docker-registry on loopback.
describe("daemon model management routes", () => {
  let registry: TestRegistry;
  let d: TestDaemon;
  let gguf: string;

  before(async () => {
    registry = await startTestRegistry();
    d = await startBareDaemon();
    gguf = await tinyModel({ seed: 21 });
  });
  after(async () => {
    await d?.close();
    await registry?.close();
  });

  test("push, remove, then create (pull) streams NDJSON progress and restores the same model", async () => {
    const ref = `${registry.host}/team/tiny:v1`;
    const id = await d.addModel(gguf, ref);

    const push = await fetch(`${d.url}/models/${ref}/push`, { method: "POST", headers: json, body: "{}" });
    assert.equal(push.status, 200);
    const pushLines = await ndjson(push);
    assert.equal(pushLines.at(-1)!.type, "success");
    assert.ok(pushLines.every((l) => l.mode === "push"));

    const del = await fetch(`${d.url}/models/${ref}`, { method: "DELETE" });
    assert.equal(del.status, 200);
    assert.deepEqual(await del.json(), [{ Untagged: ref }, { Deleted: id }]);
    assert.equal((await fetch(`${d.url}/models/${ref}`)).status, 404);

    const pull = await fetch(`${d.url}/models/create`, { method: "POST", headers: json, body: JSON.stringify({ from: ref }) });
    assert.equal(pull.status, 200);
    assert.match(pull.headers.get("content-type")!, /ndjson/);
    const lines = await ndjson(pull);
    const progress = lines.filter((l) => l.type === "progress");
    assert.ok(progress.length > 0, "progress lines");
    for (const p of progress) {
      assert.equal(p.mode, "pull");
      assert.equal(typeof p.total, "number");
      assert.match(p.layer.id, /^sha256:/);
      assert.ok(p.layer.current <= p.layer.size);
      assert.ok(p.current <= p.total, "overall bytes done never exceed the total");
    }
    assert.equal(lines.at(-1)!.type, "success");
    const got = (await (await fetch(`${d.url}/models/${ref}`)).json()) as { id: string; tags: string[]; config: { format: string } };
    assert.equal(got.id, id);
    assert.equal(got.config.format, "gguf");
  });

  test("create checks runtime memory before the download, as DMR: a model that could never load is a 507; ignore-runtime-memory-check pulls it", async () => {
    const ref = `${registry.host}/team/too-big:v1`;
    await d.addModel(gguf, ref);
    // Pushed to its end: as in DMR, a model the check below cannot inspect (no manifest yet) is pulled.
    await pushThrough(d.url, ref);
    // 100 MiB cannot hold even one engine process (its fixed overhead alone is estimated at 256 MiB).
    const small = await startBareDaemon({ MODEL_RUNNER_MEMORY: "100MiB" });
    try {
      const refused = await fetch(`${small.url}/models/create`, { method: "POST", headers: json, body: JSON.stringify({ from: ref }) });
      assert.equal(refused.status, 507);
      const body = (await refused.json()) as { error: { message: string; code: string } };
      assert.equal(body.error.code, "model_would_not_fit");
      assert.match(body.error.message, /would need about .* to run .* but the memory budget is 100 MiB.*--ignore-runtime-memory-check/);
      assert.equal((await fetch(`${small.url}/models/${ref}`)).status, 404, "nothing was downloaded");
      const typo = await fetch(`${small.url}/models/create`, { method: "POST", headers: json, body: JSON.stringify({ from: ref, "ignore-runtime-memory-check": "yes" }) });
      assert.equal(typo.status, 400);
      // Through the CLI: the daemon's message, then the flag sends the field and the pull goes through.
      const env = { MODEL_RUNNER_HOST: small.url.replace("http://", "") };
      const plain = await runMr(["pull", ref], { env });
      assert.equal(plain.code, 1);
      assert.match(plain.stderr, /could never be loaded here\. Pull it anyway with --ignore-runtime-memory-check/);
      // --insecure goes along (a loopback registry is plain HTTP anyway; test/distribution/insecure.test.ts has one that is not).
      const cli = await runMr(["pull", "--ignore-runtime-memory-check", "--insecure", ref], { env });
      assert.equal(cli.code, 0, cli.stderr);
      const pushed = await runMr(["push", "--insecure", ref], { env });
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.equal((await fetch(`${small.url}/models/${ref}`)).status, 200);
    } finally {
      await small.close();
    }
  });

  test("create: a bad reference is a 400 and a missing one a 404, both as JSON errors before any stream", async () => {
    const bad = await fetch(`${d.url}/models/create`, { method: "POST", headers: json, body: JSON.stringify({ from: "Bad Ref!!" }) });
    assert.equal(bad.status, 400);
    const badBody = (await bad.json()) as { error: { message: string; code: string } };
    assert.match(badBody.error.message, /Bad Ref!!/);
    const missing = await fetch(`${d.url}/models/create`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ from: `${registry.host}/team/absent:v1` }),
    });
    assert.equal(missing.status, 404);
    const noFrom = await fetch(`${d.url}/models/create`, { method: "POST", headers: json, body: "{}" });
    assert.equal(noFrom.status, 400);
  });

  test("list, get with partial names, tag, and delete conflicts", async () => {
    const id = await d.addModel(gguf, "ai/listed:latest");
    const list = (await (await fetch(`${d.url}/models`)).json()) as Array<{ id: string; tags: string[]; created: number }>;
    const entry = list.find((m) => m.id === id);
    assert.ok(entry && entry.tags.includes("ai/listed:latest"));
    assert.equal(((await (await fetch(`${d.url}/models/listed`)).json()) as { id: string }).id, id);
    assert.equal(((await (await fetch(`${d.url}/models/${id.slice(7, 19)}`)).json()) as { id: string }).id, id);

    const tag = await fetch(`${d.url}/models/ai/listed/tag?repo=team/other&tag=v2`, { method: "POST" });
    assert.equal(tag.status, 201);
    assert.deepEqual(await tag.json(), { message: 'Model tagged successfully with "team/other:v2"', target: "team/other:v2" });
    assert.equal((await fetch(`${d.url}/models/ai/listed/tag?repo=x`, { method: "POST" })).status, 400);
    assert.equal((await fetch(`${d.url}/models/ai/listed/frobnicate`, { method: "POST" })).status, 404);

    const conflict = await fetch(`${d.url}/models/${id}`, { method: "DELETE" });
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as { error: { code: string } }).error.code, "model_conflict");
    const forced = await fetch(`${d.url}/models/${id}?force=true`, { method: "DELETE" });
    assert.equal(forced.status, 200);
    const result = (await forced.json()) as Array<Record<string, string>>;
    assert.deepEqual(result.at(-1), { Deleted: id });
    assert.equal((await fetch(`${d.url}/models/listed`)).status, 404);
  });

  test("export then load round-trips a model through a tar upload", async () => {
    const id = await d.addModel(gguf, "ai/exported:latest");
    const exported = await fetch(`${d.url}/models/ai/exported:latest/export`);
    assert.equal(exported.status, 200);
    assert.equal(exported.headers.get("content-type"), "application/x-tar");
    assert.match(exported.headers.get("content-disposition")!, /attachment; filename=".*\.tar"/);
    const tar = Buffer.from(await exported.arrayBuffer());

    const other = await startBareDaemon();
    try {
      const load = await fetch(`${other.url}/models/load?tag=ai/imported:v1`, {
        method: "POST",
        headers: { "content-type": "application/x-tar", accept: "application/json" },
        body: tar,
      });
      assert.equal(load.status, 200);
      const lines = await ndjson(load);
      assert.equal(lines.at(-1)!.type, "success");
      const got = (await (await fetch(`${other.url}/models/ai/imported:v1`)).json()) as { id: string };
      assert.equal(got.id, id);
      const corrupt = Buffer.from(tar);
      corrupt[corrupt.length - 2048] = corrupt[corrupt.length - 2048]! ^ 0xff;
      corrupt[1024] = corrupt[1024]! ^ 0xff;
      const bad = await fetch(`${other.url}/models/load?tag=ai/broken:v1`, {
        method: "POST",
        headers: { "content-type": "application/x-tar", accept: "application/json" },
        body: corrupt,
      });
      const failed = bad.status !== 200 || (await ndjson(bad)).at(-1)!.type === "error";
      assert.ok(failed, "a corrupted archive is refused");
      assert.equal((await fetch(`${other.url}/models/ai/broken:v1`)).status, 404);
    } finally {
      await other.close();
    }
  });

  test("df reports the store's size and purge empties it", async () => {
    await d.addModel(gguf, "ai/sized:latest");
    const df = (await (await fetch(`${d.url}/engines/df`)).json()) as { models_disk_usage: number; default_backend_disk_usage: number };
    assert.ok(df.models_disk_usage > 500_000);
    assert.equal(typeof df.default_backend_disk_usage, "number");
    assert.equal((await fetch(`${d.url}/models/purge`, { method: "DELETE" })).status, 200);
    assert.deepEqual(await (await fetch(`${d.url}/models`)).json(), []);
  });

  test("GET ?remote=true describes a registry model from its manifest and config blob only; 404 and 401 keep their statuses", async (t) => {
    // A request-logging proxy in front of the registry shows which blobs were fetched.
    const proxy = await startRegistryProxy(registry.url);
    t.after(() => proxy.close());
    const ref = `${proxy.host}/team/remote:v1`;
    const id = await d.addModel(gguf, ref);
    const stored = await d.daemon.distribution.get(ref);
    await pushThrough(d.url, ref);
    assert.equal((await fetch(`${d.url}/models/${ref}?force=true`, { method: "DELETE" })).status, 200);
    proxy.blobGets.length = 0;

    const res = await fetch(`${d.url}/models/${ref}?remote=true`);
    assert.equal(res.status, 200);
    const remote = (await res.json()) as { id: string; tags: string[]; created: number; config: Record<string, unknown>; layers: Array<{ mediaType: string; digest: string; size: number }> };
    assert.equal(remote.id, id);
    assert.deepEqual(remote.tags, [ref]);
    assert.deepEqual(remote.config, stored.config);
    assert.ok(remote.created > 0 && Math.abs(remote.created - stored.created) < 60, `created ${remote.created}`);
    assert.deepEqual(remote.layers, stored.manifest.layers);
    assert.deepEqual(proxy.blobGets.map((g) => g.path), [`/v2/team/remote/blobs/${stored.manifest.config.digest}`], "only the config blob");
    assert.equal((await fetch(`${d.url}/models/${ref}`)).status, 404, "inspecting does not pull");

    // Through an image index, the answer is the image manifest's digest.
    const manifest = await fetch(`${registry.url}/v2/team/remote/manifests/v1`, { headers: { accept: MediaTypes.ociManifest } });
    const manifestBytes = Buffer.from(await manifest.arrayBuffer());
    const index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [{ mediaType: MediaTypes.ociManifest, digest: id, size: manifestBytes.length }] };
    const put = await fetch(`${registry.url}/v2/team/remote/manifests/idx`, { method: "PUT", headers: { "content-type": MediaTypes.ociIndex }, body: JSON.stringify(index) });
    assert.equal(put.status, 201);
    const viaIndex = (await (await fetch(`${d.url}/models/${proxy.host}/team/remote:idx?remote=true`)).json()) as { id: string; tags: string[] };
    assert.equal(viaIndex.id, id);
    assert.deepEqual(viaIndex.tags, [`${proxy.host}/team/remote:idx`]);

    const missing = await fetch(`${d.url}/models/${registry.host}/team/absent:v1?remote=true`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "remote_model_not_found");
    // A registry behind Bearer auth, and the daemon has no credentials for it.
    const guarded = await startRegistryProxy(registry.url, { bearer: { user: "alice", password: "s3cret" } });
    t.after(() => guarded.close());
    const denied = await fetch(`${d.url}/models/${guarded.host}/team/remote:v1?remote=true`);
    assert.equal(denied.status, 401);
    assert.equal(((await denied.json()) as { error: { code: string } }).error.code, "registry_unauthorized");
  });

  test("GET ?remote=true on hf.co lists the chosen quantization's files without downloading them", async (t) => {
    const dir = await tempDir("mr-hf-");
    const paths = ["q4", "q8a", "q8b", "mm"].map((n) => join(dir, `${n}.gguf`));
    for (const [i, p] of paths.entries()) await writeTinyModel(p, { seed: 40 + i });
    const hub = await startFakeHfHub(
      {
        "org/Tiny-GGUF": [
          { path: "Tiny-Q4_K_M.gguf", local: paths[0]! },
          { path: "Q8_0/Tiny-Q8_0-00001-of-00002.gguf", local: paths[1]! },
          { path: "Q8_0/Tiny-Q8_0-00002-of-00002.gguf", local: paths[2]! },
          { path: "mmproj-Tiny-f16.gguf", local: paths[3]! },
        ],
      },
      { token: "hf_test" },
    );
    t.after(() => hub.close());
    const hd = await startBareDaemon({ HF_ENDPOINT: hub.endpoint, HF_TOKEN: "hf_test" });
    t.after(() => hd.close());
    const res = await fetch(`${hd.url}/models/hf.co/org/Tiny-GGUF:Q8_0?remote=true`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      id: null; tags: string[]; config: { format: string; quantization: string; size: string };
      layers: Array<{ mediaType: string; size: number; annotations: Record<string, string> }>;
      files: Array<{ path: string; size: number; digest: string; kind: string }>;
    };
    assert.equal(body.id, null);
    assert.deepEqual(body.tags, ["huggingface.co/org/tiny-gguf:Q8_0"]);
    assert.equal(body.config.format, "gguf");
    assert.equal(body.config.quantization, "Q8_0");
    const sizes = await Promise.all(paths.map(async (p) => (await stat(p)).size));
    assert.deepEqual(
      body.files.map((f) => [f.path, f.size, f.kind]),
      [["Q8_0/Tiny-Q8_0-00001-of-00002.gguf", sizes[1], "gguf"], ["Q8_0/Tiny-Q8_0-00002-of-00002.gguf", sizes[2], "gguf"], ["mmproj-Tiny-f16.gguf", sizes[3], "mmproj"]],
    );
    assert.ok(body.files.every((f) => /^sha256:[0-9a-f]{64}$/.test(f.digest)));
    assert.deepEqual(body.layers.map((l) => [l.mediaType, l.annotations["org.cncf.model.filepath"]]), [
      [MediaTypes.gguf, "Q8_0/Tiny-Q8_0-00001-of-00002.gguf"], [MediaTypes.gguf, "Q8_0/Tiny-Q8_0-00002-of-00002.gguf"], [MediaTypes.mmproj, "mmproj-Tiny-f16.gguf"],
    ]);
    assert.ok(!hub.requests.some((r) => /\/(resolve|cdn)\//.test(r)), `no file was fetched: ${hub.requests.join(", ")}`);
    assert.equal((await fetch(`${hd.url}/models/hf.co/org/Tiny-GGUF:Q2_K?remote=true`)).status, 404);
    assert.equal((await fetch(`${hd.url}/models/hf.co/org/Missing?remote=true`)).status, 404);
  });

  test("repackage stores a new tag with a changed context_size, same layers, the old tag untouched", async () => {
    const id = await d.addModel(gguf, "ai/base:latest");
    const base = await d.daemon.distribution.get("ai/base:latest");
    const res = await fetch(`${d.url}/models/ai/base/repackage`, { method: "POST", headers: json, body: JSON.stringify({ target: "ai/base-ctx:v1", context_size: 1536 }) });
    assert.equal(res.status, 201);
    assert.deepEqual(await res.json(), { message: 'Model repackaged successfully as "ai/base-ctx:v1"', source: "ai/base", target: "ai/base-ctx:v1" });

    const copy = (await (await fetch(`${d.url}/models/ai/base-ctx:v1`)).json()) as { id: string; tags: string[]; config: { context_size?: number; format: string } };
    assert.equal(copy.config.context_size, 1536);
    assert.notEqual(copy.id, id);
    assert.deepEqual(copy.tags, ["ai/base-ctx:v1"]);
    const stored = await d.daemon.distribution.get("ai/base-ctx:v1");
    assert.deepEqual(stored.manifest.layers, base.manifest.layers, "same layers");
    assert.notEqual(stored.manifest.config.digest, base.manifest.config.digest, "a new config blob");
    assert.deepEqual({ ...stored.config, context_size: undefined }, { ...base.config, context_size: undefined }, "only context_size changed");

    const old = (await (await fetch(`${d.url}/models/ai/base:latest`)).json()) as { id: string; tags: string[]; config: { context_size?: number } };
    assert.equal(old.id, id);
    assert.deepEqual(old.tags, ["ai/base:latest"]);
    assert.equal(old.config.context_size, undefined);

    const v1 = (await (await fetch(`${d.url}/v1/models/ai/base-ctx:v1`)).json()) as { id: string; dmr: { context_window: number } };
    assert.equal(v1.id, "ai/base-ctx:v1");
    assert.equal(v1.dmr.context_window, 1536);
    const v1Old = (await (await fetch(`${d.url}/v1/models/ai/base:latest`)).json()) as { dmr: { context_window: number } };
    assert.notEqual(v1Old.dmr.context_window, 1536);
    assert.deepEqual(await d.daemon.distribution.store.check(), []);

    const noTarget = await fetch(`${d.url}/models/ai/base/repackage`, { method: "POST", headers: json, body: "{}" });
    assert.equal(noTarget.status, 400);
    const badSize = await fetch(`${d.url}/models/ai/base/repackage`, { method: "POST", headers: json, body: JSON.stringify({ target: "ai/x:v1", context_size: -5 }) });
    assert.equal(badSize.status, 400);
    assert.equal((await fetch(`${d.url}/models/ai/x:v1`)).status, 404);
    const unknown = await fetch(`${d.url}/models/ai/nothing-here/repackage`, { method: "POST", headers: json, body: JSON.stringify({ target: "ai/y:v1" }) });
    assert.equal(unknown.status, 404);
  });

  test("unknown routes and bad JSON are JSON errors", async () => {
    const missing = await fetch(`${d.url}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "route_not_found");
    const bad = await fetch(`${d.url}/models/create`, { method: "POST", headers: json, body: "{" });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /Malformed JSON/);
  });
});
