import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { eventually } from "./processes.ts";

function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

const LEAK_CHECK = new URL("./leak-check.ts", import.meta.url).href;
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

/** Runs one file with `node --test` and the leak check preloaded, as scripts/run-tests.mjs does. */
async function runUnderLeakCheck(file: string): Promise<{ code: number | null; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, LEAK_CHECK_GRACE_MS: "1000" };
  delete env.NODE_TEST_CONTEXT; // a fresh runner, not a child of ours
  const child = spawn(process.execPath, ["--import", "tsx", "--import", LEAK_CHECK, "--test", "--test-timeout=60000", file], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const [code] = (await once(child, "close")) as [number | null];
  return { code, output };
}

test("the leak check fails a test file that leaves a child process running, names it and kills it", async () => {
  const started = Date.now();
  const { code, output } = await runUnderLeakCheck(fixture("leaky-child.fixture.ts"));
  assert.notEqual(code, 0, output);
  const pid = Number(/LEAKED_PID=(\d+)/.exec(output)?.[1]);
  assert.ok(pid > 0, output);
  assert.match(output, new RegExp(`LEAK CHECK FAILED: .*leaky-child\\.fixture\\.ts left these running[\\s\\S]*child process ${pid}: sleep 300`));
  // Killed: gone, or a zombie waiting for an init that may not reap in a container.
  await eventually(() => !isRunning(pid), 5000, "the leaked child to be killed");
  assert.ok(Date.now() - started < 30_000, "caught in seconds, not at the 5-minute file timeout");
});

test("the leak check fails a test file that leaves a server listening", async () => {
  const { code, output } = await runUnderLeakCheck(fixture("leaky-server.fixture.ts"));
  assert.notEqual(code, 0, output);
  assert.match(output, /LEAK CHECK FAILED[\s\S]*listening server 127\.0\.0\.1:\d+/);
});

test("the leak check passes a file that stops what it started in its after hooks", async () => {
  const { code, output } = await runUnderLeakCheck(fixture("tidy.fixture.ts"));
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /LEAK CHECK/);
});
