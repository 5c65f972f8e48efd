import type { Command } from "./context.ts";
import type { ApiModel } from "./models.ts";
import { formatBytes, json, parseSize, shortId, table, timeAgo } from "./output.ts";

/** `mr list --json` rows: one per tag (untagged models once), stable field names (docs/cli.md). */
export interface ListRow {
  model: string;
  id: string;
  parameters: string | null;
  quantization: string | null;
  architecture: string | null;
  created: number;
  size: string | null;
  context_size: number | null;
}

export function listRows(models: readonly ApiModel[]): ListRow[] {
  return models.flatMap((m) => {
    const tags = m.tags && m.tags.length > 0 ? m.tags : ["<none>"];
    return tags.map((tag) => ({
      model: tag,
      id: m.id,
      parameters: m.config?.parameters ?? null,
      quantization: m.config?.quantization ?? null,
      architecture: m.config?.architecture ?? null,
      created: m.created,
      size: m.config?.size ?? null,
      context_size: m.config?.context_size ?? null,
    }));
  });
}

/** The config's own text ("256.35MiB") in the units every other size is shown in. */
function displaySize(size: string | null): string {
  if (size === null) return "-";
  const bytes = parseSize(size);
  return bytes === null ? size : formatBytes(bytes);
}

export const listCommand: Command = {
  name: "list",
  aliases: ["ls"],
  summary: "List the models in the store",
  usage: "mr list [OPTIONS] [MODEL]",
  description: "Lists local models, one line per tag. With MODEL, only tags containing it.",
  examples: ["mr ls", "mr ls -q", "mr list --json | jq '.[].model'", "mr list --openai"],
  flags: {
    json: { type: "boolean", description: "print JSON: [{model,id,parameters,quantization,architecture,created,size,context_size}]" },
    quiet: { type: "boolean", short: "q", description: "print model IDs only" },
    openai: { type: "boolean", description: "print the OpenAI /v1/models answer" },
    // Hidden: one tag per line, for shell completion.
    names: { type: "boolean" },
  },
  async run(cli, { values, positionals }) {
    const client = await cli.daemon();
    if (values.openai) {
      const body = await client.json<unknown>("GET", "/engines/v1/models", { signal: cli.signal });
      cli.io.stdout.write(json(body));
      return 0;
    }
    const models = await client.json<ApiModel[]>("GET", "/models", { signal: cli.signal });
    const filter = positionals[0];
    const rows = listRows(models ?? []).filter((r) => !filter || r.model.includes(filter));
    if (values.json) {
      cli.io.stdout.write(json(rows));
    } else if (values.names) {
      cli.io.stdout.write(rows.filter((r) => r.model !== "<none>").map((r) => `${r.model}\n`).join(""));
    } else if (values.quiet) {
      const ids = [...new Set(rows.map((r) => shortId(r.id)))];
      cli.io.stdout.write(ids.map((id) => `${id}\n`).join(""));
    } else {
      cli.io.stdout.write(
        table(
          ["MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID", "CREATED", "CONTEXT", "SIZE"],
          rows.map((r) => [
            r.model,
            r.parameters ?? "-",
            r.quantization ?? "-",
            r.architecture ?? "-",
            shortId(r.id),
            timeAgo(r.created),
            r.context_size ? String(r.context_size) : "-",
            displaySize(r.size),
          ]),
        ),
      );
    }
    return 0;
  },
};
