export { runEngine } from "./run-engine.ts";
export { parseEngineArgs, defaultThreads, EngineUsageError, type EngineOptions } from "./options.ts";
export { createEngineApp } from "./server.ts";
export { checkSamplingDefaults } from "./requests.ts";
export { checkJsonSchema } from "./grammar/normalize.ts";
export { grammarForJsonSchema, GrammarCache } from "./grammar/schema-gbnf.ts";
export { UnsupportedSchemaError, InvalidGrammarError } from "./grammar/errors.ts";
export { checkTools, planTools, ToolCallParser, type ToolDefinition, type ToolPlan, type ToolCallOut, type CallSyntax } from "./tools.ts";
export { ReasoningSplitter } from "./reasoning.ts";
