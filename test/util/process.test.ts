import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { join } from "node:path";
import { EngineProcess, waitForHealth } from "../../src/inference/engine-process.ts";
import { exitAfterOutput, isAlive, OUTPUT_DRAIN_MS, signalGroup } from "../../src/util/process.ts";
import { sleep } from "../../src/util/signals.ts";
import { tempDir } from "../helpers/models.ts";
import { eventually } from "../helpers/processes.ts";

test("isAlive: live processes yes; bad pids, exited processes and zombies no", async (t) => {
  assert.equal(isAlive(process.pid), true);
  assert.equal(isAlive(1), true, "pid 1 exists even if it is not ours (EPERM counts as alive)");
  for (const bad of [0, -1, Number.NaN, 1.5]) assert.equal(isAlive(bad), false, String(bad));
  // `sleep 0` becomes a child of `sleep 5` (after exec), which never reaps it: a zombie.
  const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 5"], { stdio: ["ignore", "pipe", "ignore"] });
  t.after(() => parent.kill("SIGKILL"));
  const [line] = (await once(createInterface({ input: parent.stdout! }), "line")) as [string];
  const zombie = Number(line);
  await eventually(() => !isAlive(zombie), 3000, "the child to exit and become a zombie");
  assert.equal(isAlive(parent.pid!), true);
  parent.kill("SIGKILL");
  await once(parent, "exit");
  assert.equal(isAlive(parent.pid!), false);
});

test("signalGroup signals the whole group; an empty group is no error", async () => {
  const leader = spawn("sh", ["-c", "sleep 30 & echo $!; wait"], { detached: true, stdio: ["ignore", "pipe", "ignore"] });
  const [line] = (await once(createInterface({ input: leader.stdout! }), "line")) as [string];
  const helper = Number(line);
  signalGroup(leader.pid!, "SIGKILL");
  await once(leader, "exit");
  await eventually(() => !isAlive(helper), 3000, "the forked helper to die with its group");
  signalGroup(leader.pid!, "SIGKILL"); // already gone: no throw
});

test("sleep and waitForHealth reject with signal.reason, not a generic AbortError", async () => {
  const reason = new Error("stop now");
  await assert.rejects(sleep(10_000, AbortSignal.abort(reason)), (e) => e === reason);
  const controller = new AbortController();
  setTimeout(() => controller.abort(reason), 50);
  await assert.rejects(sleep(10_000, controller.signal), (e) => e === reason);
  // Nothing listens on this socket: waitForHealth spends its time between polls.
  const socket = join(await tempDir("mr-u-"), "none.sock");
  const health = new AbortController();
  setTimeout(() => health.abort(reason), 120);
  await assert.rejects(waitForHealth(socket, health.signal), (e) => e === reason);
});

test("an engine's failure carries the output it printed just before it exited, however late that is read", async () => {
  // A process outside the engine's group that holds its stdout prints after the engine exits: the exit event
  // comes before the line is read, as it does for an engine's own last lines on a busy machine. (The pause
  // lets setsid leave the group before the engine's exit kills the group.)
  const engine = new EngineProcess({ command: "sh", args: ["-c", "echo loading; setsid sh -c \"sleep 0.3; echo 'error loading model: bad magic'\" & sleep 0.1; exit 1"] });
  const exit = await engine.exited;
  assert.deepEqual(exit, { code: 1, signal: null });
  const failure = engine.failure("engine", exit);
  assert.match(failure.message, /exited with code 1: the engine could not load the model file/);
  assert.match(failure.message, /engine output \(last lines\) ---\nloading\nerror loading model: bad magic$/);
  await engine.stop();
});

test("an engine whose leader exits takes what it forked with it", async () => {
  const engine = new EngineProcess({ command: "sh", args: ["-c", "sleep 30 & echo $!; sleep 0.2; exit 2"] });
  const lines = createInterface({ input: engine.child.stdout! });
  const [line] = (await once(lines, "line")) as [string];
  const helper = Number(line);
  assert.equal(isAlive(helper), true);
  assert.deepEqual(await engine.exited, { code: 2, signal: null });
  await eventually(() => !isAlive(helper), 2000, "the forked helper to die with the engine");
});

test("exitAfterOutput: a process left holding the pipe delays the exit by at most OUTPUT_DRAIN_MS", async (t) => {
  const child = spawn("sh", ["-c", "echo $$; sleep 30 & exit 4"], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => signalGroup(child.pid!, "SIGKILL"));
  child.stdout!.resume();
  const started = performance.now();
  assert.deepEqual(await exitAfterOutput(child), { code: 4, signal: null });
  const waited = performance.now() - started;
  assert.ok(waited >= OUTPUT_DRAIN_MS - 50 && waited < OUTPUT_DRAIN_MS + 2000, `settled after ${waited.toFixed(0)} ms`);
  // A command that cannot be started settles too, with no code.
  assert.deepEqual(await exitAfterOutput(spawn("/nonexistent/engine", [], { stdio: ["ignore", "pipe", "pipe"] }).on("error", () => undefined)), { code: null, signal: null });
});
