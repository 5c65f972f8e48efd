import type { ListFileEntry } from "@huggingface/hub";
import type { Dispatcher } from "undici";
import { isDigest, parseDigest, type Digest } from "./digest.ts";
import { InvalidArtifactError, RegistryError, RegistryUnreachableError, RemoteNotFoundError, RegistryAuthError } from "./errors.ts";
import { ensureSpaceFor } from "./disk-space.ts";
import { httpRequest, isDialError, type HttpResponse } from "./http.ts";
import { AnnotationFilePath, MediaTypes, type Descriptor } from "./media-types.ts";
import { formatBytes } from "../format-bytes.ts";
import { commitArtifact, readGgufConfig } from "./package.ts";
import type { ProgressReporter } from "./progress.ts";
import type { ModelReference } from "./reference.ts";
import type { StoredModel } from "./store.ts";
import type { DistributionContext, RemoteModel, TransferOptions } from "./types.ts";

export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";
export const DEFAULT_QUANT = "Q4_K_M";

/** One file to fetch from a Hugging Face repo. */
export interface HfFile {
  path: string;
  size: number;
  /** sha256 of an LFS file (every GGUF is LFS); null for small git files. */
  digest: Digest | null;
  kind: "gguf" | "mmproj";
}

export interface HfSelection {
  /** GGUF files of the chosen quantization, shards in order. */
  gguf: HfFile[];
  mmproj: HfFile | null;
  /** The quantization tag the model is stored under. */
  quant: string;
}

const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;

/**
 * Picks the GGUF file set for `tag` as DMR does: `latest`/`main`/empty prefer
 * Q4_K_M, else the first file (or shard set); any other tag must appear in
 * the file name (case-insensitive). All shards of the pick come in order; an
 * mmproj is added if the repo has one that fits (`pickMmproj`).
 */
export function selectHfFiles(repo: string, entries: ListFileEntry[], tag: string): HfSelection {
  const toFile = (e: ListFileEntry, kind: HfFile["kind"]): HfFile => ({
    path: e.path,
    size: e.lfs?.size ?? e.size,
    digest: e.lfs?.oid && isDigest(`sha256:${e.lfs.oid}`) ? (`sha256:${e.lfs.oid}` as Digest) : null,
    kind,
  });
  const files = entries.filter((e) => e.type === "file" && e.path.toLowerCase().endsWith(".gguf"));
  const isMmproj = (p: string) => /mmproj/i.test(p.split("/").pop() ?? p);
  const models = files.filter((e) => !isMmproj(e.path)).sort((a, b) => a.path.localeCompare(b.path));
  if (models.length === 0) throw new RemoteNotFoundError(`hf.co/${repo} has no GGUF files.`);
  const groups = new Map<string, ListFileEntry[]>();
  for (const e of models) {
    const key = e.path.replace(SHARD, ".gguf");
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  const wanted = tag === "" || tag === "latest" || tag === "main" ? null : tag;
  const matches = (key: string, q: string) => new RegExp(`(^|[-_./])${q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}([-_.]|$)`, "i").test(key);
  let pick: [string, ListFileEntry[]] | undefined;
  if (wanted) {
    pick = [...groups].find(([k]) => matches(k, wanted));
    if (!pick) {
      throw new RemoteNotFoundError(
        `hf.co/${repo} has no GGUF for "${wanted}". Available: ${[...groups.keys()].map((k) => k.split("/").pop()).join(", ")}.`,
      );
    }
  } else {
    pick = [...groups].find(([k]) => matches(k, DEFAULT_QUANT)) ?? [...groups][0];
  }
  const [, chosen] = pick!;
  chosen.sort((a, b) => a.path.localeCompare(b.path));
  const total = SHARD.exec(chosen[0]!.path)?.[2];
  if (total && Number(total) !== chosen.length) {
    throw new InvalidArtifactError(`hf.co/${repo}: ${chosen[0]!.path} has ${chosen.length} of ${Number(total)} shards.`);
  }
  const mm = pickMmproj(files.filter((e) => isMmproj(e.path)), chosen[0]!.path);
  return {
    gguf: chosen.map((e) => toFile(e, "gguf")),
    mmproj: mm ? toFile(mm, "mmproj") : null,
    quant: wanted ?? "latest",
  };
}

/** A GGUF name's quantization bits, as llama.cpp reads them: the tag after the last `-`/`.` (Q4_K_M → 4, F16 → 16), 0 without digits. */
function quantBits(path: string): number {
  const tag = /[-.]([A-Z0-9_]+)$/i.exec(path.replace(SHARD, ".gguf").replace(/\.gguf$/i, ""))?.[1] ?? "";
  const digits = /\d+/.exec(tag);
  return digits ? Number(digits[0]) : 0;
}

/**
 * The projector for the model file at `modelPath`, as llama-server's `-hf`
 * picks it (common/download.cpp `find_best_sibling`): only mmproj files in
 * the model's folder or a folder above it; the deepest such folder first,
 * then the quantization closest to the model's (a Q8_0 model gets the Q8_0
 * projector, a Q4_K_M model the Q4/Q8 one over F32), then F16 (DMR's
 * preference), then name order. Null when none fits.
 */
export function pickMmproj(mmprojs: readonly ListFileEntry[], modelPath: string): ListFileEntry | null {
  const dirOf = (p: string) => p.split("/").slice(0, -1);
  const modelDir = dirOf(modelPath);
  const bits = quantBits(modelPath);
  const ranked = mmprojs
    .map((e) => {
      const dir = dirOf(e.path);
      const inside = dir.length <= modelDir.length && dir.every((part, i) => part === modelDir[i]);
      return { e, inside, depth: dir.length, diff: Math.abs(quantBits(e.path) - bits), f16: /(^|[-_.])f16([-_.]|$)/i.test(e.path.split("/").pop()!) };
    })
    .filter((r) => r.inside)
    .sort((a, b) => b.depth - a.depth || a.diff - b.diff || Number(b.f16) - Number(a.f16) || a.e.path.localeCompare(b.e.path));
  return ranked[0]?.e ?? null;
}

export interface HfClientOptions {
  /** Hub URL (HF_ENDPOINT); a mirror works. Default https://huggingface.co. */
  endpoint?: string;
  /** HF_TOKEN, or the request's bearer token. */
  token?: string;
  dispatcher?: Dispatcher;
}

/** Lists a repo's files through the Hub API (`@huggingface/hub`), mapping 401/404 to our errors. */
export async function listHfFiles(repo: string, opts: HfClientOptions, signal?: AbortSignal): Promise<ListFileEntry[]> {
  const out: ListFileEntry[] = [];
  const { fetch: undiciFetch } = await import("undici"); // on first use, like the Hub client below
  const fetchImpl = ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as object), signal, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) })) as unknown as typeof fetch;
  try {
    // Loaded on first use: the Hub client is ~30 MB of memory that most daemons never need.
    const { listFiles } = await import("@huggingface/hub");
    for await (const e of listFiles({
      repo: { type: "model", name: repo },
      recursive: true,
      hubUrl: opts.endpoint ?? DEFAULT_HF_ENDPOINT,
      fetch: fetchImpl,
      ...(opts.token ? { accessToken: opts.token } : {}),
    })) {
      out.push(e);
    }
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    const status = (e as { statusCode?: number }).statusCode;
    if (status === 401 || status === 403) throw new RegistryAuthError("huggingface.co", "set HF_TOKEN for gated or private repos", { cause: e });
    if (status === 404) throw new RemoteNotFoundError(`hf.co/${repo} was not found on Hugging Face.`, { cause: e });
    const dial = [e, (e as { cause?: unknown }).cause].find(isDialError);
    if (dial) throw new RegistryUnreachableError(new URL(opts.endpoint ?? DEFAULT_HF_ENDPOINT).host, dial);
    throw new RegistryError(`Listing hf.co/${repo} failed: ${(e as Error).message}`, { cause: e });
  }
  return out;
}

/** Opens `resolve/main/<path>` (the CDN redirect is followed, the token dropped off-origin). */
export function openHfFile(repo: string, path: string, opts: HfClientOptions) {
  const url = `${opts.endpoint ?? DEFAULT_HF_ENDPOINT}/${repo}/resolve/main/${path.split("/").map(encodeURIComponent).join("/")}`;
  return async (range: { start: number; end: number } | null, signal: AbortSignal): Promise<HttpResponse> => {
    const res = await httpRequest(url, {
      headers: {
        ...(range ? { range: `bytes=${range.start}-${range.end}` } : {}),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      },
      signal,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    });
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump();
      throw new RegistryAuthError("huggingface.co", "set HF_TOKEN for gated or private repos");
    }
    return res;
  };
}

/** The Hub client options for a request: its bearer token, else HF_TOKEN. */
function hfOptions(ctx: DistributionContext, bearerToken: string | undefined): HfClientOptions {
  const token = bearerToken ?? ctx.options.hfToken;
  return {
    endpoint: ctx.options.hfEndpoint ?? DEFAULT_HF_ENDPOINT,
    ...(token ? { token } : {}),
    ...(ctx.options.dispatcher ? { dispatcher: ctx.options.dispatcher } : {}),
  };
}

/** Lists an hf.co repo and describes the files a pull of `ref` would fetch. */
export async function inspectHuggingFace(
  ctx: DistributionContext,
  ref: ModelReference,
  bearerToken: string | undefined,
  signal: AbortSignal,
): Promise<RemoteModel> {
  const repo = ref.repository;
  const selection = selectHfFiles(repo, await listHfFiles(repo, hfOptions(ctx, bearerToken), signal), ref.tag);
  const files = [...selection.gguf, ...(selection.mmproj ? [selection.mmproj] : [])];
  const ggufBytes = selection.gguf.reduce((n, f) => n + f.size, 0);
  const quant = /(?:^|[-_.])((?:I?Q\d\w*|[BF]F?16|F32))(?:[-_.]|$)/i.exec(selection.gguf[0]!.path.split("/").pop()!.replace(/-\d{5}-of-\d{5}/, ""));
  return {
    id: null,
    tags: [`huggingface.co/${repo}:${ref.tag}`],
    created: 0,
    config: { format: "gguf", ...(quant ? { quantization: quant[1]!.toUpperCase() } : {}), size: formatBytes(ggufBytes, { compact: true }) },
    layers: files.map((f) => ({
      mediaType: f.kind === "gguf" ? MediaTypes.gguf : MediaTypes.mmproj,
      digest: f.digest ?? "",
      size: f.size,
      annotations: { [AnnotationFilePath]: f.path },
    })),
    files: files.map((f) => ({ path: f.path, size: f.size, digest: f.digest, kind: f.kind })),
  };
}

/** Pulls the GGUF files of an hf.co repo and commits them as a Docker model artifact. */
export async function pullHuggingFace(
  ctx: DistributionContext,
  ref: ModelReference,
  opts: TransferOptions,
  reporter: ProgressReporter,
  signal: AbortSignal,
): Promise<StoredModel> {
  const store = ctx.store;
  const repo = ref.repository;
  const hf = hfOptions(ctx, opts.bearerToken);
  const selection = selectHfFiles(repo, await listHfFiles(repo, hf, signal), ref.tag);
  const files = [...selection.gguf, ...(selection.mmproj ? [selection.mmproj] : [])];
  const tag = `huggingface.co/${repo}:${ref.tag}`;
  await store.removePartials({ reference: tag, keep: new Set(files.flatMap((f) => (f.digest ? [f.digest] : []))) });
  await ensureSpaceFor(store, files, ctx.options.statfs);
  for (const f of files) reporter.addLayer(f.digest ?? f.path, f.size);
  const layers: Descriptor[] = [];
  for (const f of files) {
    const open = openHfFile(repo, f.path, hf);
    let d: Digest;
    if (f.digest) {
      d = f.digest;
      await ctx.downloads.fetch(d, f.size, open, (n) => reporter.update(f.digest!, n), signal, tag);
    } else {
      // Not an LFS file, so no sha256 is known up front: hash while storing, no resume.
      const res = await open(null, signal);
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new InvalidArtifactError(`hf.co/${repo}/${f.path} answered ${res.statusCode}.`);
      }
      d = (await store.ingest(res.body, { signal })).digest;
    }
    reporter.update(f.digest ?? f.path, f.size);
    layers.push({ mediaType: f.kind === "gguf" ? MediaTypes.gguf : MediaTypes.mmproj, size: f.size, digest: d });
  }
  const shardPaths = layers.filter((l) => l.mediaType === MediaTypes.gguf).map((l) => store.blobPath(parseDigest(l.digest)));
  const config = await readGgufConfig(shardPaths);
  // Same files → same artifact bytes, so re-pulling yields the same ID.
  const created = new Date(0);
  const { id } = await commitArtifact(store, config, layers, [tag], created, signal);
  reporter.success("Model pulled successfully", id);
  return store.get(id);
}
