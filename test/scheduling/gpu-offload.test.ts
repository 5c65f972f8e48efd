import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { createServer } from "node:http";
import { test } from "node:test";
import type { Backend, RunRequest } from "../../src/inference/index.ts";
import { gpuBytes, parseOffloadLine } from "../../src/scheduling/gpu-offload.ts";
import { harness } from "./helpers.ts";
import { BackendRegistry } from "../../src/inference/index.ts";

test("the offload line: llama.cpp's and the built-in engine's sentence; anything else is no report", () => {
  assert.deepEqual(parseOffloadLine("load_tensors: offloaded 33/33 layers to GPU"), { offloadedLayers: 33, totalLayers: 33 });
  assert.deepEqual(parseOffloadLine("engine: offloaded 0/31 layers to GPU"), { offloadedLayers: 0, totalLayers: 31 });
  assert.deepEqual(parseOffloadLine("srv  load_model: x | load_tensors: offloaded 12/25 layers to GPU"), { offloadedLayers: 12, totalLayers: 25 });
  assert.equal(parseOffloadLine("load_tensors: offloading 32 repeating layers to GPU"), null);
  assert.equal(parseOffloadLine("load_tensors:   CPU_Mapped model buffer size =   100.00 MiB"), null);
  assert.equal(parseOffloadLine("load_tensors: offloaded 3/0 layers to GPU"), null, "no layers: no fraction");
  // -ngl 999 on a 25-layer model: llama.cpp prints min(n_gpu_layers, total) but a line saying more cannot mean more than all.
  assert.deepEqual(parseOffloadLine("load_tensors: offloaded 999/25 layers to GPU"), { offloadedLayers: 25, totalLayers: 25 });
});

test("size_vram is the memory estimate times the offloaded fraction, rounded down; no report is 0", () => {
  assert.equal(gpuBytes(1_000_000, null), 0, "CPU only: the engine reports nothing");
  assert.equal(gpuBytes(1_000_000, { offloadedLayers: 0, totalLayers: 31 }), 0, "a GPU backend with -ngl 0");
  assert.equal(gpuBytes(1_000_000, { offloadedLayers: 31, totalLayers: 31 }), 1_000_000, "all layers: the whole estimate");
  assert.equal(gpuBytes(1_000_000, { offloadedLayers: 16, totalLayers: 32 }), 500_000);
  assert.equal(gpuBytes(1001, { offloadedLayers: 1, totalLayers: 3 }), 333);
});

/**
 * A test double for the one boundary this machine lacks, a GPU: a backend
 * that logs what llama-server logs after offloading 12 of 25 layers, then
 * serves /health on the runner's socket until stopped.
 */
class GpuReportingBackend implements Backend {
  readonly name = "fake-gpu";
  readonly usesExternalModelManagement = false;
  async install(): Promise<void> {}
  status(): string {
    return "Running: fake GPU backend (test double)";
  }
  async run(request: RunRequest, signal: AbortSignal): Promise<void> {
    request.onLog?.("load_tensors: offloading 11 repeating layers to GPU");
    request.onLog?.("load_tensors: offloaded 12/25 layers to GPU");
    const server = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}'));
    await new Promise<void>((resolve) => server.listen(request.socket, resolve));
    request.onReady?.();
    await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(request.socket, { force: true });
  }
}

test("a runner whose engine reports offloaded layers has that share of its estimate on the GPU", async (t) => {
  const gpu = await harness(t, { backends: new BackendRegistry([new GpuReportingBackend()]) });
  const lease = await gpu.scheduler.acquire("a", "completion");
  const [row] = gpu.scheduler.ps();
  assert.ok(row && row.estimatedMemoryBytes > 0);
  assert.equal(row.gpuBytes, Math.floor((row.estimatedMemoryBytes * 12) / 25));
  lease.release();
});

test("the built-in engine on this machine (no GPU) has nothing on a GPU", async (t) => {
  // The real engine loads on CPU and says nothing of offloading.
  const cpu = await harness(t, { modelNames: ["d"] });
  const cpuLease = await cpu.scheduler.acquire("d", "completion");
  assert.equal(cpu.scheduler.ps()[0]!.gpuBytes, 0);
  cpuLease.release();
});
