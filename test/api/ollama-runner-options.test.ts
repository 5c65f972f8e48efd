import assert from "node:assert/strict";
import { test } from "node:test";
import { mapOptions } from "../../src/api/ollama/options.ts";
import { withRunnerOptions } from "../../src/api/ollama/runner-options.ts";

test("runner options replace their flag in any spelling and keep the other flags in order", () => {
  const flags = ["-t", "8", "--temp", "0.5", "--threads=6", "-ngl", "10", "--no-mmap", "--batch-size=256"];
  assert.deepEqual(withRunnerOptions(flags, { num_thread: 2 }), ["--temp", "0.5", "-ngl", "10", "--no-mmap", "--batch-size=256", "--threads", "2"]);
  assert.deepEqual(withRunnerOptions(flags, { num_gpu: -1, use_mmap: true, num_batch: 0 }), ["-t", "8", "--temp", "0.5", "--threads=6"]);
  assert.deepEqual(withRunnerOptions([], { num_gpu: 0, main_gpu: 1, use_mmap: false }), ["--n-gpu-layers", "0", "--main-gpu", "1", "--no-mmap"]);
});

test("mapOptions: runner options apart, num_keep as n_keep, what Ollama ignores accepted, numa refused", () => {
  const mapped = mapOptions({ num_thread: 3, use_mmap: false, num_keep: 4, temperature: 0.2, use_mlock: true, penalize_newline: true, numa: false });
  assert.deepEqual(mapped.runner, { num_thread: 3, use_mmap: false });
  assert.deepEqual(mapped.fields, { n_keep: 4, temperature: 0.2 });
  assert.throws(() => mapOptions({ numa: true }), /options\.numa/);
  assert.throws(() => mapOptions({ num_batch: 1.5 }), /options\.num_batch' must be an integer/);
  assert.throws(() => mapOptions({ use_mmap: 1 }), /options\.use_mmap' must be a boolean/);
  assert.throws(() => mapOptions({ penalize_newline: "yes" }), /options\.penalize_newline' must be a boolean/, "ignored, yet typed");
});
