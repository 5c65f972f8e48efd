import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef } from "./models.ts";

/** `repo[:tag]` → parts, `latest` when no tag (a `:` before the last `/` is a port). */
export function splitTarget(target: string): { repo: string; tag: string } {
  const m = /^(.*?)(?::([^/:]+))?$/.exec(target)!;
  return { repo: m[1]!, tag: m[2] ?? "latest" };
}

export const tagCommand: Command = {
  name: "tag",
  summary: "Give a model another name",
  usage: "mr tag SOURCE TARGET",
  examples: ["mr tag ai/smollm2 myregistry.example.com/me/smollm2:v1"],
  flags: {},
  async run(cli, { positionals }) {
    if (positionals.length !== 2) throw new UsageError("tag takes SOURCE and TARGET", "tag");
    const [source, target] = positionals as [string, string];
    const { repo, tag } = splitTarget(target);
    const client = await cli.daemon();
    const body = await client.json<{ message?: string; target?: string }>("POST", `/models/${encodeRef(source)}/tag`, {
      query: { repo, tag },
      signal: cli.signal,
    });
    cli.io.stdout.write(`Model "${source}" tagged successfully with "${body?.target ?? `${repo}:${tag}`}"\n`);
    return 0;
  },
};
