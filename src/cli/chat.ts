import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { sseData, type DaemonClient } from "./client.ts";
import type { Cli } from "./context.ts";
import { isAbort } from "./errors.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

interface ChatChunk {
  choices?: Array<{ delta?: { content?: string | null; reasoning_content?: string | null } }>;
}

/**
 * Streams one chat completion, writing text to `write` as it arrives, and
 * returns the whole answer. Aborting `signal` ends the stream early and
 * resolves with what arrived (the caller decides whether that is an error).
 */
export async function streamChat(
  client: DaemonClient,
  model: string,
  messages: readonly ChatMessage[],
  signal: AbortSignal,
  write: (text: string, kind: "content" | "reasoning") => void,
): Promise<{ text: string; isAborted: boolean }> {
  let text = "";
  try {
    const res = await client.request("POST", "/engines/v1/chat/completions", {
      json: { model, messages, stream: true },
      headers: { accept: "text/event-stream" },
      signal,
    });
    for await (const chunk of sseData(res) as AsyncGenerator<ChatChunk>) {
      const delta = chunk.choices?.[0]?.delta;
      if (delta?.reasoning_content) write(delta.reasoning_content, "reasoning");
      if (delta?.content) {
        text += delta.content;
        write(delta.content, "content");
      }
    }
    return { text, isAborted: false };
  } catch (error) {
    if (signal.aborted || isAbort(error)) return { text, isAborted: true };
    throw error;
  }
}

const HELP = `Available commands:
  /clear        forget the conversation so far
  /bye          leave (Ctrl-D does the same)
  /?, /help     this help

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
export async function interactiveChat(cli: Cli, client: DaemonClient, model: string): Promise<number> {
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
        const command = trimmed.split(/\s+/)[0]!;
        if (command === "/bye" || command === "/exit") break;
        if (command === "/clear") {
          messages = [];
          cli.io.stdout.write("Cleared the conversation.\n");
          continue;
        }
        if (command === "/help" || command === "/?") {
          cli.io.stdout.write(HELP);
          continue;
        }
        cli.io.stdout.write(`Unknown command '${command}'. Type /? for help.\n`);
        continue;
      }
      if (input.trim() === "") continue;
      messages.push({ role: "user", content: input });
      answer = new AbortController();
      try {
        const result = await streamChat(client, model, messages, answer.signal, (text, kind) =>
          cli.io.stdout.write(kind === "reasoning" ? dim(text) : text),
        );
        // A stopped answer stays in the conversation, as far as it got.
        messages.push({ role: "assistant", content: result.text });
        cli.io.stdout.write(result.isAborted ? "\n[stopped]\n\n" : "\n\n");
      } catch (error) {
        messages.pop();
        cli.io.stdout.write("\n");
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
