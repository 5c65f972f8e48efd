import { test } from "node:test";
import assert from "node:assert/strict";
import type { LookupFunction } from "node:net";
import { Agent } from "undici";
import { backoffMs, retryAfterMs } from "../../src/distribution/backoff.ts";
import { BlobDownloads } from "../../src/distribution/blob-downloads.ts";
import { sha256Digest } from "../../src/distribution/digest.ts";
import { openStore, RegistryError, RegistryUnreachableError } from "../../src/distribution/index.ts";
import { freePort } from "../doubles/test-registry.ts";
import { freshDistribution, tempDir } from "./helpers.ts";

// Offline, a pull must fail at once with the dial error: name-resolution
// failures and refused connections are never retried. Default retry settings
// (5 retries from 200 ms) are used so a retry would show in the time taken.
const DEFAULT_RETRIES = { maxRetries: 5, retryBaseMs: 200 } as const;

test("a registry that refuses the connection fails the pull in under 2 s, quoting ECONNREFUSED", async (t) => {
  const port = await freePort(); // closed: nothing listens there
  const dist = await freshDistribution(t, DEFAULT_RETRIES);
  const started = Date.now();
  await assert.rejects(dist.pull(`127.0.0.1:${port}/ai/tiny:latest`), (e: unknown) => {
    assert.ok(e instanceof RegistryUnreachableError, String(e));
    assert.equal(e.code, "registry_unreachable");
    assert.equal(e.status, 502);
    assert.equal(e.retryable, false);
    assert.match(e.message, new RegExp(`Cannot reach 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    return true;
  });
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
});

test("a registry name that does not resolve fails in under 2 s after one lookup, quoting ENOTFOUND", async (t) => {
  // The DNS is injected (a `.invalid` name, RFC 6761): no real resolver is asked.
  let lookups = 0;
  const lookup = ((hostname: string, _opts: unknown, cb: (e: NodeJS.ErrnoException) => void) => {
    lookups++;
    cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND", hostname }));
  }) as unknown as LookupFunction;
  const dispatcher = new Agent({ connect: { lookup } });
  t.after(() => dispatcher.close());
  const dist = await freshDistribution(t, { ...DEFAULT_RETRIES, dispatcher });
  const started = Date.now();
  await assert.rejects(dist.pull("registry.invalid/ai/tiny:latest"), (e: unknown) => {
    assert.ok(e instanceof RegistryUnreachableError, String(e));
    assert.match(e.message, /Cannot reach registry\.invalid: getaddrinfo ENOTFOUND registry\.invalid \(the name does not resolve/);
    return true;
  });
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  assert.equal(lookups, 1, "a name that does not resolve is not asked again");
});

test("a blob host that refuses is not retried by the downloader; a reset is", async (t) => {
  const store = await openStore({ root: await tempDir() });
  const downloads = new BlobDownloads(store, { retryBaseMs: 1 });
  const data = Buffer.from("blob bytes");
  let calls = 0;
  await assert.rejects(
    downloads.fetch(sha256Digest(data), data.length, async () => {
      calls++;
      throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED", address: "127.0.0.1", port: 9 });
    }, () => {}, new AbortController().signal),
    (e: unknown) => e instanceof RegistryUnreachableError && /127\.0\.0\.1:9/.test(e.message),
  );
  assert.equal(calls, 1);
  calls = 0;
  await assert.rejects(
    downloads.fetch(sha256Digest(data), data.length, async () => {
      calls++;
      throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    }, () => {}, new AbortController().signal),
    (e: unknown) => e instanceof RegistryError && /kept failing/.test(e.message),
  );
  assert.equal(calls, 6, "a reset is retried (5 retries)");
});

test("backoffMs: exponential with ±25 % jitter, at least Retry-After, capped", () => {
  const mid = () => 0.5;
  assert.equal(backoffMs(0, { baseMs: 200, random: mid }), 200);
  assert.equal(backoffMs(3, { baseMs: 200, random: mid }), 1600);
  assert.equal(backoffMs(0, { baseMs: 200, random: () => 0 }), 150);
  assert.equal(backoffMs(0, { baseMs: 200, random: () => 1 }), 250);
  assert.equal(backoffMs(0, { baseMs: 200, retryAfter: "3", random: mid }), 3000);
  assert.equal(backoffMs(20, { baseMs: 200, random: mid }), 30_000);
  assert.equal(backoffMs(0, { baseMs: 200, retryAfter: "600", capMs: 10_000, random: mid }), 10_000);
  assert.equal(retryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10_000);
  assert.equal(retryAfterMs("soon"), 0);
});
