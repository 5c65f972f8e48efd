import { LlamaText, type GbnfJsonSchema, type Llama, type LlamaGrammar } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";

/**
 * Structured output: JSON schemas and GBNF grammars turned into node-llama-cpp
 * grammars for constrained sampling. A schema is accepted only if every
 * keyword in it is enforced by the grammar (or is a pure annotation), so the
 * output always validates; anything else is a 400 naming the keyword. The
 * daemon's dialects (Ollama `format`, Responses `text.format`, Anthropic
 * tool input schemas) should go through `checkJsonSchema` / `grammarForJsonSchema`.
 */

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

/** Keywords with no effect on validation (annotations); accepted and ignored. */
const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "strict",
]);

const BASIC_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const STRING_FORMATS = new Set(["date-time", "time", "date"]);
/** The most properties/items/length a bound may name; larger ones bloat the grammar. */
const MAX_BOUND = 1000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isPrimitive = (v: unknown) => v === null || ["string", "number", "boolean"].includes(typeof v);

/**
 * Checks a JSON schema and rewrites it into the subset node-llama-cpp's grammar
 * generator understands (`anyOf` → `oneOf`, `definitions` → `$defs`, type
 * unions → `oneOf`, `nullable`). Throws UnsupportedSchemaError naming the
 * first keyword that cannot be enforced, with `param` as the path prefix
 * (e.g. `response_format.json_schema.schema`).
 *
 * Semantics worth knowing: every declared property is always generated (so
 * `required` is always met) and no undeclared one is, unless
 * `additionalProperties` allows it.
 */
export function checkJsonSchema(schema: unknown, param: string): GbnfJsonSchema {
  if (schema === true || (isObject(schema) && Object.keys(schema).length === 0)) {
    return { type: "object", additionalProperties: true } as unknown as GbnfJsonSchema; // "any JSON", as an object
  }
  if (!isObject(schema)) throw new UnsupportedSchemaError(`'${param}' must be a JSON schema object.`, param);
  const defs: Obj = { ...(isObject(schema.$defs) ? schema.$defs : {}), ...(isObject(schema.definitions) ? schema.definitions : {}) };
  const out = convert(schema, param, defs, true) as Obj;
  const convertedDefs: Obj = {};
  for (const [name, def] of Object.entries(defs)) {
    const where = `${param}.${isObject(schema.$defs) && name in schema.$defs ? "$defs" : "definitions"}.${name}`;
    convertedDefs[name] = convert(def, where, defs, false);
  }
  if (Object.keys(convertedDefs).length > 0) out.$defs = convertedDefs;
  return out as unknown as GbnfJsonSchema;
}

function unsupported(param: string, keyword: string, why = "is not supported for constrained output"): never {
  throw new UnsupportedSchemaError(`JSON schema keyword '${keyword}' at '${param}' ${why}.`, `${param}.${keyword}`);
}

function convert(schema: unknown, param: string, defs: Obj, isRoot: boolean): Json {
  if (schema === true) return anyJson();
  if (!isObject(schema)) throw new UnsupportedSchemaError(`'${param}' must be a JSON schema object.`, param);
  const out: Obj = {};
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key) || key === "$defs" || key === "definitions") {
      if (!isRoot && (key === "$defs" || key === "definitions")) unsupported(param, key, "is only supported at the schema's root");
      if (key === "description" && typeof schema.description === "string") out.description = schema.description;
      continue;
    }
    if (!KNOWN.has(key)) unsupported(param, key);
  }
  if ("$ref" in schema) {
    const ref = schema.$ref;
    const m = typeof ref === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    if (!m) unsupported(param, "$ref", `must point into '#/$defs/' or '#/definitions/' (got ${JSON.stringify(ref)})`);
    if (!(m[2]! in defs)) unsupported(param, "$ref", `points to a missing definition "${m[2]}"`);
    if (Object.keys(schema).some((k) => k !== "$ref" && !ANNOTATIONS.has(k))) unsupported(param, "$ref", "cannot be combined with other keywords");
    return { $ref: `#/$defs/${m[2]}` };
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives !== undefined) {
    const keyword = schema.anyOf !== undefined ? "anyOf" : "oneOf";
    if (schema.anyOf !== undefined && schema.oneOf !== undefined) unsupported(param, "oneOf", "cannot be combined with anyOf");
    if (!Array.isArray(alternatives) || alternatives.length === 0) unsupported(param, keyword, "must be a non-empty array");
    const rest = Object.keys(schema).filter((k) => k !== keyword && !ANNOTATIONS.has(k));
    if (rest.length > 0) unsupported(param, rest[0]!, `cannot be combined with ${keyword}`);
    return { oneOf: alternatives.map((alt, i) => convert(alt, `${param}.${keyword}.${i}`, defs, false)) };
  }
  if ("const" in schema) {
    if (!isPrimitive(schema.const)) unsupported(param, "const", "must be a string, number, boolean or null here");
    return { const: schema.const as Json };
  }
  if ("enum" in schema) {
    if (!Array.isArray(schema.enum) || schema.enum.length === 0) unsupported(param, "enum", "must be a non-empty array");
    const bad = schema.enum.findIndex((v) => !isPrimitive(v));
    if (bad >= 0) unsupported(param, `enum.${bad}`, "must be a string, number, boolean or null");
    return { enum: schema.enum as Json[] };
  }
  let type = schema.type;
  if (type === undefined) {
    // Untyped schemas are allowed only when the keywords say which type they mean.
    if ("properties" in schema || "additionalProperties" in schema) type = "object";
    else if ("items" in schema || "prefixItems" in schema) type = "array";
    else if (Object.keys(schema).every((k) => ANNOTATIONS.has(k))) return anyJson();
    else unsupported(param, "type", "is required alongside these keywords");
  }
  const nullable = schema.nullable === true;
  if (Array.isArray(type)) {
    if (type.length === 0) unsupported(param, "type", "must not be empty");
    for (const t of type) if (typeof t !== "string") unsupported(param, "type", "must name types as strings");
    const types = [...new Set(type as string[])];
    if (types.every((t) => BASIC_TYPES.has(t)) && !("minLength" in schema || "maxLength" in schema || "format" in schema)) {
      return withDescription({ type: nullable && !types.includes("null") ? [...types, "null"] : types }, schema);
    }
    return { oneOf: types.map((t) => convert({ ...schema, type: t, nullable: false }, param, defs, false)) };
  }
  if (typeof type !== "string") unsupported(param, "type", "must be a string or an array of strings");
  const single = convertTyped(schema, type, param, defs);
  return nullable && type !== "null" ? { oneOf: [single, { type: "null" }] } : single;
}

const KNOWN = new Set([
  "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
  "minLength", "maxLength", "format", "enum", "const", "anyOf", "oneOf", "$ref", "nullable", "minProperties", "maxProperties",
]);

/** Any JSON value: node-llama-cpp has no "any" schema, so spell it out. */
const anyJson = (): Json =>
  ({ oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }] }) as Json;

function withDescription(out: Obj, schema: Obj): Json {
  if (typeof schema.description === "string") out.description = schema.description;
  return out as Json;
}

function bound(schema: Obj, key: string, param: string): number | undefined {
  const v = schema[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) unsupported(param, key, "must be a non-negative integer");
  if (v > MAX_BOUND) unsupported(param, key, `must be at most ${MAX_BOUND}`);
  return v;
}

// Keywords of other types than the one generated are ignored: JSON schema
// applies them only to instances of their own type.

function convertTyped(schema: Obj, type: string, param: string, defs: Obj): Json {
  switch (type) {
    case "object": {
      const props = schema.properties ?? {};
      if (!isObject(props)) unsupported(param, "properties", "must be an object");
      const properties: Obj = {};
      for (const [name, sub] of Object.entries(props)) properties[name] = convert(sub, `${param}.properties.${name}`, defs, false);
      if (schema.required !== undefined) {
        if (!Array.isArray(schema.required)) unsupported(param, "required", "must be an array of property names");
        for (const [i, name] of schema.required.entries()) {
          if (typeof name !== "string" || !(name in props)) {
            unsupported(param, `required.${i}`, `names ${JSON.stringify(name)}, which is not in 'properties'`);
          }
        }
      }
      const out: Obj = { type: "object", properties, required: Object.keys(properties) };
      const extra = schema.additionalProperties;
      if (extra !== undefined && extra !== false) {
        out.additionalProperties = extra === true ? true : convert(extra, `${param}.additionalProperties`, defs, false);
        const min = bound(schema, "minProperties", param);
        const max = bound(schema, "maxProperties", param);
        if (min !== undefined) out.minProperties = Math.max(min, Object.keys(properties).length);
        if (max !== undefined) {
          if (max < Object.keys(properties).length) unsupported(param, "maxProperties", "is below the number of declared properties");
          out.maxProperties = max;
        }
      } else {
        // Without additional properties, exactly the declared ones are generated.
        const n = Object.keys(properties).length;
        const min = bound(schema, "minProperties", param);
        const max = bound(schema, "maxProperties", param);
        if (min !== undefined && min > n) unsupported(param, "minProperties", "exceeds the declared properties and additionalProperties is false");
        if (max !== undefined && max < n) unsupported(param, "maxProperties", "is below the number of declared properties");
      }
      return withDescription(out, schema);
    }
    case "array": {
      const out: Obj = { type: "array" };
      if (schema.items !== undefined && schema.items !== true) {
        if (schema.items === false) out.maxItems = 0;
        else if (Array.isArray(schema.items)) unsupported(param, "items", "as an array (draft 4 tuples) is not supported; use prefixItems");
        else out.items = convert(schema.items, `${param}.items`, defs, false);
      }
      if (schema.prefixItems !== undefined) {
        if (!Array.isArray(schema.prefixItems)) unsupported(param, "prefixItems", "must be an array");
        out.prefixItems = schema.prefixItems.map((s, i) => convert(s, `${param}.prefixItems.${i}`, defs, false));
      }
      const min = bound(schema, "minItems", param);
      const max = bound(schema, "maxItems", param);
      if (min !== undefined && max !== undefined && max < min) unsupported(param, "maxItems", "is below minItems");
      if (min !== undefined) out.minItems = min;
      if (max !== undefined && out.maxItems === undefined) out.maxItems = max;
      return withDescription(out, schema);
    }
    case "string": {
      if (schema.format !== undefined) {
        if (typeof schema.format !== "string" || !STRING_FORMATS.has(schema.format)) {
          unsupported(param, "format", `"${String(schema.format)}" cannot be enforced (supported: ${[...STRING_FORMATS].join(", ")})`);
        }
        if ("minLength" in schema || "maxLength" in schema) unsupported(param, "format", "cannot be combined with minLength/maxLength");
        return withDescription({ type: "string", format: schema.format }, schema);
      }
      const min = bound(schema, "minLength", param);
      const max = bound(schema, "maxLength", param);
      if (min !== undefined && max !== undefined && max < min) unsupported(param, "maxLength", "is below minLength");
      return withDescription({ type: "string", ...(min !== undefined ? { minLength: min } : {}), ...(max !== undefined ? { maxLength: max } : {}) }, schema);
    }
    case "number":
    case "integer":
    case "boolean":
    case "null":
      return withDescription({ type }, schema);
    default:
      return unsupported(param, "type", `"${type}" is not a JSON schema type`);
  }
}

/** node-llama-cpp's number exponent (node_modules/node-llama-cpp/dist/utils/gbnfJson/terminals/GbnfNumber.js). */
const EXPONENT = ' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';

/**
 * node-llama-cpp lets numbers carry exponents of up to 16 digits: `1e606`
 * parses to Infinity and `5e-3` is no integer. Integers get no exponent;
 * other numbers at most two exponent digits, which doubles hold.
 */
export function boundNumbers(gbnf: string): string {
  return gbnf
    .split("\n")
    .map((line) => (line.includes(EXPONENT) ? line.replace(EXPONENT, line.includes('"."') ? " ([eE] [-+]? [0-9]{1,2})?" : "") : line))
    .join("\n");
}

/**
 * GBNF text (start rule `root`) for a schema already passed through
 * `checkJsonSchema`. Other grammars (tool calls) embed it by renaming its rules.
 */
export async function schemaGbnf(llama: Llama, schema: GbnfJsonSchema): Promise<string> {
  const base = await llama.createGrammarForJsonSchema(schema as never);
  return boundNumbers(base.grammar);
}

/**
 * Compiled grammars by key (schema JSON or GBNF text). Compiling a grammar
 * costs milliseconds; agents send the same schema on every request.
 */
export class GrammarCache {
  private readonly entries = new Map<string, Promise<LlamaGrammar>>();
  constructor(
    private readonly llama: Llama,
    private readonly capacity = 64,
  ) {}

  /** A grammar for a schema already passed through `checkJsonSchema`. */
  forSchema(schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    return this.get(`json:${JSON.stringify(schema)}`, async () => {
      // As node-llama-cpp's own JSON-schema grammars: stop on a run of newlines.
      return this.llama.createGrammar({
        grammar: await schemaGbnf(this.llama, schema),
        stopGenerationTriggers: [LlamaText(["\n".repeat(4)])],
        trimWhitespaceSuffix: true,
      });
    });
  }

  /** A grammar for tool calls, by a key that identifies the GBNF `make` builds. */
  forToolCalls(key: string, make: () => Promise<string>): Promise<LlamaGrammar> {
    return this.get(`calls:${key}`, async () => this.llama.createGrammar({ grammar: await make() }));
  }

  /** A grammar for GBNF text; rejects with InvalidGrammarError naming `param` if llama.cpp cannot parse it. */
  forGbnf(gbnf: string, param: string): Promise<LlamaGrammar> {
    return this.get(`gbnf:${gbnf}`, async () => {
      try {
        return await this.llama.createGrammar({ grammar: gbnf });
      } catch (error) {
        throw new InvalidGrammarError(`'${param}' is not a valid GBNF grammar: ${(error as Error).message}`, param, { cause: error });
      }
    });
  }

  private get(key: string, make: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // most recently used goes last
    } else {
      entry = make();
      entry.catch(() => this.entries.delete(key));
    }
    this.entries.set(key, entry);
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return entry;
  }
}

/**
 * Turns a JSON schema into a grammar, or throws UnsupportedSchemaError (400)
 * naming the keyword it cannot enforce. `param` prefixes the error's path.
 */
export async function grammarForJsonSchema(cache: GrammarCache, schema: unknown, param: string): Promise<LlamaGrammar> {
  return cache.forSchema(checkJsonSchema(schema, param));
}
