import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Cli, Command } from "./context.ts";
import { intFlag } from "./args.ts";
import { UsageError } from "./errors.ts";
import { encodeRef, resolveModel } from "./models.ts";
import { ProgressRenderer } from "./progress.ts";
import { followProgress, progressMode } from "./transfer.ts";

export const packageCommand: Command = {
  name: "package",
  summary: "Package a GGUF file as a model, and load or push it",
  usage: "mr package (--gguf FILE | --from MODEL) [OPTIONS] TARGET",
  description:
    "Builds an OCI model artifact from local files and loads it into the daemon under the name TARGET (uploaded\n" +
    "over HTTP, so this works with a remote daemon too), or with --push sends it straight to TARGET's registry\n" +
    "(credentials from docker login, DOCKER_USERNAME/DOCKER_PASSWORD). Sharded GGUFs: pass the first shard.\n" +
    "With --from, the daemon stores TARGET as a variant of a model it already has (same layers, a new config\n" +
    "with --context-size), as `docker model package --from` does; push it afterwards with `mr push TARGET`.",
  examples: [
    "mr package --gguf ./model.gguf my/model:v1",
    "mr package --gguf ./model.gguf --license LICENSE --context-size 8192 my/model",
    "mr package --gguf ./model.gguf --push registry.example.com/team/model:v1",
    "mr package --from ai/smollm2 --context-size 8192 my/smollm2:8k",
  ],
  flags: {
    gguf: { type: "string", valueName: "FILE", description: "the GGUF file (or first shard)" },
    from: { type: "string", valueName: "MODEL", description: "a stored model to make a variant of (instead of --gguf)" },
    license: { type: "string", short: "l", multiple: true, valueName: "FILE", description: "a license file (repeatable)" },
    "chat-template": { type: "string", valueName: "FILE", description: "a Jinja chat template file" },
    mmproj: { type: "string", valueName: "FILE", description: "a multimodal projector GGUF" },
    "context-size": { type: "string", valueName: "N", description: "the context size recorded in the model's config" },
    push: { type: "boolean", description: "push to the registry instead of loading into the daemon" },
    quiet: { type: "boolean", short: "q", description: "print no progress" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("package takes exactly one TARGET name", "package");
    const contextSize = contextSizeFlag(values["context-size"]);
    if (typeof values.from === "string") {
      if (typeof values.gguf === "string") throw new UsageError("--from and --gguf are two sources: give one of them", "package");
      // What the repackage route cannot change (it copies the layers as they are) is refused, not dropped.
      for (const flag of ["license", "chat-template", "mmproj", "push"] as const) {
        if (values[flag] !== undefined) {
          const hint = flag === "push" ? ": package, then mr push TARGET" : "";
          throw new UsageError(`--${flag} cannot be combined with --from (only --context-size changes a stored model)${hint}`, "package");
        }
      }
      return await repackage(cli, values.from, positionals[0]!, contextSize);
    }
    if (typeof values.gguf !== "string") throw new UsageError("package needs --gguf FILE or --from MODEL", "package");
    // The distribution layer (GGUF parsing, registry client) loads only for this command.
    const { createModelDistribution, normalizeReference, openStore, toDmrProgressLine } = await import("../distribution/index.ts");
    const target = normalizeReference(positionals[0]!);
    // Without --push the daemon is needed; find out before the work, not after.
    const client = values.push ? null : await cli.daemon();
    const dir = await mkdtemp(join(tmpdir(), "mr-package-"));
    try {
      const store = await openStore({ root: dir });
      const { config } = cli;
      const dist = createModelDistribution({
        store,
        dockerConfigPath: config.dockerConfigPath,
        insecureRegistries: config.insecureRegistries,
        ...(config.dockerUsername ? { dockerUsername: config.dockerUsername } : {}),
        ...(config.dockerPassword ? { dockerPassword: config.dockerPassword } : {}),
      });
      const model = await dist.packageModel({
        gguf: values.gguf,
        licenses: (values.license as string[] | undefined) ?? [],
        ...(typeof values["chat-template"] === "string" ? { chatTemplate: values["chat-template"] } : {}),
        ...(typeof values.mmproj === "string" ? { mmproj: values.mmproj } : {}),
        ...(contextSize !== undefined ? { contextSize } : {}),
        tags: [target],
        signal: cli.signal,
      });
      cli.note(`Packaged ${target} (${model.id.slice(7, 19)}).`);
      const mode = progressMode(cli, values.quiet === true);
      if (values.push) {
        const renderer = new ProgressRenderer({ mode, out: cli.io.stderr, verb: "Uploading" });
        await dist.push(target, { signal: cli.signal, onProgress: (e) => renderer.update(toDmrProgressLine(e)) });
        renderer.finish();
        cli.io.stdout.write(`Pushed ${target}\n`);
        return 0;
      }
      const res = await client!.request("POST", "/models/load", {
        query: { tag: target },
        headers: { "content-type": "application/x-tar", accept: "application/json" },
        body: dist.exportTar(target),
        signal: cli.signal,
      });
      await followProgress(cli, res, { mode, verb: "Loading" });
      cli.io.stdout.write(`Loaded ${target}\n`);
      return 0;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};

/** The largest context size a model config records (DMR's int32 `context_size`). */
const MAX_CONTEXT_SIZE = 0x7fffffff;

/** --context-size as a config value: a whole number up to int32's limit (0 records none, the engine default). */
function contextSizeFlag(value: unknown): number | undefined {
  const n = intFlag("package", "context-size", value);
  if (n !== undefined && n > MAX_CONTEXT_SIZE) throw new UsageError(`--context-size must be at most ${MAX_CONTEXT_SIZE}, got ${n}`, "package");
  return n;
}

/** `package --from`: the daemon copies a stored model under a new tag with a changed config (POST /models/{ref}/repackage). */
async function repackage(cli: Cli, from: string, target: string, contextSize: number | undefined): Promise<number> {
  const client = await cli.daemon();
  const { name: source } = await resolveModel(client, from, cli.signal);
  const body = await client.json<{ target?: string }>("POST", `/models/${encodeRef(source)}/repackage`, {
    json: { target, ...(contextSize !== undefined ? { context_size: contextSize } : {}) },
    signal: cli.signal,
  });
  cli.io.stdout.write(`Packaged ${body?.target ?? target} from ${source}\n`);
  return 0;
}
