import { readFile } from "node:fs/promises";
import {
  JinjaTemplateChatWrapper,
  LlamaText,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";

/** An OpenAI chat message after validation. */
export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

/** Renders chat messages with the model's template and tokenizes them. */
export interface ChatPrompter {
  readonly templateName: string;
  /** Prompt tokens for `messages`, ending where the assistant's reply begins. */
  render(messages: readonly ChatMessage[]): Token[];
  /** Tokens that end the assistant's turn for this template. */
  readonly stopTokens: ReadonlySet<Token>;
}

/**
 * Picks the chat template: a template file given on the command line, else
 * the one in the GGUF metadata, else node-llama-cpp's general fallback.
 */
export async function createChatPrompter(model: LlamaModel, templateFile: string | null): Promise<ChatPrompter> {
  let wrapper: ChatWrapper;
  if (templateFile !== null) {
    const template = await readFile(templateFile, "utf8");
    wrapper = new JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
  } else {
    wrapper = resolveChatWrapper(model);
  }
  const probe = wrapper.generateContextState({ chatHistory: [{ type: "user", text: "x" }, { type: "model", response: [] }] });
  const stopTokens = new Set<Token>();
  for (const trigger of probe.stopGenerationTriggers) {
    const text = LlamaText(trigger);
    const tokens = text.tokenize(model.tokenizer);
    if (tokens.length === 1 && text.values.every((v) => typeof v !== "string")) stopTokens.add(tokens[0]!);
  }
  return {
    templateName: wrapper.wrapperName,
    stopTokens,
    render(messages) {
      const history: ChatHistoryItem[] = [];
      for (const m of messages) {
        if (m.role === "assistant") history.push({ type: "model", response: [m.content] });
        else if (m.role === "user") history.push({ type: "user", text: m.content });
        else history.push({ type: "system", text: m.content });
      }
      // A trailing assistant message is a prefill the model continues.
      if (history.at(-1)?.type !== "model") history.push({ type: "model", response: [] });
      if (!history.some((h) => h.type === "user")) {
        throw new InvalidRequestError("messages must contain at least one user message", "messages");
      }
      return wrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer);
    },
  };
}
