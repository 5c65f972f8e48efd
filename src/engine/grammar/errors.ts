import { InvalidRequestError } from "../../errors.ts";

/** A schema keyword we cannot enforce, or a malformed schema: a 400 naming where. */
export class UnsupportedSchemaError extends InvalidRequestError {
  override readonly code = "unsupported_schema";
  constructor(message: string, param: string) {
    super(message, param);
  }
}

/** A GBNF grammar llama.cpp could not parse. */
export class InvalidGrammarError extends InvalidRequestError {
  override readonly code = "invalid_grammar";
}

/** Throws UnsupportedSchemaError for `keyword` at `param` (the 400's `param` is the keyword's path). */
export function unsupported(param: string, keyword: string, why = "is not supported for constrained output"): never {
  throw new UnsupportedSchemaError(`JSON schema keyword '${keyword}' at '${param}' ${why}.`, `${param}.${keyword}`);
}
