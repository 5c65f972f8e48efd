import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { join } from "node:path";
import { waitForHealth } from "../../src/inference/engine-process.ts";
import { isAlive, signalGroup } from "../../src/util/process.ts";
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
