import { parseArgs } from "node:util";
import { editDistance } from "../engine/options.ts";
import { UsageError } from "./errors.ts";

/** One flag of a command, in node:util parseArgs' terms plus the text for --help and completion. */
export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** Shown in --help; the flag is hidden when absent. */
  description?: string;
  /** Value name in --help, e.g. FILE. */
  valueName?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
  /** Everything after a bare `--` (runtime flags for `mr configure`). */
  rest: string[];
}

/** Flags every command accepts. */
export const GLOBAL_FLAGS: FlagSpecs = {
  help: { type: "boolean", short: "h", description: "show this help" },
  debug: { type: "boolean", description: "print more detail on errors" },
};

/**
 * Parses `argv` against `flags` (plus the global ones). Unknown flags become
 * a UsageError that suggests the closest known flag. This is the one place
 * that knows the parser, so a library such as `commander` could replace it.
 */
export function parseCommandArgs(command: string, flags: FlagSpecs, argv: readonly string[]): ParsedArgs {
  const dashDash = argv.indexOf("--");
  const head = dashDash === -1 ? [...argv] : argv.slice(0, dashDash);
  const rest = dashDash === -1 ? [] : argv.slice(dashDash + 1);
  const all: FlagSpecs = { ...GLOBAL_FLAGS, ...flags };
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, f] of Object.entries(all)) {
    options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: head, options, strict: true, allowPositionals: true });
    return { values: values as ParsedArgs["values"], positionals, rest };
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(message);
    if (unknown) {
      const flag = unknown[1]!;
      const hint = suggest(flag.replace(/^-+/, ""), Object.keys(all));
      throw new UsageError(`unknown flag ${flag}${hint ? `; did you mean --${hint}?` : ""}`, command);
    }
    const missing = /Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(message);
    if (missing) throw new UsageError(`flag ${missing[1]} needs a value`, command);
    const ambiguous = /Option '(?:-\w, )?(--[\w-]+)[^']*' argument is ambiguous/.exec(message);
    if (ambiguous) throw new UsageError(`flag ${ambiguous[1]} needs a value; one that starts with a dash goes as ${ambiguous[1]}=-VALUE`, command);
    // parseArgs' other messages ("does not take an argument") are already one readable line.
    throw new UsageError(message.split("\n")[0]!.replace(/\. To specify.*$/, ""), command);
  }
}

/** The closest candidate within a small edit distance, or null. */
export function suggest(input: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(input, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(input.length / 3)) ? best : null;
}

/** Renders the flag list for --help. */
export function describeFlags(flags: FlagSpecs): string {
  const rows = Object.entries({ ...flags, ...GLOBAL_FLAGS })
    .filter(([, f]) => f.description)
    .map(([name, f]) => {
      const left = `${f.short ? `-${f.short}, ` : "    "}--${name}${f.type === "string" ? ` ${f.valueName ?? "VALUE"}` : ""}`;
      return [left, f.description!] as const;
    });
  const width = Math.max(...rows.map(([l]) => l.length));
  return rows.map(([l, d]) => `  ${l.padEnd(width)}  ${d}`).join("\n");
}

/** The flags of `names` that were given, as `--a, --b` (for an error naming them); "" when none was. */
export function givenFlags(values: Record<string, unknown>, names: readonly string[]): string {
  return names
    .filter((n) => values[n] !== undefined)
    .map((n) => `--${n}`)
    .join(", ");
}

/** A string flag parsed as a non-negative integer. */
export function intFlag(command: string, name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got "${text}"`, command);
  return Number(text);
}
