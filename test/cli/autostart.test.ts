import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { DEFAULT_URL, holdDefaultAddress, isDefaultAddressAnswering, runMr } from "../helpers/cli.ts";
import { tempDir } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";



test("without MODEL_RUNNER_HOST a command starts the daemon in the background, once", async (t) => {
  await holdDefaultAddress(t);
  if (await isDefaultAddressAnswering()) {
    t.skip(`something already answers at ${DEFAULT_URL}`);
    return;
  }
  const home = await tempDir("mr-autostart-");
  const env = { MODEL_RUNNER_HOME: home };
  let pid: number | null = null;
  t.after(async () => {
    if (pid === null) return;
    try {
      process.kill(-pid, "SIGTERM"); // it leads its own process group
    } catch {
      /* already gone */
    }
    await eventually(async () => !(await pidsMatching("serve --host 127.0.0.1 --port 12434")).includes(pid!), 15_000, "the daemon to stop");
  });

  const first = await runMr(["ls", "--json"], { env });
  const m = /started one in the background \(pid (\d+), logs: (\S+)\)/.exec(first.stderr);
  if (m) pid = Number(m[1]);
  assert.equal(first.code, 0, first.stderr);
  assert.ok(m, first.stderr);
  assert.match(first.stderr, /No model runner answered at http:\/\/127\.0\.0\.1:12434/);
  assert.deepEqual(JSON.parse(first.stdout), []);
  assert.equal(m[2], `${home}/logs/daemon.log`);
  assert.match(await readFile(m[2], "utf8"), /listening/);

  const second = await runMr(["ls", "-q"], { env });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stderr, "", "the running daemon is reused");

  // status only reports; it answers from the running daemon.
  const status = JSON.parse((await runMr(["status", "--json"], { env })).stdout) as { running: boolean };
  assert.equal(status.running, true);
});
