/**
 * A streamed (SSE) engine answer as the one JSON answer it adds up to, for
 * the request recorder: what `docker model requests` shows instead of the
 * chunks. Chat completions become `chat.completion` with the assembled
 * message (content, reasoning_content, tool_calls), completions
 * `text_completion` with the assembled text, llama-server's `/completion`
 * one object with the assembled `content`. The last chunk's other fields
 * (id, model, usage, timings) are kept.
 */

import { ToolCallAccumulator } from "../engine/tool-deltas.ts";
import { SseReader } from "../../http/sse-reader.ts";

/** What a recorded stream amounted to: the assembled answer, or the error event it ended with. */
export type AssembledStream = { response: string } | { error: string };

interface ChoiceDraft {
  index: number;
  content: string;
  reasoning: string;
  text: string;
  toolCalls: ToolCallAccumulator;
  last: Record<string, unknown>;
  isChat: boolean;
}

/** Whether an answer's text is an SSE stream (a `data:` line at a line start). */
export function isEventStream(text: string): boolean {
  return text.startsWith("data:") || text.includes("\ndata:");
}

/** Assembles `text`, an SSE answer; one that holds no JSON event is returned as it is. */
export function assembleStream(text: string): AssembledStream {
  const choices = new Map<number, ChoiceDraft>();
  let lastChunk: Record<string, unknown> | null = null;
  let nativeContent: string | null = null;
  for (const { data } of SseReader.readAll(text)) {
    if (data === "" || data === "[DONE]") continue;
    let chunk: Record<string, unknown>;
    try {
      chunk = JSON.parse(data) as Record<string, unknown>;
    } catch {
      continue; // a line cut by the recorder's size limit
    }
    if (chunk === null || typeof chunk !== "object") continue;
    if (chunk.error !== undefined && chunk.choices === undefined) return { error: data };
    lastChunk = chunk;
    if (Array.isArray(chunk.choices)) {
      for (const raw of chunk.choices as Array<Record<string, unknown>>) addChoice(choices, raw);
    } else if (typeof chunk.content === "string") {
      nativeContent = (nativeContent ?? "") + chunk.content;
    }
  }
  if (lastChunk === null) return { response: text };
  const final: Record<string, unknown> = { ...lastChunk };
  if (choices.size > 0) {
    const drafts = [...choices.values()].sort((a, b) => a.index - b.index);
    const isChat = drafts.some((d) => d.isChat);
    final.object = isChat ? "chat.completion" : "text_completion";
    final.choices = drafts.map((d) => finalChoice(d, isChat));
  } else if (nativeContent !== null) {
    final.content = nativeContent;
  }
  return { response: JSON.stringify(final) };
}

function addChoice(choices: Map<number, ChoiceDraft>, raw: Record<string, unknown>): void {
  if (raw === null || typeof raw !== "object") return;
  const index = typeof raw.index === "number" ? raw.index : 0;
  let draft = choices.get(index);
  if (!draft) {
    draft = { index, content: "", reasoning: "", text: "", toolCalls: new ToolCallAccumulator(), last: {}, isChat: false };
    choices.set(index, draft);
  }
  draft.last = raw;
  const delta = raw.delta as Record<string, unknown> | undefined;
  if (delta && typeof delta === "object") {
    draft.isChat = true;
    if (typeof delta.content === "string") draft.content += delta.content;
    if (typeof delta.reasoning_content === "string") draft.reasoning += delta.reasoning_content;
    draft.toolCalls.add(delta.tool_calls);
  }
  if (typeof raw.text === "string") draft.text += raw.text;
}

function finalChoice(d: ChoiceDraft, isChat: boolean): Record<string, unknown> {
  const { delta: _delta, ...rest } = d.last;
  const finish = rest.finish_reason ?? "stop";
  if (!isChat) return { ...rest, index: d.index, text: d.text, finish_reason: finish };
  const message: Record<string, unknown> = { role: "assistant", content: d.content };
  if (d.reasoning !== "") message.reasoning_content = d.reasoning;
  if (d.toolCalls.size > 0) {
    message.tool_calls = d.toolCalls.list().map((c) => ({ ...(c.id !== null ? { id: c.id } : {}), type: "function", function: { name: c.name, arguments: c.arguments } }));
  }
  return { ...rest, index: d.index, message, finish_reason: finish };
}
