import { readFileSync } from "node:fs";

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
