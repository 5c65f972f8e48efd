import { execFile } from "node:child_process";
import { readdir, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "./models.ts";
import { setTimeout as delay } from "node:timers/promises";

/** Pids of live processes whose command line contains `needle` (reads /proc). */
export async function pidsMatching(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replaceAll("\0", " ");
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      // Zombies have exited; they only wait to be reaped by their parent.
      if (cmdline.includes(needle) && !/^\d+ \(.*\) Z/.test(stat)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/**
 * Live (non-zombie) child processes of this test process, except tsx's
 * esbuild service, which lives as long as the test process.
 */
export async function childPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const s = await readFile(`/proc/${entry}/stat`, "utf8");
      const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) !== process.pid || rest[0] === "Z") continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8");
      if (!cmdline.includes("esbuild")) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** The daemon's own definition (zombies count as gone), so tests and src cannot disagree. */
export { isAlive } from "../../src/util/process.ts";

/** Polls `check` until it returns true, failing after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

/**
 * A PATH (one temp directory of links) with the build tools this machine
 * has, minus `missing`: a build's tool check then fails on exactly those.
 */
export async function buildToolsPathWithout(...missing: string[]): Promise<string> {
  const bin = await tempDir("mr-path-");
  for (const tool of ["git", "cmake", "c++", "g++", "make"].filter((t) => !missing.includes(t))) {
    const { stdout } = await promisify(execFile)("sh", ["-c", `command -v ${tool} || true`]);
    if (stdout.trim()) await symlink(stdout.trim(), join(bin, tool));
  }
  return bin;
}
