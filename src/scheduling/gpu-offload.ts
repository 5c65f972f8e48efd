/**
 * How much of a runner sits on a GPU, from what its engine says while it
 * loads. llama.cpp prints `load_tensors: offloaded N/M layers to GPU` (M is
 * the model's layers plus the output layer) whenever it has a GPU backend,
 * even for N = 0, and never on a CPU-only build; llama-server logs it as is
 * and our built-in engine prints the same sentence from node-llama-cpp's
 * figures (`model.gpuLayers`, `fileInsights.totalLayers`).
 */
export interface GpuOffload {
  offloadedLayers: number;
  totalLayers: number;
}

const OFFLOAD_LINE = /\boffloaded (\d+)\/(\d+) layers to GPU\b/;

/** The offload an engine's log line reports, or null for any other line. */
export function parseOffloadLine(line: string): GpuOffload | null {
  const m = OFFLOAD_LINE.exec(line);
  if (!m) return null;
  const offloadedLayers = Number(m[1]);
  const totalLayers = Number(m[2]);
  return totalLayers > 0 ? { offloadedLayers: Math.min(offloadedLayers, totalLayers), totalLayers } : null;
}

/**
 * The bytes of a runner on a GPU (Ollama's `size_vram`): the runner's memory
 * estimate times the fraction of its layers the engine offloaded, rounded
 * down. No report (a CPU-only engine) is 0; every layer offloaded is the
 * whole estimate. An estimate, not a measurement: the KV cache and buffers
 * of offloaded layers go with them, and the estimate covers those too.
 */
export function gpuBytes(estimatedMemoryBytes: number, offload: GpuOffload | null): number {
  if (!offload) return 0;
  return Math.floor((estimatedMemoryBytes * offload.offloadedLayers) / offload.totalLayers);
}
