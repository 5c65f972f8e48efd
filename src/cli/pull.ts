import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { pullModel } from "./transfer.ts";

export const pullCommand: Command = {
  name: "pull",
  summary: "Pull a model from a registry or Hugging Face",
  usage: "mr pull [OPTIONS] MODEL",
  description:
    "Downloads MODEL into the daemon's store, showing progress. The daemon retries timeouts, resets, 429 and 5xx\n" +
    "answers; a registry that cannot be reached (no network, name not resolving, connection refused) fails at once.\n" +
    "An interrupted pull (Ctrl-C, lost connection) continues where it stopped the next time. A model that could\n" +
    "never be loaded with the daemon's memory budget is refused before the download, unless\n" +
    "--ignore-runtime-memory-check is given.",
  examples: ["mr pull ai/smollm2", "mr pull hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "mr pull -q ai/smollm2"],
  flags: {
    quiet: { type: "boolean", short: "q", description: "print no progress" },
    "ignore-runtime-memory-check": { type: "boolean", description: "pull even a model too large to ever load here" },
    insecure: { type: "boolean", description: "speak plain HTTP to the model's registry (as ollama pull --insecure)" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("pull takes exactly one MODEL", "pull");
    const client = await cli.daemon();
    const message = await pullModel(cli, client, positionals[0]!, {
      isQuiet: values.quiet === true,
      isMemoryCheckIgnored: values["ignore-runtime-memory-check"] === true,
      isInsecure: values.insecure === true,
    });
    if (values.quiet !== true) cli.io.stdout.write(`${message || `Pulled ${positionals[0]}`}\n`);
    return 0;
  },
};
