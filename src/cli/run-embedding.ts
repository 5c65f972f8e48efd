import type { Cli } from "./context.ts";
import type { DaemonClient } from "./client.ts";
import { givenFlags, intFlag } from "./args.ts";
import { UsageError } from "./errors.ts";
import { json } from "./output.ts";

/** `mr run` flags that only a chat model can take: named in the usage error for an embedding model. */
const CHAT_ONLY_FLAGS = ["format", "think", "hidethinking", "nowordwrap", "verbose", "interactive"] as const;

/** `mr run` flags that only an embedding model can take. */
export const EMBEDDING_ONLY_FLAGS = ["dimensions", "truncate"] as const;

/** What `POST /api/show` lists for a model: the daemon's one rule for "is this an embedding model". */
export async function isEmbeddingModel(client: DaemonClient, name: string, signal: AbortSignal): Promise<boolean> {
  const shown = await client.json<{ capabilities?: string[] }>("POST", "/api/show", { json: { model: name }, signal });
  return shown.capabilities?.includes("embedding") === true;
}

/** The `/api/embed` fields `mr run` flags set: `--dimensions N`, `--truncate true|false`, `--keepalive D`. */
function embedFields(values: Record<string, unknown>): Record<string, unknown> {
  const dimensions = intFlag("run", "dimensions", values.dimensions);
  let truncate: boolean | undefined;
  if (values.truncate !== undefined) {
    if (values.truncate !== "true" && values.truncate !== "false") throw new UsageError(`--truncate must be true or false, got "${String(values.truncate)}"`, "run");
    truncate = values.truncate === "true";
  }
  return {
    ...(dimensions !== undefined ? { dimensions } : {}),
    ...(truncate !== undefined ? { truncate } : {}),
    ...(typeof values.keepalive === "string" ? { keep_alive: values.keepalive } : {}),
  };
}

/**
 * `mr run` on an embedding model, as `ollama run` does it: the prompt's
 * vector through Ollama's `POST /api/embed`, printed as one JSON array
 * (`--json`: the whole answer). `--detach` loads the model in embedding
 * mode. A chat-only flag is a usage error naming it, never dropped; the
 * prompt (which may mean reading a pipe) is read only after the flags pass.
 */
export async function runEmbedding(
  cli: Cli,
  client: DaemonClient,
  name: string,
  readPrompt: () => Promise<string>,
  values: Record<string, unknown>,
): Promise<number> {
  const chatOnly = givenFlags(values, CHAT_ONLY_FLAGS);
  if (chatOnly) throw new UsageError(`${name} is an embedding model: ${chatOnly} work with chat models only`, "run");
  const fields = embedFields(values);
  if (values.detach) {
    const answerOnly = givenFlags(values, [...EMBEDDING_ONLY_FLAGS, "json"]);
    if (answerOnly) throw new UsageError(`${answerOnly} shape an answer; --detach only loads the model`, "run");
    // Ollama's load idiom for embedding models (it carries --keepalive): an embed request with no input.
    await client.json("POST", "/api/embed", { json: { model: name, ...fields }, signal: cli.signal });
    cli.note(`Loaded ${name}.`);
    return 0;
  }
  const prompt = await readPrompt();
  if (!prompt) throw new UsageError(`${name} is an embedding model and needs input text: mr run ${name} "your text"`, "run");
  const answer = await client.json<{ embeddings: number[][] }>("POST", "/api/embed", { json: { model: name, input: prompt, ...fields }, signal: cli.signal });
  cli.io.stdout.write(values.json ? json(answer) : `${JSON.stringify(answer.embeddings[0] ?? [])}\n`);
  return 0;
}
