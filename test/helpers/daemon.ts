import { loadDaemonConfig } from "../../src/config.ts";
import { startDaemon, type Daemon } from "../../src/main.ts";
import { tempDir } from "./models.ts";
import { pidsMatching } from "./processes.ts";

export interface TestDaemon {
  daemon: Daemon;
  url: string;
  home: string;
  /** Stops the daemon and checks that no engine it started survives. */
  close(): Promise<void>;
  /** Packages a GGUF into the daemon's store under `tag`. */
  addModel(gguf: string, tag: string): Promise<string>;
}

/**
 * Starts the real daemon in this process on 127.0.0.1 and a random port,
 * with a temp MODEL_RUNNER_HOME and the given extra environment, and an
 * empty store. (test/api/daemon-helper.ts `startTestDaemon` adds the tiny
 * models; test/helpers/cli.ts `startDaemon` spawns `mr serve` instead.)
 */
export async function startBareDaemon(env: NodeJS.ProcessEnv = {}, argv: readonly string[] = []): Promise<TestDaemon> {
  const home = await tempDir("mr-home-");
  const config = loadDaemonConfig(["--port", "0", "--host", "127.0.0.1", ...argv], { MODEL_RUNNER_HOME: home, ...env });
  const daemon = await startDaemon(config, { logToStderr: false });
  return {
    daemon,
    url: daemon.url,
    home,
    async close() {
      await daemon.close(2000);
      // Engines are stopped before close resolves; a survivor is a bug.
      const left = await pidsMatching(home);
      if (left.length > 0) throw new Error(`engines survived the daemon: ${left.join(", ")}`);
    },
    async addModel(gguf, tag) {
      const model = await daemon.distribution.packageModel({ gguf, tags: [tag] });
      return model.id;
    },
  };
}
