import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef, type ApiModel } from "./models.ts";
import { json, shortId, table } from "./output.ts";

export const showCommand: Command = {
  name: "show",
  summary: "Show a model's details for people",
  usage: "mr show [OPTIONS] MODEL",
  description: "Prints MODEL's tags, ID, architecture, parameters, quantization, size and context, its capabilities, and its GGUF metadata.",
  examples: ["mr show ai/smollm2", "mr show --json ai/smollm2", "mr show --modelfile ai/smollm2 > Modelfile", "mr show --parameters ai/smollm2"],
  flags: {
    remote: { type: "boolean", short: "r", description: "ask the registry instead of the local store" },
    json: { type: "boolean", description: "print the same JSON as mr inspect" },
    modelfile: { type: "boolean", description: "print a Modelfile for the model (mr create -f reads it)" },
    parameters: { type: "boolean", description: "print the model's parameters (its preset and context size)" },
    template: { type: "boolean", description: "print the model's chat template" },
    system: { type: "boolean", description: "print the model's system prompt" },
    license: { type: "boolean", description: "print the model's license" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("show takes exactly one MODEL", "show");
    const parts = OLLAMA_PARTS.filter((p) => values[p]);
    if (parts.length > 1) throw new UsageError(`give only one of ${OLLAMA_PARTS.map((p) => `--${p}`).join(", ")}`, "show");
    if (parts.length === 1 && (values.remote || values.json)) throw new UsageError(`--${parts[0]} shows a local model: it takes neither --remote nor --json`, "show");
    const client = await cli.daemon();
    if (parts.length === 1) {
      // Ollama's `show --license|--modelfile|...`: the field of /api/show, as it is.
      const part = parts[0]!;
      const body = (await client.json<OllamaShow>("POST", "/api/show", { json: { model: positionals[0] }, signal: cli.signal })) ?? {};
      const text = body[part] ?? "";
      if (text === "") cli.note(`${positionals[0]} has no ${part === "parameters" ? "parameters" : part}.`);
      else cli.io.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
      return 0;
    }
    const m = await client.json<ApiModel>("GET", `/models/${encodeRef(positionals[0]!)}`, {
      query: { remote: values.remote ? "true" : undefined },
      signal: cli.signal,
    });
    if (values.json) {
      cli.io.stdout.write(json(m));
      return 0;
    }
    const c = m.config ?? {};
    const { bold } = cli.style;
    const rows: [string, string][] = [
      ["tags", (m.tags ?? []).join(", ") || "<none>"],
      ["id", shortId(m.id)],
      ["created", m.created ? new Date(m.created * 1000).toISOString() : "-"],
      ["format", c.format ?? "-"],
      ["architecture", c.architecture ?? "-"],
      ["parameters", c.parameters ?? "-"],
      ["quantization", c.quantization ?? "-"],
      ["size", c.size ?? "-"],
      ["context size", c.context_size ? String(c.context_size) : "-"],
    ];
    let out = `${bold("Model")}\n${indent(table(["", ""], rows).split("\n").slice(1).join("\n"))}`;
    // A local model's /api/show (one request) gives its preset and, when the config has no gguf map, its header metadata.
    const show = values.remote ? null : ((await client.json<OllamaShow>("POST", "/api/show", { json: { model: m.id }, signal: cli.signal })) ?? {});
    const meta = Object.entries(c.gguf && Object.keys(c.gguf).length > 0 ? c.gguf : show ? headerMetadata(m, show) : {});
    if (show) {
      // As `ollama show`: what the model can do (completion or embedding, tools, vision), one a line.
      if (show.capabilities?.length) out += `\n${bold("Capabilities")}\n${indent(show.capabilities.join("\n"))}\n`;
      // The preset (the model's stored request defaults), as `ollama show` lists Parameters and System.
      if (show.parameters) out += `\n${bold("Parameters")}\n${indent(show.parameters)}\n`;
      if (show.system) out += `\n${bold("System")}\n${indent(show.system)}\n`;
    }
    if (meta.length > 0) out += `\n${bold("Metadata")}\n${indent(table(["", ""], meta.map(([k, v]) => [k, String(v)])).split("\n").slice(1).join("\n"))}`;
    cli.io.stdout.write(out);
    return 0;
  },
};

/** The parts of Ollama's /api/show that `show --PART` prints. */
const OLLAMA_PARTS = ["modelfile", "parameters", "template", "system", "license"] as const;
type OllamaShow = Partial<Record<(typeof OLLAMA_PARTS)[number], string>> & { model_info?: Record<string, unknown>; capabilities?: string[] };

/**
 * The metadata of a stored model whose config has no `gguf` map (artifacts
 * made by other tools): the daemon reads it from the GGUF header for
 * /api/show's `model_info` (no other route carries it; GET /models/{ref} is
 * the artifact's config as DMR returns it). Values back in the config's string form.
 */
function headerMetadata(m: ApiModel, show: OllamaShow): Record<string, string> {
  if (m.config?.format !== undefined && m.config.format !== "gguf") return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(show.model_info ?? {})) {
    if (v !== null) out[k] = Array.isArray(v) ? `[${v.map(String).join(" ")}]` : String(v);
  }
  return out;
}

const indent = (text: string) =>
  text
    .split("\n")
    .map((l) => (l ? `  ${l}` : l))
    .join("\n");
