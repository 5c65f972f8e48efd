// Prints the path of a llama-server built from the llama.cpp source that
// node-llama-cpp bundles, building it first when the cache has none. It is
// the same code path as `mr install-runner --engine llama-server` (the
// installer module), with the cache directory as the model-runner home, so
// the build is keyed by the bundle's sha256 and outlives the clone:
//   <home>/engines/llama-server/<sha256 of gitRelease.bundle>/llama-server
// Usage: node --import tsx scripts/llama-server-for-ci.ts HOME
import { join } from "node:path";
import { installLlamaServer } from "../src/inference/backends/llamacpp/llama-server-install.ts";

const home = process.argv[2];
if (!home) {
  process.stderr.write("usage: llama-server-for-ci.ts HOME\n");
  process.exit(2);
}
try {
  const path = await installLlamaServer(
    { home, logDir: join(home, "logs"), onProgress: (line) => process.stderr.write(`${line}\n`) },
    AbortSignal.timeout(3 * 60 * 60_000),
  );
  process.stdout.write(`${path}\n`);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
