import { isLoopbackAddress } from "../config.ts";

/**
 * The apps `mr launch` starts and what each is told: the runner's address in
 * the variables it reads, how it takes a model, and for the web UIs the
 * container that runs them. As `docker model launch` (its app table).
 */

/** What an app is told: the daemon's address and the key to send it. */
export interface Endpoint {
  /** `http://host:port` of the daemon, as the app reaches it. */
  base: string;
  /** MODEL_RUNNER_API_KEY, or launch.ts's placeholder. */
  apiKey: string;
}

/** How an app is told which model to use (`--model`); absent: it picks one in its own settings, and --model is refused. */
interface ModelSetting {
  env?: string;
  /** Arguments put before APP_ARGS. */
  args?: (model: string) => string[];
}

/** An app run on this machine with the daemon's address in its environment. */
interface HostApp {
  kind: "host";
  env(endpoint: Endpoint): Record<string, string>;
  model?: ModelSetting;
  /** Settings the app takes only in its own config: printed before it starts. */
  instructions?: (endpoint: Endpoint) => string[];
}

/** An app run in a container (`docker run --rm`), a web UI served on a host port. */
export interface ContainerApp {
  kind: "container";
  image: string;
  hostPort: number;
  containerPort: number;
  /** Where the app reads its listening port: with the host's network (Linux) the port is set there, not mapped. */
  portVariable: string;
  env(endpoint: Endpoint): Record<string, string>;
  model?: ModelSetting;
  /** More `docker run` arguments (a volume that keeps the app's data). */
  dockerArgs?: string[];
}

export type App = HostApp | ContainerApp;

/** OpenAI clients read one of these names; all are set, as `docker model launch` does (OPEN_AI_KEY: AnythingLLM's). */
const openAIEnv =
  (path: string) =>
  ({ base, apiKey }: Endpoint): Record<string, string> => ({
    OPENAI_API_BASE: `${base}${path}`,
    OPENAI_BASE_URL: `${base}${path}`,
    OPENAI_API_BASE_URL: `${base}${path}`,
    OPENAI_API_KEY: apiKey,
    OPEN_AI_KEY: apiKey,
  });

/** The apps `docker model launch` wires to the runner, with the same routes (Anthropic's under /anthropic). */
export const APPS: Record<string, App> = {
  anythingllm: {
    kind: "container",
    image: "mintplexlabs/anythingllm:latest",
    hostPort: 3001,
    containerPort: 3001,
    portVariable: "SERVER_PORT",
    // AnythingLLM has a Docker Model Runner provider, which speaks the runner's own routes.
    env: ({ base }) => ({ STORAGE_DIR: "/app/server/storage", LLM_PROVIDER: "docker-model-runner", DOCKER_MODEL_RUNNER_BASE_PATH: base }),
    dockerArgs: ["-v", "anythingllm_storage:/app/server/storage"],
  },
  claude: {
    kind: "host",
    env: ({ base, apiKey }) => ({ ANTHROPIC_BASE_URL: `${base}/anthropic`, ANTHROPIC_API_KEY: apiKey }),
    model: { env: "ANTHROPIC_MODEL" },
  },
  codex: { kind: "host", env: openAIEnv("/v1"), model: { args: (model) => ["--model", model] } },
  openclaw: {
    kind: "host",
    env: () => ({}),
    instructions: ({ base, apiKey }) => [
      `openclaw config set models.providers.model-runner.baseUrl "${base}/engines/v1"`,
      "openclaw config set models.providers.model-runner.api openai-completions",
      `openclaw config set models.providers.model-runner.apiKey ${apiKey}`,
    ],
  },
  opencode: { kind: "host", env: openAIEnv("/engines/v1") },
  openwebui: {
    kind: "container",
    image: "ghcr.io/open-webui/open-webui:latest",
    hostPort: 3000,
    containerPort: 8080,
    portVariable: "PORT",
    env: openAIEnv("/engines/v1"),
    model: { env: "DEFAULT_MODELS" },
  },
};

export const APP_NAMES = Object.keys(APPS).sort();


/**
 * The `docker run` arguments for a container app. On Linux the container
 * shares the host's network, so a daemon listening on 127.0.0.1 is
 * reachable and the app listens on `port` itself; elsewhere (Docker
 * Desktop) the port is mapped and a loopback daemon is reached as
 * host.docker.internal.
 */
export function dockerRun(app: ContainerApp, daemonUrl: string, apiKey: string, options: { image: string; port: number; detach: boolean; model: string | null; appArgs: string[] }, platform: NodeJS.Platform) {
  const url = new URL(daemonUrl);
  const hostNetwork = platform === "linux";
  if (!hostNetwork && isLoopbackAddress(url.hostname)) url.hostname = "host.docker.internal";
  const env = { ...app.env({ base: url.origin, apiKey }), ...modelEnv(app, options.model) };
  const args = ["run", "--rm", ...(options.detach ? ["-d"] : [])];
  if (hostNetwork) args.push("--network", "host", "-e", `${app.portVariable}=${options.port}`);
  else args.push("-p", `${options.port}:${app.containerPort}`);
  args.push(...(app.dockerArgs ?? []));
  for (const [k, v] of Object.entries(env)) args.push("-e", `${k}=${v}`);
  args.push(options.image, ...(app.model?.args && options.model ? app.model.args(options.model) : []), ...options.appArgs);
  return { env, args };
}

/** The environment variable that names `model` for `app`, if it takes one there. */
export const modelEnv = (app: App, model: string | null): Record<string, string> => (model !== null && app.model?.env ? { [app.model.env]: model } : {});
