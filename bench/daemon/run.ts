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
 * First, the proxy's own cost, side by side in one run on the tiny model: the
 * runner the daemon started, called on its socket (so with the runner's own
 * arguments) vs through the daemon, for 1-token chat requests, one-input
 * embeddings and 64-token streams: added p50, requests/s at 1, 8 and 32
 * clients as a ratio, and the daemon's CPU (user+sys from /proc) per
 * proxied request (over all phases, and over the one-at-a-time phase alone), for the fast lane (plain requests) and for the daemon's
 * Node HTTP server (the path before the lane, which a request with an
 * `X-Preload-Only: false` header takes, unchanged by it). Beside them, two
 * floors measured the same way: a parsing relay (bench/daemon/parsing-relay.ts:
 * it reads the request's JSON and the answer's framing and usage, and does
 * nothing else a daemon does) and a byte relay (a process that pipes each TCP
 * connection to the engine's socket, parsing nothing: the floor of any proxy
 * written for Node). `--proxy-only` stops after that part.
 *
 * Usage: node --import tsx bench/daemon/run.ts [--requests N] [--proxy-only] [--cpu-prof DIR]
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
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

const { values } = parseArgs({ options: { requests: { type: "string", default: "300" }, "proxy-only": { type: "boolean", default: false }, "cpu-prof": { type: "string" } } });
const REQUESTS = Number(values.requests);
const STALE = distStaleness();

const rssMiB = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
};
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
/** User and system CPU time of `pid` so far, in ms (fields 14 and 15 of /proc/<pid>/stat). */
const cpuTimes = async (pid: number) => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: (Number(fields[11]) * 1000) / CLK_TCK, sys: (Number(fields[12]) * 1000) / CLK_TCK };
};
const cpuMs = async (pid: number) => {
  const t = await cpuTimes(pid);
  return t.user + t.sys;
};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

/**
 * The floors of a proxy in Node, each a process of its own between the
 * client's TCP connection and the engine's socket: the byte relay pipes each
 * connection through and parses nothing (it cannot route by model; it shows
 * what the two hops alone cost on this machine); the parsing relay
 * (bench/daemon/parsing-relay.ts) also reads the request's JSON and the
 * answer's framing and usage, the least a proxy that routes and meters must do.
 */
const BYTE_RELAY = `const net = require("node:net");
const server = net.createServer((c) => { const u = net.connect(process.argv[1]); c.pipe(u); u.pipe(c); c.on("error", () => u.destroy()); u.on("error", () => c.destroy()); });
server.listen(0, "127.0.0.1", () => console.log("port " + server.address().port));`;
const PARSING_RELAY = ["--import", "tsx", join(import.meta.dirname, "parsing-relay.ts")];

/** The relays started, stopped at the end even when the run fails. */
const relays: ChildProcess[] = [];

async function startRelay(args: string[], socketPath: string): Promise<{ pool: Pool; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [...args, socketPath], { stdio: ["ignore", "pipe", "inherit"] });
  relays.push(child);
  const port = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).on("line", (l) => l.startsWith("port ") && resolve(l.slice(5))));
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 64 });
  return {
    pool,
    pid: child.pid!,
    async stop() {
      await pool.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill();
        await once(child, "exit");
      }
    },
  };
}

const home = await mkdtemp(join(tmpdir(), "mr-bench-daemon-"));
let daemon: ChildProcess | null = null;
try {
  const gguf = join(home, "tiny.gguf");
  await writeTinyModel(gguf, { seed: 5 });
  const dist = createModelDistribution({ store: await openStore({ root: join(home, "models") }) });
  await dist.packageModel({ gguf, tags: ["ai/bench:latest"] });
  const embedGguf = join(home, "embed.gguf");
  await writeTinyModel(embedGguf, { seed: 7, pooling: "mean" });
  await dist.packageModel({ gguf: embedGguf, tags: ["ai/bench-embed:latest"] });
  // Throughput is measured on a model whose decoding costs what a small real
  // model's does (~25M parameters); on the tiny one the proxy's CPU would
  // compete with a model that does almost no work.
  const midGguf = join(home, "mid.gguf");
  await writeTinyModel(midGguf, { seed: 6, ...BENCH_MODEL_SHAPE });
  await dist.packageModel({ gguf: midGguf, tags: ["ai/bench-mid:latest"] });

  // `--cpu-prof DIR`: the daemon writes a V8 CPU profile there when it stops.
  const profile = values["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", values["cpu-prof"]] : [];
  daemon = spawn(process.execPath, [...profile, MR_BIN, "serve", "--port", "0", "--log-level", "warn"], {
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
  bench: {
  const runDir = join(home, "run");
  const sockets = async () => new Set((await readdir(runDir)).filter((f) => f.endsWith(".sock")));

  // ---- the proxy's cost: the daemon's own runner on its socket vs through the daemon ----
  {
    const chatSocket = join(runDir, [...(await sockets())][0]!);
    const chatName = JSON.parse(cold.text.split("\n").find((l) => l.startsWith("data: {"))!.slice(6)).model as string;
    const before = await sockets();
    const firstEmbed = await viaDaemon.request({ method: "POST", path: "/v1/embeddings", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "ai/bench-embed", input: "hi" }) });
    const embedText = await firstEmbed.body.text();
    if (firstEmbed.statusCode !== 200) throw new Error(`embeddings: HTTP ${firstEmbed.statusCode}: ${embedText}`);
    const embedName = (JSON.parse(embedText) as { model: string }).model;
    const embedSocket = join(runDir, [...(await sockets())].find((f) => !before.has(f))!);
    // The engines' own CPU per request, as the yardstick for the daemon's (both inflate alike on a busy machine).
    const enginePid = async (socket: string) => (JSON.parse(await readFile(socket.replace(/\.sock$/, ".pid"), "utf8")) as { pid: number }).pid;
    const chatPid = await enginePid(chatSocket);
    const embedPid = await enginePid(embedSocket);
    const directChat = new Pool("http://engine", { socketPath: chatSocket, connections: 64 });
    const directEmbed = new Pool("http://engine", { socketPath: embedSocket, connections: 64 });
    const chatRelay = await startRelay(["-e", BYTE_RELAY], chatSocket);
    const embedRelay = await startRelay(["-e", BYTE_RELAY], embedSocket);
    const chatParsing = await startRelay(PARSING_RELAY, chatSocket);
    const embedParsing = await startRelay(PARSING_RELAY, embedSocket);
    const send = async (pool: Pool, path: string, body: string, extra: Record<string, string> = {}) => {
      const res = await pool.request({ method: "POST", path, headers: { "content-type": "application/json", ...extra }, body });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${path}: HTTP ${res.statusCode}: ${text}`);
    };
    /** One way to the engine: a pool, the body it sends, extra headers, and the process whose CPU is the proxy's. */
    interface Way {
      pool: Pool;
      body: string;
      headers?: Record<string, string>;
      pid: number;
    }
    interface Kind {
      name: string;
      path: string;
      direct: Way;
      /** The daemon's fast lane, the daemon's Node HTTP server (an `X-Preload-Only: false` header takes a request there), the parsing relay, the byte relay. */
      proxies: [Way, Way, Way, Way];
      goal: number;
    }
    const chat = (model: string, extra: object) => JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...extra });
    const viaNode = { "x-preload-only": "false" };
    const viaNodeServer = new Pool(url, { connections: 64 });
    type Relay = { pool: Pool; pid: number };
    const ways = (directPool: Pool, [parsing, relay]: [Relay, Relay], enginePidOf: number, ours: string, theirs: string): Pick<Kind, "direct" | "proxies"> => ({
      direct: { pool: directPool, body: theirs, pid: enginePidOf },
      proxies: [
        { pool: viaDaemon, body: ours, pid: daemon!.pid! },
        // Its own connections: the first request with that header hands a connection to Node's server for good.
        { pool: viaNodeServer, body: ours, headers: viaNode, pid: daemon!.pid! },
        { pool: parsing.pool, body: theirs, pid: parsing.pid },
        { pool: relay.pool, body: theirs, pid: relay.pid },
      ],
    });
    const kinds: Kind[] = [
      { name: "1-token chat", path: "/v1/chat/completions", goal: 0.9, ...ways(directChat, [chatParsing, chatRelay], chatPid, chat("ai/bench", { max_tokens: 1 }), chat(chatName, { max_tokens: 1 })) },
      {
        name: "embeddings, one short input",
        path: "/v1/embeddings",
        goal: 0.9,
        ...ways(directEmbed, [embedParsing, embedRelay], embedPid, JSON.stringify({ model: "ai/bench-embed", input: "hello world" }), JSON.stringify({ model: embedName, input: "hello world" })),
      },
      {
        name: "64-token streams",
        path: "/v1/chat/completions",
        goal: 0.99,
        ...ways(directChat, [chatParsing, chatRelay], chatPid, chat("ai/bench", { max_tokens: 64, stream: true, ignore_eos: true }), chat(chatName, { max_tokens: 64, stream: true, ignore_eos: true })),
      },
    ];
    const sendWay = (w: Way, path: string) => send(w.pool, path, w.body, w.headers);
    const rate = async (w: Way, path: string, clients: number, total: number) => {
      const perClient = Math.max(1, Math.ceil(total / clients));
      const started = performance.now();
      await Promise.all(Array.from({ length: clients }, async () => { for (let i = 0; i < perClient; i++) await sendWay(w, path); }));
      return (clients * perClient) / ((performance.now() - started) / 1000);
    };
    const row = (a: string, ...cols: string[]) => console.log(`${a.padEnd(44)}${cols.map((c, i) => c.padStart(i === 0 ? 9 : 14)).join("")}`);
    console.log(STALE === null ? "mr: the compiled build (dist/)" : `mr: src/ through tsx (${STALE}; npm run build measures what users run)`);
    console.log(`the proxy's cost: tiny model, the daemon's runner on its socket vs through the daemon, ${REQUESTS} requests per figure`);
    console.log("columns: the fast lane (what plain requests take), the daemon's Node HTTP server (the path before the lane; a request with");
    console.log("an X-Preload-Only: false header goes there), a parsing relay that reads only the request's JSON and the answer's framing and");
    console.log("usage (the least a metering proxy must do), and a byte relay that parses nothing (the floor of any proxy in Node). Each proxy is");
    console.log("measured in its own phase, with the direct requests interleaved, so that its CPU is its own.");
    for (const kind of kinds) {
      const total = kind.name.startsWith("64") ? Math.max(16, Math.floor(REQUESTS / 8)) : REQUESTS;
      const results: Array<{ added: number; ratios: number[]; cpu: number; sys: number; sequentialCpu: number }> = [];
      let engineCpuPer = 0;
      for (const way of kind.proxies) {
        // Warm-up: enough requests for V8 to have optimized the code each way runs (a daemon runs for long; its
        // first thousand requests, still being optimized, cost it two to four times what later ones do).
        for (let i = 0; i < (kind.name.startsWith("64") ? 40 : 1500); i++) await sendWay(kind.direct, kind.path), await sendWay(way, kind.path);
        const la: number[] = [];
        const lb: number[] = [];
        const cpu0 = await cpuTimes(way.pid);
        const engineCpu0 = await cpuMs(kind.direct.pid);
        let proxied = 0;
        for (let i = 0; i < total; i++) {
          let t = performance.now();
          await sendWay(kind.direct, kind.path);
          la.push(performance.now() - t);
          t = performance.now();
          await sendWay(way, kind.path);
          lb.push(performance.now() - t);
          proxied++;
        }
        // The proxy's CPU with one request at a time: no other process competes for its core's caches.
        const cpuSequential = await cpuTimes(way.pid);
        const sequentialCpu = (cpuSequential.user + cpuSequential.sys - cpu0.user - cpu0.sys) / total;
        const ratios: number[] = [];
        for (const clients of [1, 8, 32]) {
          const a = await rate(kind.direct, kind.path, clients, total);
          const b = await rate(way, kind.path, clients, total);
          proxied += clients * Math.max(1, Math.ceil(total / clients));
          ratios.push(b / a);
        }
        const cpu1 = await cpuTimes(way.pid);
        engineCpuPer = ((await cpuMs(kind.direct.pid)) - engineCpu0) / (2 * proxied);
        results.push({ added: pct(lb, 50) - pct(la, 50), ratios, cpu: (cpu1.user + cpu1.sys - cpu0.user - cpu0.sys) / proxied, sys: (cpu1.sys - cpu0.sys) / proxied, sequentialCpu });
      }
      console.log();
      row(kind.name, "goal", "fast lane", "Node server", "parsing relay", "byte relay");
      row(kind.name.startsWith("64") ? "  added time per stream, p50 (ms)" : "  added latency p50 (ms)", kind.name.startsWith("64") ? "" : "< 0.2", ...results.map((r) => `+${r.added.toFixed(2)}`));
      for (const [i, clients] of [1, 8, 32].entries()) row(`  requests/s vs direct, ${clients} client${clients > 1 ? "s" : ""}`, `>= ${kind.goal}x`, ...results.map((r) => `${r.ratios[i]!.toFixed(2)}x`));
      row("  proxy CPU per request (ms)", kind.name.startsWith("64") ? "" : "< 0.15", ...results.map((r) => r.cpu.toFixed(3)));
      row("    of which system (syscalls)", "", ...results.map((r) => r.sys.toFixed(3)));
      row("    one request at a time (ms)", "", ...results.map((r) => r.sequentialCpu.toFixed(3)));
      row("  engine CPU per request, for scale (ms)", "", engineCpuPer.toFixed(3));
    }
    await directChat.close();
    await directEmbed.close();
    await viaNodeServer.close();
    for (const relay of [chatRelay, embedRelay, chatParsing, embedParsing]) await relay.stop();
  }
  if (values["proxy-only"]) break bench;
  // Back to one runner for what follows.
  await fetch(`${url}/engines/unload`, { method: "POST", body: JSON.stringify({ all: true }) });
  while ((await sockets()).size > 0) await new Promise((r) => setTimeout(r, 50));
  await call(viaDaemon, coldBody);

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
}
} finally {
  for (const child of relays) if (child.exitCode === null && child.signalCode === null) child.kill();
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGTERM");
    await once(daemon, "exit");
  }
  await rm(home, { recursive: true, force: true });
}
