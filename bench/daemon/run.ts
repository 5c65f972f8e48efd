/**
 * Daemon benchmark: the same engine, in one run, reached
 *   (a) directly on its Unix socket, and
 *   (b) through the daemon (scheduler + proxy) over TCP.
 * Prints added latency (p50/p99) for small requests, added time to first
 * token for streams, throughput at 1, 8 and 32 concurrent clients as a ratio,
 * cold-start overhead versus the engine's own start time, and the daemon's
 * idle RSS: 3 s after it listens, and after the run with its runners unloaded
 * (1 s and 15 s later: V8 returns startup and traffic garbage to the system
 * only once the process has been idle for a while).
 *
 * It starts `bin/mr.js` as users do, so it measures the compiled build when
 * dist/ matches src/ (`npm run build`), and says which one ran.
 *
 * Usage: node --import tsx bench/daemon/run.ts [--requests N]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { distStaleness } from "../../bin/dist.js";
import { createModelDistribution, openStore } from "../../src/distribution/index.ts";
import { BENCH_MODEL_SHAPE } from "../bench-model.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { MR_BIN } from "../../test/helpers/engine.ts";

const { values } = parseArgs({ options: { requests: { type: "string", default: "300" } } });
const REQUESTS = Number(values.requests);
const STALE = distStaleness();

const rssMiB = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

const home = await mkdtemp(join(tmpdir(), "mr-bench-daemon-"));
let daemon: ChildProcess | null = null;
try {
  const gguf = join(home, "tiny.gguf");
  await writeTinyModel(gguf, { seed: 5 });
  const dist = createModelDistribution({ store: await openStore({ root: join(home, "models") }) });
  await dist.packageModel({ gguf, tags: ["ai/bench:latest"] });
  // Throughput is measured on a model whose decoding costs what a small real
  // model's does (~25M parameters); on the tiny one the proxy's CPU would
  // compete with a model that does almost no work.
  const midGguf = join(home, "mid.gguf");
  await writeTinyModel(midGguf, { seed: 6, ...BENCH_MODEL_SHAPE });
  await dist.packageModel({ gguf: midGguf, tags: ["ai/bench-mid:latest"] });

  daemon = spawn(process.execPath, [MR_BIN, "serve", "--port", "0", "--log-level", "warn"], {
    env: { ...process.env, MODEL_RUNNER_HOME: home },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve) =>
    createInterface({ input: daemon!.stdout! }).on("line", (l) => {
      const m = /listening on (\S+)/.exec(l);
      if (m) resolve(m[1]!);
    }),
  );
  await new Promise((r) => setTimeout(r, 3000)); // let start-up work (backend check) settle
  const idleRssStart = await rssMiB(daemon.pid!);

  const viaDaemon = new Pool(url, { connections: 64 });
  const call = async (pool: Pool, body: object) => {
    const started = performance.now();
    let firstMs = -1;
    const res = await pool.request({ method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    let text = "";
    for await (const chunk of res.body) {
      const s = (chunk as Buffer).toString();
      if (firstMs < 0 && s.includes('"content":"') && !s.includes('"content":""')) firstMs = performance.now() - started;
      text += s;
    }
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text}`);
    return { ms: performance.now() - started, firstMs, text };
  };

  // Cold start through the daemon: spawn + load + first token.
  const coldBody = { model: "ai/bench", messages: [{ role: "user", content: "hi" }], max_tokens: 4, stream: true };
  const cold = await call(viaDaemon, coldBody);

  // The engine's own start time, measured the same way: spawn → /health 200.
  const engineSocket = join(home, "bench-direct.sock");
  const spawned = performance.now();
  const standalone = spawn(process.execPath, [MR_BIN, "engine", "-m", gguf, "--host", engineSocket, "-c", "4096", "--alias", "x"], { stdio: "ignore" });
  const standalonePool = new Pool("http://engine", { socketPath: engineSocket });
  for (;;) {
    const ok = await standalonePool.request({ method: "GET", path: "/health" }).then(async (r) => (await r.body.text(), r.statusCode === 200), () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const engineReadyMs = performance.now() - spawned;
  const standaloneFirst = await call(standalonePool, { ...coldBody, model: "x" });
  await standalonePool.close();
  standalone.kill("SIGTERM");
  await once(standalone, "exit");

  // The runner the daemon started: talk to its socket directly.
  const runDir = join(home, "run");
  const socket = join(runDir, (await readdir(runDir)).find((f) => f.endsWith(".sock"))!);
  const direct = new Pool("http://engine", { socketPath: socket, connections: 64 });
  const ps = (await (await fetch(`${url}/engines/ps`)).json()) as Array<{ model_name: string }>;
  const modelName = JSON.parse(cold.text.split("\n").find((l) => l.startsWith("data: {"))!.slice(6)).model as string;
  void ps;

  const small = (model: string) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
  const latDirect: number[] = [];
  const latDaemon: number[] = [];
  for (let i = 0; i < 20; i++) await call(direct, small(modelName)), await call(viaDaemon, small("ai/bench")); // warm-up
  for (let i = 0; i < REQUESTS; i++) {
    latDirect.push((await call(direct, small(modelName))).ms);
    latDaemon.push((await call(viaDaemon, small("ai/bench"))).ms);
  }
  const ttftDirect: number[] = [];
  const ttftDaemon: number[] = [];
  for (let i = 0; i < 50; i++) {
    ttftDirect.push((await call(direct, { ...small(modelName), max_tokens: 8, stream: true })).firstMs);
    ttftDaemon.push((await call(viaDaemon, { ...small("ai/bench"), max_tokens: 8, stream: true })).firstMs);
  }
  const throughput = async (pool: Pool, model: string, clients: number) => {
    const perClient = Math.max(2, Math.ceil(32 / clients));
    const started = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < perClient; i++) await call(pool, { model, messages: [{ role: "user", content: "go" }], max_tokens: 32 });
      }),
    );
    return (clients * perClient * 32) / ((performance.now() - started) / 1000);
  };
  await direct.close();
  // Switch to the mid-size model: unload, load it, and find its socket.
  await fetch(`${url}/engines/unload`, { method: "POST", body: JSON.stringify({ all: true }) });
  while ((await readdir(runDir)).some((f) => f.endsWith(".sock"))) await new Promise((r) => setTimeout(r, 50));
  const midFirst = await call(viaDaemon, { model: "ai/bench-mid", messages: [{ role: "user", content: "hi" }], max_tokens: 2, stream: true });
  const midName = JSON.parse(midFirst.text.split("\n").find((l) => l.startsWith("data: {"))!.slice(6)).model as string;
  const midSocket = join(runDir, (await readdir(runDir)).find((f) => f.endsWith(".sock"))!);
  const directMid = new Pool("http://engine", { socketPath: midSocket, connections: 64 });
  const tput: Array<[number, number, number]> = [];
  for (const clients of [1, 8, 32]) {
    const a = await throughput(directMid, midName, clients);
    const b = await throughput(viaDaemon, "ai/bench-mid", clients);
    tput.push([clients, a, b]);
  }
  await directMid.close();
  await viaDaemon.close();
  await fetch(`${url}/engines/unload`, { method: "POST", body: JSON.stringify({ all: true }) });
  await new Promise((r) => setTimeout(r, 1000));
  const idleRssEnd = await rssMiB(daemon.pid!);
  await new Promise((r) => setTimeout(r, 14_000));
  const idleRssSettled = await rssMiB(daemon.pid!);

  const row = (a: string, b: string, c: string, d: string) => console.log(`${a.padEnd(50)}${b.padStart(12)}${c.padStart(12)}${d.padStart(12)}`);
  console.log(STALE === null ? "mr: the compiled build (dist/)" : `mr: src/ through tsx (${STALE}; npm run build measures what users run)`);
  console.log(`tiny generated model, ${REQUESTS} small requests each way, interleaved`);
  row("", "direct", "via daemon", "added");
  for (const p of [50, 99]) {
    const a = pct(latDirect, p);
    const b = pct(latDaemon, p);
    row(`small request latency p${p} (ms)`, a.toFixed(2), b.toFixed(2), (b - a).toFixed(2));
  }
  const ta = pct(ttftDirect, 50);
  const tb = pct(ttftDaemon, 50);
  row("stream time to first token p50 (ms)", ta.toFixed(2), tb.toFixed(2), (tb - ta).toFixed(2));
  console.log();
  row("throughput, 32-token answers, 25M model (tok/s)", "direct", "via daemon", "ratio");
  for (const [clients, a, b] of tput) row(`  ${clients} concurrent clients`, a.toFixed(0), b.toFixed(0), `${((b / a) * 100).toFixed(1)}%`);
  console.log();
  row("cold start (ms)", "engine", "via daemon", "overhead");
  const engineCold = engineReadyMs + standaloneFirst.firstMs;
  row("  spawn → first token", engineCold.toFixed(0), cold.firstMs.toFixed(0), (cold.firstMs - engineCold).toFixed(0));
  console.log();
  console.log(
    `daemon idle RSS: ${idleRssStart.toFixed(1)} MiB 3 s after start; after the run (runners unloaded) ${idleRssEnd.toFixed(1)} MiB at 1 s, ${idleRssSettled.toFixed(1)} MiB at 15 s`,
  );
} finally {
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGTERM");
    await once(daemon, "exit");
  }
  await rm(home, { recursive: true, force: true });
}
