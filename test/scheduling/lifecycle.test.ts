import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { access, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EngineFailedError } from "../../src/inference/index.ts";
import { waitForHealth } from "../../src/inference/engine-process.ts";
import { setTimeout as delay } from "node:timers/promises";
import { LoadBackoffError, SchedulerClosedError } from "../../src/scheduling/index.ts";
import { isAlive } from "../../src/util/process.ts";
import { count, harness, settlesWithin, tinyModels } from "./helpers.ts";
import { tempDir } from "../helpers/models.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { eventually } from "../helpers/processes.ts";

const NEVER_HEALTHY = fileURLToPath(new URL("../fixtures/never-healthy-engine.sh", import.meta.url));

test("an idle runner unloads when its keep-alive expires", async (t) => {
  const h = await harness(t, { defaultKeepAliveMs: 300 });
  const lease = await h.scheduler.acquire("a", "completion");
  assert.equal(h.scheduler.ps()[0]!.expiresAt, null, "no expiry while busy");
  lease.release();
  const row = h.scheduler.ps()[0]!;
  assert.equal(row.keepAlive, "300ms");
  assert.ok(row.expiresAt && row.lastUsedAt && row.expiresAt.getTime() - row.lastUsedAt.getTime() === 300);
  await eventually(() => h.scheduler.ps().length === 0, 5000, "the runner to unload");
  assert.deepEqual(h.events.filter((e) => e.type === "evict").map((e) => e.type === "evict" && e.reason), ["idle"]);
});

test("keep_alive 0 unloads right after the request; a request's keep-alive sticks", async (t) => {
  const h = await harness(t);
  await h.scheduler.configure({ model: "a", keepAlive: "0" });
  const lease = await h.scheduler.acquire("a", "completion");
  lease.release();
  assert.equal(h.scheduler.ps()[0]?.state, "stopping");
  await eventually(() => h.scheduler.ps().length === 0, 10_000, "the runner to go");
  // Ollama's per-request keep_alive overrides the configured one; -1 keeps it.
  (await h.scheduler.acquire("a", "completion", { keepAliveMs: Infinity })).release();
  const row = h.scheduler.ps()[0]!;
  assert.equal(row.keepAlive, "-1");
  assert.equal(row.expiresAt, null);
});

test("an engine killed mid-request fails its leases; the next request starts a fresh one", async (t) => {
  const h = await harness(t);
  const lease = await h.scheduler.acquire("a", "completion");
  const pid = h.scheduler.ps()[0]!.pid!;
  assert.ok(pid > 0);
  process.kill(pid, "SIGKILL");
  await eventually(() => lease.signal.aborted, 10_000, "the lease to abort");
  const reason = lease.signal.reason as unknown;
  assert.ok(reason instanceof EngineFailedError);
  assert.equal(reason.status, 500);
  assert.match(reason.message, /SIGKILL/);
  assert.equal(count(h.events, "crash"), 1);
  await eventually(() => h.scheduler.ps().length === 0, 10_000, "the runner to be removed");
  lease.release(); // late release of a dead runner's lease is harmless
  const next = await h.scheduler.acquire("a", "completion");
  assert.notEqual(h.scheduler.ps()[0]!.pid, pid);
  assert.equal(count(h.events, "load"), 2);
  next.release();
});

test("an engine that never becomes healthy is stopped and reported with its output", async (t) => {
  const h = await harness(t, { backend: { llamaServerPath: NEVER_HEALTHY, readyTimeoutMs: 1000, stopGraceMs: 500 } });
  const error = await h.scheduler.acquire("a", "completion").then(
    () => assert.fail("should not become ready"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof EngineFailedError, String(error));
  assert.match(error.message, /did not become healthy/);
  assert.match(error.message, /loading tensors forever/);
  assert.equal(count(h.events, "load_failed"), 1);
  await eventually(() => h.scheduler.ps().length === 0, 10_000, "the runner to be removed");
});

test("shutdown lets in-flight requests finish, refuses new ones, then stops every engine", async (t) => {
  const h = await harness(t, { defaultParallel: 2 });
  const busy = await h.scheduler.acquire("a", "completion");
  (await h.scheduler.acquire("b", "completion")).release();
  const done = h.scheduler.shutdown(10_000);
  await assert.rejects(h.scheduler.acquire("a", "completion"), SchedulerClosedError);
  assert.equal(await settlesWithin(done, 300), false, "shutdown waits for the busy request");
  assert.equal(busy.signal.aborted, false);
  busy.release();
  await done;
  assert.deepEqual(h.scheduler.ps(), []);
  assert.deepEqual((await readdir(h.runDir)).filter((n) => n.endsWith(".sock") || n.endsWith(".pid")), []);
});

test("shutdown aborts requests still running when the grace period ends", async (t) => {
  const h = await harness(t);
  const busy = await h.scheduler.acquire("a", "completion");
  await h.scheduler.shutdown(200);
  assert.ok(busy.signal.reason instanceof SchedulerClosedError);
  assert.deepEqual(h.scheduler.ps(), []);
});

test("engines left by a SIGKILLed daemon are reaped at the next start", async (t) => {
  const dir = await tempDir("mr-s-");
  const { models } = await tinyModels(dir, ["a"]);
  const runDir = join(dir, "run");
  const socket = join(runDir, "r-deadbeef.sock");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(runDir, { recursive: true });
  // What a daemon leaves when it is SIGKILLed: a detached engine and its pid file.
  const orphan = spawn(process.execPath, [MR_BIN, "engine", "-m", models.get("a")!.files.ggufPath, "--host", socket, "-c", "256"], {
    detached: true,
    stdio: "ignore",
  });
  t.after(() => {
    try {
      process.kill(-orphan.pid!, "SIGKILL");
    } catch {
      // already reaped, as it should be
    }
  });
  await waitForHealth(socket, AbortSignal.timeout(30_000));
  await writeFile(join(runDir, "r-deadbeef.pid"), JSON.stringify({ pid: orphan.pid, socket, backend: "llama.cpp", model: "a", startedAt: "" }));
  // A pid file for a process that is long gone must not hurt anyone.
  await writeFile(join(runDir, "r-00000000.pid"), JSON.stringify({ pid: 999_999_999, socket: join(runDir, "r-00000000.sock") }));

  const h = await harness(t, { dir, modelNames: ["a"] });
  assert.deepEqual(await h.scheduler.reapOrphans(), [orphan.pid]);
  assert.equal(isAlive(orphan.pid!), false);
  await assert.rejects(access(socket));
  assert.deepEqual(await readdir(runDir), []);
});

test("a model that failed to load gets the same failure during its back-off, without a new engine", async (t) => {
  const h = await harness(t, { modelNames: ["bad", "a"], loadFailureBackoffMs: 60_000 });
  await writeFile(h.models.get("bad")!.files.ggufPath, "this is not a GGUF file\n".repeat(100));
  const first = await h.scheduler.acquire("bad", "completion").then(() => assert.fail("loaded a corrupt model"), (e: unknown) => e);
  assert.ok(first instanceof EngineFailedError, String(first));
  assert.equal(count(h.events, "load_failed"), 1);
  await eventually(() => h.scheduler.ps().length === 0, 5000, "the failed runner to go");
  const loadsBefore = h.events.length;
  const second = await h.scheduler.acquire("bad", "completion").then(() => assert.fail("loaded a corrupt model"), (e: unknown) => e);
  assert.ok(second instanceof LoadBackoffError, String(second));
  assert.equal(second.status, first.status);
  assert.equal(second.code, first.code);
  assert.ok(second.message.includes(first.message), "the cause is in the message");
  assert.match(second.message, /not retried for another (59|60) s/);
  assert.deepEqual(h.events.slice(loadsBefore), [], "no engine was started");
  assert.deepEqual(h.scheduler.ps(), []);
  const [row] = h.scheduler.failedLoads();
  assert.equal(row?.model, "bad");
  assert.equal(row?.code, "engine_failed");
  assert.equal(row?.error, first.message);
  // Other models are not affected; an unload of the failed one ends its back-off.
  (await h.scheduler.acquire("a", "completion")).release();
  await h.scheduler.unload({ models: ["bad"] });
  assert.deepEqual(h.scheduler.failedLoads(), []);
  await assert.rejects(h.scheduler.acquire("bad", "completion"), EngineFailedError);
  assert.equal(count(h.events, "load_failed"), 2, "after the unload it was tried again");
});

test("the failed-load back-off ends by itself", async (t) => {
  const h = await harness(t, { modelNames: ["bad"], loadFailureBackoffMs: 300 });
  await writeFile(h.models.get("bad")!.files.ggufPath, "not a GGUF");
  await assert.rejects(h.scheduler.acquire("bad", "completion"), EngineFailedError);
  await assert.rejects(h.scheduler.acquire("bad", "completion"), LoadBackoffError);
  await delay(350);
  assert.deepEqual(h.scheduler.failedLoads(), []);
  await assert.rejects(h.scheduler.acquire("bad", "completion"), EngineFailedError);
  assert.equal(count(h.events, "load_failed"), 2);
});
