import type { ChatModelFunctions, GbnfJsonSchema, Llama } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import { checkJsonSchema } from "./grammar/normalize.ts";
import { schemaGbnf } from "./grammar/schema-gbnf.ts";

/**
 * Tool calling. Tools are presented to the model through its chat template
 * (node-llama-cpp's function syntax for that template), and calls are
 * written in that template's own call syntax (`CallSyntax`), e.g. Qwen's
 * `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`.
 *
 * A call is always sampled under a grammar (`callGrammar`): after the call's
 * trigger (the distinctive start of its prefix, e.g. `<tool_call>`) comes
 * one of the declared names, then arguments that match that function's
 * schema, then the suffix, and, when parallel calls are allowed and the
 * template has a syntax for them, more calls. With `tool_choice: "auto"` the
 * model writes free text until it writes the trigger, and generation then
 * goes on under the grammar; a forced call (`"required"` or a named
 * function) is under the grammar from the first token.
 */

/** An OpenAI-style function tool after validation. */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** Already checked with `checkJsonSchema`. */
  parameters: GbnfJsonSchema;
}

export interface ToolPlan {
  /** Functions to present in the prompt; undefined when none are. */
  functions: ChatModelFunctions | undefined;
  /** "none": text only; "auto": the model may call; "forced": the reply is calls. */
  mode: "none" | "auto" | "forced";
  /** The tools the reply may call (for "forced" with a named function, just that one). */
  callable: ToolDefinition[];
  /** More than one call per reply is allowed (`parallel_tool_calls`, default true). */
  parallel: boolean;
}

/** How a template writes calls, as plain text (special tokens by their text). */
export interface CallSyntax {
  /** Text that opens the first call of a reply (section prefix and call prefix), leading whitespace removed. */
  firstPrefix: string;
  /** Text between one call and the next (separator and call prefix); null when the template has one call per turn. */
  nextPrefix: string | null;
  /** The start of `firstPrefix` that, written by the model, begins a call. */
  trigger: string;
  paramsPrefix: (name: string) => string;
  suffix: (name: string) => string;
}

/** Hermes/Qwen's syntax: the fallback for templates whose own syntax cannot be written as text. */
export const HERMES_CALL_SYNTAX: CallSyntax = {
  firstPrefix: '<tool_call>\n{"name": "',
  nextPrefix: '\n<tool_call>\n{"name": "',
  trigger: "<tool_call>",
  paramsPrefix: () => '", "arguments": ',
  suffix: () => "}\n</tool_call>",
};

/**
 * The trigger of a prefix: its first line (e.g. `<tool_call>` of
 * `<tool_call>\n{"name": "`), or the whole prefix without trailing spaces.
 */
export function callTrigger(firstPrefix: string): string {
  const line = firstPrefix.split("\n")[0]!.trimEnd();
  return line !== "" ? line : firstPrefix.trim();
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type ToolInput = { type: "function"; function: { name: string; description?: string | null; parameters?: unknown } };
type ToolChoiceInput = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/**
 * Validates OpenAI `tools` (names, parameter schemas) and turns them into
 * node-llama-cpp function definitions. Throws a 400 naming the bad field
 * (e.g. `tools.1.function.parameters.properties.x.pattern`).
 */
export function checkTools(tools: readonly ToolInput[], param = "tools"): ToolDefinition[] {
  const seen = new Set<string>();
  return tools.map((t, i) => {
    const name = t.function.name;
    if (!NAME.test(name)) {
      throw new InvalidRequestError(
        `${param}[${i}].function.name "${name}" must be 1-64 letters, digits, underscores or dashes`,
        `${param}.${i}.function.name`,
      );
    }
    if (seen.has(name)) throw new InvalidRequestError(`${param}[${i}].function.name "${name}" is defined twice`, `${param}.${i}.function.name`);
    seen.add(name);
    const where = `${param}.${i}.function.parameters`;
    const raw = t.function.parameters ?? { type: "object", properties: {} };
    const parameters = checkJsonSchema(raw, where);
    if ((parameters as { type?: unknown }).type !== "object") {
      throw new InvalidRequestError(`${where} must be a JSON schema of type "object"`, `${where}.type`);
    }
    return { name, ...(t.function.description ? { description: t.function.description } : {}), parameters };
  });
}

/** Decides what the prompt shows and whether a call is forced. Throws a 400 for a choice that names no tool. */
export function planTools(
  tools: readonly ToolDefinition[],
  choice: ToolChoiceInput | null | undefined,
  parallel: boolean | null | undefined = true,
): ToolPlan {
  const mode = choice ?? "auto";
  const isParallel = parallel ?? true;
  if (tools.length === 0) {
    if (mode === "required" || typeof mode === "object") {
      throw new InvalidRequestError("tool_choice requires a tool call but no tools were given", "tool_choice");
    }
    return { functions: undefined, mode: "none", callable: [], parallel: isParallel };
  }
  if (mode === "none") return { functions: undefined, mode: "none", callable: [], parallel: isParallel };
  const functions: Record<string, { description?: string; params: GbnfJsonSchema }> = {};
  for (const t of tools) functions[t.name] = { ...(t.description ? { description: t.description } : {}), params: t.parameters };
  if (mode === "auto") return { functions, mode: "auto", callable: [...tools], parallel: isParallel };
  let callable = [...tools];
  if (typeof mode === "object") {
    callable = tools.filter((t) => t.name === mode.function.name);
    if (callable.length === 0) {
      throw new InvalidRequestError(`tool_choice names "${mode.function.name}", which is not in tools`, "tool_choice.function.name");
    }
  }
  return { functions, mode: "forced", callable, parallel: isParallel };
}

/** A GBNF string literal for `text`. */
function literal(text: string): string {
  if (text === "") return "";
  const escaped = text.replace(/[\\"]/g, "\\$&").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t");
  return `"${escaped}"`;
}

/**
 * Renames every rule of a GBNF grammar with `prefix` (definitions and
 * references; literals, character classes and comments are left alone), so
 * several grammars can live in one file.
 */
export function prefixGbnfRules(gbnf: string, prefix: string): string {
  const defined = new Set<string>();
  for (const m of gbnf.matchAll(/(?:^|\n)[ \t]*([a-zA-Z0-9-]+)[ \t]*::=/g)) defined.add(m[1]!);
  let out = "";
  let i = 0;
  const skipQuoted = (close: string) => {
    const start = i++;
    while (i < gbnf.length && gbnf[i] !== close) i += gbnf[i] === "\\" ? 2 : 1;
    i++;
    out += gbnf.slice(start, i);
  };
  while (i < gbnf.length) {
    const c = gbnf[i]!;
    if (c === '"') skipQuoted('"');
    else if (c === "[") skipQuoted("]");
    else if (c === "<") skipQuoted(">");
    else if (c === "{") skipQuoted("}");
    else if (c === "#") {
      const end = gbnf.indexOf("\n", i);
      const stop = end < 0 ? gbnf.length : end;
      out += gbnf.slice(i, stop);
      i = stop;
    } else if (/[a-zA-Z0-9-]/.test(c)) {
      const start = i;
      while (i < gbnf.length && /[a-zA-Z0-9-]/.test(gbnf[i]!)) i++;
      const word = gbnf.slice(start, i);
      out += defined.has(word) ? `${prefix}${word}` : word;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Padding a JSON grammar may end with (stop-trigger newlines): whitespace-only literals and classes. */
const WHITESPACE_TAIL = /\s*(?:"(?:\\[nrt]| )*"|\[(?:\\[nrt]| )+\])\s*(?:[*?+]|\{\d*,?\d*\})?\s*$/;

/** Drops whitespace padding at the end of rule `name` when its body is one sequence. */
function trimRuleTail(gbnf: string, name: string): string {
  const lines = gbnf.split("\n");
  const at = lines.findIndex((l) => new RegExp(`^\\s*${name}\\s*::=`).test(l));
  if (at < 0) return gbnf;
  let end = at + 1;
  while (end < lines.length && !/^\s*[a-zA-Z0-9-]+\s*::=/.test(lines[end]!)) end++;
  let body = lines.slice(at, end).join(" ");
  const head = body.slice(0, body.indexOf("::=") + 3);
  let rest = body.slice(head.length);
  if (hasTopLevelAlternation(rest)) return gbnf;
  for (let m = WHITESPACE_TAIL.exec(rest); m && m.index > 0; m = WHITESPACE_TAIL.exec(rest)) rest = rest.slice(0, m.index);
  body = `${head}${rest}`;
  return [...lines.slice(0, at), body, ...lines.slice(end)].join("\n");
}

function hasTopLevelAlternation(body: string): boolean {
  let depth = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '"' || c === "[") {
      const close = c === '"' ? '"' : "]";
      i++;
      while (i < body.length && body[i] !== close) i += body[i] === "\\" ? 2 : 1;
    } else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return true;
  }
  return false;
}

/**
 * GBNF for the calls of one reply in `syntax`: a name among `tools`, that
 * tool's arguments (its schema's grammar, rules renamed per tool), the
 * suffix, and, when `parallel` and the template allows it, further calls.
 * With `afterTrigger` the grammar starts after the trigger (auto mode: the
 * model already wrote it); otherwise it starts with the whole prefix.
 */
export async function callGrammar(
  llama: Llama,
  tools: readonly ToolDefinition[],
  syntax: CallSyntax,
  options: { afterTrigger: boolean; parallel: boolean },
): Promise<string> {
  const rules: string[] = [];
  const alternatives: string[] = [];
  for (const [i, tool] of tools.entries()) {
    const schema = trimRuleTail(prefixGbnfRules(await schemaGbnf(llama, tool.parameters), `tc${i}-`), `tc${i}-root`);
    rules.push(schema);
    const parts = [literal(tool.name), literal(syntax.paramsPrefix(tool.name)), `tc${i}-root`, literal(syntax.suffix(tool.name))];
    rules.push(`tc-fn-${i} ::= ${parts.filter((p) => p !== "").join(" ")}`);
    alternatives.push(`tc-fn-${i}`);
  }
  const head = options.afterTrigger ? syntax.firstPrefix.slice(syntax.trigger.length) : syntax.firstPrefix;
  const first = [literal(head), "tc-call"].filter((p) => p !== "").join(" ");
  const more = options.parallel && syntax.nextPrefix !== null ? ` (${[literal(syntax.nextPrefix), "tc-call"].filter((p) => p !== "").join(" ")})*` : "";
  return [`root ::= ${first}${more}`, `tc-call ::= ${alternatives.join(" | ")}`, ...rules].join("\n");
}

/** One call as OpenAI returns it. */
export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** An OpenAI `delta.tool_calls` element. */
export type ToolCallDelta =
  | { index: number; id: string; type: "function"; function: { name: string; arguments: string } }
  | { index: number; function: { arguments: string } };

type ParserState =
  | { kind: "literal"; rest: string; then: "name" }
  | { kind: "name" }
  | { kind: "args"; depth: number; inString: boolean; escaped: boolean }
  | { kind: "suffix"; rest: string }
  | { kind: "between" }
  | { kind: "done" };

/**
 * Reads the text generated under `callGrammar` as it streams and turns it
 * into OpenAI tool calls: a first delta per call with its id and name once
 * the name is complete, then the arguments text as it grows. The grammar
 * guarantees the shape; whitespace the argument grammar may leave after a
 * JSON value is skipped.
 */
export class ToolCallParser {
  private buffer = "";
  private state: ParserState;
  private current: ToolCallOut | null = null;
  readonly calls: ToolCallOut[] = [];

  constructor(
    private readonly syntax: CallSyntax,
    private readonly names: readonly string[],
    private readonly newId: () => string,
    options: { afterTrigger: boolean; parallel: boolean },
  ) {
    const head = options.afterTrigger ? syntax.firstPrefix.slice(syntax.trigger.length) : syntax.firstPrefix;
    this.state = { kind: "literal", rest: head, then: "name" };
    this.parallel = options.parallel && syntax.nextPrefix !== null;
  }

  private readonly parallel: boolean;

  /** True once no further call text can follow (the one allowed call is complete). */
  get isDone(): boolean {
    return this.state.kind === "done";
  }

  /** Feeds call text; returns the deltas it completes. */
  push(text: string): ToolCallDelta[] {
    this.buffer += text;
    const out: ToolCallDelta[] = [];
    for (;;) {
      const s = this.state;
      if (s.kind === "literal" || s.kind === "suffix") {
        // Whitespace a JSON grammar leaves after the value is not part of the suffix.
        if (s.kind === "suffix") {
          while (this.buffer !== "" && /\s/.test(this.buffer[0]!) && !s.rest.startsWith(this.buffer[0]!)) this.buffer = this.buffer.slice(1);
        }
        const n = Math.min(this.buffer.length, s.rest.length);
        s.rest = s.rest.slice(n);
        this.buffer = this.buffer.slice(n);
        if (s.rest !== "") return out;
        if (s.kind === "literal") this.state = { kind: "name" };
        else {
          this.calls.push(this.current!);
          this.current = null;
          this.state = this.parallel ? { kind: "between" } : { kind: "done" };
        }
      } else if (s.kind === "name") {
        let match: string | null = null;
        for (const name of this.names) {
          const head = name + this.syntax.paramsPrefix(name);
          if (this.buffer.length > head.length && this.buffer.startsWith(head) && (match === null || name.length > match.length)) match = name;
        }
        if (match === null) return out;
        this.buffer = this.buffer.slice(match.length + this.syntax.paramsPrefix(match).length);
        this.current = { id: this.newId(), type: "function", function: { name: match, arguments: "" } };
        out.push({ index: this.calls.length, id: this.current.id, type: "function", function: { name: match, arguments: "" } });
        this.state = { kind: "args", depth: 0, inString: false, escaped: false };
      } else if (s.kind === "args") {
        let i = 0;
        let complete = false;
        for (; i < this.buffer.length && !complete; i++) {
          const c = this.buffer[i]!;
          if (s.inString) {
            if (s.escaped) s.escaped = false;
            else if (c === "\\") s.escaped = true;
            else if (c === '"') s.inString = false;
          } else if (c === '"') s.inString = true;
          else if (c === "{" || c === "[") s.depth++;
          else if (c === "}" || c === "]") complete = --s.depth === 0;
        }
        const piece = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i);
        const call = this.current!;
        // Leading whitespace before the value is not part of the arguments.
        const kept = call.function.arguments === "" ? piece.trimStart() : piece;
        if (kept !== "") {
          call.function.arguments += kept;
          out.push({ index: this.calls.length, function: { arguments: kept } });
        }
        if (!complete) return out;
        this.state = { kind: "suffix", rest: this.syntax.suffix(call.function.name) };
      } else if (s.kind === "between") {
        if (this.buffer === "") return out;
        this.state = { kind: "literal", rest: this.syntax.nextPrefix!, then: "name" };
      } else return out;
    }
  }
}
