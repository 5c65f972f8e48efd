import type { Command } from "./context.ts";
import { interactiveChat, streamChat } from "./chat.ts";
import { CliError, UsageError } from "./errors.ts";
import { findModel, pickTag } from "./models.ts";
import { json } from "./output.ts";
import { pullModel } from "./transfer.ts";

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
  return text;
}

export const runCommand: Command = {
  name: "run",
  summary: "Run a model: answer one prompt, or chat",
  usage: "mr run [OPTIONS] MODEL [PROMPT...]",
  description:
    "Pulls MODEL first if it is not in the store. With a PROMPT (arguments or piped stdin) it streams the answer\n" +
    "and exits; without one it starts a chat (\"\"\" for multi-line input, /bye or Ctrl-D to leave, Ctrl-C stops\n" +
    "an answer). History is kept in $MODEL_RUNNER_HOME/history unless MODEL_RUNNER_NOHISTORY is set.",
  examples: [
    'mr run ai/smollm2 "Write a haiku about containers"',
    "cat notes.txt | mr run ai/smollm2",
    "mr run ai/smollm2",
    "mr run --detach ai/smollm2",
    'mr run --json ai/smollm2 "hi" | jq -r .choices[0].message.content',
  ],
  flags: {
    detach: { type: "boolean", short: "d", description: "only load the model into memory, then exit" },
    json: { type: "boolean", description: "print the raw chat completion response (no streaming)" },
    interactive: { type: "boolean", short: "i", description: "chat even when stdin is not a terminal (one message per line)" },
    quiet: { type: "boolean", short: "q", description: "no pull progress" },
  },
  async run(cli, { values, positionals }) {
    const [ref, ...promptWords] = positionals;
    if (!ref) throw new UsageError("run needs a MODEL", "run");
    const client = await cli.daemon();
    let model = await findModel(client, ref, cli.signal);
    if (!model) {
      cli.note(`Unable to find model '${ref}' locally. Pulling from the server.`);
      await pullModel(cli, client, ref, { isQuiet: values.quiet === true });
      model = await findModel(client, ref, cli.signal);
      if (!model) throw new CliError(`the model runner pulled ${ref} but cannot find it now`);
    }
    const name = pickTag(model, ref);
    if (values.detach) {
      await client.request("POST", "/engines/v1/chat/completions", {
        json: { model: name, messages: [] },
        headers: { "x-preload-only": "true" },
        signal: cli.signal,
      });
      cli.note(`Loaded ${name}.`);
      return 0;
    }
    let prompt = promptWords.join(" ");
    if (!cli.io.stdin.isTTY && !values.interactive) {
      // As `docker model run`: piped text follows the prompt words after a blank line.
      const piped = (await readAll(cli.io.stdin)).trim();
      prompt = prompt && piped ? `${prompt}\n\n${piped}` : prompt || piped;
      if (!prompt) throw new UsageError("no prompt: stdin was empty (pass PROMPT, or -i to chat over a pipe)", "run");
    }
    if (!prompt) return interactiveChat(cli, client, name);
    const messages = [{ role: "user" as const, content: prompt }];
    if (values.json) {
      const body = await client.json<unknown>("POST", "/engines/v1/chat/completions", {
        json: { model: name, messages, stream: false },
        signal: cli.signal,
      });
      cli.io.stdout.write(json(body));
      return 0;
    }
    const result = await streamChat(client, name, messages, cli.signal, (text, kind) =>
      cli.io.stdout.write(kind === "reasoning" ? cli.style.dim(text) : text),
    );
    cli.io.stdout.write("\n");
    if (result.isAborted) throw cli.signal.reason;
    return 0;
  },
};
