import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { ndjson, type DaemonClient } from "./client.ts";
import type { Cli } from "./context.ts";
import { CliError, DaemonError, isAbort } from "./errors.ts";
import { includeFiles } from "./prompt-files.ts";
import { imagesInPrompt } from "./prompt-images.ts";
import { answerWrapper, type WordWrapper } from "./word-wrap.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  /** Images (base64) sent with a user message: files the prompt named (prompt-images.ts). */
  images?: string[];
}

/** What `mr run` asks of every answer (its flags; `/set` changes some in a chat). */
export interface ChatOptions {
  /** Ollama's `keep_alive` ("10m", "0", "-1"). */
  keepAlive?: string;
  /** Ollama's `think`: true, false, "low", "medium" or "high". */
  think?: boolean | "low" | "medium" | "high";
  /** Ollama's `format`: "json". */
  format?: "json";
  /** Ollama's `options` (`/set parameter`): they go over the model's preset for this session. */
  parameters?: Record<string, number | string[]>;
}

/** Ollama's measured statistics of the final chunk (nanoseconds), for `--verbose`. */
export interface ChatStats {
  total_duration?: number;
  load_duration?: number;
  prompt_eval_count?: number;
  prompt_eval_duration?: number;
  eval_count?: number;
  eval_duration?: number;
}

interface ChatChunk extends ChatStats {
  message?: { content?: string; thinking?: string };
  done?: boolean;
  error?: string;
}

/**
 * Streams one chat answer through Ollama's `/api/chat` (it carries
 * keep_alive, think and format, and ends with the timings `--verbose`
 * prints), writing text to `write` as it arrives. Aborting `signal` ends the
 * stream early and resolves with what arrived (the caller decides whether
 * that is an error).
 */
export async function streamChat(
  client: DaemonClient,
  model: string,
  messages: readonly ChatMessage[],
  signal: AbortSignal,
  write: (text: string, kind: "content" | "reasoning") => void,
  options: ChatOptions = {},
): Promise<{ text: string; isAborted: boolean; stats: ChatStats | null }> {
  let text = "";
  try {
    const res = await client.request("POST", "/api/chat", {
      json: {
        model,
        messages,
        stream: true,
        ...(options.keepAlive !== undefined ? { keep_alive: options.keepAlive } : {}),
        ...(options.think !== undefined ? { think: options.think } : {}),
        ...(options.format !== undefined ? { format: options.format } : {}),
        ...(options.parameters && Object.keys(options.parameters).length > 0 ? { options: options.parameters } : {}),
      },
      signal,
    });
    let stats: ChatStats | null = null;
    for await (const chunk of ndjson<ChatChunk>(res)) {
      // Once the answer has begun, a failure arrives as a final {"error": ...} line.
      if (typeof chunk.error === "string") throw new DaemonError(chunk.error, 500);
      if (chunk.message?.thinking) write(chunk.message.thinking, "reasoning");
      if (chunk.message?.content) {
        text += chunk.message.content;
        write(chunk.message.content, "content");
      }
      if (chunk.done) stats = chunk;
    }
    return { text, isAborted: false, stats };
  } catch (error) {
    if (signal.aborted || isAbort(error)) return { text, isAborted: true, stats: null };
    throw error;
  }
}

/** `ollama run --verbose`'s lines. */
export function formatStats(s: ChatStats): string {
  const sec = (ns: number | undefined) => `${((ns ?? 0) / 1e9).toFixed(3)}s`;
  const rate = (n: number | undefined, ns: number | undefined) => (n && ns ? `${(n / (ns / 1e9)).toFixed(2)} tokens/s` : "-");
  const rows: [string, string][] = [
    ["total duration", sec(s.total_duration)],
    ["load duration", sec(s.load_duration)],
    ["prompt eval count", `${s.prompt_eval_count ?? 0} token(s)`],
    ["prompt eval duration", sec(s.prompt_eval_duration)],
    ["prompt eval rate", rate(s.prompt_eval_count, s.prompt_eval_duration)],
    ["eval count", `${s.eval_count ?? 0} token(s)`],
    ["eval duration", sec(s.eval_duration)],
    ["eval rate", rate(s.eval_count, s.eval_duration)],
  ];
  return rows.map(([k, v]) => `${`${k}:`.padEnd(22)}${v}\n`).join("");
}

/** The engine's answer when the conversation no longer fits the model's context. */
export const isContextOverflow = (error: unknown) =>
  error instanceof DaemonError && /exceeds the available context size|exceed_context_size/.test(`${error.message} ${error.code ?? ""}`);

/**
 * Drops the oldest turn (a user message and the answers after it) to make
 * room, never the system prompt nor the newest message. False when nothing
 * is left to drop.
 */
export function dropOldestTurn(messages: ChatMessage[]): boolean {
  const first = messages.findIndex((m) => m.role !== "system");
  if (first === -1) return false;
  let end = first + 1;
  while (end < messages.length && messages[end]!.role !== "user") end++;
  if (end >= messages.length) return false; // that turn is the newest message itself
  messages.splice(first, end - first);
  return true;
}

const HELP = `Available commands:
  /set system TEXT   set the system message (kept when old turns are dropped)
  /set parameter NAME VALUE   set a parameter for this session (temperature, top_k,
                     top_p, min_p, num_predict, repeat_penalty, repeat_last_n, seed,
                     stop, num_ctx); /set parameter NAME alone removes it
  /set verbose       show timings after each answer (/set quiet: stop)
  /set wordwrap      wrap answers at words on a terminal (/set nowordwrap: do not)
  /set think         let a thinking model think (/set nothink: answer at once)
  /show info         the model's details (also: license, template, parameters, system, modelfile)
  /save NAME         save the system message, parameters and conversation as a new model NAME
  /load NAME         switch to model NAME (a new conversation)
  /clear             forget the conversation so far (the system message stays)
  /bye               leave (Ctrl-D does the same)
  /?, /help          this help

Use """ to begin and end a multi-line message.
Ctrl-C stops the current answer; at an empty prompt it only reminds you how to leave.
`;

/**
 * A line source over readline that works for terminals and pipes alike:
 * `next()` resolves with the next line, or null once input ends (Ctrl-D).
 * Input keeps flowing while an answer streams, so Ctrl-C reaches us then too.
 */
class LineQueue {
  private readonly lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private isClosed = false;

  constructor(rl: Interface) {
    rl.on("line", (line) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(line);
      } else this.lines.push(line);
    });
    rl.on("close", () => {
      this.isClosed = true;
      this.waiter?.(null);
      this.waiter = null;
    });
  }

  next(): Promise<string | null> {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift()!);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }
}

function loadHistory(path: string | null): string[] {
  if (!path) return [];
  try {
    return readFileSync(path, "utf8").split("\n").filter(Boolean).slice(-1000).reverse();
  } catch {
    return [];
  }
}

function saveHistory(path: string | null, line: string): void {
  if (!path || !line.trim()) return;
  try {
    mkdirSync(dirname(path), { recursive: true });
    appendFileSync(path, `${line.replace(/\n/g, " ")}\n`);
  } catch {
    /* history is a convenience; never fail the chat for it */
  }
}

/**
 * The interactive chat of `mr run MODEL`: reads messages from stdin (a
 * terminal with line editing and history, or a pipe with `-i`), streams each
 * answer, keeps the conversation. Returns the exit code (0 on /bye or EOF).
 */
export interface ChatSettings {
  options: ChatOptions;
  /** Print `--verbose` timings after each answer (stderr). */
  isVerbose: boolean;
  /** Do not print a thinking model's reasoning. */
  isThinkingHidden: boolean;
  /** Wrap answers at words to the terminal's width (on a terminal; `--nowordwrap`, `/set nowordwrap` turn it off). */
  isWordWrapped: boolean;
}

export async function interactiveChat(cli: Cli, client: DaemonClient, startModel: string, settings: ChatSettings): Promise<number> {
  let model = startModel;
  const isTerminal = cli.io.stdin.isTTY === true;
  const rl = createInterface({
    input: cli.io.stdin,
    output: cli.io.stdout,
    terminal: isTerminal,
    history: isTerminal ? loadHistory(cli.config.historyPath) : [],
    historySize: 1000,
    removeHistoryDuplicates: true,
  });
  const queue = new LineQueue(rl);
  let answer: AbortController | null = null;
  const prompt = (text: string) => {
    if (!isTerminal) return;
    rl.setPrompt(text);
    rl.prompt();
  };
  const interrupt = () => {
    if (answer) {
      answer.abort();
      return true;
    }
    return false;
  };
  // On a terminal readline owns Ctrl-C (raw mode); with a pipe it is a real SIGINT.
  rl.on("SIGINT", () => {
    if (interrupt()) return;
    if (rl.line.length > 0) {
      cli.io.stdout.write("\n");
      (rl as unknown as { line: string }).line = "";
      prompt(">>> ");
      return;
    }
    cli.io.stdout.write("\nUse Ctrl-D or /bye to exit.\n");
    prompt(">>> ");
  });
  const releaseInterrupt = cli.onInterrupt(() => interrupt());
  const { dim } = cli.style;
  let messages: ChatMessage[] = [];
  // One per answer: each starts at the beginning of a line.
  let wrapper: WordWrapper | null = null;
  const write = (text: string, kind: "content" | "reasoning") => {
    if (kind === "reasoning" && settings.isThinkingHidden) return;
    const shown = wrapper ? wrapper.wrap(text) : text;
    cli.io.stdout.write(kind === "reasoning" ? dim(shown) : shown);
  };
  try {
    if (isTerminal) cli.io.stdout.write(dim(`Chatting with ${model}. Type /? for help, /bye or Ctrl-D to leave.\n`));
    for (;;) {
      prompt(">>> ");
      let line = await queue.next();
      if (line === null) break;
      saveHistory(isTerminal ? cli.config.historyPath : null, line);
      let input = line;
      const trimmed = line.trimStart();
      if (trimmed.startsWith('"""')) {
        // A multi-line block: everything up to a line ending in """.
        let body = trimmed.slice(3);
        if (body.endsWith('"""') && body.length >= 3) body = body.slice(0, -3);
        else {
          const parts = body ? [body] : [];
          for (;;) {
            prompt("... ");
            line = await queue.next();
            if (line === null) break;
            saveHistory(isTerminal ? cli.config.historyPath : null, line);
            if (line.trimEnd().endsWith('"""')) {
              const last = line.trimEnd().slice(0, -3);
              if (last) parts.push(last);
              break;
            }
            parts.push(line);
          }
          body = parts.join("\n");
          if (line === null && body.trim() === "") break;
        }
        input = body;
      } else if (trimmed.startsWith("/")) {
        const [command, ...args] = trimmed.split(/\s+/) as [string, ...string[]];
        if (command === "/bye" || command === "/exit") break;
        if (command === "/clear") {
          messages = messages.filter((m) => m.role === "system");
          cli.io.stdout.write("Cleared the conversation.\n");
          continue;
        }
        if (command === "/help" || command === "/?") {
          cli.io.stdout.write(HELP);
          continue;
        }
        if (command === "/set") {
          cli.io.stdout.write(setOption(args, trimmed, settings, messages));
          continue;
        }
        if (command === "/show") {
          cli.io.stdout.write(await showOption(client, model, args[0], messages, settings, cli.signal));
          continue;
        }
        if (command === "/save" || command === "/load") {
          if (args.length !== 1) {
            cli.io.stdout.write(`Usage: ${command} NAME\n`);
            continue;
          }
          try {
            if (command === "/save") {
              await saveModel(client, model, args[0]!, messages, settings, cli.signal);
              cli.io.stdout.write(`Created new model '${args[0]}'\n`);
            } else {
              // Ollama's /load: another model, a new conversation, none of this session's settings.
              await client.json("POST", "/api/show", { json: { model: args[0] }, signal: cli.signal });
              model = args[0]!;
              messages = [];
              delete settings.options.parameters;
              cli.io.stdout.write(`Loading model '${model}'\n`);
              await client.json("POST", "/api/chat", { json: { model, messages: [], ...(settings.options.keepAlive !== undefined ? { keep_alive: settings.options.keepAlive } : {}) }, signal: cli.signal });
            }
          } catch (error) {
            if (!(error instanceof DaemonError)) throw error;
            cli.io.stdout.write(`${command === "/save" ? "Couldn't save the model" : `Couldn't load model '${args[0]}'`}: ${error.message}\n`);
          }
          continue;
        }
        cli.io.stdout.write(`Unknown command '${command}'. Type /? for help.\n`);
        continue;
      }
      if (input.trim() === "") continue;
      let found;
      try {
        found = await imagesInPrompt(await includeFiles(input));
      } catch (error) {
        if (!isTerminal) throw error;
        cli.io.stdout.write(`Error: ${(error as Error).message}\n`);
        continue;
      }
      messages.push({ role: "user", content: found.text, ...(found.images.length > 0 ? { images: found.images } : {}) });
      answer = new AbortController();
      try {
        let dropped = 0;
        let result;
        for (;;) {
          try {
            wrapper = answerWrapper(cli.io.stdout, settings.isWordWrapped);
            result = await streamChat(client, model, messages, answer.signal, write, settings.options);
            break;
          } catch (error) {
            // As Ollama: a conversation that outgrew the context loses its oldest turns, not the chat.
            if (!isContextOverflow(error) || !dropOldestTurn(messages)) throw error;
            dropped++;
          }
        }
        if (dropped > 0) cli.note(dim(`(The conversation outgrew the model's context: dropped the oldest ${dropped === 1 ? "turn" : `${dropped} turns`}.)`));
        // A stopped answer stays in the conversation, as far as it got.
        messages.push({ role: "assistant", content: result.text });
        cli.io.stdout.write(result.isAborted ? "\n[stopped]\n\n" : "\n\n");
        if (settings.isVerbose && result.stats) cli.io.stderr.write(`${formatStats(result.stats)}\n`);
      } catch (error) {
        messages.pop();
        cli.io.stdout.write("\n");
        // A script feeding a pipe must learn that its chat failed: stop with the error, exit 1 (a turn the
        // daemon refused, 400 included, is the chat's failure, not a mistyped command's exit 2).
        if (!isTerminal) throw isAbort(error) ? error : new CliError((error as Error).message, { cause: error });
        cli.note(`Error: ${(error as Error).message}`);
      } finally {
        answer = null;
      }
    }
  } finally {
    releaseInterrupt();
    rl.close();
  }
  if (isTerminal) cli.io.stdout.write("\n");
  return 0;
}

/** `/set ...`: returns the line to print. */
function setOption(args: string[], line: string, settings: ChatSettings, messages: ChatMessage[]): string {
  const [what] = args;
  if (what === "system") {
    const text = line.replace(/^\/set\s+system\s*/, "").replace(/^"""([\s\S]*)"""$/, "$1").trim();
    const at = messages.findIndex((m) => m.role === "system");
    if (text === "") {
      if (at !== -1) messages.splice(at, 1);
      return "Cleared the system message.\n";
    }
    if (at !== -1) messages[at] = { role: "system", content: text };
    else messages.unshift({ role: "system", content: text });
    return "Set system message.\n";
  }
  if (what === "verbose" || what === "quiet") {
    settings.isVerbose = what === "verbose";
    return what === "verbose" ? "Set 'verbose' mode.\n" : "Set 'quiet' mode.\n";
  }
  if (what === "wordwrap" || what === "nowordwrap") {
    settings.isWordWrapped = what === "wordwrap";
    return what === "wordwrap" ? "Set 'wordwrap' mode.\n" : "Set 'nowordwrap' mode.\n";
  }
  if (what === "think" || what === "nothink") {
    settings.options.think = what === "think";
    return what === "think" ? "Set 'think' mode.\n" : "Set 'nothink' mode.\n";
  }
  if (what === "parameter") return setParameter(args.slice(1), settings);
  return `Unknown /set option '${what ?? ""}'. Try: system, verbose, quiet, wordwrap, nowordwrap, think, nothink.\n`;
}

/** The parameters `/set parameter` takes (Ollama's names), and whether each is a whole number. */
const CHAT_PARAMETERS: Record<string, "number" | "integer" | "strings"> = {
  temperature: "number",
  top_k: "integer",
  top_p: "number",
  min_p: "number",
  num_predict: "integer",
  repeat_penalty: "number",
  repeat_last_n: "integer",
  presence_penalty: "number",
  frequency_penalty: "number",
  seed: "integer",
  stop: "strings",
  num_ctx: "integer",
};

/** `/set parameter NAME VALUE...` (stop takes several), or `NAME` alone to drop it. */
function setParameter(args: string[], settings: ChatSettings): string {
  const [name, ...values] = args;
  const kind = name !== undefined ? CHAT_PARAMETERS[name] : undefined;
  if (name === undefined || kind === undefined) {
    return `Unknown parameter '${name ?? ""}'. Parameters: ${Object.keys(CHAT_PARAMETERS).join(", ")}.\n`;
  }
  const parameters = (settings.options.parameters ??= {});
  if (values.length === 0) {
    delete parameters[name];
    return `Removed parameter '${name}'.\n`;
  }
  if (kind === "strings") {
    parameters[name] = values;
    return `Set parameter '${name}' to '${values.join(", ")}'\n`;
  }
  const n = values.length === 1 ? Number(values[0]) : Number.NaN;
  if (!Number.isFinite(n) || (kind === "integer" && !Number.isInteger(n))) {
    return `Couldn't set parameter: '${name}' takes ${kind === "integer" ? "a whole number" : "a number"}, got '${values.join(" ")}'.\n`;
  }
  parameters[name] = n;
  return `Set parameter '${name}' to '${n}'\n`;
}

/**
 * `/save NAME` as Ollama's: a new model from this one (through /api/create)
 * whose preset holds the session's system message, parameters and
 * conversation, over the model's own preset.
 */
async function saveModel(client: DaemonClient, model: string, name: string, messages: ChatMessage[], settings: ChatSettings, signal: AbortSignal): Promise<void> {
  const system = messages.find((m) => m.role === "system");
  const turns = messages.filter((m) => m.role !== "system");
  await client.json("POST", "/api/create", {
    json: {
      model: name,
      from: model,
      stream: false,
      ...(system ? { system: system.content } : {}),
      ...(settings.options.parameters && Object.keys(settings.options.parameters).length > 0 ? { parameters: settings.options.parameters } : {}),
      ...(turns.length > 0 ? { messages: turns } : {}),
    },
    signal,
  });
}

interface ShowBody {
  license?: string;
  template?: string;
  parameters?: string;
  system?: string;
  modelfile?: string;
  details?: { family?: string; parameter_size?: string; quantization_level?: string; format?: string };
  model_info?: Record<string, unknown>;
}

/** `/show ...`: what Ollama's `/api/show` knows of the model, with this session's system message and parameters over it. */
async function showOption(
  client: DaemonClient,
  model: string,
  what: string | undefined,
  messages: ChatMessage[],
  settings: ChatSettings,
  signal: AbortSignal,
): Promise<string> {
  if (!["info", "license", "template", "parameters", "system", "modelfile"].includes(what ?? "")) {
    return `Unknown /show option '${what ?? ""}'. Try: info, license, template, parameters, system, modelfile.\n`;
  }
  const session = messages.find((m) => m.role === "system");
  if (what === "system" && session) return `${session.content}\n`;
  const body = (await client.json<ShowBody>("POST", "/api/show", { json: { model }, signal })) ?? {};
  if (what === "system") return body.system ? `${body.system.trimEnd()}\n` : "No system message was specified for this model.\n";
  if (what === "license") return body.license ? `${body.license.trimEnd()}\n` : "No license was specified for this model.\n";
  if (what === "template") return body.template ? `${body.template.trimEnd()}\n` : "No template was specified for this model.\n";
  if (what === "modelfile") return body.modelfile ? `${body.modelfile.trimEnd()}\n` : "No Modelfile is available for this model.\n";
  if (what === "parameters") {
    const own = Object.entries(settings.options.parameters ?? {});
    let out = body.parameters ? `Model defined parameters:\n${body.parameters.trimEnd()}\n` : "No parameters were specified for this model.\n";
    if (own.length > 0) out += `\nUser defined parameters:\n${own.map(([k, v]) => `${k.padEnd(30)} ${Array.isArray(v) ? v.map((x) => JSON.stringify(x)).join(" ") : v}\n`).join("")}`;
    return out;
  }
  const info = body.model_info ?? {};
  const arch = body.details?.family || String(info["general.architecture"] ?? "");
  const rows: [string, string][] = [
    ["architecture", arch || "-"],
    ["parameters", body.details?.parameter_size || "-"],
    ["context length", String(info[`${arch}.context_length`] ?? "-")],
    ["embedding length", String(info[`${arch}.embedding_length`] ?? "-")],
    ["quantization", body.details?.quantization_level || "-"],
  ];
  return `  Model\n${rows.map(([k, v]) => `    ${k.padEnd(18)}${v}\n`).join("")}`;
}
