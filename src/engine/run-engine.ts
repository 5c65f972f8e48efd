import { readFile, rm } from "node:fs/promises";
import { basename } from "node:path";
import { messageOf } from "../errors.ts";
import { loadProgressLine, throttledLoadProgress } from "./load-progress.ts";
import { ModelHost } from "./model-host.ts";
import type { EngineOptions } from "./options.ts";
import { createEngineApp, type EngineState } from "./server.ts";

/**
 * Runs the engine until `signal` aborts: listens first (so `/health` can say
 * "Loading model"), then loads the model. Resolves after the server is closed
 * and the model is freed; rejects if listening or loading fails.
 */
export async function runEngine(
  options: EngineOptions,
  signal: AbortSignal,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<void> {
  const apiKeys = [...options.apiKeys, ...(options.apiKeyFile !== null ? await readApiKeyFile(options.apiKeyFile) : [])];
  const state: EngineState = {
    host: null,
    apiKeys,
    samplingDefaults: options.samplingDefaults,
    modelId: options.alias ?? basename(options.modelPath),
    endpoints: { metrics: options.metrics, slots: options.slots },
  };
  const app = createEngineApp(state);
  // llama-server's --timeout: its sockets' read/write timeout; here, the sockets' inactivity timeout.
  if (options.timeoutSeconds !== null) app.server.setTimeout(options.timeoutSeconds * 1000);
  if (options.listen.kind === "socket") {
    // A socket file left by a killed engine would make listen fail with EADDRINUSE.
    await rm(options.listen.path, { force: true });
    await app.listen({ path: options.listen.path });
    log(`engine: listening on ${options.listen.path}`);
  } else {
    const address = await app.listen({ host: options.listen.host, port: options.listen.port });
    log(`engine: listening on ${address}`);
  }
  const closing = new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  try {
    const started = performance.now();
    // For the daemon's `loading` events: one line per 5 % (load-progress.ts).
    const loading = ModelHost.load(options, throttledLoadProgress((fraction) => log(loadProgressLine(fraction))));
    const host = await Promise.race([loading, closing.then(() => null)]);
    if (host === null) {
      // Stopped while loading: let the load finish so its memory is freed cleanly.
      await loading.then((h) => h.dispose(), () => undefined);
      return;
    }
    state.host = host;
    // llama.cpp's own sentence (node-llama-cpp keeps its load log quiet): the daemon reads it for /api/ps size_vram.
    const offload = host.gpuOffload;
    if (offload) log(`engine: offloaded ${offload.offloadedLayers}/${offload.totalLayers} layers to GPU`);
    log(
      `engine: model ${state.modelId} loaded in ${Math.round(performance.now() - started)} ms ` +
        `(${host.info.mode}, context ${host.info.contextSize}, ${host.info.parallel} slot(s), ${options.threads} thread(s))`,
    );
    await closing;
  } catch (error) {
    log(`engine: error: ${messageOf(error)}`);
    throw error;
  } finally {
    await app.close();
    if (options.listen.kind === "socket") await rm(options.listen.path, { force: true });
    await state.host?.dispose();
  }
}

/** llama-server's `--api-key-file`: one key a line, lines starting with `#` are comments. */
async function readApiKeyFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`--api-key-file: cannot read ${path}: ${messageOf(error)}`);
  }
  return text.split(/\r?\n/).filter((line) => line !== "" && !line.startsWith("#"));
}
