import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { collect, cleanEnv, runMr, spawnMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";
import { screenLines } from "../helpers/terminal-screen.ts";

// The interactive chat of `mr run` against a real daemon. A pass-through
// proxy in front of it records the chat requests, so the tests can check
// what conversation the CLI sent.
let daemon: StartedDaemon;
let home: string;
let proxy: Server;
let proxyHost: string;
const chats: Array<{ messages: Array<{ role: string; content: string }>; keep_alive?: string; format?: string; think?: unknown }> = [];
/** The answer text of each /api/chat response the proxy passed on, in order. */
const answers: string[] = [];

before(async () => {
  home = await tempDir("mr-chat-home-");
  daemon = await startDaemon(home);
  proxy = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    if ((req.url?.endsWith("/chat/completions") || req.url === "/api/chat") && body.length > 0) chats.push(JSON.parse(body.toString()));
    const ac = new AbortController();
    res.on("close", () => ac.abort());
    try {
      const upstream = await fetch(`${daemon.url}${req.url}`, {
        method: req.method,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
        signal: ac.signal,
      });
      res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "text/plain" });
      let reply = "";
      for await (const c of upstream.body as unknown as AsyncIterable<Uint8Array>) {
        res.write(c);
        reply += Buffer.from(c).toString();
      }
      if (req.url === "/api/chat" && upstream.ok) {
        answers.push(reply.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { message?: { content?: string } }).message?.content ?? "").join(""));
      }
      res.end();
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  proxyHost = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
  // "short" answers within a 64-token context; "long" (default 4096) answers long enough to interrupt.
  assert.equal((await runMr(["package", "--gguf", await tinyModel({ seed: 3 }), "chat/short"], { env })).code, 0);
  assert.equal((await runMr(["configure", "--context-size", "64", "chat/short"], { env })).code, 0);
  assert.equal((await runMr(["package", "--gguf", await tinyModel({ seed: 4 }), "chat/long"], { env })).code, 0);
});

after(async () => {
  proxy?.closeAllConnections();
  proxy?.close();
  await daemon?.stop();
  await eventually(async () => (await pidsMatching(home)).length === 0, 10_000, "no process of the test home left");
});

const env = () => ({ MODEL_RUNNER_HOST: proxyHost, MODEL_RUNNER_HOME: home });

/** Resolves once `read()` matches `pattern`. */
const waitFor = (read: () => string, pattern: RegExp, what: string) => eventually(() => pattern.test(read()), 30_000, what);

test("chat over a pipe (-i): turns keep the conversation, \"\"\" blocks, /clear, /help, /bye", async () => {
  chats.length = 0;
  const input = ["hello", '"""', "first line", "", "second line", '"""', "/help", "/clear", '"""one-liner"""', "/bye", "never sent"].join("\n");
  const child = spawnMr(["run", "-i", "chat/short"], { env: env() });
  child.stdin!.write(`${input}\n`); // stdin stays open: /bye must end the chat by itself
  const r = await collect(child, 60_000);
  child.stdin!.destroy();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Available commands:/);
  assert.match(r.stdout, /Cleared the conversation\./);
  const sent = chats.map((c) => c.messages.map((m) => `${m.role}:${m.role === "user" ? m.content : "…"}`));
  // The first answer fills most of the 256-token context: the second turn may not fit with it, and is then
  // sent again without the oldest turn.
  const retried = sent.length === 4 ? [["user:first line\n\nsecond line"]] : [];
  assert.deepEqual(sent, [
    ["user:hello"],
    ["user:hello", "assistant:…", "user:first line\n\nsecond line"],
    ...retried,
    ["user:one-liner"],
  ]);
  assert.ok(chats[1]!.messages[1]!.content.length > 0, "the first answer is part of the second request");
});

test("chat over a pipe: Ctrl-C stops the answer, the chat goes on; EOF leaves", async () => {
  chats.length = 0;
  const child = spawnMr(["run", "-i", "chat/long"], { env: env() });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const done = collect(child, 60_000);
  child.stdin!.write("tell me a long story\n");
  await waitFor(() => out, /\S/, "the answer to start");
  child.kill("SIGINT");
  await waitFor(() => out, /\[stopped\]/, "the answer to stop");
  child.stdin!.end("/clear\n");
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[stopped\]\n\nCleared the conversation\.\n/);
});

test("chat on a pseudo-terminal: prompt, Ctrl-C mid-answer, Ctrl-D leaves, history file written", async () => {
  chats.length = 0;
  // python3's pty module gives the CLI a real terminal (raw mode, Ctrl-C as a key).
  const child = spawn(
    "python3",
    ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", process.execPath, MR_BIN, "run", "chat/long"],
    { env: cleanEnv({ ...env(), TERM: "dumb" }), stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const done = collect(child, 60_000);
  await waitFor(() => out, />>> /, "the prompt");
  child.stdin!.write("hello there\r");
  await waitFor(() => out, /hello there[\s\S]*\S{20}/, "the answer to start");
  child.stdin!.write("\x03");
  await waitFor(() => out, /\[stopped\]/, "the answer to stop");
  await waitFor(() => out, /\[stopped\][\s\S]*>>> /, "a new prompt");
  child.stdin!.write("\x03"); // at an empty prompt: a reminder, not an exit
  await waitFor(() => out, /Use Ctrl-D or \/bye to exit/, "the reminder");
  child.stdin!.write("\x04");
  const r = await done;
  child.stdin!.destroy();
  assert.equal(r.code, 0, r.stdout);
  assert.equal(chats.length, 1);
  assert.match(await readFile(`${home}/history`, "utf8"), /^hello there$/m);
});

test("run: piped text follows the prompt after a blank line; --verbose, --format, --keepalive, --think reach the request", async () => {
  chats.length = 0;
  const piped = await runMr(["run", "chat/short", "summarize"], { env: env(), input: "notes from a file\n" });
  assert.equal(piped.code, 0, piped.stderr);
  assert.deepEqual(chats[0]!.messages, [{ role: "user", content: "summarize\n\nnotes from a file" }]);

  const verbose = await runMr(["run", "--verbose", "--format", "json", "--keepalive", "7m", "--think", "false", "chat/short", "hi"], { env: env() });
  assert.equal(verbose.code, 0, verbose.stderr);
  assert.match(verbose.stderr, /^total duration:\s+\d+\.\d{3}s$/m);
  assert.match(verbose.stderr, /^prompt eval count:\s+\d+ token\(s\)$/m);
  assert.match(verbose.stderr, /^eval rate:\s+(\d+\.\d\d tokens\/s|-)$/m);
  const sent = chats[1]!;
  assert.equal(sent.format, "json");
  assert.equal(sent.keep_alive, "7m");
  assert.equal(sent.think, false);
  const ps = JSON.parse((await runMr(["ps", "--json"], { env: env() })).stdout) as Array<{ model_name: string; keep_alive: string }>;
  assert.ok(ps.some((r) => r.keep_alive === "7m"), `the keep-alive took effect: ${JSON.stringify(ps)}`);

  const badFormat = await runMr(["run", "--format", "yaml", "chat/short", "hi"], { env: env() });
  assert.equal(badFormat.code, 2);
  assert.match(badFormat.stderr, /^Error: --format must be json, got "yaml"/);
  const badThink = await runMr(["run", "--think", "maybe", "chat/short", "hi"], { env: env() });
  assert.equal(badThink.code, 2);
});

test("chat commands: /set system, /show system|info|license|template, /set verbose, /clear keeps the system message, /bye", async () => {
  chats.length = 0;
  const input = ["/set system You are terse.", "/show system", "/show info", "/show license", "/show template", "/set verbose", "hello", "/clear", "again", "/set nonsense", "/bye"].join("\n");
  const r = await runMr(["run", "-i", "chat/short"], { env: env(), input: `${input}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Set system message\.\nYou are terse\.\n/);
  assert.match(r.stdout, /architecture\s+llama/);
  assert.match(r.stdout, /No license was specified for this model\./);
  assert.match(r.stdout, /Set 'verbose' mode\./);
  assert.match(r.stdout, /Unknown \/set option 'nonsense'/);
  assert.match(r.stderr, /^eval count:/m, "verbose prints timings after the answer");
  assert.deepEqual(
    chats.map((c) => c.messages.map((m) => `${m.role}:${m.role === "assistant" ? "…" : m.content}`)),
    [
      ["system:You are terse.", "user:hello"],
      ["system:You are terse.", "user:again"],
    ],
  );
});

test("a chat that outgrows the context drops its oldest turns (never the system prompt), with a notice", async () => {
  chats.length = 0;
  const long = (n: number) => Array.from({ length: 12 }, (_, i) => `w${n}x${i}`).join(" ");
  const input = ["/set system Be brief.", long(1), long(2), long(3), long(4), "/bye"].join("\n");
  const r = await runMr(["run", "-i", "chat/short"], { env: env(), input: `${input}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /The conversation outgrew the model's context: dropped the oldest (turn|\d+ turns)\./);
  for (const c of chats) assert.deepEqual(c.messages[0], { role: "system", content: "Be brief." });
  const last = chats.at(-1)!.messages;
  assert.equal(last.at(-1)!.content, long(4));
  assert.ok(!last.some((m) => m.content === long(1)), "the oldest turn is gone");
});

test("chat over a pipe: a turn that fails ends the chat with exit 1", async () => {
  const huge = Array.from({ length: 200 }, (_, i) => `w${i}`).join(" ");
  const r = await runMr(["run", "-i", "chat/short"], { env: env(), input: `${huge}\nnever sent\n` });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr.trim().split("\n").at(-1)!, /^Error: .*context/);
});

test("a reader that goes away (`mr run m \"hi\" | head -c 5`) ends the command quietly with SIGPIPE's 141", async () => {
  const child = spawnMr(["run", "chat/long", "tell me more"], { env: env() });
  child.stdin!.end();
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  // The first bytes of the answer, then the reading end closes, as `head` does.
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  child.stdout!.destroy();
  const [code] = (await once(child, "close")) as [number | null];
  assert.equal(code, 141, stderr);
  assert.doesNotMatch(stderr, /EPIPE|at .*\.js:\d+/, "no stack trace");
});

test("mr bench: requests at a time for a duration through the daemon; tokens/s and time to first token", async () => {
  chats.length = 0;
  const r = await runMr(["bench", "--json", "--duration", "2s", "--concurrency", "2", "--max-tokens", "8", "--prompt", "count", "short"], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  const b = JSON.parse(r.stdout) as {
    model: string; concurrency: number; requests: number; failed: number; completion_tokens: number; tokens_per_second: number;
    duration_seconds: number; time_to_first_token_ms: { p50: number; p99: number };
  };
  assert.equal(b.model, "chat/short:latest", "the partial name resolved");
  assert.equal(b.concurrency, 2);
  assert.equal(b.failed, 0);
  assert.ok(b.requests >= 2, r.stdout);
  assert.equal(chats.length, b.requests, "every counted request reached the daemon");
  assert.ok(chats.every((c) => c.messages[0]!.content === "count"));
  assert.ok(b.duration_seconds >= 2);
  assert.ok(b.completion_tokens > 0 && b.completion_tokens <= 8 * b.requests, r.stdout);
  // The reported duration is rounded to the millisecond, so the rate agrees with it to a relative 0.1%, not absolutely.
  const rate = b.completion_tokens / b.duration_seconds;
  assert.ok(Math.abs(b.tokens_per_second - rate) <= rate * 1e-3 + 0.01, r.stdout);
  assert.ok(b.time_to_first_token_ms.p50 > 0 && b.time_to_first_token_ms.p50 <= b.time_to_first_token_ms.p99);

  const text = await runMr(["bench", "--duration", "1s", "--max-tokens", "4", "chat/short"], { env: env() });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^Requests:\s+\d+ completed, 0 failed \(1 at a time, [\d.]+s\)$/m);
  assert.match(text.stdout, /^Throughput:\s+[\d.]+ tokens\/s$/m);
  assert.match(text.stdout, /^Time to first token: p50 [\d.]+ ms, p99 [\d.]+ ms$/m);
  const bad = await runMr(["bench", "--duration", "soon", "chat/short"], { env: env() });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^Error: --duration must be a positive duration/);
});

test("chat commands on a pseudo-terminal: /set system, /show system, /set verbose, /bye", async () => {
  chats.length = 0;
  const child = spawn(
    "python3",
    ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", process.execPath, MR_BIN, "run", "chat/short"],
    { env: cleanEnv({ ...env(), TERM: "dumb", MODEL_RUNNER_NOHISTORY: "1" }), stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const done = collect(child, 60_000);
  await waitFor(() => out, />>> /, "the prompt");
  child.stdin!.write("/set system Be kind.\r");
  await waitFor(() => out, /Set system message\./, "the system message to be set");
  child.stdin!.write("/show system\r");
  await waitFor(() => out.slice(out.lastIndexOf("/show system")), /\nBe kind\./, "the system message to be shown");
  child.stdin!.write("/set verbose\r");
  await waitFor(() => out, /Set 'verbose' mode\./, "verbose mode");
  child.stdin!.write("hi\r");
  await waitFor(() => out, /eval rate:/, "the timings after the answer");
  child.stdin!.write("/bye\r");
  const r = await done;
  child.stdin!.destroy();
  assert.equal(r.code, 0, out);
  assert.deepEqual(chats.map((c) => c.messages.map((m) => m.role)), [["system", "user"]]);
  assert.equal(chats[0]!.messages[0]!.content, "Be kind.");
});

/** `mr ARGS` on a pseudo-terminal `columns` wide (stty sets the size before mr starts); resolves with all it showed. */
async function onTerminal(args: string[], columns: number): Promise<{ code: number | null; out: string }> {
  const child = spawn(
    "python3",
    ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", "sh", "-c", `stty cols ${columns} rows 24 && exec "$0" "$@"`, process.execPath, MR_BIN, ...args],
    { env: cleanEnv({ ...env(), TERM: "dumb", MODEL_RUNNER_NOHISTORY: "1" }), stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const r = await collect(child, 60_000);
  child.stdin!.destroy();
  return { code: r.code, out };
}

test("answers wrap at words on a terminal, as ollama run does; --nowordwrap and pipes get the text as it came", async () => {
  const columns = 30;
  const limit = columns - 5;
  answers.length = 0;
  const wrapped = await onTerminal(["run", "chat/short", "hi"], columns);
  assert.equal(wrapped.code, 0, wrapped.out);
  await eventually(() => answers.length === 1, 5000, "the proxy to record the answer");
  const answer = answers[0]!;
  assert.ok(answer.length > 2 * limit, `an answer long enough to wrap: ${JSON.stringify(answer)}`);
  const lines = screenLines(wrapped.out).map((l) => l.trimEnd()).filter(Boolean);
  assert.ok(lines.length >= 2, `wrapped into lines: ${JSON.stringify(lines)}`);
  for (const line of lines) assert.ok(line.length <= limit, `within ${limit} columns: ${JSON.stringify(line)}`);
  // Each word of the answer is whole on one line, unless it is longer than a line (then broken at the margin).
  const shown = lines.flatMap((l) => l.split(/\s+/).filter(Boolean));
  let j = 0;
  for (const word of answer.split(/\s+/).filter(Boolean)) {
    if (shown[j] === word) {
      j++;
      continue;
    }
    assert.ok(word.length > limit, `"${word}" broken though it fits a line: ${JSON.stringify(lines)}`);
    let joined = "";
    while (joined.length < word.length && j < shown.length) joined += shown[j++];
    assert.equal(joined, word);
  }
  assert.equal(j, shown.length, "nothing shown that the answer did not have");

  answers.length = 0;
  const plain = await onTerminal(["run", "--nowordwrap", "chat/short", "hi"], columns);
  assert.equal(plain.code, 0, plain.out);
  await eventually(() => answers.length === 1, 5000, "the proxy to record the answer");
  assert.equal(plain.out.replaceAll("\r\n", "\n"), `${answers[0]}\n`, "--nowordwrap: the text unchanged, no cursor moves");

  answers.length = 0;
  const piped = await runMr(["run", "chat/short", "hi"], { env: env() });
  assert.equal(piped.code, 0, piped.stderr);
  await eventually(() => answers.length === 1, 5000, "the proxy to record the answer");
  assert.equal(piped.stdout, `${answers[0]}\n`, "a pipe is never wrapped");
});
