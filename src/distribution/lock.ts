import { link, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { isAlive } from "../util/process.ts";
import { sleep } from "../util/signals.ts";

/**
 * A cross-process exclusive lock on a path, safe against SIGKILL.
 *
 * Taking it: the owner's pid is written to a private temp file, which is then
 * hard-linked to the lock path. `link` is atomic and fails with EEXIST when
 * the lock exists, so exactly one process wins, and the lock file is never
 * seen half-written (a plain `open(O_EXCL)` + write could be killed between
 * the two and leave an empty, ownerless file).
 *
 * Breaking it: a lock whose pid is dead was left by a killed process. To stop
 * two waiters from both breaking it (the second would delete the lock the
 * first had just taken) breaking is itself serialized by a `.break` lock,
 * and the breaker re-reads the lock under it and deletes it only if it still
 * names the dead pid. A `.break` file older than 10 s is from a breaker that
 * was itself killed and is removed. Pids are only meaningful on one machine:
 * the store must not be shared over a network filesystem by several hosts.
 */
export class FileLock {
  private token: string | null = null;

  constructor(readonly path: string) {}

  /** Waits for the lock; rejects with `signal.reason` if aborted while waiting. */
  async acquire(signal?: AbortSignal): Promise<void> {
    const mine = `${process.pid}\n${randomBytes(6).toString("hex")}\n`;
    const tmp = join(dirname(this.path), `.lock-${process.pid}-${randomBytes(6).toString("hex")}`);
    await writeFile(tmp, mine);
    try {
      let delayMs = 2;
      for (;;) {
        signal?.throwIfAborted();
        try {
          await link(tmp, this.path);
          this.token = mine;
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        const holder = await readFile(this.path, "utf8").catch(() => null);
        if (holder !== null && !isAlive(pidOf(holder))) await this.breakStale(holder);
        else await sleep(delayMs, signal);
        delayMs = Math.min(delayMs * 2, 50);
      }
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  /** Returns true and holds the lock if it was free (or stale), false if a live process holds it. */
  async tryAcquire(): Promise<boolean> {
    const ac = new AbortController();
    const holder = await readFile(this.path, "utf8").catch(() => null);
    if (holder !== null && isAlive(pidOf(holder))) return false;
    const timer = setTimeout(() => ac.abort(new Error("busy")), 200);
    try {
      await this.acquire(ac.signal);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async release(): Promise<void> {
    if (this.token === null) return;
    const current = await readFile(this.path, "utf8").catch(() => null);
    if (current === this.token) await unlink(this.path).catch(() => {});
    this.token = null;
  }

  private async breakStale(seen: string): Promise<void> {
    const breaker = `${this.path}.break`;
    const tmp = `${breaker}-${process.pid}-${randomBytes(4).toString("hex")}`;
    await writeFile(tmp, `${process.pid}\n`);
    try {
      await link(tmp, breaker);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const st = await stat(breaker).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 10_000) await unlink(breaker).catch(() => {});
      return;
    } finally {
      await unlink(tmp).catch(() => {});
    }
    try {
      const again = await readFile(this.path, "utf8").catch(() => null);
      if (again === seen) await unlink(this.path).catch(() => {});
    } finally {
      await unlink(breaker).catch(() => {});
    }
  }
}

/** Runs `fn` holding the lock at `path`. */
export async function withFileLock<T>(path: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  const lock = new FileLock(path);
  await lock.acquire(signal);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

function pidOf(content: string): number {
  return Number.parseInt(content.split("\n")[0] ?? "", 10);
}

// Re-exported for the store, which imported them from here; defined once in src/util.
export { isAlive } from "../util/process.ts";
export { sleep } from "../util/signals.ts";
