import type { CliConfig } from "../config.ts";
import type { DaemonClient } from "./client.ts";
import type { FlagSpecs, ParsedArgs } from "./args.ts";
import type { Style } from "./output.ts";

/** The streams a command talks through; tests and main pass process's. */
export interface CliIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** What every command receives: config, io, style and a way to reach the daemon. */
export interface Cli {
  config: CliConfig;
  io: CliIo;
  /** Colour for stdout (a terminal and no NO_COLOR). */
  style: Style;
  /** Colour for stderr. */
  errStyle: Style;
  debug: boolean;
  /** Aborted on Ctrl-C (SIGINT) unless a command takes SIGINT over. */
  signal: AbortSignal;
  /** The daemon client; starts a local daemon first when allowed (daemon.ts). */
  daemon(): Promise<DaemonClient>;
  /**
   * Takes Ctrl-C over until the returned function is called: `handler`
   * returns true when it handled the interrupt (e.g. stopped an answer);
   * false falls back to aborting `signal` (exit 130).
   */
  onInterrupt(handler: () => boolean): () => void;
  /** Writes a one-line note to stderr. */
  note(message: string): void;
  /** The `mr` binary, for spawning `mr serve`. */
  binPath: string;
}

/** One `mr` subcommand: its flags, help text and body. `run` returns the exit code. */
export interface Command {
  name: string;
  aliases?: readonly string[];
  summary: string;
  usage: string;
  /** Shown under the flags in --help. */
  examples?: readonly string[];
  /** Paragraph shown after the usage line. */
  description?: string;
  flags: FlagSpecs;
  /** Subcommands offered by shell completion (e.g. configure show). */
  subcommands?: readonly string[];
  /** The most positional arguments it takes (0: none); more are a usage error. Unset: the command checks. */
  maxArgs?: number;
  /** Hidden from `mr --help` (aliases of other tools). */
  isHidden?: boolean;
  run(cli: Cli, args: ParsedArgs): Promise<number>;
}
