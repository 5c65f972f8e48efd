import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";

/**
 * Whether `pid` is a process that has not exited, the one definition every
 * module and test uses. A zombie (exited, waiting to be reaped by its parent)
 * counts as gone: it holds no lock, serves nothing and cannot be stopped.
 * A process that exists but belongs to another user (EPERM) counts as alive:
 * it may still hold what it held. Not a positive integer: false. Synchronous
 * because callers check it in tight loops and `/proc` reads do not block.
 */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the parenthesized command name, which may contain spaces and ")".
    const close = stat.lastIndexOf(")");
    return stat.slice(close + 2, close + 3) !== "Z";
  } catch (error) {
    // ENOENT on a system with /proc: gone. Without /proc, ask the kernel.
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && hasProc()) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

let procMounted: boolean | null = null;
function hasProc(): boolean {
  if (procMounted === null) {
    try {
      readFileSync("/proc/self/stat");
      procMounted = true;
    } catch {
      procMounted = false;
    }
  }
  return procMounted;
}

/**
 * Sends `signal` to the process group led by `pid` (engines run in their own
 * group, so helpers they fork get it too). A group that is already empty is
 * not an error: stopping something that has stopped is done.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already empty.
  }
}

/** How long after a child's exit its output may still take to be read before the exit is reported anyway. */
export const OUTPUT_DRAIN_MS = 1000;

/**
 * Settles when `child` has exited and what it printed has been read: Node
 * may report the exit before the last of its piped output (on a busy
 * machine, all of it), and a failure must carry that output. A process it
 * left behind that still holds the pipe delays the answer by at most
 * OUTPUT_DRAIN_MS. A child that could not be started settles with code null.
 * Never rejects.
 */
export function exitAfterOutput(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const streams = [child.stdout, child.stderr].filter((s): s is Readable => s !== null);
  const read = Promise.all(streams.map((s) => (s.closed || s.destroyed ? undefined : new Promise<void>((resolve) => s.once("close", () => resolve())))));
  return new Promise((resolve) => {
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const settle = () => resolve(exit!);
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      const bound = setTimeout(settle, OUTPUT_DRAIN_MS);
      bound.unref();
      void read.then(() => {
        clearTimeout(bound);
        settle();
      });
    });
    child.once("error", () => {
      // Never started: no exit event follows.
      if (exit === null && child.pid === undefined) {
        exit = { code: null, signal: null };
        settle();
      }
    });
  });
}
