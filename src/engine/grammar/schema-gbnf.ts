import { LlamaText, type GbnfJsonSchema, type Llama, type LlamaGrammar } from "node-llama-cpp";
import { InvalidGrammarError } from "./errors.ts";
import { checkJsonSchema } from "./normalize.ts";
import { integerGbnf, numberGbnf, type NumberBounds } from "./numbers.ts";
import { patternGbnf } from "./pattern.ts";
import { isObject, NUMBER_KEYWORDS, type Obj } from "./schema-keywords.ts";

/**
 * Normalised JSON schemas and GBNF text turned into node-llama-cpp grammars
 * for constrained sampling, compiled once per key (GrammarCache).
 */

/** A leaf the grammar generator cannot write: our own GBNF for it, spliced in by schemaGbnf. */
function leafGbnf(node: Obj, name: string, rules: string[]): string | null {
  if (node.type === "string" && typeof node.pattern === "string") return patternGbnf(node.pattern);
  if (node.type !== "integer" && node.type !== "number") return null;
  const bounds: NumberBounds = {};
  for (const k of NUMBER_KEYWORDS) if (typeof node[k] === "number") bounds[k] = node[k] as number;
  if (Object.keys(bounds).length === 0) return null;
  return node.type === "integer" ? integerGbnf(bounds, name, rules) : numberGbnf(bounds, name, rules);
}

/**
 * Replaces each leaf with our own grammar by a string constant that cannot
 * occur elsewhere, so node-llama-cpp writes the document's structure
 * (objects, arrays, whitespace, $defs) and we write the leaves.
 */
function withPlaceholders(schema: unknown, nonce: string, leaves: Map<string, { name: string; gbnf: string }>, rules: string[]): unknown {
  if (Array.isArray(schema)) return schema.map((s) => withPlaceholders(s, nonce, leaves, rules));
  if (!isObject(schema)) return schema;
  const name = `leaf${leaves.size}`;
  const gbnf = leafGbnf(schema, name, rules);
  if (gbnf !== null) {
    const placeholder = `${nonce}${name}`;
    leaves.set(placeholder, { name, gbnf });
    return { const: placeholder };
  }
  const out: Obj = {};
  for (const [k, v] of Object.entries(schema)) {
    // Walk schema positions only; `properties`/`$defs` map names to schemas, `enum`/`const` are values.
    if (k === "const" || k === "enum" || k === "required" || k === "description") out[k] = v;
    else if ((k === "properties" || k === "$defs") && isObject(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([n, sub]) => [n, withPlaceholders(sub, nonce, leaves, rules)]));
    } else out[k] = withPlaceholders(v, nonce, leaves, rules);
  }
  return out;
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
  const text = JSON.stringify(schema);
  let nonce = "mrleaf";
  while (text.includes(nonce)) nonce += "x";
  const leaves = new Map<string, { name: string; gbnf: string }>();
  const rules: string[] = [];
  const structure = withPlaceholders(schema, nonce, leaves, rules);
  const base = await llama.createGrammarForJsonSchema(structure as never);
  let gbnf = boundNumbers(base.grammar);
  for (const [placeholder, leaf] of leaves) {
    const literal = `"\\"${placeholder}\\""`;
    if (!gbnf.includes(literal)) throw new Error(`schemaGbnf: node-llama-cpp's grammar lost the placeholder for ${leaf.name}`);
    gbnf = gbnf.replaceAll(literal, leaf.name);
    rules.push(`${leaf.name} ::= ${leaf.gbnf}`);
  }
  return rules.length === 0 ? gbnf : `${gbnf}\n${rules.join("\n")}`;
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
