import type { Command } from "./context.ts";
import { intFlag } from "./args.ts";
import { CliError, UsageError } from "./errors.ts";
import { json, table } from "./output.ts";

/** One `mr search --json` entry (docs/cli.md). `name` is what `mr pull` takes. */
export interface SearchResult {
  name: string;
  description: string;
  source: "dockerhub" | "huggingface";
  downloads: number;
  stars: number;
  updated: string | null;
}

const SOURCES = ["all", "dockerhub", "huggingface"] as const;

interface HubRepo {
  name: string;
  namespace?: string;
  description?: string | null;
  pull_count?: number;
  star_count?: number;
  last_updated?: string | null;
}

/**
 * Docker Hub keeps the curated models in the `ai/` namespace, which is small,
 * so we list it (`/v2/repositories/ai/`) and filter by name and description.
 */
export async function searchDockerHub(hubUrl: string, term: string, limit: number, signal?: AbortSignal): Promise<SearchResult[]> {
  const needle = term.toLowerCase();
  const found: SearchResult[] = [];
  let url: string | null = `${hubUrl}/v2/repositories/ai/?page_size=100`;
  // All pages (the namespace is small), so "most pulled" is right whatever order the Hub pages in.
  for (let page = 0; url && page < 10; page++) {
    const body: { results?: HubRepo[]; next?: string | null } = await getJson(url, "Docker Hub", {}, signal);
    for (const r of body.results ?? []) {
      if (needle && !`${r.name} ${r.description ?? ""}`.toLowerCase().includes(needle)) continue;
      found.push({
        name: `ai/${r.name}`,
        description: r.description ?? "",
        source: "dockerhub",
        downloads: r.pull_count ?? 0,
        stars: r.star_count ?? 0,
        updated: r.last_updated ?? null,
      });
    }
    url = body.next ?? null;
  }
  return found.sort((a, b) => b.downloads - a.downloads).slice(0, limit);
}

/** Hugging Face's model search, restricted to repos with GGUF files, most downloaded first. */
export async function searchHuggingFace(
  hfEndpoint: string,
  term: string,
  limit: number,
  token: string | null,
  signal?: AbortSignal,
): Promise<SearchResult[]> {
  const url = new URL(`${hfEndpoint}/api/models`);
  if (term) url.searchParams.set("search", term);
  url.searchParams.set("filter", "gguf");
  url.searchParams.set("sort", "downloads");
  url.searchParams.set("direction", "-1");
  url.searchParams.set("limit", String(limit));
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const body: Array<{ id: string; downloads?: number; likes?: number; lastModified?: string; pipeline_tag?: string }> = await getJson(
    url.href,
    "Hugging Face",
    headers,
    signal,
  );
  return body.slice(0, limit).map((m) => ({
    name: `hf.co/${m.id}`,
    description: m.pipeline_tag ?? "",
    source: "huggingface",
    downloads: m.downloads ?? 0,
    stars: m.likes ?? 0,
    updated: m.lastModified ?? null,
  }));
}

async function getJson<T>(url: string, what: string, headers: Record<string, string>, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: "application/json", ...headers }, signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(30_000)]) : AbortSignal.timeout(30_000) });
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw new CliError(`cannot reach ${what} (${new URL(url).origin}): ${(error as Error).message}`, { cause: error });
  }
  if (!res.ok) throw new CliError(`${what} search failed: ${res.status} ${res.statusText}`);
  return (await res.json()) as T;
}

const compact = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n));

export const searchCommand: Command = {
  name: "search",
  summary: "Search Docker Hub's ai/ models and Hugging Face GGUF repositories",
  usage: "mr search [OPTIONS] [TERM]",
  examples: ["mr search llama", "mr search --source huggingface -n 5 qwen", "mr search --json smollm"],
  flags: {
    source: { type: "string", valueName: "SOURCE", description: `where to search: ${SOURCES.join(", ")} (default all)` },
    limit: { type: "string", short: "n", valueName: "N", description: "results per source (default 25)" },
    json: { type: "boolean", description: "print [{name, description, source, downloads, stars, updated}]" },
  },
  async run(cli, { values, positionals }) {
    const source = (values.source as string | undefined) ?? "all";
    if (!(SOURCES as readonly string[]).includes(source)) throw new UsageError(`--source must be one of ${SOURCES.join(", ")}, got "${source}"`, "search");
    const limit = intFlag("search", "limit", values.limit) ?? 25;
    if (limit < 1) throw new UsageError("--limit must be at least 1", "search");
    const term = positionals.join(" ");
    const jobs: Promise<SearchResult[]>[] = [];
    if (source !== "huggingface") jobs.push(searchDockerHub(cli.config.hubUrl, term, limit, cli.signal));
    if (source !== "dockerhub") jobs.push(searchHuggingFace(cli.config.hfEndpoint, term, limit, cli.config.hfToken, cli.signal));
    const settled = await Promise.allSettled(jobs);
    const results: SearchResult[] = [];
    const failures: string[] = [];
    for (const s of settled) {
      if (s.status === "fulfilled") results.push(...s.value);
      else failures.push((s.reason as Error).message);
    }
    if (cli.signal.aborted) throw cli.signal.reason;
    if (failures.length === settled.length) throw new CliError(failures.join("; "));
    for (const f of failures) cli.note(`Warning: ${f}`);
    if (values.json) {
      cli.io.stdout.write(json(results));
      return 0;
    }
    if (results.length === 0) {
      cli.io.stdout.write(`No models found${term ? ` for "${term}"` : ""}.\n`);
      return 0;
    }
    const short = (s: string) => (s.length > 50 ? `${s.slice(0, 47)}...` : s);
    cli.io.stdout.write(
      table(
        ["NAME", "DESCRIPTION", "SOURCE", "DOWNLOADS", "STARS"],
        results.map((r) => [r.name, short(r.description.replace(/\s+/g, " ")), r.source === "dockerhub" ? "Docker Hub" : "Hugging Face", compact(r.downloads), compact(r.stars)]),
      ),
    );
    return 0;
  },
};
