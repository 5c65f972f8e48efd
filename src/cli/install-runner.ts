import { ndjson } from "./client.ts";
import type { Cli, Command } from "./context.ts";
import { CliError, UsageError } from "./errors.ts";

/** The `llama.cpp` backend's engines (the daemon checks; listed for usage errors and completion). */
export const ENGINES = ["built-in", "llama-server"] as const;
/** What a build can target (the daemon checks too). */
export const GPUS = ["auto", "cpu", "cuda", "vulkan", "metal"] as const;

/** `--backend` and `--engine` as the install routes take them; throws UsageError for an unknown engine. */
export function installBody(command: string, values: Record<string, unknown>): { backend?: string; engine?: string; gpu?: string } {
  const engine = values.engine as string | undefined;
  if (engine !== undefined && !(ENGINES as readonly string[]).includes(engine)) {
    throw new UsageError(`--engine must be one of ${ENGINES.join(", ")}, got "${engine}"`, command);
  }
  const gpu = values.gpu as string | undefined;
  if (gpu !== undefined && !(GPUS as readonly string[]).includes(gpu)) throw new UsageError(`--gpu must be one of ${GPUS.join(", ")}, got "${gpu}"`, command);
  const backend = values.backend as string | undefined;
  return { ...(backend !== undefined ? { backend } : {}), ...(engine !== undefined ? { engine } : {}), ...(gpu !== undefined ? { gpu } : {}) };
}

interface InstallLine {
  type: "progress" | "success" | "error";
  message: string;
  status?: string;
}

export const installRunnerCommand: Command = {
  name: "install-runner",
  summary: "Install an engine for a backend, built for this machine (llama-server, or the built-in engine compiled natively)",
  usage: "mr install-runner [--backend llama.cpp] [--engine built-in|llama-server] [--gpu auto|cpu|cuda|vulkan|metal]",
  description:
    "Puts the engine on this machine through the daemon (DMR's POST /engines/install-backend). Both builds are offline,\n" +
    "from the llama.cpp source node-llama-cpp bundles, and need git, cmake, a C++ compiler and make.\n" +
    "llama-server comes from MODEL_RUNNER_LLAMA_SERVER when set, else one installed before, else it is built (about\n" +
    "12 minutes on 2 cores) and kept under the model-runner home. The built-in engine works out of the box with the\n" +
    "prebuilt binary the package ships; install compiles it for this machine (about 15 minutes on 2 cores), which makes\n" +
    "prompt processing as fast as llama-server's. --gpu picks the GPU support a build gets (auto: what is found).",
  examples: ["mr install-runner --engine llama-server", "mr install-runner --engine built-in --gpu cpu", "mr configure --engine llama-server ai/smollm2"],
  flags: {
    backend: { type: "string", valueName: "BACKEND", description: "backend (default llama.cpp)" },
    engine: { type: "string", valueName: "ENGINE", description: `engine of the backend: ${ENGINES.join(", ")} (default: the daemon's)` },
    gpu: { type: "string", valueName: "GPU", description: `GPU support of the build: ${GPUS.join(", ")} (default auto)` },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length > 0) throw new UsageError("install-runner takes no arguments", "install-runner");
    return install(cli, installBody("install-runner", values));
  },
};

/** POST /engines/install-backend, its progress on stderr, its result on stdout. */
async function install(cli: Cli, body: ReturnType<typeof installBody>): Promise<number> {
  const client = await cli.daemon();
  const res = await client.request("POST", "/engines/install-backend", {
    json: body,
    headers: { accept: "application/x-ndjson" },
    signal: cli.signal,
  });
  let last: InstallLine | null = null;
  for await (const line of ndjson<InstallLine>(res)) {
    // The daemon repeats the last line while a step is quiet (a keep-alive): print each line once.
    if (line.type === "progress" && line.message !== last?.message) cli.io.stderr.write(`${line.message}\n`);
    last = line;
    if (line.type === "error") throw new CliError(line.message);
  }
  if (last?.type !== "success") throw new CliError("the daemon ended the install without saying it succeeded");
  cli.io.stdout.write(`${last.message}${last.status ? ` (${last.status})` : ""}.\n`);
  return 0;
}

/** POST /engines/uninstall-backend, and what it removed on stdout. */
async function uninstall(cli: Cli, body: ReturnType<typeof installBody>): Promise<number> {
  const client = await cli.daemon();
  const result = await client.json<{ backend: string; engine: string | null; removed: boolean }>("POST", "/engines/uninstall-backend", {
    json: body,
    signal: cli.signal,
  });
  const what = `${result.backend}${result.engine ? ` (${result.engine})` : ""}`;
  cli.io.stdout.write(result.removed ? `Removed ${what}.\n` : `Nothing of ${what} was installed.\n`);
  return 0;
}

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
    return uninstall(cli, installBody("uninstall-runner", values));
  },
};

export const reinstallRunnerCommand: Command = {
  name: "reinstall-runner",
  summary: "Remove an engine install-runner put on this machine, then install it again",
  usage: "mr reinstall-runner [--backend llama.cpp] [--engine llama-server] [--gpu auto|cpu|cuda|vulkan|metal]",
  description:
    "DMR's reinstall-runner for an engine: uninstall-runner, then install-runner with the same flags, so that a\n" +
    "broken or outdated llama-server is replaced by a fresh build or download (or the one MODEL_RUNNER_LLAMA_SERVER\n" +
    "names). The built-in engine ships inside mr: install-runner --engine built-in compiles it for this machine.",
  examples: ["mr reinstall-runner", "mr reinstall-runner --gpu cpu"],
  flags: installRunnerCommand.flags,
  async run(cli, { values, positionals }) {
    if (positionals.length > 0) throw new UsageError("reinstall-runner takes no arguments", "reinstall-runner");
    const body = installBody("reinstall-runner", { engine: "llama-server", ...values });
    if (body.engine !== "llama-server") {
      throw new UsageError(`the ${body.engine} engine ships inside mr: run mr install-runner --engine ${body.engine} to build it for this machine`, "reinstall-runner");
    }
    const { gpu: _gpu, ...which } = body;
    await uninstall(cli, which);
    return install(cli, body);
  },
};
