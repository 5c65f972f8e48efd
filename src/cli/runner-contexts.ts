import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import { writeAtomic } from "../atomic-write.ts";
import type { CliConfig } from "../config.ts";
import { CliError } from "./errors.ts";

/** The context that means "no context": the default address (or MODEL_RUNNER_HOST), as `docker model context use default`. */
export const DEFAULT_CONTEXT = "default";

const CONTEXT_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

const RunnerContextSchema = z.strictObject({
  host: z.string(),
  tls: z.strictObject({ enabled: z.boolean(), skip_verify: z.boolean(), ca_cert: z.string().nullable() }),
  description: z.string(),
  created_at: z.string(),
});

/** A named daemon address (`mr context create`), as DMR's `ContextConfig`. */
export type RunnerContext = z.infer<typeof RunnerContextSchema>;

const ContextFileSchema = z.strictObject({ current: z.string().nullable(), contexts: z.record(z.string(), RunnerContextSchema) });
type ContextFile = z.infer<typeof ContextFileSchema>;

/** `$MODEL_RUNNER_HOME/contexts.json`: the CLI's named addresses and which one is in use. */
export const contextsPath = (home: string) => join(home, "contexts.json");

/**
 * The named contexts on disk. Every change is one atomic write of the whole
 * file, so a crash or a second `mr` never leaves it half-written; a file that
 * does not parse is an error naming it, never silently replaced.
 */
export class ContextStore {
  constructor(readonly path: string) {}

  async read(): Promise<ContextFile> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { current: null, contexts: {} };
      throw new CliError(`cannot read ${this.path}: ${(error as Error).message}`);
    }
    let parsed: ContextFile;
    try {
      parsed = ContextFileSchema.parse(JSON.parse(text));
    } catch {
      throw new CliError(`${this.path} is not a contexts file mr can read: fix it or remove it`);
    }
    return parsed;
  }

  /** The context in use, or null (the default address). */
  async current(): Promise<{ name: string; context: RunnerContext } | null> {
    const file = await this.read();
    if (file.current === null) return null;
    const context = file.contexts[file.current];
    if (!context) throw new CliError(`the context in use, "${file.current}", is not in ${this.path}: run 'mr context use default'`);
    return { name: file.current, context };
  }

  async get(name: string): Promise<RunnerContext> {
    const context = (await this.read()).contexts[name];
    if (!context) throw new CliError(`no context "${name}" (see 'mr context ls')`);
    return context;
  }

  async create(name: string, context: RunnerContext): Promise<void> {
    if (name === DEFAULT_CONTEXT) throw new CliError(`"${DEFAULT_CONTEXT}" is the built-in context; choose another name`);
    if (!CONTEXT_NAME.test(name)) throw new CliError(`context names are letters, digits, '_', '.' and '-' (up to 64, not starting with a sign), got "${name}"`);
    const file = await this.read();
    if (file.contexts[name]) throw new CliError(`context "${name}" already exists (mr context rm ${name} first)`);
    await this.write({ ...file, contexts: { ...file.contexts, [name]: context } });
  }

  async use(name: string): Promise<void> {
    const file = await this.read();
    if (name !== DEFAULT_CONTEXT && !file.contexts[name]) throw new CliError(`no context "${name}" (see 'mr context ls')`);
    await this.write({ ...file, current: name === DEFAULT_CONTEXT ? null : name });
  }

  async remove(name: string): Promise<void> {
    if (name === DEFAULT_CONTEXT) throw new CliError(`"${DEFAULT_CONTEXT}" is the built-in context; it cannot be removed`);
    const file = await this.read();
    if (!file.contexts[name]) throw new CliError(`no context "${name}" (see 'mr context ls')`);
    if (file.current === name) throw new CliError(`context "${name}" is in use: run 'mr context use default' first`);
    const { [name]: _removed, ...rest } = file.contexts;
    await this.write({ ...file, contexts: rest });
  }

  private async write(file: ContextFile): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    await writeAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  }
}

/**
 * The configuration with the context in use applied: its address (never
 * auto-started, as with MODEL_RUNNER_HOST) and TLS settings, the CA file read
 * now so that a missing one is an error naming it. MODEL_RUNNER_HOST wins
 * over a context, as in DMR.
 */
export async function withCurrentContext(config: CliConfig): Promise<CliConfig> {
  if (config.hostSource !== null) return config;
  const current = await new ContextStore(contextsPath(config.home)).current();
  if (current === null) return config;
  const { name, context } = current;
  let ca: string | null = null;
  if (context.tls.ca_cert !== null) {
    try {
      ca = await readFile(context.tls.ca_cert, "utf8");
    } catch (error) {
      throw new CliError(`context "${name}": cannot read its CA certificate ${context.tls.ca_cert}: ${(error as Error).message}`);
    }
  }
  const tls = context.tls.enabled ? { ca, skipVerify: context.tls.skip_verify } : null;
  return Object.freeze({ ...config, baseUrl: context.host, hostSource: `context "${name}"`, tls });
}
