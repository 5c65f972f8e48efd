import type { LlamaGrammar } from "node-llama-cpp";
import { grammarForJsonSchema, type GrammarCache } from "./schema-gbnf.ts";

/** A request's structured-output fields, as llama-server reads them (all optional). */
export interface GrammarFields {
  /** GBNF text. */
  grammar?: string | null | undefined;
  /** A JSON schema (llama-server's top-level field). */
  json_schema?: unknown;
  response_format?:
    | { type: "text" }
    | { type: "json_object"; schema?: unknown }
    | { type: "json_schema"; json_schema: { schema?: unknown } }
    | null
    | undefined;
}

/**
 * The grammar a request asks for, with llama-server's precedence: `grammar`,
 * then `json_schema`, then `response_format`; null when it asks for none.
 * A schema or grammar that cannot be enforced rejects with a 400 naming it.
 */
export async function grammarForRequest(cache: GrammarCache, fields: GrammarFields): Promise<LlamaGrammar | null> {
  if (typeof fields.grammar === "string" && fields.grammar.trim() !== "") return cache.forGbnf(fields.grammar, "grammar");
  if (fields.json_schema !== undefined && fields.json_schema !== null) return grammarForJsonSchema(cache, fields.json_schema, "json_schema");
  const format = fields.response_format;
  if (format?.type === "json_schema") return grammarForJsonSchema(cache, format.json_schema.schema, "response_format.json_schema.schema");
  if (format?.type === "json_object") return grammarForJsonSchema(cache, format.schema ?? {}, "response_format.schema");
  return null;
}
