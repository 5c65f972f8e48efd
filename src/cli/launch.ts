import { spawn } from "node:child_process";
import { access, constants, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { Cli, Command } from "./context.ts";
import { CliError, UsageError } from "./errors.ts";
import { givenFlags, intFlag } from "./args.ts";

/** What an app is told: the daemon's address and the key to send it. */
interface Endpoint {
  /** `http://host:port` of the daemon, as the app reaches it. */
  base: string;
  /** MODEL_RUNNER_API_KEY, or a placeholder: the apps refuse an empty key, the daemon without a key ignores it. */
  apiKey: string;
}

/** An app run on this machine with the daemon's address in its environment. */
interface HostApp {
  kind: "host";
  env(endpoint: Endpoint): Record<string, string>;
}

/** An app run in a container (`docker run --rm`), a web UI served on a host port. */
interface ContainerApp {
  kind: "container";
  image: string;
  hostPort: number;
  containerPort: number;
  /** Where the app reads its listening port: with the host's network (Linux) the port is set there, not mapped. */
  portVariable: string;
  env(endpoint: Endpoint): Record<string, string>;
}

type App = HostApp | ContainerApp;

/** OpenAI clients read one of these names; all are set, as `docker model launch` does. */
const openAIEnv =
  (path: string) =>
  ({ base, apiKey }: Endpoint): Record<string, string> => ({
    OPENAI_API_BASE: `${base}${path}`,
    OPENAI_BASE_URL: `${base}${path}`,
    OPENAI_API_KEY: apiKey,
  });

/** The apps `docker model launch` wires to the runner, with the same routes (Anthropic's under /anthropic). */
const APPS: Record<string, App> = {
  anythingllm: { kind: "container", image: "mintplexlabs/anythingllm:latest", hostPort: 3001, containerPort: 3001, portVariable: "SERVER_PORT", env: openAIEnv("/engines/v1") },
  claude: { kind: "host", env: ({ base, apiKey }) => ({ ANTHROPIC_BASE_URL: `${base}/anthropic`, ANTHROPIC_API_KEY: apiKey }) },
  codex: { kind: "host", env: openAIEnv("/v1") },
  opencode: { kind: "host", env: openAIEnv("/engines/v1") },
  openwebui: {
    kind: "container",
    image: "ghcr.io/open-webui/open-webui:latest",
    hostPort: 3000,
    containerPort: 8080,
    portVariable: "PORT",
    // Open WebUI reads OPENAI_API_BASE_URL.
    env: (endpoint) => ({ ...openAIEnv("/engines/v1")(endpoint), OPENAI_API_BASE_URL: `${endpoint.base}/engines/v1` }),
  },
};

const APP_NAMES = Object.keys(APPS).sort();

/** The first executable called `name` in PATH's directories, or null. */
async function findExecutable(name: string, path: string | undefined): Promise<string | null> {
  for (const dir of (path ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** `KEY=value` lines, indented. */
const envLines = (env: Record<string, string>) => Object.entries(env).map(([k, v]) => `  ${k}=${v}\n`).join("");

/**
 * Runs `file` with the terminal (stdin, stdout, stderr) and waits for it;
 * its exit status is ours (a signal: 128 + its number). Ctrl-C is the
 * app's to handle: `mr` waits for it to exit.
 */
async function runApp(cli: Cli, file: string, args: string[], env: Record<string, string | undefined>): Promise<number> {
  const release = cli.onInterrupt(() => true);
  try {
    const child = spawn(file, args, { stdio: "inherit", env });
    return await new Promise<number>((resolve, reject) => {
      child.once("error", (error) => reject(new CliError(`could not start ${file}: ${error.message}`)));
      child.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? signalNumber(signal) : 0)));
    });
  } finally {
    release();
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}

/** Whether a URL's host is this machine's loopback (a container reaches it only through the host's network). */
const isLoopback = (url: URL) => ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);

/**
 * The `docker run` arguments for a container app. On Linux the container
 * shares the host's network, so a daemon listening on 127.0.0.1 is
 * reachable and the app listens on `port` itself; elsewhere (Docker
 * Desktop) the port is mapped and a loopback daemon is reached as
 * host.docker.internal.
 */
function dockerRun(app: ContainerApp, daemonUrl: string, apiKey: string, image: string, port: number, detach: boolean, platform: NodeJS.Platform) {
  const url = new URL(daemonUrl);
  const hostNetwork = platform === "linux";
  if (!hostNetwork && isLoopback(url)) url.hostname = "host.docker.internal";
  const env = app.env({ base: url.origin, apiKey });
  const args = ["run", "--rm", ...(detach ? ["-d"] : [])];
  if (hostNetwork) args.push("--network", "host", "-e", `${app.portVariable}=${port}`);
  else args.push("-p", `${port}:${app.containerPort}`);
  for (const [k, v] of Object.entries(env)) args.push("-e", `${k}=${v}`);
  args.push(image);
  return { env, args };
}

export const launchCommand: Command = {
  name: "launch",
  summary: "Start an app (Claude Code, Codex, OpenCode, Open WebUI, AnythingLLM) wired to the model runner",
  usage: "mr launch [OPTIONS] [APP] [-- APP_ARGS...]",
  description:
    `Apps: ${APP_NAMES.join(", ")}. Without APP, lists them. Host apps (claude, codex, opencode) run here with the\n` +
    "runner's address in their environment (Anthropic's API under /anthropic, OpenAI's under /engines/v1 or /v1) and\n" +
    "get APP_ARGS; web UIs (openwebui, anythingllm) run in a container with `docker run --rm`. The key sent is\n" +
    "MODEL_RUNNER_API_KEY, or a placeholder when the runner has none.",
  examples: ["mr launch", "mr launch claude", "mr launch claude -- --help", "mr launch codex --config", "mr launch openwebui --port 8080 --detach", "mr launch openwebui --dry-run"],
  maxArgs: 1,
  flags: {
    config: { type: "boolean", description: "print the settings the app gets, without starting it" },
    "dry-run": { type: "boolean", description: "print what would run, without running it" },
    port: { type: "string", valueName: "PORT", description: "web UIs: the host port to serve on (openwebui 3000, anythingllm 3001)" },
    image: { type: "string", valueName: "IMAGE", description: "web UIs: another container image" },
    detach: { type: "boolean", description: "web UIs: run the container in the background" },
  },
  async run(cli, { values, positionals, rest }) {
    const [name] = positionals;
    if (name === undefined) {
      const width = Math.max(...APP_NAMES.map((n) => n.length));
      for (const n of APP_NAMES) cli.io.stdout.write(`${n.padEnd(width)}  ${APPS[n]!.kind === "host" ? "runs here" : "runs in a container (docker)"}\n`);
      return 0;
    }
    const app = APPS[name.toLowerCase()];
    if (!app) throw new UsageError(`unsupported app "${name}" (supported: ${APP_NAMES.join(", ")})`, "launch");
    const apiKey = cli.config.apiKey ?? "model-runner";
    if (app.kind === "host") {
      const containerOnly = givenFlags(values, ["port", "image", "detach"]);
      if (containerOnly) throw new UsageError(`${containerOnly} apply to the web UIs run in a container, not ${name}`, "launch");
      const env = app.env({ base: cli.config.baseUrl, apiKey });
      if (values.config) {
        cli.io.stdout.write(`Configure ${name} to use the model runner:\n${envLines(env)}`);
        return 0;
      }
      const file = await findExecutable(name, cli.config.appEnv.PATH);
      if (values["dry-run"]) {
        cli.io.stdout.write(`Would run: ${[file ?? name, ...rest].join(" ")}\n${envLines(env)}`);
        return 0;
      }
      if (file === null) {
        cli.io.stdout.write(`Configure ${name} to use the model runner:\n${envLines(env)}`);
        throw new CliError(`${name} is not on PATH: install it and run mr launch ${name} again`);
      }
      await cli.daemon(); // started if it is not running, so that the app finds it
      return runApp(cli, file, rest, { ...cli.config.appEnv, ...env });
    }
    if (rest.length > 0) throw new UsageError(`arguments after -- go to host apps; ${name} runs in a container`, "launch");
    const port = intFlag("launch", "port", values.port) ?? app.hostPort;
    if (port < 1 || port > 65535) throw new UsageError(`--port must be 1-65535, got ${port}`, "launch");
    const image = typeof values.image === "string" ? values.image : app.image;
    const { env, args } = dockerRun(app, cli.config.baseUrl, apiKey, image, port, values.detach === true, process.platform);
    if (values.config) {
      cli.io.stdout.write(`Configure ${name} to use the model runner:\n${envLines(env)}`);
      return 0;
    }
    if (values["dry-run"]) {
      cli.io.stdout.write(`Would run: docker ${args.join(" ")}\n`);
      return 0;
    }
    const docker = await findExecutable("docker", cli.config.appEnv.PATH);
    if (docker === null) throw new CliError(`docker is not on PATH: ${name} runs in a container (mr launch ${name} --dry-run shows the command)`);
    await cli.daemon();
    cli.note(`${name} will be at http://127.0.0.1:${port}`);
    return runApp(cli, docker, args, { ...cli.config.appEnv });
  },
};
