import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef, resolveModel } from "./models.ts";

/** `repo[:tag]` → parts, `latest` when no tag (a `:` before the last `/` is a port). */
export function splitTarget(target: string): { repo: string; tag: string } {
  const m = /^(.*?)(?::([^/:]+))?$/.exec(target)!;
  return { repo: m[1]!, tag: m[2] ?? "latest" };
}

export const tagCommand: Command = {
  name: "tag",
  aliases: ["cp"],
  summary: "Give a model another name",
  usage: "mr tag SOURCE TARGET",
  description: "SOURCE resolves as in `mr run` (partial names such as smollm2, IDs). `mr cp` is the same (Ollama's name).",
  examples: ["mr tag ai/smollm2 myregistry.example.com/me/smollm2:v1", "mr cp smollm2 my/smollm2:v1"],
  flags: {},
  async run(cli, { positionals }) {
    if (positionals.length !== 2) throw new UsageError("tag takes SOURCE and TARGET", "tag");
    const [ref, target] = positionals as [string, string];
    const { repo, tag } = splitTarget(target);
    const client = await cli.daemon();
    const { name: source } = await resolveModel(client, ref, cli.signal);
    const body = await client.json<{ message?: string; target?: string }>("POST", `/models/${encodeRef(source)}/tag`, {
      query: { repo, tag },
      signal: cli.signal,
    });
    cli.io.stdout.write(`Model "${source}" tagged successfully with "${body?.target ?? `${repo}:${tag}`}"\n`);
    return 0;
  },
};
