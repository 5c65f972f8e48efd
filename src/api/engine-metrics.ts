import type { RunnerStatus } from "../scheduling/index.ts";
import type { EngineRelay } from "./engine/relay.ts";

/**
 * Every running engine's own Prometheus metrics (llama-server's `/metrics`,
 * engines start with `--metrics`), each sample relabelled with `backend`,
 * `model` and `mode`, merged into one exposition as Docker Model Runner's
 * aggregated `/metrics` does (pkg/metrics/aggregated_handler.go): metric names
 * stay as the engine writes them (`llamacpp:prompt_tokens_total`, ...), so a
 * dashboard built for DMR's aggregated llama.cpp metrics works unchanged.
 * An engine that does not answer in time is left out of this scrape.
 */
export async function engineMetrics(runners: readonly RunnerStatus[], relay: EngineRelay, timeoutMs = 5000): Promise<string> {
  const texts = await Promise.all(
    runners
      .filter((r) => r.state === "ready")
      .map(async (r) => {
        const exchange = relay.send(r.socketPath, "GET", "/metrics", null);
        const timer = setTimeout(() => exchange.abort(new Error("the engine's /metrics timed out")), timeoutMs);
        try {
          const head = await exchange.head;
          const text = (await exchange.whole()).toString("utf8");
          return head.status === 200 ? { text, labels: { backend: r.backend, model: r.model, mode: r.mode } } : null;
        } catch {
          return null; // stopping, or too busy to answer: its series are absent from this scrape
        } finally {
          clearTimeout(timer);
        }
      }),
  );
  const merged = new FamilyMerger();
  for (const t of texts) if (t) merged.add(t.text, t.labels);
  return merged.toString();
}

interface Family {
  header: string[];
  samples: string[];
}

/** Prometheus text format: `name{labels} value [timestamp]`, `# HELP name text`, `# TYPE name type`. */
class FamilyMerger {
  /** Family name → its HELP/TYPE lines (from the first engine that had them) and every engine's samples. */
  private readonly families = new Map<string, Family>();

  add(text: string, labels: Record<string, string>): void {
    const extra = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
      .join(",");
    let current: { name: string; family: Family } | null = null;
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      if (line.startsWith("#")) {
        const m = /^#\s+(HELP|TYPE)\s+(\S+)/.exec(line);
        if (!m) continue; // a comment
        current = { name: m[2]!, family: this.family(m[2]!) };
        // Each family's HELP and TYPE once, from the first engine that has them.
        if (!current.family.header.some((h) => h.split(/\s+/, 3)[1] === m[1])) current.family.header.push(line);
        continue;
      }
      const relabelled = withLabels(line, extra);
      if (relabelled === null) continue;
      const name = relabelled.name;
      // Histogram and summary samples (`x_bucket`, `x_sum`, `x_count`) belong to the family announced before them.
      const owner = current && (name === current.name || name.startsWith(`${current.name}_`)) ? current.family : this.family(name);
      owner.samples.push(relabelled.line);
    }
  }

  private family(name: string): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { header: [], samples: [] };
      this.families.set(name, f);
    }
    return f;
  }

  toString(): string {
    const out: string[] = [];
    for (const { header, samples } of this.families.values()) out.push(...header, ...samples);
    return out.length === 0 ? "" : `${out.join("\n")}\n`;
  }
}

/** `line` with `extra` (`k="v",...`) added to its label set, and its metric name; null when it is not a sample. */
export function withLabels(line: string, extra: string): { name: string; line: string } | null {
  const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!m) return null;
  const name = m[0];
  let i = name.length;
  if (line[i] === "{") {
    // Find the closing brace outside quoted label values (which may hold `}` and escaped quotes).
    let j = i + 1;
    let quoted = false;
    for (; j < line.length; j++) {
      const c = line[j];
      if (quoted) {
        if (c === "\\") j++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === "}") break;
    }
    if (j >= line.length) return null;
    const existing = line.slice(i + 1, j).replace(/,\s*$/, "");
    return { name, line: `${name}{${existing === "" ? extra : `${existing},${extra}`}}${line.slice(j + 1)}` };
  }
  if (line[i] !== " " && line[i] !== "\t") return null;
  return { name, line: `${name}{${extra}}${line.slice(i)}` };
}

/** A label value in the text format: backslash, double quote and newline escaped. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
