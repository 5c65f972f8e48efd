import { InvalidRequestError } from "../errors.ts";
import { RuntimeFlagError } from "./errors.ts";

/**
 * Engine settings taken from runtime flags. Context size and parallel slots
 * are lifted out of the flag list because the scheduler needs them for its
 * memory estimate and passes them itself; the rest are passed through.
 */
export interface ParsedRuntimeFlags {
  contextSize?: number | undefined;
  parallel?: number | undefined;
  /** Remaining flags, normalized to `--flag value` pairs. */
  passThrough: string[];
}

type FlagKind = "int" | "gpu-layers";
interface AllowedFlag {
  canonical: string;
  kind: FlagKind;
  min: number;
  target?: "contextSize" | "parallel";
}

/**
 * The llama.cpp flags users may set, modelled on Docker Model Runner's
 * `LlamaCppAllowedFlags` but restricted to what our built-in engine accepts
 * (src/engine/options.ts): anything else would make the engine refuse to
 * start, which is worse than a clear 400 here.
 */
const LLAMACPP_ALLOWED: Record<string, AllowedFlag> = {
  "-c": { canonical: "--ctx-size", kind: "int", min: 0, target: "contextSize" },
  "--ctx-size": { canonical: "--ctx-size", kind: "int", min: 0, target: "contextSize" },
  "-np": { canonical: "--parallel", kind: "int", min: 1, target: "parallel" },
  "--parallel": { canonical: "--parallel", kind: "int", min: 1, target: "parallel" },
  "-t": { canonical: "--threads", kind: "int", min: -1 },
  "--threads": { canonical: "--threads", kind: "int", min: -1 },
  "-ngl": { canonical: "--gpu-layers", kind: "gpu-layers", min: 0 },
  "--gpu-layers": { canonical: "--gpu-layers", kind: "gpu-layers", min: 0 },
  "--n-gpu-layers": { canonical: "--gpu-layers", kind: "gpu-layers", min: 0 },
  "-b": { canonical: "--batch-size", kind: "int", min: 1 },
  "--batch-size": { canonical: "--batch-size", kind: "int", min: 1 },
};

/** Flags the runner owns: setting them would point the engine elsewhere. */
const MANAGED = new Set(["-m", "--model", "--host", "--port", "-a", "--alias", "--embedding", "--embeddings", "--api-key", "--chat-template-file"]);

/** Allowlists per backend name; a backend without one accepts no flags at all. */
const ALLOWLISTS: Record<string, Record<string, AllowedFlag>> = { "llama.cpp": LLAMACPP_ALLOWED };

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
  const allowed = ALLOWLISTS[backend] ?? {};
  const result: ParsedRuntimeFlags = { passThrough: [] };
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
    if (MANAGED.has(flag)) {
      throw new RuntimeFlagError(`Runtime flag "${flag}" is not allowed: the model runner sets it itself.`, flag);
    }
    const spec = allowed[flag];
    if (!spec) {
      const names = Object.keys(allowed);
      throw new RuntimeFlagError(
        `Runtime flag "${flag}" is not allowed for backend "${backend}".${names.length > 0 ? ` Allowed: ${names.join(", ")}.` : ""}`,
        flag,
      );
    }
    const value = eq > 0 ? raw.slice(eq + 1) : flags[++i];
    if (value === undefined || value === "") throw new RuntimeFlagError(`Runtime flag "${flag}" needs a value.`, flag);
    if (/[/\\]/.test(value)) {
      throw new RuntimeFlagError(`Runtime flag "${flag}" is not allowed: flags may not contain paths.`, flag);
    }
    const isKeyword = spec.kind === "gpu-layers" && (value === "auto" || value === "all");
    if (!isKeyword && (!/^-?\d+$/.test(value) || Number(value) < spec.min)) {
      throw new RuntimeFlagError(
        `Runtime flag "${flag}" needs an integer of at least ${spec.min}${spec.kind === "gpu-layers" ? ', "auto" or "all"' : ""}, got "${value}".`,
        flag,
      );
    }
    if (spec.target) result[spec.target] = Number(value);
    else {
      // A later occurrence wins, as with the engine's own parser.
      const at = result.passThrough.indexOf(spec.canonical);
      if (at >= 0) result.passThrough.splice(at, 2);
      result.passThrough.push(spec.canonical, value);
    }
  }
  return result;
}
