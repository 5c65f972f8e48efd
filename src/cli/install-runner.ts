import { ndjson } from "./client.ts";
import type { Command } from "./context.ts";
import { CliError, UsageError } from "./errors.ts";

/** The `llama.cpp` backend's engines (the daemon checks; listed for usage errors and completion). */
export const ENGINES = ["built-in", "llama-server"] as const;

/** `--backend` and `--engine` as the install routes take them; throws UsageError for an unknown engine. */
export function installBody(command: string, values: Record<string, unknown>): { backend?: string; engine?: string } {
  const engine = values.engine as string | undefined;
  if (engine !== undefined && !(ENGINES as readonly string[]).includes(engine)) {
    throw new UsageError(`--engine must be one of ${ENGINES.join(", ")}, got "${engine}"`, command);
  }
  const backend = values.backend as string | undefined;
  return { ...(backend !== undefined ? { backend } : {}), ...(engine !== undefined ? { engine } : {}) };
}

interface InstallLine {
  type: "progress" | "success" | "error";
  message: string;
  status?: string;
}

export const installRunnerCommand: Command = {
  name: "install-runner",
  summary: "Install an engine for a backend (llama-server: built from the bundled llama.cpp, or a pinned release)",
  usage: "mr install-runner [--backend llama.cpp] [--engine built-in|llama-server]",
  description:
    "Puts the engine on this machine through the daemon (DMR's POST /engines/install-backend). llama-server comes from\n" +
    "MODEL_RUNNER_LLAMA_SERVER when set, else one installed before, else it is built from the llama.cpp source that\n" +
    "node-llama-cpp bundles (offline; about 12 minutes on 2 cores; needs git, cmake, a C++ compiler and make) and kept\n" +
    "under the model-runner home. The built-in engine ships with this package: install only checks it.",
  examples: ["mr install-runner --engine llama-server", "mr configure --engine llama-server ai/smollm2"],
  flags: {
    backend: { type: "string", valueName: "BACKEND", description: "backend (default llama.cpp)" },
    engine: { type: "string", valueName: "ENGINE", description: `engine of the backend: ${ENGINES.join(", ")} (default: the daemon's)` },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length > 0) throw new UsageError("install-runner takes no arguments", "install-runner");
    const body = installBody("install-runner", values);
    const client = await cli.daemon();
    const res = await client.request("POST", "/engines/install-backend", {
      json: body,
      headers: { accept: "application/x-ndjson" },
      signal: cli.signal,
    });
    let last: InstallLine | null = null;
    for await (const line of ndjson<InstallLine>(res)) {
      last = line;
      if (line.type === "progress") cli.io.stderr.write(`${line.message}\n`);
      if (line.type === "error") throw new CliError(line.message);
    }
    if (last?.type !== "success") throw new CliError("the daemon ended the install without saying it succeeded");
    cli.io.stdout.write(`${last.message}${last.status ? ` (${last.status})` : ""}.\n`);
    return 0;
  },
};

export const uninstallRunnerCommand: Command = {
  name: "uninstall-runner",
  summary: "Remove an engine install-runner put on this machine",
  usage: "mr uninstall-runner [--backend llama.cpp] [--engine llama-server]",
  description: "Removes the llama-server builds and downloads kept under the model-runner home (DMR's POST /engines/uninstall-backend).",
  examples: ["mr uninstall-runner --engine llama-server"],
  flags: {
    backend: { type: "string", valueName: "BACKEND", description: "backend (default llama.cpp)" },
    engine: { type: "string", valueName: "ENGINE", description: "engine to remove (default llama-server)" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length > 0) throw new UsageError("uninstall-runner takes no arguments", "uninstall-runner");
    const body = installBody("uninstall-runner", values);
    const client = await cli.daemon();
    const result = await client.json<{ backend: string; engine: string | null; removed: boolean }>("POST", "/engines/uninstall-backend", {
      json: body,
      signal: cli.signal,
    });
    const what = `${result.backend}${result.engine ? ` (${result.engine})` : ""}`;
    cli.io.stdout.write(result.removed ? `Removed ${what}.\n` : `Nothing of ${what} was installed.\n`);
    return 0;
  },
};
