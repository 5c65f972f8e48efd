import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelTooLargeError, QueueFullError, formatBytes } from "../../src/scheduling/index.ts";
import { count, harness, settlesWithin, tinyEstimate } from "./helpers.ts";
import { eventually } from "../helpers/processes.ts";

test("under a small budget idle runners are evicted least recently used first", async (t) => {
  const h = await harness(t, { runnersThatFit: 2 });
  for (const model of ["a", "b", "a"]) (await h.scheduler.acquire(model, "completion")).release();
  const lease = await h.scheduler.acquire("c", "completion");
  const evicted = h.events.filter((e) => e.type === "evict");
  assert.deepEqual(evicted.map((e) => [e.model, e.type === "evict" && e.reason]), [["b", "memory"]]);
  assert.deepEqual(h.scheduler.ps().map((r) => r.model).sort(), ["a", "c"]);
  assert.ok(h.scheduler.memory().usedBytes <= h.scheduler.memory().budgetBytes);
  lease.release();
});

test("a busy runner is never evicted: the new model waits until it is free", async (t) => {
  const h = await harness(t, { runnersThatFit: 1 });
  const a = await h.scheduler.acquire("a", "completion");
  const waiting = h.scheduler.acquire("b", "completion");
  assert.equal(await settlesWithin(waiting, 400), false);
  assert.equal(count(h.events, "queued"), 1);
  assert.equal(count(h.events, "evict"), 0);
  assert.deepEqual(h.scheduler.ps().map((r) => [r.model, r.state]), [["a", "ready"]]);
  assert.equal(h.scheduler.memory().queued, 1);
  a.release();
  const b = await waiting;
  assert.equal(b.model, "b");
  assert.deepEqual(h.scheduler.ps().map((r) => r.model), ["b"]);
  const dequeued = h.events.find((e) => e.type === "dequeued");
  assert.ok(dequeued?.type === "dequeued" && dequeued.outcome === "admitted" && dequeued.waitMs >= 300);
  b.release();
});

test("a full queue answers 503 with Retry-After", async (t) => {
  const h = await harness(t, { runnersThatFit: 1, queueLimit: 1, retryAfterSeconds: 7 });
  const a = await h.scheduler.acquire("a", "completion");
  const controller = new AbortController();
  const queued = h.scheduler.acquire("b", "completion", { signal: controller.signal });
  await eventually(() => h.scheduler.memory().queued === 1, 10_000, "b to queue");
  const error = await h.scheduler.acquire("c", "completion").then(
    () => assert.fail("should not be admitted"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof QueueFullError);
  assert.equal(error.status, 503);
  assert.equal(error.headers["retry-after"], "7");
  assert.equal(count(h.events, "queue_full"), 1);
  // A waiter that gives up leaves the queue; nothing was started for it.
  controller.abort(new Error("gave up"));
  await assert.rejects(queued, /gave up/);
  assert.equal(h.scheduler.memory().queued, 0);
  assert.equal(count(h.events, "load"), 1);
  a.release();
});

test("a model that can never fit gets 507 with both figures, and nothing starts", async (t) => {
  const h = await harness(t);
  const estimate = await tinyEstimate(h.models.get("a")!);
  const small = await harness(t, { dir: h.dir, modelNames: ["a"], memoryBudgetBytes: Math.floor(estimate / 2) });
  const error = await small.scheduler.acquire("a", "completion").then(
    () => assert.fail("should not load"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ModelTooLargeError);
  assert.equal(error.status, 507);
  assert.equal(error.requiredBytes, estimate);
  assert.equal(error.budgetBytes, Math.floor(estimate / 2));
  assert.match(error.message, new RegExp(formatBytes(estimate).replace(".", "\\.")));
  assert.match(error.message, new RegExp(formatBytes(Math.floor(estimate / 2)).replace(".", "\\.")));
  assert.deepEqual(small.scheduler.ps(), []);
});

test("the runner count is capped even when memory would allow more", async (t) => {
  const h = await harness(t, { maxRunners: 1 });
  (await h.scheduler.acquire("a", "completion")).release();
  (await h.scheduler.acquire("b", "completion")).release();
  assert.deepEqual(h.scheduler.ps().map((r) => r.model), ["b"]);
  assert.equal(count(h.events, "evict"), 1);
});
