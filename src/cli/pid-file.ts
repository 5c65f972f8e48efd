import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";

/**
 * The daemon's pid file ($MODEL_RUNNER_HOME/daemon.pid): JSON, like the
 * engines' pid files, written by `mr serve` once it listens and removed when
 * it stops. `mr status`, `mr stop-runner` and `mr restart-runner` read it.
 */
export interface DaemonRecord {
  pid: number;
  /** `http://host:port` it listens on. */
  url: string;
  /** ISO time it started listening. */
  started_at: string;
  /** Its own log file (what `mr logs` prints). */
  log_file: string;
}

export function writePidFile(path: string, record: DaemonRecord): void {
  // Readers see the old file or the new one, never half of one.
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record)}\n`);
  renameSync(tmp, path);
}

/** Removes the pid file if it is still `pid`'s (a newer daemon's stays). */
export function removePidFile(path: string, pid: number): void {
  if (readRecord(path)?.pid === pid) rmSync(path, { force: true });
}

/** The live daemon the pid file names, or null (no file, unreadable, or that process is gone). */
export function readPidFile(path: string): DaemonRecord | null {
  const record = readRecord(path);
  return record && isDaemonProcess(record.pid) ? record : null;
}

function readRecord(path: string): DaemonRecord | null {
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<DaemonRecord>;
    if (!Number.isInteger(parsed.pid) || parsed.pid! <= 1 || typeof parsed.url !== "string") return null;
    return { pid: parsed.pid!, url: parsed.url, started_at: String(parsed.started_at ?? ""), log_file: String(parsed.log_file ?? "") };
  } catch {
    return null;
  }
}

/** The process exists and has not exited (a zombie waiting for its parent has). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no /proc: kill(0) is all we know
  }
}

/** Alive and, where /proc tells, still an `mr serve` (a reused pid is not ours to signal). */
function isDaemonProcess(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.includes("serve");
  } catch {
    return true; // no /proc (macOS): trust the live pid
  }
}
