/**
 * Tool calls as the engine streams them (OpenAI's `delta.tool_calls`: the
 * first delta of a call carries its `index`, `id` and `function.name`, the
 * next ones pieces of `function.arguments`), assembled once for every
 * dialect. A non-streamed `message.tool_calls` goes through the same
 * accumulator (`addMessage`), so the streamed and the whole answer are read
 * by one rule.
 */

/** One call as assembled so far. `id` is the engine's, or null when it sent none. */
export interface ToolCallDraft {
  readonly index: number;
  readonly id: string | null;
  readonly name: string;
  readonly arguments: string;
}

/** What one delta changed: a call that `started` with it, and the arguments text it added ("" when none). */
export interface ToolCallChange {
  call: ToolCallDraft;
  started: boolean;
  argumentsDelta: string;
}

interface Delta {
  index?: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}

interface MutableDraft {
  index: number;
  id: string | null;
  name: string;
  arguments: string;
}

export class ToolCallAccumulator {
  private readonly calls = new Map<number, MutableDraft>();

  /** Adds one chunk's `delta.tool_calls` (anything else is no call); returns the changes in order. */
  add(deltas: unknown): ToolCallChange[] {
    if (!Array.isArray(deltas)) return [];
    const changes: ToolCallChange[] = [];
    for (const d of deltas as Delta[]) {
      const index = typeof d?.index === "number" ? d.index : 0;
      let call = this.calls.get(index);
      const started = call === undefined;
      if (!call) {
        call = { index, id: typeof d.id === "string" ? d.id : null, name: "", arguments: "" };
        this.calls.set(index, call);
      }
      if (typeof d.function?.name === "string") call.name += d.function.name;
      const piece = typeof d.function?.arguments === "string" ? d.function.arguments : "";
      call.arguments += piece;
      changes.push({ call, started, argumentsDelta: piece });
    }
    return changes;
  }

  /** A whole answer's `message.tool_calls`, each as one delta at its position. */
  addMessage(toolCalls: unknown): void {
    if (!Array.isArray(toolCalls)) return;
    this.add(toolCalls.map((c: Delta, index) => ({ ...c, index })));
  }

  get size(): number {
    return this.calls.size;
  }

  /** The calls in index order. */
  list(): ToolCallDraft[] {
    return [...this.calls.values()].sort((a, b) => a.index - b.index);
  }
}

/**
 * A call's arguments as a JSON value, for the dialects whose calls carry
 * objects (Anthropic's `input`, Ollama's `arguments`): `{}` for none, and
 * `fallback(text)` for text that is not JSON (a call cut by max_tokens).
 */
export function parsedArguments(text: string, fallback: (text: string) => unknown): unknown {
  if (text === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    return fallback(text);
  }
}
