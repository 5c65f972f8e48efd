import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "./context.ts";
import { intFlag } from "./args.ts";
import { UsageError } from "./errors.ts";
import { ProgressRenderer } from "./progress.ts";
import { followProgress, progressMode } from "./transfer.ts";

export const packageCommand: Command = {
  name: "package",
  summary: "Package a GGUF file as a model, and load or push it",
  usage: "mr package --gguf FILE [OPTIONS] MODEL",
  description:
    "Builds an OCI model artifact from local files and loads it into the daemon under the name MODEL (uploaded\n" +
    "over HTTP, so this works with a remote daemon too), or with --push sends it straight to MODEL's registry\n" +
    "(credentials from docker login, DOCKER_USERNAME/DOCKER_PASSWORD). Sharded GGUFs: pass the first shard.",
  examples: [
    "mr package --gguf ./model.gguf my/model:v1",
    "mr package --gguf ./model.gguf --license LICENSE --context-size 8192 my/model",
    "mr package --gguf ./model.gguf --push registry.example.com/team/model:v1",
  ],
  flags: {
    gguf: { type: "string", valueName: "FILE", description: "the GGUF file (or first shard) (required)" },
    license: { type: "string", short: "l", multiple: true, valueName: "FILE", description: "a license file (repeatable)" },
    "chat-template": { type: "string", valueName: "FILE", description: "a Jinja chat template file" },
    mmproj: { type: "string", valueName: "FILE", description: "a multimodal projector GGUF" },
    "context-size": { type: "string", valueName: "N", description: "the context size recorded in the model's config" },
    push: { type: "boolean", description: "push to the registry instead of loading into the daemon" },
    quiet: { type: "boolean", short: "q", description: "print no progress" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("package takes exactly one MODEL name", "package");
    if (typeof values.gguf !== "string") throw new UsageError("package needs --gguf FILE", "package");
    const contextSize = intFlag("package", "context-size", values["context-size"]);
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
