import { test } from "node:test";
import assert from "node:assert/strict";
import type { LookupFunction } from "node:net";
import { Agent } from "undici";
import { startTestRegistry } from "../doubles/test-registry.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";

// Ollama's `insecure`: plain HTTP to a registry that is not on loopback (loopback ones always get HTTP).
// `registry.test` is such a name; the injected DNS points it at the local docker-registry (so no packet
// leaves the machine), which speaks plain HTTP only: HTTPS to it fails, HTTP works.
test("insecure: a registry that is not loopback is spoken to over plain HTTP only when the transfer asks", async (t) => {
  const registry = await startTestRegistry();
  t.after(() => registry.close());
  const port = new URL(registry.url).port;
  const lookup = ((_hostname: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    if (opts?.all) cb(null, [{ address: "127.0.0.1", family: 4 }]);
    else cb(null, "127.0.0.1", 4);
  }) as unknown as LookupFunction;
  const dispatcher = new Agent({ connect: { lookup } });
  t.after(() => dispatcher.close());
  const dist = await freshDistribution(t, { dispatcher, maxRetries: 0 });
  const files = await makeModelFiles(await tempDir(), { seed: 5 });
  const name = `registry.test:${port}/team/tiny:v1`;
  const packaged = await dist.packageModel({ gguf: files.gguf, tags: [name] });

  await assert.rejects(dist.push(name), "HTTPS to a plain-HTTP registry fails");
  await dist.push(name, { isInsecure: true });

  const other = await freshDistribution(t, { dispatcher, maxRetries: 0 });
  await assert.rejects(other.pull(name));
  const pulled = await other.pull(name, { isInsecure: true });
  assert.equal(pulled.id, packaged.id);
  await assert.rejects(other.pull("hf.co/org/repo-GGUF", { isInsecure: true }), /'insecure' is for registries; Hugging Face is always reached over HTTPS/);
});
