import type { LlamaGrammar, Token } from "node-llama-cpp";
import type { z } from "zod";
import type { ReasoningControl, SamplingParams, ToolCallControl } from "./generate.ts";
import { grammarForRequest } from "./grammar/for-request.ts";
import type { ModelHost } from "./model-host.ts";
import { newId } from "./openai-shapes.ts";
import { ReasoningSplitter } from "./reasoning.ts";
import { chatPlan, type GenerationPlan } from "./request-fields.ts";
import { chatMessagesFrom, type chatCompletionRequest } from "./requests.ts";
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
  /** `n`, `id_slot`, `timings_per_token`, `return_tokens` (request-fields.ts). */
  generation: GenerationPlan;
  /** The output grammar (`grammar`, `json_schema` or `response_format`); null = free text. */
  grammar: LlamaGrammar | null;
  /** The reply is tool calls from the first token (`tool_choice` required or a named function). */
  forced: boolean;
  /** Bounds the thinking block; null when the template has no thinking syntax. */
  reasoning: ReasoningControl | null;
  /** One state per choice (`n`), in choice order. */
  choices: ChoiceState[];
}

/** What one choice of a chat reply keeps while it is generated. */
export interface ChoiceState {
  /** Collects the calls the model writes; null when no call can be made. */
  calls: ToolCallParser | null;
  /**
   * How generate() produces calls, `onDeltas` receiving each call's stream
   * deltas as they become final; null when no call can be made.
   */
  toolControl(onDeltas: (deltas: object[]) => Promise<void> | void): ToolCallControl | null;
  /** Splits the thought from the answer; null when thinking stays in `content`. */
  splitter: ReasoningSplitter | null;
}

/** Plans a chat request on `host`; throws a 400 for what it cannot honour. */
export async function planChat(host: ModelHost, body: ChatRequest): Promise<ChatPlan> {
  const generation = chatPlan(body, host.vocabulary, host.slotCount);
  const params = generation.params;
  const tools = planTools(checkTools(body.tools ?? []), body.tool_choice, body.parallel_tool_calls);
  const forced = tools.mode === "forced";
  const grammar = forced ? null : await grammarForRequest(host.grammars, { grammar: body.grammar, json_schema: body.json_schema, response_format: body.response_format });

  // Calls are grammar-constrained in the template's syntax: forced from the
  // first token, or after the model writes the call trigger ("auto"; not
  // under a response_format grammar, whose document is the whole reply).
  let toolGrammar: LlamaGrammar | null = null;
  const shape = { afterTrigger: !forced, parallel: tools.parallel };
  if (forced || (tools.mode === "auto" && grammar === null)) {
    const key = JSON.stringify({ tools: tools.callable, ...shape });
    toolGrammar = await host.grammars.forToolCalls(key, () => callGrammar(host.llama, tools.callable, host.callSyntax, shape));
  }
  const newCalls = () => (toolGrammar ? new ToolCallParser(host.callSyntax, tools.callable.map((t) => t.name), () => newId("call"), shape) : null);
  const toolControlFor = (parser: ToolCallParser | null) => (onDeltas: (deltas: object[]) => Promise<void> | void): ToolCallControl | null => {
    if (!parser || !toolGrammar) return null;
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

  // Every chat_template_kwargs key reaches the template; llama-server also hands it `reasoning_effort`.
  const kwargs: Record<string, unknown> = { ...(body.chat_template_kwargs ?? {}) };
  if (body.reasoning_effort != null && body.reasoning_effort !== "none") kwargs.reasoning_effort = body.reasoning_effort;
  let prompt = host.chatPrompt(chatMessagesFrom(body.messages), tools.functions, Object.keys(kwargs).length > 0 ? kwargs : undefined);

  // Thinking: bounded by the request or the engine flag; off under a grammar,
  // whose output must start at the first token.
  const thinking = host.thinking;
  let reasoning: ReasoningControl | null = null;
  let split: { open: string; close: string; startsInside: boolean } | null = null;
  if (thinking) {
    // llama-server's fields, read as it reads them: -1 there means "not given" (the --reasoning-budget flag applies).
    const llamaServers = body.reasoning_budget_tokens ?? body.thinking_budget_tokens ?? -1;
    let budget = llamaServers !== -1 ? llamaServers : (body.reasoning_budget ?? host.reasoningBudget);
    if (body.reasoning_effort === "none" || body.chat_template_kwargs?.enable_thinking === false || grammar || forced) budget = 0;
    let startsInside = thinking.startsInside;
    if (budget === 0) {
      // An empty thought, as templates render "thinking off".
      const opened = startsInside && thinking.prefill === "";
      const closing = `${opened ? "" : `${thinking.open}\n\n`}${thinking.close}\n\n`;
      // A template that read `enable_thinking: false` already wrote the empty thought.
      if (!host.detokenize(prompt.slice(-8)).trimEnd().endsWith(thinking.close)) prompt = [...prompt, ...host.tokenize(closing, false)];
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
    // llama-server's "deepseek-legacy" keeps the thought in `content` when streaming, and splits it otherwise.
    const format = body.reasoning_format ?? host.reasoningFormat;
    if (format !== "none" && !(format === "deepseek-legacy" && body.stream === true)) {
      split = { open: thinking.open, close: thinking.close, startsInside };
    }
  }
  const choices = Array.from({ length: generation.choices }, (): ChoiceState => {
    const calls = newCalls();
    return {
      calls,
      toolControl: toolControlFor(calls),
      splitter: split ? new ReasoningSplitter(split.open, split.close, split.startsInside) : null,
    };
  });
  return { prompt, params, generation, grammar, forced, reasoning, choices };
}
