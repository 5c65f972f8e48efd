import type { GbnfJsonSchema } from "node-llama-cpp";
import { mergeAllOf } from "./all-of.ts";
import { unsupported, UnsupportedSchemaError } from "./errors.ts";
import { integerGbnf, NumberGrammarError, numberGbnf } from "./numbers.ts";
import { PatternGrammarError, patternGbnf } from "./pattern.ts";
import { ANNOTATIONS, isEqualJson, isObject, NUMBER_KEYWORDS, numberBounds, type Obj } from "./schema-keywords.ts";

/**
 * Schema normalisation for structured output: a JSON schema is accepted only
 * if every keyword in it is enforced by the grammar (or is a pure annotation),
 * so the output always validates; anything else is a 400 naming the keyword.
 * The daemon's dialects (Ollama `format`, Responses `text.format`, Anthropic
 * tool input schemas) should go through `checkJsonSchema` / `grammarForJsonSchema`.
 */

const BASIC_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const STRING_FORMATS = new Set(["date-time", "time", "date"]);
/** The most properties/items/length a bound may name; larger ones bloat the grammar. */
const MAX_BOUND = 1000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

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
  // Only definitions the schema reaches (allOf may have inlined the others).
  const reached = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!isObject(node)) return;
    if (typeof node.$ref === "string") {
      const name = node.$ref.slice("#/$defs/".length);
      if (!reached.has(name)) {
        reached.add(name);
        visit(convertedDefs[name]);
      }
    }
    for (const [k, v] of Object.entries(node)) if (k !== "const" && k !== "enum") visit(v);
  };
  visit(out);
  const used = Object.fromEntries(Object.entries(convertedDefs).filter(([name]) => reached.has(name)));
  if (Object.keys(used).length > 0) out.$defs = used;
  return out as unknown as GbnfJsonSchema;
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
  if ("not" in schema) unsupported(param, "not", "is not supported for constrained output (a grammar cannot exclude what a schema matches)");
  if ("allOf" in schema) return convert(mergeAllOf(schema, param, defs), param, defs, isRoot);
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
    const rest = Object.keys(schema).filter((k) => k !== keyword && !ANNOTATIONS.has(k) && k !== "$defs" && k !== "definitions");
    if (rest.length > 0) {
      // Keywords beside anyOf/oneOf apply to every alternative: A ∧ (B ∨ C) = (A ∧ B) ∨ (A ∧ C).
      const shared = Object.fromEntries(rest.map((k) => [k, schema[k]]));
      return { oneOf: alternatives.map((alt, i) => convert({ allOf: [alt, shared] }, `${param}.${keyword}.${i}`, defs, false)) };
    }
    return { oneOf: alternatives.map((alt, i) => convert(alt, `${param}.${keyword}.${i}`, defs, false)) };
  }
  if ("const" in schema || "enum" in schema) return convertValues(schema, param);
  let type = schema.type;
  if (type === undefined) {
    // Untyped schemas are allowed only when the keywords say which type they mean.
    if ("properties" in schema || "additionalProperties" in schema) type = "object";
    else if ("items" in schema || "prefixItems" in schema) type = "array";
    // Untyped string or number keywords also let other types through; generating that type alone is a valid subset.
    else if (["pattern", "minLength", "maxLength", "format"].some((k) => k in schema)) type = "string";
    else if (NUMBER_KEYWORDS.some((k) => k in schema)) type = "number";
    else if (Object.keys(schema).every((k) => ANNOTATIONS.has(k))) return anyJson();
    else unsupported(param, "type", "is required alongside these keywords");
  }
  const nullable = schema.nullable === true;
  if (Array.isArray(type)) {
    if (type.length === 0) unsupported(param, "type", "must not be empty");
    for (const t of type) if (typeof t !== "string") unsupported(param, "type", "must name types as strings");
    const types = [...new Set(type as string[])];
    if (types.every((t) => BASIC_TYPES.has(t)) && !TYPED_LEAF_KEYWORDS.some((k) => k in schema)) {
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
  "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern", "allOf", "not",
]);

/** Keywords that make a basic type need its own grammar (so a type union is split into alternatives). */
const TYPED_LEAF_KEYWORDS = ["minLength", "maxLength", "format", "pattern", ...NUMBER_KEYWORDS];

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
      if (schema.pattern !== undefined) {
        if (typeof schema.pattern !== "string") unsupported(param, "pattern", "must be a string");
        for (const k of ["format", "minLength", "maxLength"]) if (k in schema) unsupported(param, k, "cannot be combined with pattern");
        try {
          patternGbnf(schema.pattern);
        } catch (error) {
          if (error instanceof PatternGrammarError) unsupported(param, "pattern", error.message);
          throw error;
        }
        return withDescription({ type: "string", pattern: schema.pattern }, schema);
      }
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
    case "integer": {
      const bounds = numberBounds(schema, param);
      if (Object.keys(bounds).length > 0) {
        try {
          if (type === "integer") integerGbnf(bounds);
          else numberGbnf(bounds);
        } catch (error) {
          if (error instanceof NumberGrammarError) unsupported(param, error.keyword, error.message);
          throw error;
        }
      }
      return withDescription({ type, ...bounds }, schema);
    }
    case "boolean":
    case "null":
      return withDescription({ type }, schema);
    default:
      return unsupported(param, "type", `"${type}" is not a JSON schema type`);
  }
}

/** `const`/`enum`, with the values the schema's other keywords rule out removed. */
function convertValues(schema: Obj, param: string): Json {
  let values: unknown[];
  if ("const" in schema) {
    if (!isPrimitive(schema.const)) unsupported(param, "const", "must be a string, number, boolean or null here");
    values = [schema.const];
  } else {
    if (!Array.isArray(schema.enum) || schema.enum.length === 0) unsupported(param, "enum", "must be a non-empty array");
    const bad = schema.enum.findIndex((v) => !isPrimitive(v));
    if (bad >= 0) unsupported(param, `enum.${bad}`, "must be a string, number, boolean or null");
    values = schema.enum;
  }
  if ("const" in schema && "enum" in schema) {
    if (!Array.isArray(schema.enum)) unsupported(param, "enum", "must be a non-empty array");
    values = values.filter((v) => (schema.enum as unknown[]).some((e) => isEqualJson(e, v)));
  }
  const checks: Array<(v: unknown) => boolean> = [];
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key) || key === "const" || key === "enum" || key === "$defs" || key === "definitions") continue;
    if (key === "type") {
      const types = Array.isArray(schema.type) ? (schema.type as unknown[]) : [schema.type];
      checks.push((v) => types.some((t) => (t === "integer" ? Number.isInteger(v) : t === "null" ? v === null : typeof v === t)) || (schema.nullable === true && v === null));
    } else if (key === "nullable") continue;
    else if ((NUMBER_KEYWORDS as readonly string[]).includes(key)) {
      const b = numberBounds(schema, param);
      checks.push(
        (v) =>
          typeof v !== "number" ||
          ((b.minimum === undefined || v >= b.minimum) &&
            (b.maximum === undefined || v <= b.maximum) &&
            (b.exclusiveMinimum === undefined || v > b.exclusiveMinimum) &&
            (b.exclusiveMaximum === undefined || v < b.exclusiveMaximum) &&
            (b.multipleOf === undefined || Number.isInteger(v / b.multipleOf))),
      );
    } else if (key === "minLength" || key === "maxLength") {
      const n = bound(schema, key, param)!;
      checks.push((v) => typeof v !== "string" || (key === "minLength" ? [...v].length >= n : [...v].length <= n));
    } else if (key === "pattern" && typeof schema.pattern === "string") {
      let re: RegExp;
      try {
        re = new RegExp(schema.pattern, "u");
      } catch {
        return unsupported(param, "pattern", "is not a valid regular expression");
      }
      checks.push((v) => typeof v !== "string" || re.test(v));
    } else if (["properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minProperties", "maxProperties"].includes(key)) {
      continue; // apply to objects and arrays only; the values are primitives
    } else unsupported(param, key, `cannot be combined with ${"const" in schema ? "const" : "enum"}`);
  }
  values = values.filter((v) => checks.every((check) => check(v)));
  if (values.length === 0) unsupported(param, "const" in schema ? "const" : "enum", "leaves no value that the schema's other keywords allow");
  return values.length === 1 ? { const: values[0] as Json } : { enum: values as Json[] };
}
