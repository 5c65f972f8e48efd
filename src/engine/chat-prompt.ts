import { readFile } from "node:fs/promises";
import {
  JinjaTemplateChatWrapper,
  LlamaText,
  resolveChatWrapper,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatModelResponse,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import { rememberingTokenizer } from "./remembering-tokenizer.ts";
import { callTrigger, HERMES_CALL_SYNTAX, type CallSyntax } from "./tools.ts";

/** An OpenAI chat message after validation. */
export type ChatMessage =
  | { role: "system" | "developer" | "user"; content: string }
  | { role: "assistant"; content: string; toolCalls?: ReadonlyArray<{ id: string; name: string; arguments: unknown }> }
  | { role: "tool"; content: string; toolCallId: string };

/** What the template says about thinking: set when the model writes `<think>` blocks. */
export interface ThinkingSyntax {
  open: string;
  close: string;
  /** The template's generation prompt opens the thought (e.g. ends with `<think>\n`). */
  startsInside: boolean;
  /**
   * Text to append to a rendered prompt so that it opens the thought when the
   * template does: node-llama-cpp's Jinja wrapper treats `<think>` as a
   * segment the model opens itself and drops it from the generation prompt.
   */
  prefill: string;
}

/** Renders chat messages with the model's template and tokenizes them. */
export interface ChatPrompter {
  readonly templateName: string;
  /**
   * Prompt tokens for `messages`, ending where the assistant's reply begins.
   * `functions` are presented the way the template presents tools.
   * Throws InvalidRequestError for a tool message that answers no call.
   * `templateKwargs` (llama-server's `chat_template_kwargs`) are variables
   * of the Jinja template's rendering.
   */
  render(messages: readonly ChatMessage[], functions?: ChatModelFunctions, templateKwargs?: Readonly<Record<string, unknown>>): Token[];
  /**
   * The same prompt as text, as the template writes it (llama-server's
   * `/apply-template`): special tokens by their text, without the BOS the
   * tokenizer adds unless the template writes `bos_token` itself.
   */
  renderText(messages: readonly ChatMessage[], functions?: ChatModelFunctions, templateKwargs?: Readonly<Record<string, unknown>>): string;
  /** Tokens that end the assistant's turn for this template. */
  readonly stopTokens: ReadonlySet<Token>;
  /** Null for models without a thinking syntax. */
  readonly thinking: ThinkingSyntax | null;
  /** How the template writes tool calls. */
  readonly callSyntax: CallSyntax;
}

const THINK_OPEN = "<think>";
const THINK_CLOSE = "</think>";

/**
 * Picks the chat template: a template (file or text) given on the command line, else
 * the one in the GGUF metadata, else node-llama-cpp's general fallback.
 */
export async function createChatPrompter(
  model: LlamaModel,
  templateSource: { kind: "file"; path: string } | { kind: "text"; template: string } | null,
): Promise<ChatPrompter> {
  let wrapper: ChatWrapper;
  const metadataTemplate = model.fileInfo.metadata.tokenizer?.chat_template;
  /** The Jinja source chat_template_kwargs render with: the given template, else the model's. */
  let jinjaSource: string | null = typeof metadataTemplate === "string" ? metadataTemplate : null;
  if (templateSource !== null) {
    const template = templateSource.kind === "file" ? await readFile(templateSource.path, "utf8") : templateSource.template;
    jinjaSource = template;
    wrapper = new JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
  } else {
    wrapper = resolveChatWrapper(model);
    // A template that thinks but was matched to a wrapper without thoughts
    // (e.g. ChatML) would lose its `<think>` prefill: keep the template itself.
    const template = model.fileInfo.metadata.tokenizer?.chat_template;
    if (typeof template === "string" && template.includes(THINK_OPEN) && wrapper.settings.segments?.thought === undefined) {
      wrapper = new JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
    }
  }
  const probe = wrapper.generateContextState({ chatHistory: [{ type: "user", text: "x" }, { type: "model", response: [] }] });
  const stopTokens = new Set<Token>();
  for (const trigger of probe.stopGenerationTriggers) {
    const text = LlamaText(trigger);
    const tokens = text.tokenize(model.tokenizer);
    if (tokens.length === 1 && text.values.every((v) => typeof v !== "string")) stopTokens.add(tokens[0]!);
  }
  const toHistory = (messages: readonly ChatMessage[]): ChatHistoryItem[] => {
    const history: ChatHistoryItem[] = [];
    const calls = new Map<string, ChatModelFunctionCall>();
    for (const [i, m] of messages.entries()) {
      if (m.role === "tool") {
        const call = calls.get(m.toolCallId);
        if (!call) {
          throw new InvalidRequestError(
            `messages[${i}].tool_call_id "${m.toolCallId}" answers no tool call of an earlier assistant message`,
            `messages.${i}.tool_call_id`,
          );
        }
        call.result = m.content;
        continue;
      }
      if (m.role === "assistant") {
        // Consecutive assistant turns (a call, its results, then more) are one model response.
        const last = history.at(-1);
        const item: ChatModelResponse = last?.type === "model" ? last : { type: "model", response: [] };
        if (item !== last) history.push(item);
        if (m.content !== "") item.response.push(m.content);
        for (const c of m.toolCalls ?? []) {
          const call: ChatModelFunctionCall = { type: "functionCall", name: c.name, params: c.arguments, result: "" };
          calls.set(c.id, call);
          item.response.push(call);
        }
      } else if (m.role === "user") history.push({ type: "user", text: m.content });
      else history.push({ type: "system", text: m.content });
    }
    return history;
  };
  const thinkingCapable =
    model.tokenize(THINK_OPEN, true).length === 1 || (wrapper instanceof JinjaTemplateChatWrapper && wrapper.template.includes(THINK_OPEN));
  let thinking: ThinkingSyntax | null = null;
  if (thinkingCapable) {
    const rendered = probe.contextText.toString().trimEnd().endsWith(THINK_OPEN);
    const source = wrapper instanceof JinjaTemplateChatWrapper ? wrapper.template : "";
    const opensInTemplate = /add_generation_prompt[\s\S]*<think>/.test(source);
    thinking = {
      open: THINK_OPEN,
      close: THINK_CLOSE,
      startsInside: rendered || opensInTemplate,
      prefill: !rendered && opensInTemplate ? `${THINK_OPEN}\n` : "",
    };
  }
  // The history of a chat comes again in its next turn: its messages' tokens are remembered.
  const promptTokenizer = rememberingTokenizer(model.tokenizer);
  // One Jinja wrapper per distinct set of template variables (a handful in practice).
  const withKwargs = new Map<string, ChatWrapper>();
  const wrapperFor = (kwargs: Readonly<Record<string, unknown>> | undefined): ChatWrapper => {
    // Variables the template never reads change nothing, so the usual wrapper renders.
    if (!kwargs || jinjaSource === null || !Object.keys(kwargs).some((k) => jinjaSource!.includes(k))) return wrapper;
    const key = JSON.stringify(kwargs);
    let w = withKwargs.get(key);
    if (!w) {
      if (withKwargs.size >= 16) withKwargs.delete(withKwargs.keys().next().value!);
      w = new JinjaTemplateChatWrapper({ template: jinjaSource, tokenizer: model.tokenizer, additionalRenderParameters: { ...kwargs } });
      withKwargs.set(key, w);
    }
    return w;
  };
  return {
    templateName: wrapper.wrapperName,
    stopTokens,
    thinking,
    callSyntax: callSyntaxOf(wrapper, model),
    render(messages, functions, templateKwargs) {
      return contextOf(messages, functions, templateKwargs).tokenize(promptTokenizer);
    },
    renderText(messages, functions, templateKwargs) {
      const values = contextOf(messages, functions, templateKwargs).values;
      const templateWritesBos = wrapper instanceof JinjaTemplateChatWrapper && wrapper.template.includes("bos_token");
      let text = "";
      for (const [i, v] of values.entries()) {
        if (typeof v === "string") text += v;
        else if (v instanceof SpecialTokensText) text += v.value;
        else if (v.value === "BOS" && i === 0 && !templateWritesBos) continue;
        else text += (v.value === "BOS" ? model.tokens.bosString : v.value === "EOS" ? model.tokens.eosString : model.tokens.eotString) ?? "";
      }
      return text;
    },
  };

  function contextOf(messages: readonly ChatMessage[], functions: ChatModelFunctions | undefined, templateKwargs?: Readonly<Record<string, unknown>>): LlamaText {
    const history = toHistory(messages);
    // A trailing assistant message (or tool results) is a prefill the model continues.
    if (history.at(-1)?.type !== "model") history.push({ type: "model", response: [] });
    if (!history.some((h) => h.type === "user")) {
      throw new InvalidRequestError("messages must contain at least one user message", "messages");
    }
    const hasFunctions = functions !== undefined && Object.keys(functions).length > 0;
    return wrapperFor(templateKwargs).generateContextState({ chatHistory: history, ...(hasFunctions ? { availableFunctions: functions, documentFunctionParams: true } : {}) })
      .contextText;
  }
}

/** A piece of wrapper syntax, which is plain text and special-token text. */
type SyntaxText = string | LlamaText;

/**
 * The wrapper's call syntax as text, or the Hermes fallback when it cannot be
 * written as text (a special token such as EOS inside it) or has no prefix.
 * A suffix is cut before an end-of-generation token (Llama 3.1's
 * `<|eom_id|>`): under a grammar that token can only end the reply.
 */
function callSyntaxOf(wrapper: ChatWrapper, model: LlamaModel): CallSyntax {
  const toText = (value: SyntaxText, cutAtEog = false): string | null => {
    let out = "";
    for (const v of LlamaText(value).values) {
      if (typeof v === "string") out += v;
      else if (v instanceof SpecialTokensText) {
        if (!cutAtEog) out += v.value;
        else {
          const tokens = model.tokenize(v.value, true);
          const eog = tokens.findIndex((t) => model.isEogToken(t));
          if (eog < 0) out += v.value;
          else return out + model.detokenize(tokens.slice(0, eog), true);
        }
      } else return null;
    }
    return out;
  };
  const call = wrapper.settings.functions.call;
  const parallelism = wrapper.settings.functions.parallelism;
  const prefix = toText(call.prefix);
  const paramsPrefix = toText(call.paramsPrefix);
  const suffix = toText(call.suffix, true);
  const sectionPrefix = parallelism ? toText(parallelism.call.sectionPrefix ?? "") : "";
  const between = parallelism ? toText(parallelism.call.betweenCalls ?? "") : "";
  if (prefix === null || prefix.trim() === "" || paramsPrefix === null || suffix === null || sectionPrefix === null || between === null) {
    return HERMES_CALL_SYNTAX;
  }
  const firstPrefix = (sectionPrefix + prefix).trimStart();
  const named = (text: string) => (name: string) => text.replaceAll("{{functionName}}", name);
  return {
    firstPrefix,
    nextPrefix: parallelism ? between + prefix : null,
    trigger: callTrigger(firstPrefix),
    paramsPrefix: named(paramsPrefix),
    suffix: named(suffix),
  };
}
