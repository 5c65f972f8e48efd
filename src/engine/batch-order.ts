import type { BatchItem, EvaluationPriority, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * Batch composition for the engine's context: node-llama-cpp lets a custom
 * strategy choose which queued tokens go into the next decode and in what
 * order. Ours shares the batch like its default (`maximumParallelism`: an
 * equal share per queued item, the rest first come first served) and then
 * puts the items in slot order.
 *
 * Why the order matters: with llama.cpp's per-sequence KV cache streams (the
 * default node-llama-cpp uses), a batch whose sequences come out of order
 * costs nearly as much as decoding them one by one. Measured on an
 * 85M-parameter model (bench/engine/batch-cost.ts), one token of each of 4
 * sequences took 24.5 ms in slot order and 42 ms in the order the sequences
 * happened to be sampled, against 10.5 ms for a single token: the difference
 * between batching paying off and not.
 *
 * A batch item carries no sequence id, so each slot evaluates with its slot
 * number as `evaluationPriority` (`slotPriority`); the engine gives every
 * sequence the same importance, so that field is free to carry the order.
 */
export function slotOrderStrategy({ items, size }: { items: readonly BatchItem[]; size: number }): PrioritizedBatchItem[] {
  let left = size;
  const share = Math.max(1, Math.floor(size / Math.max(1, items.length)));
  const chosen = items.map((item) => ({ item, processAmount: 0 }));
  for (const c of chosen) {
    const n = Math.min(c.item.tokens.length, share, left);
    c.processAmount = n;
    left -= n;
  }
  for (const c of chosen) {
    if (left <= 0) break;
    const n = Math.min(c.item.tokens.length - c.processAmount, left);
    c.processAmount += n;
    left -= n;
  }
  return chosen.filter((c) => c.processAmount > 0).sort((a, b) => a.item.evaluationPriority - b.item.evaluationPriority);
}

/**
 * The `evaluationPriority` that carries slot `index` (0-based) to
 * `slotOrderStrategy`. node-llama-cpp types priorities as 1–5 but treats them
 * as plain numbers, so more than 5 slots still order correctly.
 */
export function slotPriority(index: number): EvaluationPriority {
  return (index + 1) as EvaluationPriority;
}
