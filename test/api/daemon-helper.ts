import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tinyModel } from "../helpers/models.ts";

export type { TestDaemon };

/**
 * A test daemon (test/helpers/daemon.ts) with the generated tiny models
 * `ai/tiny:latest` (chat) and `ai/tiny-embed:latest` (mean pooling) in its
 * store. Call `close()` in `after`, even when a test failed.
 */
export async function startTestDaemon(env: Record<string, string> = {}): Promise<TestDaemon> {
  const d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...env });
  try {
    await d.addModel(await tinyModel({ seed: 3 }), "ai/tiny:latest");
    await d.addModel(await tinyModel({ seed: 4, pooling: "mean" }), "ai/tiny-embed:latest");
  } catch (error) {
    await d.close();
    throw error;
  }
  return d;
}
