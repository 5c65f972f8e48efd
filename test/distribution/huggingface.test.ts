import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { startFakeHfHub } from "../doubles/fake-hf-hub.ts";
import { freshDistribution, tempDir } from "./helpers.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { writeTinyProjector } from "../../src/distribution/tiny-projector.ts";
import { pickMmproj } from "../../src/distribution/huggingface.ts";
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

test("the projector is picked as llama-server's -hf does: same folder or above, closest quantization, then F16", () => {
  const e = (path: string) => ({ type: "file", path, size: 1, oid: "x" }) as Parameters<typeof pickMmproj>[0][number];
  const names = (files: string[], model: string) => pickMmproj(files.map(e), model)?.path ?? null;
  const all = ["mmproj-V-F32.gguf", "mmproj-V-F16.gguf", "mmproj-V-Q8_0.gguf", "other/mmproj-X-Q4_0.gguf"];
  assert.equal(names(all, "V-Q8_0.gguf"), "mmproj-V-Q8_0.gguf");
  assert.equal(names(all, "V-Q4_K_M.gguf"), "mmproj-V-Q8_0.gguf", "4 bits: Q8_0 is closer than F16; other/ is not above the model");
  assert.equal(names(["mmproj-V-F32.gguf", "mmproj-V-F16.gguf"], "V-Q4_K_M.gguf"), "mmproj-V-F16.gguf");
  assert.equal(names(["mmproj-V-bf16.gguf", "mmproj-V-F16.gguf"], "V-F16.gguf"), "mmproj-V-F16.gguf", "a tie goes to F16");
  assert.equal(names(all, "other/X-Q4_0.gguf"), "other/mmproj-X-Q4_0.gguf", "the deepest shared folder wins");
  assert.equal(names(["sub/mmproj-V-F16.gguf"], "V-F16.gguf"), null);
});

test("an hf.co pull stores the projector that matches the chosen quantization", async (t) => {
  const dir = await tempDir();
  const local: Record<string, string> = {};
  for (const [name, seed] of [["q4", 1], ["q8", 2]] as const) await writeTinyModel((local[name] = join(dir, `${name}.gguf`)), { seed });
  for (const [name, seed] of [["mmF16", 5], ["mmQ8", 6]] as const) {
    await writeTinyProjector((local[name] = join(dir, `${name}.gguf`)), { textEmbeddingLength: 64, seed });
  }
  const hub = await startFakeHfHub({
    "org/Vision-GGUF": [
      { path: "Vision-Q4_K_M.gguf", local: local.q4! },
      { path: "Vision-Q8_0.gguf", local: local.q8! },
      { path: "mmproj-Vision-F16.gguf", local: local.mmF16! },
      { path: "mmproj-Vision-Q8_0.gguf", local: local.mmQ8! },
    ],
  });
  t.after(() => hub.close());
  const dist = await freshDistribution(t, { hfEndpoint: hub.endpoint });
  const q8 = await dist.pull("hf.co/org/Vision-GGUF:Q8_0");
  assert.deepEqual(await readFile(q8.files.mmprojPath!), await readFile(local.mmQ8!));
  assert.deepEqual(await readFile(q8.files.ggufPaths[0]!), await readFile(local.q8!));
});
