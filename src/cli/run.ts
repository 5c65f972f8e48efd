import type { Cli, Command } from "./context.ts";
import { formatStats, interactiveChat, streamChat, type ChatMessage, type ChatOptions } from "./chat.ts";
import { includeFiles } from "./prompt-files.ts";
import { imagesInPrompt } from "./prompt-images.ts";
import { UsageError } from "./errors.ts";
import { pickTag } from "./models.ts";
import { json } from "./output.ts";
import { findOrPullModel } from "./transfer.ts";
import { givenFlags } from "./args.ts";
import { EMBEDDING_ONLY_FLAGS, isEmbeddingModel, runEmbedding } from "./run-embedding.ts";
import { answerWrapper } from "./word-wrap.ts";

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
  return text;
}

/**
 * The prompt words, then (as `docker model run`) piped stdin after a blank
 * line, with the files it names with `@` included; "" on a terminal without words.
 */
async function promptOf(cli: Cli, words: string[]): Promise<string> {
  const prompt = words.join(" ");
  if (cli.io.stdin.isTTY) return includeFiles(prompt);
  const piped = (await readAll(cli.io.stdin)).trim();
  const both = prompt && piped ? `${prompt}\n\n${piped}` : prompt || piped;
  if (!both) throw new UsageError("no prompt: stdin was empty (pass PROMPT, or -i to chat over a pipe)", "run");
  return includeFiles(both);
}

/** --format, --keepalive and --think, checked here so that a bad value is a usage error before any work. */
function chatOptions(values: Record<string, unknown>): ChatOptions {
  const options: ChatOptions = {};
  if (values.format !== undefined) {
    if (values.format !== "json") throw new UsageError(`--format must be json, got "${String(values.format)}"`, "run");
    options.format = "json";
  }
  if (typeof values.keepalive === "string") options.keepAlive = values.keepalive;
  if (values.think !== undefined) {
    const think = String(values.think);
    if (think === "true" || think === "false") options.think = think === "true";
    else if (think === "low" || think === "medium" || think === "high") options.think = think;
    else throw new UsageError(`--think must be true, false, low, medium or high, got "${think}"`, "run");
  }
  return options;
}

/** A chat message in OpenAI's shape: images become `image_url` parts (the daemon reads their format from the bytes). */
function openAIMessage(m: ChatMessage): Record<string, unknown> {
  if (!m.images?.length) return { role: m.role, content: m.content };
  return {
    role: m.role,
    content: [{ type: "text", text: m.content }, ...m.images.map((b64) => ({ type: "image_url", image_url: { url: `data:${imageType(b64)};base64,${b64}` } }))],
  };
}

/** The media type a data: URI declares, from the base64 text's first characters (as DMR sniffs Ollama's images). */
function imageType(b64: string): string {
  if (b64.startsWith("iVBOR")) return "image/png";
  if (b64.startsWith("/9j/")) return "image/jpeg";
  if (b64.startsWith("R0lG")) return "image/gif";
  if (b64.startsWith("UklGR")) return "image/webp";
  return "application/octet-stream";
}

export const runCommand: Command = {
  name: "run",
  summary: "Run a model: answer one prompt, or chat",
  usage: "mr run [OPTIONS] MODEL [PROMPT...]",
  description:
    "Pulls MODEL first if it is not in the store. With a PROMPT (arguments or piped stdin) it streams the answer\n" +
    "and exits; without one it starts a chat (\"\"\" for multi-line input, /bye or Ctrl-D to leave, Ctrl-C stops\n" +
    "an answer). History is kept in $MODEL_RUNNER_HOME/history unless MODEL_RUNNER_NOHISTORY is set.\n" +
    "An embedding model prints the PROMPT's vector as a JSON array instead (--json: the whole /api/embed answer).",
  examples: [
    'mr run ai/smollm2 "Write a haiku about containers"',
    'mr run ai/smollm2 "Summarize @README.md"',
    "cat notes.txt | mr run ai/smollm2",
    "mr run ai/smollm2",
    "mr run --detach ai/smollm2",
    'mr run --json ai/smollm2 "hi" | jq -r .choices[0].message.content',
    'mr run --verbose --keepalive 30m ai/smollm2 "hi"',
    'mr run --format json ai/smollm2 "three colours as a JSON list"',
    'mr run --dimensions 256 ai/mxbai-embed-large "a sentence to embed"',
  ],
  flags: {
    detach: { type: "boolean", short: "d", description: "only load the model into memory, then exit" },
    json: { type: "boolean", description: "print the raw chat completion response (no streaming)" },
    interactive: { type: "boolean", short: "i", description: "chat even when stdin is not a terminal (one message per line)" },
    quiet: { type: "boolean", short: "q", description: "no pull progress" },
    "ignore-runtime-memory-check": { type: "boolean", description: "pull even a model too large to ever load here (it then fails to load)" },
    insecure: { type: "boolean", description: "pull over plain HTTP from the model's registry (as ollama run --insecure)" },
    verbose: { type: "boolean", description: "print timings after each answer (tokens/s, as ollama run --verbose)" },
    format: { type: "string", valueName: "json", description: "answer in this format (json)" },
    keepalive: { type: "string", valueName: "DURATION", description: "keep the model loaded this long after the answer: 5m, 1h, 0, -1" },
    think: { type: "string", valueName: "VALUE", description: "thinking models: true, false, low, medium or high" },
    hidethinking: { type: "boolean", description: "do not print a thinking model's reasoning" },
    nowordwrap: { type: "boolean", description: "do not wrap answers at words to the terminal's width (wrapping is on a terminal only)" },
    dimensions: { type: "string", valueName: "N", description: "embedding models: cut the vector to its first N values (renormalized)" },
    truncate: { type: "string", valueName: "true|false", description: "embedding models: cut a too-long input to the context (default true; false: an error)" },
  },
  async run(cli, { values, positionals }) {
    const [ref, ...promptWords] = positionals;
    if (!ref) throw new UsageError("run needs a MODEL", "run");
    const options = chatOptions(values);
    const client = await cli.daemon();
    const model = await findOrPullModel(cli, client, ref, {
      isQuiet: values.quiet === true,
      isMemoryCheckIgnored: values["ignore-runtime-memory-check"] === true,
      isInsecure: values.insecure === true,
    });
    const name = pickTag(model, ref);
    if (await isEmbeddingModel(client, name, cli.signal)) {
      return runEmbedding(cli, client, name, () => promptOf(cli, promptWords), values);
    }
    const embeddingOnly = givenFlags(values, EMBEDDING_ONLY_FLAGS);
    if (embeddingOnly) throw new UsageError(`${embeddingOnly} work with embedding models only; ${name} is a chat model`, "run");
    if (values.detach && values.json) throw new UsageError("--json prints an answer; --detach only loads the model", "run");
    if (values.detach && options.keepAlive !== undefined) {
      // Ollama's load idiom carries the keep-alive: a generate request with no prompt.
      await client.json("POST", "/api/generate", { json: { model: name, keep_alive: options.keepAlive }, signal: cli.signal });
      cli.note(`Loaded ${name}.`);
      return 0;
    }
    if (values.detach) {
      await client.request("POST", "/engines/v1/chat/completions", {
        json: { model: name, messages: [] },
        headers: { "x-preload-only": "true" },
        signal: cli.signal,
      });
      cli.note(`Loaded ${name}.`);
      return 0;
    }
    const prompt = values.interactive ? await includeFiles(promptWords.join(" ")) : await promptOf(cli, promptWords);
    const isThinkingHidden = values.hidethinking === true;
    const isWordWrapped = values.nowordwrap !== true;
    if (!prompt) return interactiveChat(cli, client, name, { options, isVerbose: values.verbose === true, isThinkingHidden, isWordWrapped });
    // As `docker model run`: image files named in the prompt are sent with it.
    const found = await imagesInPrompt(prompt);
    const messages: ChatMessage[] = [{ role: "user", content: found.text, ...(found.images.length > 0 ? { images: found.images } : {}) }];
    if (values.json) {
      // The OpenAI answer unchanged; the flags in its terms.
      if (options.keepAlive !== undefined || values.verbose) throw new UsageError("--keepalive and --verbose work with streamed answers, not --json", "run");
      const think = options.think;
      const body = await client.json<unknown>("POST", "/engines/v1/chat/completions", {
        json: {
          model: name,
          messages: messages.map(openAIMessage),
          stream: false,
          ...(options.format ? { response_format: { type: "json_object" } } : {}),
          ...(think === false ? { reasoning_effort: "none" } : typeof think === "string" ? { reasoning_effort: think } : {}),
        },
        signal: cli.signal,
      });
      cli.io.stdout.write(json(body));
      return 0;
    }
    const wrapper = answerWrapper(cli.io.stdout, isWordWrapped);
    const result = await streamChat(
      client,
      name,
      messages,
      cli.signal,
      (text, kind) => {
        if (kind === "reasoning" && isThinkingHidden) return;
        const shown = wrapper ? wrapper.wrap(text) : text;
        cli.io.stdout.write(kind === "reasoning" ? cli.style.dim(shown) : shown);
      },
      options,
    );
    cli.io.stdout.write("\n");
    if (result.isAborted) throw cli.signal.reason;
    if (values.verbose && result.stats) cli.io.stderr.write(formatStats(result.stats));
    return 0;
  },
};
