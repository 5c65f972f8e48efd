/**
 * A/B of the daemon's own CPU per proxied request, for two builds side by
 * side: each `--bin` (a checkout's `bin/mr.js`, built with `npm run build`)
 * serves its own daemon on the same generated models; 1-token chats (or
 * one-input embeddings) go to each over one kept-alive connection, in
 * batches alternating between the daemons, and the daemon's user+sys CPU
 * from /proc is divided by the batch. On a shared 2-core machine the
 * absolute figures drift through the day by more than a change to the
 * fast lane moves them (bench/daemon/run.ts), while the interleaved batches
 * drift together, so their medians compare the builds. Give the same build
 * twice first (an A/A run): its two medians differ by a few percent too
 * (0.287 / 0.273 ms once), which a difference must exceed to count.
 *
 * Usage: node --import tsx bench/daemon/ab.ts --bin A/bin/mr.js --bin B/bin/mr.js
 *          [--embeddings | --stream] [--warm 3000] [--batch 1500] [--rounds 10]
 * (`--stream`: 64-token streamed chats, the figure per stream; give a smaller --warm and --batch.)
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { createModelDistribution, openStore } from "../../src/distribution/index.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";

const { values } = parseArgs({
  options: {
    bin: { type: "string", multiple: true },
    embeddings: { type: "boolean", default: false },
    stream: { type: "boolean", default: false },
    warm: { type: "string", default: "3000" },
    batch: { type: "string", default: "1500" },
    rounds: { type: "string", default: "10" },
  },
});
const bins = values.bin ?? [];
if (bins.length < 2) throw new Error("give two builds: --bin A/bin/mr.js --bin B/bin/mr.js");
const [WARM, BATCH, ROUNDS] = [values.warm, values.batch, values.rounds].map(Number) as [number, number, number];
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
const cpuMs = async (pid: number) => {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
};
const [path, body] = values.embeddings
  ? ["/v1/embeddings", JSON.stringify({ model: "ai/bench-embed", input: "hello world" })]
  : values.stream
    ? ["/v1/chat/completions", JSON.stringify({ model: "ai/bench", messages: [{ role: "user", content: "hi" }], max_tokens: 64, stream: true, ignore_eos: true })]
    : ["/v1/chat/completions", JSON.stringify({ model: "ai/bench", messages: [{ role: "user", content: "hi" }], max_tokens: 1 })];

interface Side {
  bin: string;
  daemon: ChildProcess;
  pool: Pool;
  home: string;
  perRequest: number[];
}
const sides: Side[] = [];
try {
  for (const bin of bins) {
    const home = await mkdtemp(join(tmpdir(), "mr-bench-ab-"));
    const dist = createModelDistribution({ store: await openStore({ root: join(home, "models") }) });
    await writeTinyModel(join(home, "tiny.gguf"), { seed: 5 });
    await dist.packageModel({ gguf: join(home, "tiny.gguf"), tags: ["ai/bench:latest"] });
    await writeTinyModel(join(home, "embed.gguf"), { seed: 7, pooling: "mean" });
    await dist.packageModel({ gguf: join(home, "embed.gguf"), tags: ["ai/bench-embed:latest"] });
    const daemon = spawn(process.execPath, [bin, "serve", "--port", "0", "--log-level", "warn"], { env: { ...process.env, MODEL_RUNNER_HOME: home }, stdio: ["ignore", "pipe", "inherit"] });
    const side: Side = { bin, daemon, pool: null as unknown as Pool, home, perRequest: [] };
    sides.push(side);
    const url = await new Promise<string>((resolve) =>
      createInterface({ input: daemon.stdout! }).on("line", (line) => {
        const m = /listening on (\S+)/.exec(line);
        if (m) resolve(m[1]!);
      }),
    );
    side.pool = new Pool(url, { connections: 1 });
  }
  const send = async (pool: Pool) => {
    const res = await pool.request({ method: "POST", path, headers: { "content-type": "application/json" }, body });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text}`);
  };
  // Long enough for V8 to have optimized the lane: its first thousand requests cost several times what later ones do.
  for (const side of sides) for (let i = 0; i < WARM; i++) await send(side.pool);
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      const before = await cpuMs(side.daemon.pid!);
      for (let i = 0; i < BATCH; i++) await send(side.pool);
      side.perRequest.push(((await cpuMs(side.daemon.pid!)) - before) / BATCH);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`daemon CPU per ${values.embeddings ? "one-input embedding" : values.stream ? "64-token stream" : "1-token chat"}, ${ROUNDS} alternating batches of ${BATCH} after ${WARM} to warm up`);
  for (const side of sides) console.log(`${median(side.perRequest).toFixed(3)} ms median  [${side.perRequest.map((x) => x.toFixed(2)).join(" ")}]  ${side.bin}`);
} finally {
  for (const side of sides) {
    await side.pool?.close();
    if (side.daemon.exitCode === null && side.daemon.signalCode === null) {
      side.daemon.kill("SIGTERM");
      await once(side.daemon, "exit");
    }
    await rm(side.home, { recursive: true, force: true });
  }
}
