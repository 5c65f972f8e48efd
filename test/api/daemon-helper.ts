import assert from "node:assert/strict";
import { loadDaemonConfig } from "../../src/config.ts";
import { startDaemon, type Daemon } from "../../src/main.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";

/** An in-process daemon on port 0 with its own MODEL_RUNNER_HOME, and what it was given. */
export interface TestDaemon {
  daemon: Daemon;
  url: string;
  home: string;
  /** Stops the daemon and checks that no engine it started survives. */
  close(): Promise<void>;
}

/**
 * Starts a daemon with the generated tiny models `ai/tiny:latest` (chat) and
 * `ai/tiny-embed:latest` (mean pooling) in its store. Call `close()` in
 * `after`, even when a test failed.
 */
export async function startTestDaemon(env: Record<string, string> = {}): Promise<TestDaemon> {
  const home = await tempDir("mr-compat-");
  const daemon = await startDaemon(
    loadDaemonConfig(["--port", "0"], { MODEL_RUNNER_HOME: home, MODEL_RUNNER_LOG_LEVEL: "warn", ...env }),
    { logToStderr: false },
  );
  try {
    await daemon.distribution.packageModel({ gguf: await tinyModel({ seed: 3 }), tags: ["ai/tiny:latest"] });
    await daemon.distribution.packageModel({ gguf: await tinyModel({ seed: 4, pooling: "mean" }), tags: ["ai/tiny-embed:latest"] });
  } catch (error) {
    await daemon.close(1000);
    throw error;
  }
  return {
    daemon,
    url: daemon.url,
    home,
    async close() {
      await daemon.close(2000);
      await eventually(async () => (await pidsMatching(home)).length === 0, 10_000, "engines to exit");
      assert.deepEqual(await pidsMatching(home), []);
    },
  };
}
