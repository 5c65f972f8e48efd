import assert from "node:assert/strict";
import { test } from "node:test";
import { LOAD_PROGRESS_STEP, loadProgressLine, parseLoadProgressLine, throttledLoadProgress } from "../../src/engine/load-progress.ts";

test("a load-progress line reads back as its fraction; other lines are not one", () => {
  for (const f of [0, 0.05, 0.271, 0.5, 0.999, 1]) assert.equal(parseLoadProgressLine(loadProgressLine(f)), Number(f.toFixed(3)));
  assert.equal(loadProgressLine(0.2714), "engine: load progress 0.271");
  assert.equal(loadProgressLine(1.5), "engine: load progress 1.000");
  for (const line of ["engine: load progress", "engine: load progress 1.5", "engine: load progress -0.1", "engine: load progress 0.5 extra", "x engine: load progress 0.5", "load_tensors: offloaded 0/3 layers to GPU"]) {
    assert.equal(parseLoadProgressLine(line), null, line);
  }
});

test("node-llama-cpp's per-tensor progress thinned to one report per 5 % and the last, once", () => {
  // What node-llama-cpp 3 reports for the suite's default tiny model (21 calls, measured).
  const calls = [0.271, 0.271, 0.542, 0.543, 0.565, 0.588, 0.611, 0.634, 0.634, 0.68, 0.725, 0.771, 0.771, 0.794, 0.817, 0.84, 0.863, 0.863, 0.909, 0.954, 1];
  const reported: number[] = [];
  const push = throttledLoadProgress((f) => reported.push(f));
  for (const c of calls) push(c);
  push(1);
  assert.deepEqual(reported, [0.271, 0.542, 0.611, 0.68, 0.771, 0.84, 0.909, 1]);
  for (let i = 1; i < reported.length - 1; i++) assert.ok(reported[i]! - reported[i - 1]! >= LOAD_PROGRESS_STEP);
  // A fine-grained load (hundreds of calls) gives about 1/step reports.
  const many: number[] = [];
  const fine = throttledLoadProgress((f) => many.push(f));
  for (let i = 1; i <= 1000; i++) fine(i / 1000);
  assert.ok(many.length >= 19 && many.length <= 21, String(many.length));
  assert.equal(many.at(-1), 1);
});
