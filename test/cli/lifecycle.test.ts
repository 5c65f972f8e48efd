import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { cleanEnv, collect, DEFAULT_URL, holdDefaultAddress, isDefaultAddressAnswering, runMr } from "../helpers/cli.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";

// The daemon's lifecycle as `mr` manages it at the default address (no
// MODEL_RUNNER_HOST): auto-start by two commands at once, status, logs,
// stop-runner / start-runner / restart-runner. Skipped when something
// already answers there (a developer's own daemon).
const DAEMON_ARGS = "serve --host 127.0.0.1 --port 12434";
const HUMAN_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARN|ERROR|FATAL)\s+(daemon|scheduler|engine)\s+\S/;


test("lifecycle: two commands auto-start one daemon; status shows address, pid, uptime, logs; restart, stop and start it", async (t) => {
  await holdDefaultAddress(t);
  if (await isDefaultAddressAnswering()) {
    t.skip(`something already answers at ${DEFAULT_URL}`);
    return;
  }
  const home = await tempDir("mr-lifecycle-");
  const env = { MODEL_RUNNER_HOME: home };
  const mr = (args: string[]) => runMr(args, { env });
  t.after(async () => {
    await mr(["stop-runner"]);
    for (const pid of await pidsMatching(DAEMON_ARGS)) if (existsSync(`/proc/${pid}/environ`)) {
      const environ = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "");
      if (environ.includes(home)) process.kill(pid, "SIGKILL");
    }
  });

  const [a, b] = await Promise.all([mr(["ls", "--json"]), mr(["ls", "--json"])]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const starts = [a, b].filter((r) => /started one in the background/.test(r.stderr));
  assert.equal(starts.length, 1, `exactly one command starts it:\n${a.stderr}\n${b.stderr}`);
  const pid = Number(/\(pid (\d+),/.exec(starts[0]!.stderr)![1]);
  assert.deepEqual(await pidsMatching(DAEMON_ARGS), [pid], "one daemon runs");

  const record = JSON.parse(await readFile(`${home}/daemon.pid`, "utf8")) as { pid: number; url: string; log_file: string };
  assert.equal(record.pid, pid);
  assert.equal(record.url, DEFAULT_URL);

  const status = await mr(["status"]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^Address\s+http:\/\/127\.0\.0\.1:12434$/m);
  assert.match(status.stdout, new RegExp(`^PID\\s+${pid}$`, "m"));
  assert.match(status.stdout, /^Uptime\s+\d+s$/m);
  assert.match(status.stdout, new RegExp(`^Logs\\s+${home}/logs/model-runner.log$`, "m"));
  assert.doesNotMatch(status.stdout, /MODEL_RUNNER_HOST/, "not set, so not mentioned");
  const statusJson = JSON.parse((await mr(["status", "--json"])).stdout) as { pid: number; uptime_seconds: number; log_file: string };
  assert.equal(statusJson.pid, pid);
  assert.equal(statusJson.log_file, `${home}/logs/model-runner.log`);

  // Logs for people and as JSON, with one component per line; an engine ran, so it has lines too.
  assert.equal((await mr(["package", "-q", "--gguf", await tinyModel({ seed: 11 }), "lc/tiny"])).code, 0);
  assert.equal((await mr(["configure", "--context-size", "64", "lc/tiny"])).code, 0);
  assert.equal((await mr(["run", "lc/tiny", "hi"])).code, 0);
  const raw = (await mr(["logs", "--json"])).stdout.trim().split("\n");
  for (const line of raw) {
    assert.equal(line.match(/"component":/g)?.length, 1, `one component key: ${line}`);
    JSON.parse(line);
  }
  assert.ok(raw.some((l) => l.includes('"component":"engine"')), "the engine logged");
  const noEngines = (await mr(["logs", "--json", "--no-engines"])).stdout.trim().split("\n");
  assert.ok(noEngines.length > 0 && noEngines.every((l) => !l.includes('"component":"engine"')), noEngines.join("\n"));
  const human = (await mr(["logs"])).stdout.trim().split("\n");
  assert.ok(human.length >= raw.length && human.every((l) => HUMAN_LINE.test(l)), human.slice(0, 5).join("\n"));
  assert.ok(human.some((l) => /\sengine\s/.test(l)));
  assert.ok((await mr(["logs", "--no-engines"])).stdout.trim().split("\n").every((l) => !/^\S+ \S+ \S+\s+engine\s/.test(l)));

  const restart = await mr(["restart-runner"]);
  assert.equal(restart.code, 0, restart.stderr);
  assert.match(restart.stdout, new RegExp(`Stopped the model runner at ${DEFAULT_URL} \\(pid ${pid}\\)`));
  assert.equal((await pidsMatching(DAEMON_ARGS)).includes(pid), false, "the old daemon exited");
  const newPid = (JSON.parse((await mr(["status", "--json"])).stdout) as { pid: number }).pid;
  assert.ok(newPid > 0 && newPid !== pid);
  assert.equal((await pidsMatching(home)).length, 0, "no engine of the old daemon is left");

  const stop = await mr(["stop-runner"]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await pidsMatching(DAEMON_ARGS)).includes(newPid), false);
  assert.equal(existsSync(`${home}/daemon.pid`), false, "the pid file goes with the daemon");
  assert.equal((await mr(["status", "--json"])).code, 1);
  const again = await mr(["stop-runner"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^Error: no model runner started by mr is running/);
  const down = await mr(["status"]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^Error: cannot reach the model runner at http:\/\/127\.0\.0\.1:12434: start it with 'mr start-runner'/);
  assert.doesNotMatch(down.stderr, /MODEL_RUNNER_HOST/);

  const start = await mr(["start-runner"]);
  assert.equal(start.code, 0, start.stderr);
  assert.match(start.stdout, /^Model Runner is running at http:\/\/127\.0\.0\.1:12434 \(pid \d+; logs: /);
  const already = await mr(["start-runner"]);
  assert.equal(already.code, 0, "already running is fine");
  assert.equal((await pidsMatching(DAEMON_ARGS)).length, 1);
});

test("mr serve on a terminal logs readable lines; --json keeps JSON; Ctrl-C stops it", async () => {
  for (const isJson of [false, true]) {
    const home = await tempDir("mr-serve-tty-");
    const args = [MR_BIN, "serve", "--port", "0", ...(isJson ? ["--json"] : [])];
    // python3's pty module gives mr serve a real terminal on stdout and stderr.
    const child = spawn("python3", ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", process.execPath, ...args], {
      env: cleanEnv({ MODEL_RUNNER_HOME: home, TERM: "dumb" }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const done = collect(child, 60_000);
    await eventually(() => /listening on http/.test(out) && /model runner listening/.test(out), 30_000, `the daemon to start:\n${out}`);
    child.stdin!.write("\x03");
    const r = await done;
    child.stdin!.destroy();
    assert.equal(r.code, 0, out);
    const lines = out.replace(/\x1b\[[0-9;]*m/g, "").split(/\r?\n/).filter((l) => l.includes("model runner listening"));
    assert.equal(lines.length, 1, out);
    if (isJson) assert.match(lines[0]!, /^\{"level":30,"time":\d+,"component":"daemon",.*"msg":"model runner listening"\}$/);
    else assert.match(lines[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO +daemon +model runner listening url=http:\/\/127\.0\.0\.1:\d+ /);
    // The stop shows in the log file: the terminal's last lines can be lost when the process ends (Linux drops
    // what a pty's reader has not read yet once its other side closes, and python reads slowly under load).
    assert.match(await readFile(join(home, "logs", "model-runner.log"), "utf8"), /"msg":"model runner stopped"/);
  }
});
