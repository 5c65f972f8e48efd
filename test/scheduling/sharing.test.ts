import assert from "node:assert/strict";
import { test } from "node:test";
import { count, engineRequest, harness, settlesWithin } from "./helpers.ts";
import { eventually } from "../helpers/processes.ts";

test("concurrent requests share one engine and one load", async (t) => {
  const h = await harness(t, { defaultParallel: 2 });
  const [first, second] = await Promise.all([h.scheduler.acquire("a", "completion"), h.scheduler.acquire("a", "completion")]);
  assert.equal(first.socketPath, second.socketPath);
  assert.equal(count(h.events, "load"), 1);
  const [row] = h.scheduler.ps();
  assert.equal(h.scheduler.ps().length, 1);
  assert.equal(row!.state, "ready");
  assert.equal(row!.inFlight, 2);
  assert.equal(row!.parallel, 2);
  assert.equal(row!.contextSize, 512);

  // The lease's socket and model name are all a proxy needs.
  const res = await engineRequest(first, "POST", "/v1/chat/completions", {
    model: first.modelName,
    messages: [{ role: "user", content: "hello" }],
    max_tokens: 4,
  });
  assert.equal(res.status, 200);
  const models = await engineRequest(first, "GET", "/v1/models");
  assert.equal(models.body.data[0].meta.n_ctx, 1024, "the engine gets context × parallel slots");

  first.release();
  second.release();
  first.release(); // idempotent
  assert.equal(h.scheduler.ps()[0]!.inFlight, 0);
  assert.ok(h.scheduler.ps()[0]!.expiresAt instanceof Date);
});

test("a caller arriving during a load waits for it, then for a free slot", async (t) => {
  const h = await harness(t, { defaultParallel: 1 });
  const firstP = h.scheduler.acquire("a", "completion");
  await eventually(() => h.scheduler.ps()[0]?.state === "loading", 10_000, "the load to start");
  const secondP = h.scheduler.acquire("a", "completion");
  const first = await firstP;
  // One slot: the second caller holds no lease while the first one does.
  assert.equal(await settlesWithin(secondP, 200), false);
  assert.equal(h.scheduler.ps()[0]!.waiting, 1);
  first.release();
  const second = await secondP;
  assert.equal(second.socketPath, first.socketPath);
  assert.equal(count(h.events, "load"), 1, "the model was loaded once");
  second.release();
});

test("an aborted waiter gives up its place without stopping the load", async (t) => {
  const h = await harness(t);
  const controller = new AbortController();
  const waiting = h.scheduler.acquire("a", "completion", { signal: controller.signal });
  await eventually(() => h.scheduler.ps()[0]?.state === "loading", 10_000, "the load to start");
  controller.abort(new Error("client went away"));
  await assert.rejects(waiting, /client went away/);
  await eventually(() => h.scheduler.ps()[0]?.state === "ready", 10_000, "the load to finish");
  const lease = await h.scheduler.acquire("a", "completion");
  assert.equal(count(h.events, "load"), 1);
  lease.release();
});

test("engineQueuePerSlot lets requests wait in the engine, one per slot, and no more", async (t) => {
  const h = await harness(t, { defaultParallel: 1, engineQueuePerSlot: 1 });
  const first = await h.scheduler.acquire("a", "completion");
  const second = await h.scheduler.acquire("a", "completion");
  assert.equal(h.scheduler.ps()[0]!.inFlight, 2, "slot plus one queued in the engine");
  const thirdP = h.scheduler.acquire("a", "completion");
  assert.equal(await settlesWithin(thirdP, 200), false, "a third waits in the scheduler");
  assert.equal(h.scheduler.ps()[0]!.waiting, 1);
  // Both handed over at once really are served by the one-slot engine, in turn.
  const [a, b] = await Promise.all(
    [first, second].map((lease) =>
      engineRequest(lease, "POST", "/v1/chat/completions", { model: lease.modelName, messages: [{ role: "user", content: "x" }], max_tokens: 3 }),
    ),
  );
  assert.equal(a!.status, 200);
  assert.equal(b!.status, 200);
  first.release();
  const third = await thirdP;
  second.release();
  third.release();
  assert.equal(count(h.events, "load"), 1);
});
