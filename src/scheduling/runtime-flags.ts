import { InvalidRequestError } from "../errors.ts";
import { EngineUsageError, findFlag, flagNames, parseEngineArgs, parseFlagValue, type FlagDef } from "../engine/options.ts";
import { RuntimeFlagError } from "./errors.ts";

/**
 * Engine settings taken from runtime flags. Context size and parallel slots
 * are lifted out of the flag list because the scheduler needs them for its
 * memory estimate and passes them itself; the rest are passed through.
 */
export interface ParsedRuntimeFlags {
  contextSize?: number | undefined;
  parallel?: number | undefined;
  /** Remaining flags, normalized to canonical `--flag value` pairs (a switch alone). */
  passThrough: string[];
}

/**
 * The llama.cpp flags users may set: the built-in engine's flag table
 * (src/engine/options.ts FLAGS) minus what the runner sets itself and what
 * names a file. Values are checked by the engine's own parser, so a flag the
 * engine would refuse to start with is a 400 here instead, with the same
 * reason. This is the allowlist Docker Model Runner calls
 * `LlamaCppAllowedFlags`, derived rather than listed twice.
 */
function llamaCppFlag(name: string): FlagDef | null {
  const found = findFlag(name);
  return found && found.def.runtime ? found.def : null;
}

/** Flags the runner owns: setting them would point the engine elsewhere. */
function isManaged(name: string): boolean {
  const found = findFlag(name);
  return found !== undefined && !found.def.runtime;
}

/** Allowlists per backend name; a backend without one accepts no flags at all. */
const ALLOWLISTS: Record<string, { find: (name: string) => FlagDef | null; names: () => string[] }> = {
  "llama.cpp": { find: llamaCppFlag, names: () => flagNames().filter((n) => llamaCppFlag(n) !== null) },
};

/** The canonical spelling a flag is stored under: its first `--` name (or negation). */
function canonical(def: FlagDef, negated: boolean): string {
  const names = negated ? (def.negations ?? []) : def.names;
  return names.find((n) => n.startsWith("--")) ?? names[0]!;
}

/**
 * Splits a command-line string shell-style: whitespace separates words,
 * single quotes are literal, double quotes allow `\"` and `\\`, a backslash
 * outside quotes escapes the next character. Throws InvalidRequestError on
 * an unterminated quote. No expansion of any kind happens.
 */
export function shellSplit(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (ch === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new InvalidRequestError("raw-runtime-flags has an unterminated single quote", "raw-runtime-flags");
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (ch === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && (text[j + 1] === '"' || text[j + 1] === "\\")) j++;
        word += text[j];
      }
      if (j >= text.length) throw new InvalidRequestError("raw-runtime-flags has an unterminated double quote", "raw-runtime-flags");
      inWord = true;
      i = j;
    } else if (ch === "\\" && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * Checks runtime flags against the backend's allowlist and normalizes them.
 * Errors name the offending flag: unknown flags, flags the runner manages
 * (`--host`, `--port`, `-m`), anything containing a path separator, missing
 * or non-numeric values.
 */
export function validateRuntimeFlags(backend: string, flags: readonly string[]): ParsedRuntimeFlags {
  const allowlist = ALLOWLISTS[backend];
  const result: ParsedRuntimeFlags = { passThrough: [] };
  /** Normalized occurrences; a later one of the same flag replaces the earlier, as with the engine's parser. */
  const entries: { def: FlagDef; words: string[] }[] = [];
  for (let i = 0; i < flags.length; i++) {
    const raw = flags[i]!;
    const eq = raw.startsWith("-") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    if (/[/\\]/.test(raw)) {
      throw new RuntimeFlagError(`Runtime flag "${flag}" is not allowed: flags may not contain paths.`, flag);
    }
    if (!flag.startsWith("-")) {
      throw new RuntimeFlagError(`Unexpected value "${raw}" in runtime flags: values must follow their flag.`, raw);
    }
    if (isManaged(flag)) {
      throw new RuntimeFlagError(`Runtime flag "${flag}" is not allowed: the model runner sets it itself.`, flag);
    }
    const def = allowlist?.find(flag) ?? null;
    if (!def) {
      const names = allowlist?.names() ?? [];
      throw new RuntimeFlagError(
        `Runtime flag "${flag}" is not allowed for backend "${backend}".${names.length > 0 ? ` Allowed: ${names.join(", ")}.` : ""}`,
        flag,
      );
    }
    const negated = findFlag(flag)!.negated;
    let words: string[];
    if (def.value === null) {
      if (eq > 0) throw new RuntimeFlagError(`Runtime flag "${flag}" takes no value.`, flag);
      words = [canonical(def, negated)];
    } else {
      const value = eq > 0 ? raw.slice(eq + 1) : flags[++i];
      if (value === undefined || value === "") throw new RuntimeFlagError(`Runtime flag "${flag}" needs a value.`, flag);
      if (/[/\\]/.test(value)) {
        throw new RuntimeFlagError(`Runtime flag "${flag}" is not allowed: flags may not contain paths.`, flag);
      }
      try {
        parseFlagValue(flag, def.value, value);
      } catch (error) {
        if (error instanceof EngineUsageError) throw new RuntimeFlagError(inFlagWords(flag, error.message), flag);
        throw error;
      }
      words = [canonical(def, false), value];
    }
    if (def.names.includes("--ctx-size")) result.contextSize = Number(words[1]);
    else if (def.names.includes("--parallel")) result.parallel = Number(words[1]);
    else {
      const at = def.repeatable ? -1 : entries.findIndex((e) => e.def === def);
      if (at >= 0) entries.splice(at, 1);
      entries.push({ def, words });
    }
  }
  result.passThrough = entries.flatMap((e) => e.words);
  // What the engine refuses to start with (a refused flag, -ub against -b, ...) is refused here, in its words.
  try {
    parseEngineArgs(["-m", "model.gguf", ...result.passThrough]);
  } catch (error) {
    if (error instanceof EngineUsageError) {
      const flag = /^(-[\w-]+)/.exec(error.message)?.[1] ?? "runtime-flags";
      throw new RuntimeFlagError(inFlagWords(flag, error.message), flag);
    }
    throw error;
  }
  return result;
}

/** The engine parser's message about `flag`, as a runtime-flag error. */
function inFlagWords(flag: string, message: string): string {
  return message.startsWith(flag) ? `Runtime flag "${flag}"${message.slice(flag.length)}.` : `Runtime flag "${flag}": ${message}.`;
}

/**
 * Runtime flags with `--reasoning-budget` set to `budget` (DMR's
 * `_configure` `llamacpp.reasoning-budget`); unchanged when it is undefined.
 */
export function withReasoningBudget(flags: readonly string[], budget: number | undefined): string[] {
  if (budget === undefined) return [...flags];
  const out: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] === "--reasoning-budget") i++;
    else out.push(flags[i]!);
  }
  return [...out, "--reasoning-budget", String(budget)];
}
