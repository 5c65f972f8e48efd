/**
 * A leak check after every test file, preloaded by scripts/run-tests.mjs
 * (`--import`) into each file's process, as Docker Model Runner runs goleak
 * in every package: when a file's tests have ended, nothing they started may
 * still run, i.e. no live child process of the test process (an engine, a
 * registry, `mr serve`) and no listening server in it (a daemon or a fake
 * that was never closed).
 *
 * How. A root `after` hook marks the end of the file's tests. The file's own
 * `after` hooks may still be stopping things then, so nothing is judged
 * yet: a clean file's process simply exits once its event loop is empty
 * (the watch timer is unref'd and holds nothing). A leak keeps the loop
 * alive, so the watch finds it: still there `LEAK_CHECK_GRACE_MS` (default
 * 10 s) after the tests ended → the leaks are listed on stderr, leaked
 * children are SIGKILLed, and the process exits 1, which fails the file.
 * A child that holds no handle of ours (detached, unref'd) cannot keep the
 * loop alive: the `exit` handler catches it and sets the exit code to 1.
 *
 * Set `LEAK_CHECK=off` to disable (for debugging a file by hand).
 */
import { readdirSync, readFileSync } from "node:fs";
import { Server } from "node:net";
import { after } from "node:test";

/** Live, non-zombie children of this process, except tsx's esbuild service (it lives as long as the process). */
export function liveChildren(): Array<{ pid: number; command: string }> {
  const out: Array<{ pid: number; command: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) !== process.pid || rest[0] === "Z") continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      if (/\besbuild\b/.test(command) && command.includes("--service")) continue;
      out.push({ pid: Number(entry), command });
    } catch {
      // it exited while we looked
    }
  }
  return out;
}

/** Servers of this process still listening (net.Server underlies http, fastify and undici's test servers). */
export function listeningServers(): string[] {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles
    .filter((h): h is Server => h instanceof Server && h.listening)
    .map((s) => {
      const a = s.address();
      return typeof a === "string" ? a : a ? `${a.address}:${a.port}` : "?";
    });
}

function describeLeaks(children: Array<{ pid: number; command: string }>, servers: string[]): string {
  return [
    ...children.map((c) => `  child process ${c.pid}: ${c.command.slice(0, 200)}`),
    ...servers.map((s) => `  listening server ${s}`),
  ].join("\n");
}

function install(): void {
  const graceMs = Number(process.env.LEAK_CHECK_GRACE_MS ?? 10_000);
  const file = process.argv[1] ?? "this test file";
  let testsEnded = false;
  after(() => {
    testsEnded = true;
    const since = Date.now();
    const watch = setInterval(() => {
      const children = liveChildren();
      const servers = listeningServers();
      if (children.length === 0 && servers.length === 0) return;
      if (Date.now() - since < graceMs) return;
      clearInterval(watch);
      process.stderr.write(
        `\nLEAK CHECK FAILED: ${file} left these running ${graceMs} ms after its tests ended (stop them in an after hook):\n` +
          `${describeLeaks(children, servers)}\n`,
      );
      for (const c of children) {
        try {
          process.kill(c.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      process.exit(1);
    }, 250);
    watch.unref();
  });
  process.on("exit", (code) => {
    if (!testsEnded) return; // the file failed to load or was killed: its own failure is the report
    const children = liveChildren();
    if (children.length === 0) return;
    process.stderr.write(`\nLEAK CHECK FAILED: ${file} left child processes running:\n${describeLeaks(children, [])}\n`);
    for (const c of children) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    if (code === 0) process.exitCode = 1;
  });
}

// Only in a test file's own process (node --test sets NODE_TEST_CONTEXT there), not in the runner that spawns them.
if (process.env.NODE_TEST_CONTEXT && process.env.LEAK_CHECK !== "off") install();
