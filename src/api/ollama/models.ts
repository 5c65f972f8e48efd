import { readFile } from "node:fs/promises";
import { isEmbeddingModel, normalizeReference, type StoredModel } from "../../distribution/index.ts";
import { InvalidRequestError } from "../../errors.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { parameterLines, parseDuration } from "../../scheduling/index.ts";
import type { OllamaDeps } from "./deps.ts";
import { checkOllamaFields, modelOf } from "./options.ts";

/** Ollama's `details` object from the model's config (and its GGUF metadata, where the config has fewer fields). */
export function details(m: StoredModel, gguf = m.config.gguf) {
  const c = m.config;
  const family = c.architecture || gguf?.["general.architecture"] || "";
  return {
    parent_model: "",
    format: c.format ?? "gguf",
    family,
    families: family ? [family] : null,
    parameter_size: c.parameters ?? "",
    quantization_level: c.quantization ?? "",
  };
}

const hexOf = (id: string) => id.replace(/^sha256:/, "");

/** `GET /api/tags`: one entry per tag, as Ollama lists names. */
export async function listTags(deps: OllamaDeps) {
  const models = await deps.distribution.list();
  // A config without `architecture` (another tool's artifact): the family from the GGUF header, read once per blob.
  // A header that cannot be read leaves the family empty here; /api/show reports the error.
  const metadata = await Promise.all(models.map((m) => (m.config.architecture ? m.config.gguf : deps.distribution.ggufMetadata(m).catch(() => m.config.gguf))));
  return {
    models: models.flatMap((m, i) =>
      (m.tags.length > 0 ? m.tags : [m.id]).map((tag) => ({
        name: tag,
        model: tag,
        modified_at: new Date(m.created * 1000).toISOString(),
        size: m.sizeBytes,
        digest: hexOf(m.id),
        details: details(m, metadata[i]),
      })),
    ),
  };
}

/** GGUF metadata (stored as strings in the config) back to JSON values, as Ollama's `model_info` has them. */
function typedValue(text: string): unknown {
  if (/^-?\d+(\.\d+)?(e[-+]?\d+)?$/i.test(text)) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  if (text.startsWith("[") && text.endsWith("]")) {
    const inner = text.slice(1, -1).trim();
    return inner === "" ? [] : inner.split(" ").map(typedValue);
  }
  return text;
}

/** What `/api/show` lists; `vision` only when images can be served now (`EffectiveSettings.vision`). */
function capabilitiesOf(m: StoredModel, gguf: Record<string, string>, template: string, vision: boolean): string[] {
  const arch = m.config.architecture ?? gguf["general.architecture"] ?? "";
  const isEmbedding = isEmbeddingModel(arch, gguf[`${arch}.pooling_type`] !== undefined);
  const caps = isEmbedding ? ["embedding"] : ["completion"];
  if (!isEmbedding && /\btools\b/.test(template)) caps.push("tools");
  if (!isEmbedding && vision) caps.push("vision");
  return caps;
}

/** `POST /api/show`: details, `model_info` from GGUF metadata, capabilities, template, parameters, license. */
export async function showModel(deps: OllamaDeps, body: unknown) {
  const ref = modelOf(body);
  checkOllamaFields("/api/show", body);
  const verbose = optionalBoolean((body as { verbose?: unknown }).verbose, "verbose") === true;
  const m = await deps.distribution.resolve(ref);
  // Artifacts made by other tools carry no `gguf` map in their config: then the stored file's header (cached).
  const gguf = await deps.distribution.ggufMetadata(m);
  const template = m.files.chatTemplatePath
    ? await readFile(m.files.chatTemplatePath, "utf8")
    : (gguf["tokenizer.chat_template"] ?? "");
  const license = (await Promise.all(m.files.licensePaths.map((p) => readFile(p, "utf8").catch(() => "")))).join("\n");
  const modelInfo: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(gguf)) {
    if (key === "tokenizer.chat_template") continue;
    // Ollama leaves the big tokenizer arrays out unless asked for.
    if (!verbose && key.startsWith("tokenizer.ggml.") && value.startsWith("[")) {
      modelInfo[key] = null;
      continue;
    }
    modelInfo[key] = typedValue(value);
  }
  const config = deps.scheduler.getConfigs(m.id).find((c) => c.mode === "completion" && c.modelId === m.id);
  const preset = config?.preset ?? {};
  const parameterRows: Array<[string, string]> = [];
  let vision = false;
  try {
    const settings = await deps.scheduler.effectiveSettings(m.tags[0] ?? m.id, "completion");
    parameterRows.push(["num_ctx", String(settings.contextSize)]);
    vision = settings.vision;
  } catch {
    // Not runnable (no GGUF): no context size to show.
  }
  parameterRows.push(...parameterLines(preset.parameters ?? {}));
  // Ollama's layout: the name padded to 30 columns, then the value (strings quoted).
  const parameters = parameterRows.map(([k, v]) => `${k.padEnd(30)} ${v}`).join("\n");
  const name = m.tags[0] ?? m.id;
  const quoted = (text: string) => `"""${text}"""`;
  const modelfile = [
    `# Modelfile generated by "ollama show"`,
    `FROM ${name}`,
    ...(template ? [`TEMPLATE ${quoted(template)}`] : []),
    ...(preset.system ? [`SYSTEM ${quoted(preset.system)}`] : []),
    ...parameterRows.map(([k, v]) => `PARAMETER ${k} ${v}`),
    ...(license ? [`LICENSE ${quoted(license)}`] : []),
    ...(preset.messages ?? []).map((msg) => `MESSAGE ${msg.role} ${quoted(msg.content)}`),
  ].join("\n");
  return {
    license,
    modelfile,
    parameters,
    template,
    // The model's preset (its stored request defaults), as Ollama shows a Modelfile's SYSTEM and MESSAGE.
    ...(preset.system ? { system: preset.system } : {}),
    ...(preset.messages ? { messages: preset.messages } : {}),
    details: details(m, gguf),
    model_info: modelInfo,
    capabilities: capabilitiesOf(m, gguf, template, vision),
    modified_at: new Date(m.created * 1000).toISOString(),
  };
}

/** `GET /api/ps`: the loaded runners, with their estimated memory and when they unload. */
export async function listRunning(deps: OllamaDeps) {
  const runners = deps.scheduler.ps().filter((r) => r.state !== "stopping");
  const models = await deps.distribution.list();
  return {
    models: runners.map((r) => {
      const m = models.find((x) => x.id === r.modelId);
      let expires: Date;
      if (r.expiresAt) expires = r.expiresAt;
      else {
        // Busy (the clock starts when it goes idle) or never unloading.
        const ms = parseDuration(r.keepAlive);
        expires = new Date(ms === Infinity ? Date.UTC(2318, 0, 1) : Date.now() + ms);
      }
      const name = m?.tags[0] ?? r.model;
      return {
        name,
        model: name,
        size: r.estimatedMemoryBytes,
        digest: hexOf(r.modelId),
        details: m ? details(m) : null,
        expires_at: expires.toISOString(),
        // The estimate × the fraction of layers the engine said it offloaded (src/scheduling/gpu-offload.ts); 0 on CPU.
        size_vram: r.gpuBytes,
        context_length: r.contextSize,
        // Ours: which engine of the backend serves it (Ollama clients ignore unknown fields).
        engine: r.engine,
      };
    }),
  };
}

/** The stored tag an Ollama name means: the exact tag when it has several, the model's tag otherwise. */
async function tagOf(deps: OllamaDeps, name: string): Promise<{ model: StoredModel; tag: string }> {
  const model = await deps.distribution.resolve(name);
  let normalized: string | null = null;
  try {
    normalized = normalizeReference(name);
  } catch {
    // Not a name (an ID): the model's first tag.
  }
  const tag = model.tags.find((t) => t === normalized) ?? model.tags.find((t) => t.split(":")[0]!.endsWith(`/${name.split(":")[0]}`)) ?? model.tags[0] ?? model.id;
  return { model, tag };
}

/** `DELETE /api/delete`: removes one name; the model's runners stop when its last name goes. */
export async function deleteModel(deps: OllamaDeps, body: unknown): Promise<void> {
  checkOllamaFields("/api/delete", body);
  const { tag } = await tagOf(deps, modelOf(body));
  const result = await deps.distribution.remove(tag);
  // Runners are matched by model id: whatever name loaded it, the deleted model's runner stops.
  const deleted = result.flatMap((r) => ("Deleted" in r && typeof r.Deleted === "string" ? [r.Deleted] : []));
  if (deleted.length > 0) await deps.scheduler.unload({ models: deleted }).catch(() => undefined);
}

/** `POST /api/copy`: a new name for a stored model. */
export async function copyModel(deps: OllamaDeps, body: unknown): Promise<void> {
  checkOllamaFields("/api/copy", body);
  const b = body as { source?: unknown; destination?: unknown } | undefined;
  if (typeof b?.source !== "string" || b.source === "") throw new InvalidRequestError("source is required", "source");
  if (typeof b.destination !== "string" || b.destination === "") throw new InvalidRequestError("destination is required", "destination");
  const { tag } = await tagOf(deps, b.source);
  await deps.distribution.tag(tag, b.destination);
}
