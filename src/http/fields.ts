import { InvalidRequestError } from "../errors.ts";

/**
 * Type checks of request fields, with one wording on every API:
 * `'stream' must be a boolean, got string.` (what is wrong, not just where).
 */

/** The JSON type of a value as users name it: string, number, integer, boolean, array, object, null. */
export function jsonTypeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

export type FieldType = "boolean" | "string" | "integer" | "number" | "object" | "array";

const ARTICLE: Record<FieldType, string> = { boolean: "a boolean", string: "a string", integer: "an integer", number: "a number", object: "an object", array: "an array" };

/** A field of the wrong JSON type; `param` names it (dotted path). */
export class InvalidFieldTypeError extends InvalidRequestError {
  override readonly code = "invalid_type";
  constructor(param: string, expected: string, value: unknown) {
    super(`'${param}' must be ${expected}, got ${jsonTypeOf(value)}.`, param);
  }
}

/** A required field that is absent. */
export class MissingFieldError extends InvalidRequestError {
  override readonly code = "missing_required_parameter";
  constructor(param: string, what = "") {
    super(`'${param}' is required${what ? `: ${what}` : ""}.`, param);
  }
}

function isType(value: unknown, type: FieldType): boolean {
  switch (type) {
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "array":
      return Array.isArray(value);
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    default:
      return typeof value === type;
  }
}

/** `value` when it has `type`, undefined when absent or null; otherwise an InvalidFieldTypeError naming `param`. */
export function optionalField<T = unknown>(value: unknown, type: FieldType, param: string): T | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isType(value, type)) throw new InvalidFieldTypeError(param, ARTICLE[type], value);
  return value as T;
}

/** An optional boolean field (`stream`, `verbose`, `truncate`...). */
export const optionalBoolean = (value: unknown, param: string): boolean | undefined => optionalField<boolean>(value, "boolean", param);

/** The first key of `body` that is not in `known` (a strict schema names it in its 400), or undefined. */
export function firstUnknownField(body: Record<string, unknown>, known: ReadonlySet<string>): string | undefined {
  for (const key of Object.keys(body)) if (!known.has(key)) return key;
  return undefined;
}
