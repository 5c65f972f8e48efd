import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tinyModel } from "../helpers/models.ts";

const json = { accept: "application/json", "content-type": "application/json" };

async function ndjson(res: Response): Promise<Array<Record<string, any>>> {
  const text = await res.text();
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

// The daemon's model routes against a real docker-registry on loopback.
describe("daemon model management routes", () => {
  let registry: TestRegistry;
  let d: TestDaemon;
  let gguf: string;

  before(async () => {
    registry = await startTestRegistry();
    d = await startTestDaemon();
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

    const other = await startTestDaemon();
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

  test("unknown routes and bad JSON are JSON errors", async () => {
    const missing = await fetch(`${d.url}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "route_not_found");
    const bad = await fetch(`${d.url}/models/create`, { method: "POST", headers: json, body: "{" });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /Malformed JSON/);
  });
});
