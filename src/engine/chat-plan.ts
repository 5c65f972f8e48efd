import type { LlamaGrammar, Token } from "node-llama-cpp";
import type { z } from "zod";
import type { ReasoningControl, SamplingParams, ToolCallControl } from "./generate.ts";
import { grammarForRequest } from "./grammar/for-request.ts";
import type { ModelHost } from "./model-host.ts";
import { newId } from "./openai-shapes.ts";
import { ReasoningSplitter } from "./reasoning.ts";
import { chatMessagesFrom, samplingFrom, type chatCompletionRequest } from "./requests.ts";
import { callGrammar, checkTools, planTools, ToolCallParser } from "./tools.ts";

export type ChatRequest = z.infer<typeof chatCompletionRequest>;

/**
 * Everything one chat request needs before generation starts: the rendered
 * prompt, sampling, the output grammar, tool calls and thinking. Stateful
 * parts (the call parser, the splitter) belong to this one request.
 */
export interface ChatPlan {
  prompt: Token[];
  params: SamplingParams;
  /** The `response_format` grammar; null = free text. */
  grammar: LlamaGrammar | null;
  /** The reply is tool calls from the first token (`tool_choice` required or a named function). */
  forced: boolean;
  /** Collects the calls the model writes; null when no call can be made. */
  calls: ToolCallParser | null;
  /**
   * How generate() produces calls, `onDeltas` receiving each call's stream
   * deltas as they become final; null when no call can be made.
   */
  toolControl(onDeltas: (deltas: object[]) => Promise<void> | void): ToolCallControl | null;
  /** Bounds the thinking block; null when the template has no thinking syntax. */
  reasoning: ReasoningControl | null;
  /** Splits the thought from the answer; null when thinking stays in `content`. */
  splitter: ReasoningSplitter | null;
}

/** Plans a chat request on `host`; throws a 400 for what it cannot honour. */
export async function planChat(host: ModelHost, body: ChatRequest): Promise<ChatPlan> {
  const params = samplingFrom(body, body.max_completion_tokens ?? body.max_tokens);
  const tools = planTools(checkTools(body.tools ?? []), body.tool_choice, body.parallel_tool_calls);
  const forced = tools.mode === "forced";
  const grammar = forced ? null : await grammarForRequest(host.grammars, { response_format: body.response_format });

  // Calls are grammar-constrained in the template's syntax: forced from the
  // first token, or after the model writes the call trigger ("auto"; not
  // under a response_format grammar, whose document is the whole reply).
  let calls: ToolCallParser | null = null;
  let toolGrammar: LlamaGrammar | null = null;
  if (forced || (tools.mode === "auto" && grammar === null)) {
    const syntax = host.callSyntax;
    const shape = { afterTrigger: !forced, parallel: tools.parallel };
    const key = JSON.stringify({ tools: tools.callable, ...shape });
    toolGrammar = await host.grammars.forToolCalls(key, () => callGrammar(host.llama, tools.callable, syntax, shape));
    calls = new ToolCallParser(syntax, tools.callable.map((t) => t.name), () => newId("call"), shape);
  }
  const toolControl = (onDeltas: (deltas: object[]) => Promise<void> | void): ToolCallControl | null => {
    if (!calls || !toolGrammar) return null;
    const parser = calls;
    return {
      trigger: forced ? null : host.callSyntax.trigger,
      grammar: toolGrammar,
      onCallText: async (text) => {
        const deltas = parser.push(text);
        if (deltas.length > 0) await onDeltas(deltas);
        return parser.isDone;
      },
    };
  };

  let prompt = host.chatPrompt(chatMessagesFrom(body.messages), tools.functions);

  // Thinking: bounded by the request or the engine flag; off under a grammar,
  // whose output must start at the first token.
  const thinking = host.thinking;
  let reasoning: ReasoningControl | null = null;
  let splitter: ReasoningSplitter | null = null;
  if (thinking) {
    let budget = body.reasoning_budget ?? host.reasoningBudget;
    if (body.reasoning_effort === "none" || body.chat_template_kwargs?.enable_thinking === false || grammar || forced) budget = 0;
    let startsInside = thinking.startsInside;
    if (budget === 0) {
      // An empty thought, as templates render "thinking off".
      const opened = startsInside && thinking.prefill === "";
      const closing = `${opened ? "" : `${thinking.open}\n\n`}${thinking.close}\n\n`;
      prompt = [...prompt, ...host.tokenize(closing, false)];
      startsInside = false;
    } else if (startsInside && thinking.prefill !== "") {
      prompt = [...prompt, ...host.tokenize(thinking.prefill, false)];
    }
    reasoning = {
      open: thinking.open,
      close: thinking.close,
      closeTokens: host.tokenize(`\n${thinking.close}\n\n`, false),
      startsInside,
      budgetTokens: budget < 0 ? null : budget,
    };
    if ((body.reasoning_format ?? host.reasoningFormat) !== "none") {
      splitter = new ReasoningSplitter(thinking.open, thinking.close, startsInside);
    }
  }
  return { prompt, params, grammar, forced, calls, toolControl, reasoning, splitter };
}
