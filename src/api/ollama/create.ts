import { rm, writeFile } from "node:fs/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import { checkChatTemplate } from "../../distribution/chat-template.ts";
import { parseReference, type StoredModel } from "../../distribution/index.ts";
import { InvalidRequestError } from "../../errors.ts";
import { optionalField } from "../../http/fields.ts";
import {
  mergePreset,
  parsePresetMessages,
  parsePresetParameter,
  type Preset,
  type PresetParameterName,
  type PresetParameters,
  type PresetPatch,
} from "../../scheduling/index.ts";
import type { OllamaDeps } from "./deps.ts";
import { modelOf } from "./options.ts";
import { blobDigest, progress } from "./transfer.ts";

/** Ollama's CreateRequest fields (api/types.go); any other is a 400 naming it. */
const KNOWN = new Set(["model", "name", "stream", "from", "files", "template", "license", "system", "parameters", "messages", "quantize", "adapters", "modelfile", "path"]);

/** What a create request asks for, checked before anything is written. */
interface CreatePlan {
  target: string;
  from: string | null;
  files: Record<string, unknown> | null;
  template: string | null;
  licenses: string[];
  /** The request's preset part (system, parameters, messages); undefined parts were not given. */
  preset: Preset;
  contextSize: number | undefined;
}

const nonEmpty = (v: unknown) => v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && Object.keys(v as object).length === 0);

function parseCreate(body: Record<string, unknown>): CreatePlan {
  const target = modelOf(body);
  parseReference(target); // a bad name is a 400 before the first progress line
  for (const key of Object.keys(body)) {
    if (!KNOWN.has(key)) throw new InvalidRequestError(`Unknown field '${key}' in /api/create.`, key);
  }
  if (nonEmpty(body.quantize)) throw new InvalidRequestError("'quantize' is not supported: quantize the GGUF before packaging it (llama-quantize).", "quantize");
  if (nonEmpty(body.adapters)) throw new InvalidRequestError("'adapters' (LoRA, Modelfile ADAPTER) are not supported by this engine yet.", "adapters");
  if (nonEmpty(body.modelfile) || nonEmpty(body.path)) {
    throw new InvalidRequestError("'modelfile' (Ollama's deprecated form) is not supported: send from/files, system, parameters, template, messages (mr create -f does).", "modelfile");
  }
  const preset: Preset = {};
  const system = optionalField<string>(body.system, "string", "system");
  if (system !== undefined && system !== "") preset.system = system;
  let contextSize: number | undefined;
  if (body.parameters !== undefined && body.parameters !== null) {
    if (typeof body.parameters !== "object" || Array.isArray(body.parameters)) throw new InvalidRequestError("'parameters' must be an object.", "parameters");
    const parameters: PresetParameters = {};
    for (const [name, value] of Object.entries(body.parameters as Record<string, unknown>)) {
      if (name === "num_ctx") {
        const n = typeof value === "string" ? Number(value) : value;
        if (typeof n !== "number" || !Number.isInteger(n) || n < 1) throw new InvalidRequestError("'parameters.num_ctx' must be a positive integer.", "parameters.num_ctx");
        contextSize = n;
        continue;
      }
      parameters[name as PresetParameterName] = parsePresetParameter(name, value);
    }
    if (Object.keys(parameters).length > 0) preset.parameters = parameters;
  }
  if (body.messages !== undefined && body.messages !== null) {
    const messages = parsePresetMessages(body.messages);
    if (messages.length > 0) preset.messages = messages;
  }
  const files = nonEmpty(body.files) ? (body.files as Record<string, unknown>) : null;
  if (files !== null && (typeof files !== "object" || Array.isArray(files))) throw new InvalidRequestError("'files' must map file names to digests.", "files");
  const from = typeof body.from === "string" && body.from !== "" ? body.from : null;
  if (files === null && from === null) throw new InvalidRequestError("Either 'from' or 'files' is required.", "from");
  if (files !== null && from !== null) throw new InvalidRequestError("Give either 'from' or 'files', not both.", "from");
  const template = optionalField<string>(body.template, "string", "template");
  let licenses: string[] = [];
  if (typeof body.license === "string") licenses = body.license === "" ? [] : [body.license];
  else if (Array.isArray(body.license)) {
    if (!body.license.every((l) => typeof l === "string")) throw new InvalidRequestError("'license' must be a string or a list of strings.", "license");
    licenses = body.license as string[];
  } else if (body.license !== undefined && body.license !== null) throw new InvalidRequestError("'license' must be a string or a list of strings.", "license");
  return { target, from, files, template: template || null, licenses, preset, contextSize };
}

/**
 * `POST /api/create`: a model from a stored one (`from`) or from an uploaded
 * GGUF blob (`files: {"x.gguf": "sha256:..."}`), with Ollama's Modelfile
 * parts: `system`, `parameters` and `messages` become the new model's preset
 * (its stored request defaults, `parameters.num_ctx` its context size),
 * `template` (Jinja; an Ollama Go template is a 400) and `license` become
 * layers of its artifact. From a stored model with nothing to change it is
 * only a new name (as `ollama cp`); with changes it is a new model with its
 * own ID that keeps the source's preset and context size, the request's
 * parts over them, as Ollama's FROM does. If the preset cannot be stored,
 * the new name is removed again: no half-created model is left.
 */
export async function createModel(deps: OllamaDeps, request: FastifyRequest, reply: FastifyReply) {
  const plan = parseCreate(request.body as Record<string, unknown>);
  // Bad input keeps its status (400, 404): checked before the first progress line.
  if (plan.template !== null) await checkChatTemplate(plan.template);
  const source = plan.from !== null ? await deps.distribution.resolve(plan.from) : null;
  return progress(deps, request, reply, async (emit, signal) => {
    const temps: string[] = [];
    const tempFile = async (text: string) => {
      const path = deps.distribution.store.tmpPath();
      temps.push(path);
      await writeFile(path, text);
      return path;
    };
    try {
      const chatTemplate = plan.template !== null ? await tempFile(plan.template) : undefined;
      const licenses = await Promise.all(plan.licenses.map(tempFile));
      let created: StoredModel;
      let inherited: { preset?: Preset | undefined; contextSize?: number | undefined; keepAlive?: string | undefined } = {};
      if (source !== null) {
        for (const layer of source.manifest.layers) emit({ status: `using existing layer ${layer.digest}` });
        const changes = chatTemplate !== undefined || licenses.length > 0 || plan.contextSize !== undefined || Object.keys(plan.preset).length > 0;
        if (!changes) {
          await deps.distribution.tag(source.tags[0] ?? source.id, plan.target);
          emit({ status: "writing manifest" });
          return;
        }
        const sourceConfig = deps.scheduler.getConfigs(source.id).find((c) => c.mode === "completion" && c.modelId === source.id);
        inherited = { preset: sourceConfig?.preset, contextSize: sourceConfig?.contextSize, keepAlive: sourceConfig?.keepAlive };
        if (chatTemplate !== undefined || licenses.length > 0) emit({ status: "creating new layer" });
        created = await deps.distribution.repackage(source.tags[0] ?? source.id, plan.target, {
          ...(chatTemplate !== undefined ? { chatTemplate } : {}),
          licenses,
          isNewModel: true,
          signal,
        });
      } else {
        const ggufs = Object.entries(plan.files!).filter(([name]) => name.endsWith(".gguf"));
        if (ggufs.length !== 1) throw new InvalidRequestError("'files' must name exactly one .gguf file (sharded uploads are not supported).", "files");
        const [name, digestText] = ggufs[0]!;
        if (typeof digestText !== "string") throw new InvalidRequestError(`files["${name}"] must be a digest.`, `files.${name}`);
        const digest = blobDigest(digestText);
        if (!(await deps.distribution.store.hasBlob(digest))) {
          throw new InvalidRequestError(`Blob ${digest} was not uploaded: POST it to /api/blobs/${digest} first.`, `files.${name}`);
        }
        emit({ status: "parsing GGUF" });
        emit({ status: `using existing layer ${digest}` });
        created = await deps.distribution.packageModel({
          gguf: deps.distribution.store.blobPath(digest),
          tags: [plan.target],
          licenses,
          ...(chatTemplate ? { chatTemplate } : {}),
          ...(plan.contextSize !== undefined ? { contextSize: plan.contextSize } : {}),
          signal,
        });
      }
      const preset = mergePreset(inherited.preset, presetPatch(plan.preset));
      const contextSize = plan.from !== null ? (plan.contextSize ?? inherited.contextSize) : undefined;
      if (preset !== undefined || contextSize !== undefined || inherited.keepAlive !== undefined) {
        emit({ status: "writing preset" });
        try {
          await deps.scheduler.configure(
            {
              model: created.tags.find((t) => t === parseReference(plan.target).normalized) ?? created.id,
              ...(contextSize !== undefined ? { contextSize } : {}),
              ...(inherited.keepAlive !== undefined ? { keepAlive: inherited.keepAlive } : {}),
              ...(preset !== undefined ? { preset: presetPatch(preset) } : {}),
            },
            signal,
          );
        } catch (error) {
          // The model must not stay without the defaults it was created with.
          await deps.distribution.remove(plan.target, { force: true }).catch(() => undefined);
          throw error;
        }
      }
      emit({ status: "writing manifest" });
    } finally {
      await Promise.all(temps.map((p) => rm(p, { force: true })));
    }
  });
}

/** A whole preset as the patch that sets each of its parts. */
function presetPatch(preset: Preset): PresetPatch {
  return {
    ...(preset.system !== undefined ? { system: preset.system } : {}),
    ...(preset.parameters !== undefined ? { parameters: preset.parameters } : {}),
    ...(preset.messages !== undefined ? { messages: preset.messages } : {}),
  };
}
