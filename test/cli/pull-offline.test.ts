import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { runMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { tempDir } from "../helpers/models.ts";
import { freePort } from "../doubles/test-registry.ts";

// Offline, `mr pull` took 32 s to fail: the daemon retried a dial error 5
// times inside each of the CLI's 4 attempts. Now one line, at once.
let daemon: StartedDaemon;
let env: Record<string, string>;

before(async () => {
  const home = await tempDir("mr-offline-");
  daemon = await startDaemon(home);
  env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
});
after(() => daemon?.stop());

test("mr pull from a registry that refuses: one line naming the dial error, non-zero exit, under 2 s", async () => {
  const port = await freePort(); // closed
  // The daemon answers at once...
  const httpStarted = Date.now();
  const res = await fetch(`${daemon.url}/models/create`, { method: "POST", body: JSON.stringify({ from: `127.0.0.1:${port}/ai/tiny:latest` }) });
  assert.equal(res.status, 502);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, "registry_unreachable");
  assert.ok(Date.now() - httpStarted < 2000, `the daemon took ${Date.now() - httpStarted} ms`);
  // ...and the CLI adds no retries: its time is that of any command talking to the daemon (`mr ls`, measured
  // just before, so a loaded machine's slow node start-up is not counted against the pull) plus under 2 s.
  const baselineStarted = Date.now();
  assert.equal((await runMr(["ls"], { env })).code, 0);
  const baselineMs = Date.now() - baselineStarted;
  const started = Date.now();
  const r = await runMr(["pull", `127.0.0.1:${port}/ai/tiny:latest`], { env });
  const tookMs = Date.now() - started - baselineMs;
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line, no retry notes:\n${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`Cannot reach 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  assert.doesNotMatch(r.stderr, /retrying/i);
  assert.ok(tookMs < 2000, `took ${tookMs} ms more than \`mr ls\` (${baselineMs} ms)`);
});
