import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { ndjson, type DaemonClient } from "./client.ts";
import type { Command } from "./context.ts";
import { CliError, DaemonError, UsageError } from "./errors.ts";
import { ModelfileError, parseModelfile, type Modelfile } from "./modelfile.ts";

/** A FROM that names a file rather than a model: a path, or a `.gguf` name. */
const isFileRef = (from: string) => from.startsWith(".") || from.startsWith("/") || from.startsWith("~") || /\.gguf$/i.test(from);

async function sha256Of(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash, { signal });
  return `sha256:${hash.digest("hex")}`;
}

/** Uploads a local GGUF as an Ollama blob (skipped when the store has it); returns its digest. */
async function uploadBlob(client: DaemonClient, path: string, signal: AbortSignal): Promise<string> {
  const digest = await sha256Of(path, signal);
  const has = await client.request("HEAD", `/api/blobs/${digest}`, { signal }).then(
    () => true,
    (error: unknown) => {
      if (error instanceof DaemonError && error.status === 404) return false;
      throw error;
    },
  );
  if (!has) await client.request("POST", `/api/blobs/${digest}`, { body: createReadStream(path), headers: { "content-type": "application/octet-stream" }, signal });
  return digest;
}

export const createCommand: Command = {
  name: "create",
  summary: "Create a model from a Modelfile (Ollama's): a base model with its own defaults",
  usage: "mr create [-f Modelfile] [-q] MODEL",
  description:
    "Reads an Ollama Modelfile: FROM (a model, or a GGUF file), SYSTEM, PARAMETER (temperature, top_k, top_p, min_p,\n" +
    "num_predict, repeat_penalty, seed, stop, num_ctx, ...), MESSAGE, TEMPLATE (a Jinja chat template) and LICENSE.\n" +
    "MODEL becomes a new model whose preset (system prompt, parameters, messages) applies to every request that does\n" +
    "not set them. `mr show --modelfile MODEL` prints one back.",
  examples: ["mr create -f ./Modelfile my/assistant", "mr create my/assistant   # reads ./Modelfile"],
  maxArgs: 1,
  flags: {
    file: { type: "string", short: "f", valueName: "FILE", description: "the Modelfile (default: ./Modelfile)" },
    quiet: { type: "boolean", short: "q", description: "print no progress" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("create takes exactly one MODEL name", "create");
    const path = typeof values.file === "string" ? values.file : "Modelfile";
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      throw new CliError(`cannot read the Modelfile ${path}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message}`);
    }
    const modelfile: Modelfile = parseModelfile(text, path);
    const client = await cli.daemon();
    const source: Record<string, unknown> = {};
    if (isFileRef(modelfile.from)) {
      const file = resolve(dirname(path), modelfile.from.replace(/^~(?=\/)/, homedir()));
      const info = await stat(file).catch(() => null);
      if (!info?.isFile()) throw new ModelfileError(path, modelfile.fromLine, `FROM ${modelfile.from}: no such file${isAbsolute(modelfile.from) ? "" : ` (${file})`}`);
      if (!values.quiet) cli.io.stderr.write(`copying file ${basename(file)}\n`);
      source.files = { [basename(file)]: await uploadBlob(client, file, cli.signal) };
    } else source.from = modelfile.from;
    const res = await client.request("POST", "/api/create", {
      json: {
        model: positionals[0],
        ...source,
        ...(modelfile.system !== undefined ? { system: modelfile.system } : {}),
        ...(modelfile.template !== undefined ? { template: modelfile.template } : {}),
        ...(modelfile.licenses.length > 0 ? { license: modelfile.licenses } : {}),
        ...(Object.keys(modelfile.parameters).length > 0 ? { parameters: modelfile.parameters } : {}),
        ...(modelfile.messages.length > 0 ? { messages: modelfile.messages } : {}),
        stream: true,
      },
      signal: cli.signal,
    });
    let isDone = false;
    for await (const line of ndjson<{ status?: string; error?: string }>(res)) {
      if (typeof line.error === "string") throw new CliError(line.error);
      if (line.status === "success") isDone = true;
      if (line.status && !values.quiet) cli.io.stderr.write(`${line.status}\n`);
    }
    if (!isDone) throw new CliError("the model runner ended the create without reporting success");
    return 0;
  },
};
