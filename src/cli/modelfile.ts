/**
 * Ollama's Modelfile (docs/modelfile.mdx): one instruction per line,
 * `INSTRUCTION arguments`, `#` comments, values bare, "quoted" or
 * """triple-quoted""" (which may span lines). What `mr create -f` reads.
 */
import { UsageError } from "./errors.ts";

/** A parsed Modelfile, in `/api/create`'s terms (parameter values as written; the daemon checks them). */
export interface Modelfile {
  from: string;
  /** The line FROM is on (for errors about it). */
  fromLine: number;
  system?: string;
  template?: string;
  licenses: string[];
  /** `PARAMETER name value`; `stop` may repeat and collects into a list. */
  parameters: Record<string, string | string[]>;
  messages: Array<{ role: string; content: string }>;
}

/** A Modelfile that cannot be read as one: the message names the line. */
export class ModelfileError extends UsageError {
  constructor(path: string, line: number, message: string) {
    super(`${path}:${line}: ${message}`);
  }
}

const INSTRUCTIONS = ["FROM", "PARAMETER", "SYSTEM", "TEMPLATE", "LICENSE", "MESSAGE", "ADAPTER"] as const;

/** Reads a quoted value at `text[at]` (`"`, or `"""`), or a bare one to the end of the line; returns it and where it ended. */
function readValue(text: string, at: number, path: string, line: () => number): { value: string; end: number } {
  if (text.startsWith('"""', at)) {
    const close = text.indexOf('"""', at + 3);
    if (close < 0) throw new ModelfileError(path, line(), 'a """ value is never closed');
    return { value: text.slice(at + 3, close), end: close + 3 };
  }
  if (text[at] === '"') {
    let value = "";
    let i = at + 1;
    for (; i < text.length && text[i] !== '"'; i++) {
      if (text[i] === "\n") throw new ModelfileError(path, line(), "a quoted value is never closed on its line (use \"\"\" for several lines)");
      if (text[i] === "\\" && i + 1 < text.length) {
        const next = text[++i]!;
        value += next === "n" ? "\n" : next === "t" ? "\t" : next;
      } else value += text[i];
    }
    if (i >= text.length) throw new ModelfileError(path, line(), "a quoted value is never closed");
    return { value, end: i + 1 };
  }
  let end = text.indexOf("\n", at);
  if (end < 0) end = text.length;
  return { value: text.slice(at, end).trim(), end };
}

/**
 * Parses `text` (read from `path`, named in errors). Throws ModelfileError
 * (exit 2) for an unknown instruction (with its line number), ADAPTER (LoRA
 * adapters are not supported by this engine), a missing FROM, or a value
 * that is never closed.
 */
export function parseModelfile(text: string, path: string): Modelfile {
  const out: Omit<Modelfile, "from" | "fromLine"> & { from?: string; fromLine?: number } = { licenses: [], parameters: {}, messages: [] };
  let at = 0;
  const lineAt = (i: number) => text.slice(0, i).split("\n").length;
  while (at < text.length) {
    // Skip blank space and comment lines.
    const rest = text.slice(at);
    const blank = /^[ \t\r\n]+/.exec(rest);
    if (blank) {
      at += blank[0].length;
      continue;
    }
    if (rest.startsWith("#")) {
      const nl = text.indexOf("\n", at);
      at = nl < 0 ? text.length : nl + 1;
      continue;
    }
    const line = lineAt(at);
    const word = /^(\S+)[ \t]*/.exec(rest)!;
    const instruction = word[1]!.toUpperCase();
    at += word[0].length;
    if (!(INSTRUCTIONS as readonly string[]).includes(instruction)) {
      throw new ModelfileError(path, line, `unknown instruction "${word[1]}" (known: ${INSTRUCTIONS.join(", ")})`);
    }
    if (instruction === "ADAPTER") throw new ModelfileError(path, line, "ADAPTER (a LoRA adapter) is not supported by this engine yet");
    // PARAMETER and MESSAGE take a bare first word, then a value.
    let key: string | null = null;
    if (instruction === "PARAMETER" || instruction === "MESSAGE") {
      const k = /^([^\s"]+)[ \t]*/.exec(text.slice(at));
      if (!k || text[at] === "\n") throw new ModelfileError(path, line, `${instruction} needs ${instruction === "PARAMETER" ? "a name and a value" : "a role and a message"}`);
      key = k[1]!;
      at += k[0].length;
    }
    const { value, end } = readValue(text, at, path, () => line);
    at = end;
    const trailing = /^[ \t\r]*(\n|$)/.exec(text.slice(at));
    if (!trailing) throw new ModelfileError(path, lineAt(at), "unexpected text after the value");
    at += trailing[0].length;
    if (value === "" && instruction !== "SYSTEM" && instruction !== "MESSAGE") throw new ModelfileError(path, line, `${instruction} needs a value`);
    switch (instruction) {
      case "FROM":
        if (out.from !== undefined) throw new ModelfileError(path, line, "FROM is given twice");
        out.from = value;
        out.fromLine = line;
        break;
      case "SYSTEM":
        out.system = value;
        break;
      case "TEMPLATE":
        out.template = value;
        break;
      case "LICENSE":
        out.licenses.push(value);
        break;
      case "PARAMETER": {
        const name = key!.toLowerCase();
        if (name === "stop") out.parameters.stop = [...((out.parameters.stop as string[] | undefined) ?? []), value];
        else out.parameters[name] = value;
        break;
      }
      case "MESSAGE": {
        const role = key!.toLowerCase();
        if (role !== "system" && role !== "user" && role !== "assistant") {
          throw new ModelfileError(path, line, `MESSAGE role must be system, user or assistant, got "${key}"`);
        }
        out.messages.push({ role, content: value });
        break;
      }
    }
  }
  if (out.from === undefined) throw new ModelfileError(path, 1, "no FROM instruction (the model or GGUF file to start from)");
  return out as Modelfile;
}
