import assert from "node:assert/strict";
import { test } from "node:test";
import { StepGate } from "../../src/engine/step-gate.ts";

/** Resolves after pending microtasks and one macrotask turn. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function tracked(p: Promise<void>) {
  const state = { done: false };
  void p.then(() => (state.done = true));
  return state;
}

test("a lone member passes at once", async () => {
  const gate = new StepGate();
  gate.join();
  const a = tracked(gate.arrive());
  await settle();
  assert.equal(a.done, true);
});

test("members wait for each other and are released together", async () => {
  const gate = new StepGate();
  gate.join();
  gate.join();
  gate.join();
  const a = tracked(gate.arrive());
  const b = tracked(gate.arrive());
  await settle();
  assert.deepEqual([a.done, b.done], [false, false]);
  const c = tracked(gate.arrive());
  await settle();
  assert.deepEqual([a.done, b.done, c.done], [true, true, true]);
  // The next step starts empty.
  const d = tracked(gate.arrive());
  await settle();
  assert.equal(d.done, false);
});

test("a member leaving frees those waiting for it", async () => {
  const gate = new StepGate();
  gate.join();
  gate.join();
  const a = tracked(gate.arrive());
  await settle();
  assert.equal(a.done, false);
  gate.leave();
  await settle();
  assert.equal(a.done, true);
});

test("a member that steps away is not waited for until it is back and arrives", async () => {
  const gate = new StepGate();
  gate.join();
  gate.join();
  const a = tracked(gate.arrive());
  gate.stepAway();
  await settle();
  assert.equal(a.done, true, "stepping away releases the others");
  gate.stepBack();
  const b = tracked(gate.arrive());
  await settle();
  assert.equal(b.done, false, "once back, it counts again");
  const c = tracked(gate.arrive());
  await settle();
  assert.deepEqual([b.done, c.done], [true, true]);
});

test("a member that joins mid-step is waited for in that step", async () => {
  const gate = new StepGate();
  gate.join();
  gate.join();
  const a = tracked(gate.arrive());
  gate.join();
  const b = tracked(gate.arrive());
  await settle();
  assert.deepEqual([a.done, b.done], [false, false]);
  const c = tracked(gate.arrive());
  await settle();
  assert.deepEqual([a.done, b.done, c.done], [true, true, true]);
});
