import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startFakeHfHub } from "../doubles/fake-hf-hub.ts";
import { freshDistribution, tempDir } from "./helpers.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { DigestMismatchError, RemoteNotFoundError, RegistryAuthError } from "../../src/distribution/index.ts";

test("hf.co pulls pick the quantization, all shards and the mmproj, and verify sha256", async (t) => {
  const dir = await tempDir();
  const q4 = join(dir, "q4.gguf");
  const q8a = join(dir, "q8a.gguf");
  const q8b = join(dir, "q8b.gguf");
  const mm = join(dir, "mm.gguf");
  await writeTinyModel(q4, { seed: 1 });
  await writeTinyModel(q8a, { seed: 2 });
  await writeTinyModel(q8b, { seed: 3 });
  await writeTinyModel(mm, { seed: 4 });
  const hub = await startFakeHfHub(
    {
      "bartowski/Tiny-GGUF": [
        { path: "Tiny-Q4_K_M.gguf", local: q4 },
        { path: "Q8_0/Tiny-Q8_0-00001-of-00002.gguf", local: q8a },
        { path: "Q8_0/Tiny-Q8_0-00002-of-00002.gguf", local: q8b },
        { path: "mmproj-Tiny-f16.gguf", local: mm },
      ],
      "org/Broken": [{ path: "Broken-Q4_K_M.gguf", local: q4, sha256: "f".repeat(64) }],
    },
    { token: "hf_test" },
  );
  t.after(() => hub.close());
  const dist = await freshDistribution(t, { hfEndpoint: hub.endpoint, hfToken: "hf_test" });
  const def = await dist.pull("hf.co/bartowski/Tiny-GGUF");
  assert.deepEqual(def.tags, ["huggingface.co/bartowski/tiny-gguf:latest"]);
  assert.equal(def.files.ggufPaths.length, 1);
  assert.ok(def.files.mmprojPath);
  assert.equal(def.config.format, "gguf");
  const q8 = await dist.pull("huggingface.co/bartowski/tiny-gguf:Q8_0");
  assert.deepEqual(q8.tags, ["huggingface.co/bartowski/tiny-gguf:Q8_0"]);
  assert.equal(q8.files.ggufPaths.length, 2);
  assert.ok(hub.requests.some((r) => r.startsWith("GET /cdn/")), "downloads follow the CDN redirect");
  assert.deepEqual(await dist.store.check(), []);
  // Same files → same artifact: a re-pull keeps the ID.
  assert.equal((await dist.pull("hf.co/bartowski/Tiny-GGUF")).id, def.id);

  await assert.rejects(dist.pull("hf.co/bartowski/Tiny-GGUF:Q2_K"), RemoteNotFoundError);
  await assert.rejects(dist.pull("hf.co/org/Broken"), DigestMismatchError);
  await assert.rejects(dist.pull("hf.co/org/missing"), RemoteNotFoundError);
  const noToken = await freshDistribution(t, { hfEndpoint: hub.endpoint });
  await assert.rejects(noToken.pull("hf.co/bartowski/Tiny-GGUF"), (e) => e instanceof RegistryAuthError && e.status === 401);
  assert.ok((await noToken.pull("hf.co/bartowski/Tiny-GGUF", { bearerToken: "hf_test" })).id);
});
