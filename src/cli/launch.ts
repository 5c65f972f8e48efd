import { spawn } from "node:child_process";
import { access, constants, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { Cli, Command } from "./context.ts";
import { CliError, UsageError } from "./errors.ts";
import { pickTag } from "./models.ts";
import { findOrPullModel } from "./transfer.ts";
import { givenFlags, intFlag } from "./args.ts";
import { APP_NAMES, APPS, dockerRun, modelEnv } from "./launch-apps.ts";

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


/** Sent as the key when the runner has none: the apps refuse an empty one, and a runner without a key ignores it. */
const PLACEHOLDER_KEY = "sk-model-runner";

/**
 * The daemon, started if it is not running so that the app finds it, and
 * `--model` made ready as `docker model launch` does: pulled when the store
 * lacks it, then loaded in the background while the app starts. Returns the
 * model's exact name (a tag the runner lists), or null without --model.
 */
async function prepare(cli: Cli, ref: string | null): Promise<string | null> {
  const client = await cli.daemon();
  if (ref === null) return null;
  const name = pickTag(await findOrPullModel(cli, client, ref, { isQuiet: false }), ref);
  client
    .request("POST", "/engines/v1/chat/completions", { json: { model: name, messages: [] }, headers: { "x-preload-only": "true" }, signal: cli.signal })
    .catch((error: unknown) => cli.note(`could not preload ${name}: ${(error as Error).message}`));
  return name;
}

/** What to set by hand, or to check: the app's environment and its own config commands. */
function settingsText(name: string, env: Record<string, string>, instructions: string[]): string {
  const lines = Object.keys(env).length > 0 ? envLines(env) : "";
  return `Configure ${name} to use the model runner:\n${lines}${instructions.map((l) => `  ${l}\n`).join("")}`;
}

export const launchCommand: Command = {
  name: "launch",
  summary: "Start an app (Claude Code, Codex, OpenCode, Open WebUI, ...) wired to the model runner",
  usage: "mr launch [OPTIONS] [APP] [-- APP_ARGS...]",
  description:
    `Apps: ${APP_NAMES.join(", ")}. Without APP, lists them. Host apps run here with the runner's address in\n` +
    "their environment (Anthropic's API under /anthropic, OpenAI's under /engines/v1 or /v1) and get APP_ARGS; web\n" +
    "UIs (openwebui, anythingllm) run with `docker run --rm`, APP_ARGS after the image. The key sent is\n" +
    "MODEL_RUNNER_API_KEY, or a placeholder when the runner has none. --model pulls the model if needed, loads it\n" +
    "while the app starts and tells the app to use it.",
  examples: [
    "mr launch",
    "mr launch claude --model ai/qwen3-coder",
    "mr launch claude -- --help",
    "mr launch codex --config",
    "mr launch openwebui --port 8080 --detach",
    "mr launch openwebui --dry-run",
  ],
  maxArgs: 1,
  flags: {
    model: { type: "string", short: "m", valueName: "MODEL", description: "the model the app uses (pulled if missing, loaded as the app starts)" },
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
    const ref = typeof values.model === "string" ? values.model : null;
    if (ref !== null && !app.model) throw new UsageError(`--model: ${name} takes its model in its own settings, not from mr launch`, "launch");
    const apiKey = cli.config.apiKey ?? PLACEHOLDER_KEY;
    if (app.kind === "host") {
      const containerOnly = givenFlags(values, ["port", "image", "detach"]);
      if (containerOnly) throw new UsageError(`${containerOnly} apply to the web UIs run in a container, not ${name}`, "launch");
      const endpoint = { base: cli.config.baseUrl, apiKey };
      const instructions = app.instructions?.(endpoint) ?? [];
      const appArgs = (model: string | null) => [...(model !== null && app.model?.args ? app.model.args(model) : []), ...rest];
      const envFor = (model: string | null) => ({ ...app.env(endpoint), ...modelEnv(app, model) });
      if (values.config) {
        cli.io.stdout.write(settingsText(name, envFor(ref), instructions));
        return 0;
      }
      const file = await findExecutable(name, cli.config.appEnv.PATH);
      if (values["dry-run"]) {
        cli.io.stdout.write(`Would run: ${[file ?? name, ...appArgs(ref)].join(" ")}\n${envLines(envFor(ref))}`);
        return 0;
      }
      if (file === null) {
        cli.io.stdout.write(settingsText(name, envFor(ref), instructions));
        throw new CliError(`${name} is not on PATH: install it and run mr launch ${name} again`);
      }
      const model = await prepare(cli, ref);
      if (instructions.length > 0) cli.io.stdout.write(settingsText(name, {}, instructions));
      return runApp(cli, file, appArgs(model), { ...cli.config.appEnv, ...envFor(model) });
    }
    const port = intFlag("launch", "port", values.port) ?? app.hostPort;
    if (port < 1 || port > 65535) throw new UsageError(`--port must be 1-65535, got ${port}`, "launch");
    const image = typeof values.image === "string" ? values.image : app.image;
    const run = (model: string | null) => dockerRun(app, cli.config.baseUrl, apiKey, { image, port, detach: values.detach === true, model, appArgs: rest }, process.platform);
    if (values.config) {
      cli.io.stdout.write(settingsText(name, run(ref).env, []));
      return 0;
    }
    if (values["dry-run"]) {
      cli.io.stdout.write(`Would run: docker ${run(ref).args.join(" ")}\n`);
      return 0;
    }
    const docker = await findExecutable("docker", cli.config.appEnv.PATH);
    if (docker === null) throw new CliError(`docker is not on PATH: ${name} runs in a container (mr launch ${name} --dry-run shows the command)`);
    const model = await prepare(cli, ref);
    cli.note(`${name} will be at http://127.0.0.1:${port}`);
    return runApp(cli, docker, run(model).args, { ...cli.config.appEnv });
  },
};
