import assert from "node:assert/strict";
import { test } from "node:test";
import type { BatchItem, Token } from "node-llama-cpp";
import { slotOrderStrategy, slotPriority } from "../../src/engine/batch-order.ts";

const item = (slot: number, tokens: number): BatchItem => ({
  tokens: Array.from({ length: tokens }, () => 1 as Token),
  logits: [],
  evaluationPriority: slotPriority(slot),
});

test("a batch lists its sequences in slot order, whatever order they were queued in", () => {
  const items = [item(2, 1), item(0, 1), item(3, 1), item(1, 1)];
  const batch = slotOrderStrategy({ items, size: 512 });
  assert.deepEqual(batch.map((b) => b.item), [items[1], items[3], items[0], items[2]]);
  assert.deepEqual(batch.map((b) => b.processAmount), [1, 1, 1, 1]);
});

test("the batch is shared: every queued item gets its share, leftovers go first come first served", () => {
  const prompt = item(1, 100);
  const token = item(0, 1);
  const batch = slotOrderStrategy({ items: [prompt, token], size: 50 });
  assert.deepEqual(batch.map((b) => [b.item, b.processAmount]), [[token, 1], [prompt, 49]]);
});

test("items that get no room this time are left for the next batch", () => {
  const items = [item(4, 1), item(2, 1), item(7, 1)];
  const batch = slotOrderStrategy({ items, size: 2 });
  assert.deepEqual(batch.map((b) => b.item), [items[1], items[0]]);
  assert.equal(slotPriority(7), 8, "more than five slots still order");
});
