import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive, signalGroup } from "../util/process.ts";
import { sleep } from "../util/signals.ts";

/** What a pid file records about one engine process group. */
export interface PidRecord {
  pid: number;
  socket: string;
  backend: string;
  model: string;
  startedAt: string;
}

export const pidFilePath = (socketPath: string) => socketPath.replace(/\.sock$/, "") + ".pid";

/** Written when an engine spawns, removed once it has exited. */
export async function writePidFile(path: string, record: PidRecord): Promise<void> {
  await writeFile(path, `${JSON.stringify(record)}\n`, { mode: 0o600 });
}

/**
 * Whether `pid` is still the engine a pid file describes, not an unrelated
 * process that reused the number: its command line must name the socket it
 * was started for (both our engine and llama-server get it as `--host`), or,
 * for records without one, contain "engine".
 */
async function isOurEngine(record: PidRecord): Promise<boolean> {
  let cmdline: string;
  try {
    cmdline = (await readFile(`/proc/${record.pid}/cmdline`, "utf8")).split("\0").join(" ");
  } catch {
    return false; // gone, or no /proc: never signal a process we cannot identify
  }
  return record.socket ? cmdline.includes(record.socket) : cmdline.includes("engine");
}

/**
 * Stops engines a previous daemon left behind (it was SIGKILLed and could
 * not clean up): for each pid file in `runDir` whose process is still that
 * engine, SIGTERM its process group, wait up to `graceMs`, then SIGKILL the
 * group. Removes the pid files and stale sockets. Resolves with the pids that
 * were stopped.
 */
export async function reapOrphans(runDir: string, graceMs = 2000): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(runDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const reaped: number[] = [];
  for (const name of names.filter((n) => n.endsWith(".pid"))) {
    const path = join(runDir, name);
    let record: PidRecord | null = null;
    try {
      const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<PidRecord>;
      if (Number.isInteger(parsed.pid) && parsed.pid! > 1) record = { socket: "", backend: "", model: "", startedAt: "", ...parsed } as PidRecord;
    } catch {
      // unreadable: nothing to signal, just remove it
    }
    if (record && (await isOurEngine(record))) {
      signalGroup(record.pid, "SIGTERM");
      const deadline = Date.now() + graceMs;
      while (isAlive(record.pid) && Date.now() < deadline) await sleep(25);
      signalGroup(record.pid, "SIGKILL");
      reaped.push(record.pid);
    }
    if (record?.socket) await rm(record.socket, { force: true });
    await rm(path, { force: true });
  }
  // Sockets without a pid file are leftovers too (the engine never got to write one).
  for (const name of names.filter((n) => n.endsWith(".sock"))) {
    if (!names.includes(name.replace(/\.sock$/, ".pid"))) await rm(join(runDir, name), { force: true });
  }
  return reaped;
}
