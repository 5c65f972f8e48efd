import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "./context.ts";
import { givenFlags } from "./args.ts";
import { CliError, UsageError } from "./errors.ts";
import { json, table } from "./output.ts";
import { ContextStore, contextsPath, DEFAULT_CONTEXT, type RunnerContext } from "./runner-contexts.ts";

const SUBCOMMANDS = ["create", "use", "ls", "rm", "inspect"] as const;
const CREATE_FLAGS = ["host", "tls", "tls-skip-verify", "tls-ca-cert", "description"];

/**
 * `--host` as a stored address: `scheme://host:port`, no path. `--tls`
 * makes it https (an `http://` host with --tls is a contradiction, refused);
 * an `https://` host turns TLS on by itself.
 */
function contextHost(text: string, tls: boolean): { host: string; tls: boolean } {
  const hasScheme = /^[a-z]+:\/\//i.test(text);
  let url: URL;
  try {
    url = new URL(hasScheme ? text : `${tls ? "https" : "http"}://${text}`);
  } catch {
    throw new UsageError(`--host must be a URL such as http://192.168.1.100:12434, got "${text}"`, "context");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--host must be http:// or https://, got "${text}"`, "context");
  if (tls && url.protocol === "http:") throw new UsageError(`--tls needs an https:// host, got "${text}"`, "context");
  if (url.pathname !== "/" || url.search || url.hash) throw new UsageError(`--host is the runner's address only (no path), got "${text}"`, "context");
  return { host: url.origin, tls: url.protocol === "https:" };
}

/** How `ls` and `inspect` show the built-in context. */
const DEFAULT_SHOWN = { host: "(local runner)", description: "The runner on this machine" };

/** A context as `mr context inspect` prints it (DMR's shape: the name, then its configuration). */
const inspected = (name: string, context: RunnerContext) => ({ name, ...context });

export const contextCommand: Command = {
  name: "context",
  summary: "Manage named model runner addresses (remote runners, TLS)",
  usage: "mr context create NAME --host URL [--tls] [--tls-skip-verify] [--tls-ca-cert FILE] [--description TEXT] | use NAME | ls | rm NAME... | inspect NAME...",
  description:
    "As `docker model context`: a context is a runner's address (and how to check its TLS certificate) kept in\n" +
    "$MODEL_RUNNER_HOME/contexts.json. `use` makes every command talk to it (`use default`: the local runner again);\n" +
    "MODEL_RUNNER_HOST, when set, wins over the context in use.",
  examples: [
    "mr context create gpu-box --host http://192.168.1.100:12434 --description 'the lab machine'",
    "mr context create secure --host runner.example.com:12444 --tls --tls-ca-cert ca.pem",
    "mr context use gpu-box",
    "mr context ls",
    "mr context use default",
  ],
  subcommands: SUBCOMMANDS,
  flags: {
    host: { type: "string", valueName: "URL", description: "create: the runner's address (http://host:port, https://..., or host:port)" },
    tls: { type: "boolean", description: "create: connect with TLS (https)" },
    "tls-skip-verify": { type: "boolean", description: "create: accept any TLS certificate" },
    "tls-ca-cert": { type: "string", valueName: "FILE", description: "create: the CA certificate (PEM) that signed the runner's" },
    description: { type: "string", valueName: "TEXT", description: "create: a note shown by ls" },
  },
  async run(cli, { values, positionals }) {
    const [sub, ...names] = positionals;
    if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
      throw new UsageError(`context takes one of ${SUBCOMMANDS.join(", ")}${sub === undefined ? "" : `, got "${sub}"`}`, "context");
    }
    const store = new ContextStore(contextsPath(cli.config.home));
    if (sub !== "create") {
      const createOnly = givenFlags(values, CREATE_FLAGS);
      if (createOnly) throw new UsageError(`${createOnly} go with context create`, "context");
    }
    if (sub === "create") {
      if (names.length !== 1) throw new UsageError("context create takes one NAME", "context");
      if (typeof values.host !== "string") throw new UsageError("context create needs --host URL", "context");
      const { host, tls } = contextHost(values.host, values.tls === true);
      if (!tls && (values["tls-skip-verify"] || values["tls-ca-cert"] !== undefined)) {
        throw new UsageError(`${givenFlags(values, ["tls-skip-verify", "tls-ca-cert"])} need --tls (or an https:// host)`, "context");
      }
      let caCert: string | null = null;
      if (typeof values["tls-ca-cert"] === "string") {
        caCert = resolve(values["tls-ca-cert"]);
        await readFile(caCert).catch((error: Error) => {
          throw new CliError(`--tls-ca-cert: cannot read ${caCert}: ${error.message}`);
        });
      }
      await store.create(names[0]!, {
        host,
        tls: { enabled: tls, skip_verify: values["tls-skip-verify"] === true, ca_cert: caCert },
        description: typeof values.description === "string" ? values.description : "",
        created_at: new Date().toISOString(),
      });
      cli.io.stdout.write(`Context "${names[0]}" created.\n`);
      return 0;
    }
    if (sub === "use") {
      if (names.length !== 1) throw new UsageError("context use takes one NAME", "context");
      await store.use(names[0]!);
      cli.io.stdout.write(`Current context is now "${names[0]}".\n`);
      if (cli.config.hostSource === "MODEL_RUNNER_HOST") cli.note(`MODEL_RUNNER_HOST (${cli.config.baseUrl}) is set and wins over the context.`);
      return 0;
    }
    if (sub === "ls") {
      if (names.length > 0) throw new UsageError("context ls takes no arguments", "context");
      const file = await store.read();
      if (cli.config.hostSource === "MODEL_RUNNER_HOST") cli.note(`Warning: MODEL_RUNNER_HOST=${cli.config.baseUrl} overrides the current context.`);
      const rows = [
        [DEFAULT_CONTEXT, DEFAULT_SHOWN.host, DEFAULT_SHOWN.description, file.current === null ? "*" : ""],
        ...Object.keys(file.contexts)
          .sort()
          .map((n) => [n, file.contexts[n]!.host, file.contexts[n]!.description, file.current === n ? "*" : ""]),
      ];
      cli.io.stdout.write(table(["NAME", "HOST", "DESCRIPTION", "CURRENT"], rows));
      return 0;
    }
    if (names.length === 0) throw new UsageError(`context ${sub} takes at least one NAME`, "context");
    if (sub === "rm") {
      for (const name of names) {
        await store.remove(name);
        cli.io.stdout.write(`Context "${name}" removed.\n`);
      }
      return 0;
    }
    const shown = [];
    for (const name of names) {
      shown.push(name === DEFAULT_CONTEXT ? { name, ...DEFAULT_SHOWN } : inspected(name, await store.get(name)));
    }
    cli.io.stdout.write(json(shown));
    return 0;
  },
};
