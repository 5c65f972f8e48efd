import assert from "node:assert/strict";
import { createServer } from "node:http";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { loadCliConfig } from "../../src/config.ts";
import { parseCommandArgs, suggest } from "../../src/cli/args.ts";
import { DaemonClient, sseData } from "../../src/cli/client.ts";
import { completionScript } from "../../src/cli/completion.ts";
import { COMMANDS } from "../../src/cli/commands.ts";
import { DaemonError, DaemonUnreachableError, UsageError } from "../../src/cli/errors.ts";
import { listRows } from "../../src/cli/list.ts";
import { pickTag } from "../../src/cli/models.ts";
import { parseBenchDuration, percentile } from "../../src/cli/bench.ts";
import { formatLogLine } from "../../src/cli/log-format.ts";
import { formatBytes, makeStyle, parseSize, table, timeAgo } from "../../src/cli/output.ts";
import { ProgressRenderer } from "../../src/cli/progress.ts";
import { splitTarget } from "../../src/cli/tag.ts";

test("parseCommandArgs: flags, positionals, runtime flags after --", () => {
  const flags = { "context-size": { type: "string" as const }, quiet: { type: "boolean" as const, short: "q" } };
  const parsed = parseCommandArgs("configure", flags, ["--context-size", "8", "-q", "m", "--", "--threads", "4"]);
  assert.equal(parsed.values["context-size"], "8");
  assert.equal(parsed.values.quiet, true);
  assert.deepEqual(parsed.positionals, ["m"]);
  assert.deepEqual(parsed.rest, ["--threads", "4"]);
});

test("parseCommandArgs: an unknown flag is a usage error naming the closest one", () => {
  const flags = { quiet: { type: "boolean" as const } };
  assert.throws(
    () => parseCommandArgs("pull", flags, ["--quite", "m"]),
    (e: unknown) => e instanceof UsageError && /unknown flag --quite; did you mean --quiet\?/.test(e.message),
  );
  assert.throws(() => parseCommandArgs("pull", { tag: { type: "string" } }, ["--tag"]), /--tag needs a value/);
  assert.equal(suggest("lsit", ["list", "ls", "pull"]), "list");
  assert.equal(suggest("zzzzzz", ["list", "pull"]), null);
});

test("loadCliConfig: default address, MODEL_RUNNER_HOST forms, search endpoints", () => {
  const d = loadCliConfig({ MODEL_RUNNER_HOME: "/tmp/h" });
  assert.equal(d.baseUrl, "http://127.0.0.1:12434");
  assert.equal(d.hostSource, null);
  assert.equal(d.historyPath, "/tmp/h/history");
  assert.equal(d.hubUrl, "https://hub.docker.com");
  assert.equal(loadCliConfig({ MODEL_RUNNER_HOST: "gpu-box:8080" }).baseUrl, "http://gpu-box:8080");
  assert.equal(loadCliConfig({ MODEL_RUNNER_HOST: "https://gpu-box:443/" }).baseUrl, "https://gpu-box:443");
  assert.equal(loadCliConfig({ MODEL_RUNNER_HOST: ":9000" }).hostSource, "MODEL_RUNNER_HOST");
  assert.equal(loadCliConfig({ NO_COLOR: "" }).isColorDisabled, true);
  assert.equal(loadCliConfig({ MODEL_RUNNER_NOHISTORY: "1" }).historyPath, null);
  assert.throws(() => loadCliConfig({ MODEL_RUNNER_HUB_URL: "ftp://x" }), /MODEL_RUNNER_HUB_URL/);
});

test("table aligns columns; formatting helpers", () => {
  assert.equal(table(["A", "LONG"], [["xyz", "1"], ["q", "22"]]), "A     LONG\nxyz   1\nq     22\n");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1_234_567), "1.18 MiB");
  assert.equal(formatBytes(2048), "2.00 KiB");
  assert.equal(parseSize("256.35MiB"), 256.35 * 1024 * 1024);
  assert.equal(formatBytes(parseSize("256.35MiB")!), "256 MiB");
  assert.equal(timeAgo(1000, 1000_000 + 3 * 3600_000), "3 hours ago");
  assert.deepEqual(splitTarget("localhost:5000/a/b"), { repo: "localhost:5000/a/b", tag: "latest" });
  assert.deepEqual(splitTarget("localhost:5000/a/b:v1"), { repo: "localhost:5000/a/b", tag: "v1" });
});

test("list rows: one per tag, untagged once; pickTag matches what the user typed", () => {
  const m = { id: "sha256:abc", tags: ["ai/x:latest", "ai/x:v2"], created: 1, config: { parameters: "1B", context_size: 4096 } };
  const rows = listRows([m, { id: "sha256:def", tags: [], created: 2, config: {} }]);
  assert.deepEqual(rows.map((r) => r.model), ["ai/x:latest", "ai/x:v2", "<none>"]);
  assert.equal(rows[0]!.context_size, 4096);
  assert.equal(pickTag(m, "ai/x:v2"), "ai/x:v2");
  assert.equal(pickTag(m, "x"), "ai/x:latest");
});

test("progress: plain mode writes periodic lines with totals; tty mode redraws bars in place", () => {
  let t = 0;
  const plain = new PassThrough();
  let text = "";
  plain.on("data", (d) => (text += d));
  const r = new ProgressRenderer({ mode: "plain", out: plain, verb: "Downloading", intervalMs: 1000, now: () => t });
  for (let i = 1; i <= 10; i++) {
    t = i * 300;
    r.update({ type: "progress", message: "", total: 2000, layer: { id: "sha256:aaaa", size: 2000, current: i * 200 } });
  }
  r.finish();
  const lines = text.trim().split("\n");
  assert.ok(lines.length >= 3 && lines.length <= 5, text);
  assert.match(lines.at(-1)!, /^Downloading done: 1.95 KiB \/ 1.95 KiB \(100%\)/);
  assert.match(lines[1]!, /B\/s, ETA \d+s$/);

  const tty = new PassThrough();
  let screen = "";
  tty.on("data", (d) => (screen += d));
  const r2 = new ProgressRenderer({ mode: "tty", out: Object.assign(tty, { columns: 100 }), verb: "Downloading", now: () => t });
  r2.update({ type: "progress", message: "", total: 300, layer: { id: "sha256:aaaaaaaaaaaaaaaa", size: 100, current: 50 } });
  t += 1000;
  r2.update({ type: "progress", message: "", total: 300, layer: { id: "sha256:bbbbbbbbbbbbbbbb", size: 200, current: 10 } });
  r2.finish();
  assert.match(screen, /aaaaaaaaaaaa: \[=+>? *\]/);
  assert.match(screen, /\x1b\[2F/, "moves up over the previous drawing");
  assert.match(screen, /Downloading \[.*\] 60 B \/ 300 B \(20%\)/);

  const quiet = new PassThrough();
  let none = "";
  quiet.on("data", (d) => (none += d));
  const r3 = new ProgressRenderer({ mode: "quiet", out: quiet, verb: "x" });
  r3.update({ type: "progress", message: "", total: 1, layer: { id: "a", size: 1, current: 1 } });
  r3.finish();
  assert.equal(none, "");
});

test("client: the daemon's JSON error message, unreachable address, SSE error frames", async (t) => {
  const server = createServer((req, res) => {
    if (req.url === "/models/x") {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"Model x is not here.","type":"invalid_request_error","code":"model_not_found"}}');
    } else if (req.url === "/text") {
      res.writeHead(500).end("boom\nmore");
    } else {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end('data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"engine died"}}\n\n');
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const client = new DaemonClient(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  await assert.rejects(client.json("GET", "/models/x"), (e: unknown) => e instanceof DaemonError && e.status === 404 && e.message === "Model x is not here." && e.code === "model_not_found");
  await assert.rejects(client.json("GET", "/text"), (e: unknown) => e instanceof DaemonError && e.message === "boom");
  const res = await client.request("POST", "/sse", { json: {} });
  const seen: unknown[] = [];
  await assert.rejects(
    (async () => {
      for await (const v of sseData(res)) seen.push(v);
    })(),
    /engine died/,
  );
  assert.equal(seen.length, 1);
  await assert.rejects(new DaemonClient("http://127.0.0.1:1").json("GET", "/models"), DaemonUnreachableError);
  // MODEL_RUNNER_HOST is named only when the address came from it.
  assert.match(new DaemonUnreachableError("http://127.0.0.1:1", "MODEL_RUNNER_HOST").message, /MODEL_RUNNER_HOST/);
  assert.match(new DaemonUnreachableError("https://gpu:12444", 'context "lab"').message, /at https:\/\/gpu:12444 \(context "lab"\)/);
  assert.doesNotMatch(new DaemonUnreachableError("http://127.0.0.1:12434", null).message, /MODEL_RUNNER_HOST/);
  assert.match(new DaemonUnreachableError("http://127.0.0.1:12434", null).message, /mr start-runner/);
});

test("completion scripts name every command and its flags", () => {
  for (const shell of ["bash", "zsh", "fish"] as const) {
    const script = completionScript(shell, COMMANDS);
    for (const c of COMMANDS) assert.ok(script.includes(c.name), `${shell} lacks ${c.name}`);
    assert.ok(script.includes("context-size"), `${shell} lacks configure's flags`);
  }
});

test("log lines for people: time, level, component, message, details; other lines unchanged", () => {
  const style = makeStyle(false);
  const line = JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), component: "scheduler", msg: "evicted", model: "ai/x:latest", err: { message: "no room", stack: "..." } });
  assert.equal(formatLogLine(line, style), '2026-01-02 03:04:05.006 WARN  scheduler evicted model=ai/x:latest err="no room"');
  assert.equal(formatLogLine("not json", style), "not json");
});

test("bench helpers: nearest-rank percentiles, durations", () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([30, 10, 20], 50), 20);
  assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99), 99);
  assert.equal(parseBenchDuration("1m"), 60_000);
  assert.equal(parseBenchDuration("500ms"), 500);
  assert.equal(parseBenchDuration("3"), 3000);
  assert.throws(() => parseBenchDuration("0s"), UsageError);
});
