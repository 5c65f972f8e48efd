export { runEngine } from "./run-engine.ts";
export { parseEngineArgs, defaultThreads, EngineUsageError, type EngineOptions } from "./options.ts";
export { createEngineApp } from "./server.ts";
export { checkJsonSchema, grammarForJsonSchema, GrammarCache, UnsupportedSchemaError, InvalidGrammarError } from "./structured.ts";
export { checkTools, planTools, parseForcedCall, findToolCalls, ToolCallStreamer, type ToolDefinition, type ToolPlan, type ToolCallOut } from "./tools.ts";
export { ReasoningSplitter } from "./reasoning.ts";
