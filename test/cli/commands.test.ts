import assert from "node:assert/strict";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { startRegistryProxy } from "../doubles/registry-proxy.ts";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { pushRawArtifact } from "../helpers/oci-push.ts";
import { MediaTypes } from "../../src/distribution/media-types.ts";
import { runMr, spawnMr, collect, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";

// One daemon (real `mr serve`, temp MODEL_RUNNER_HOME, random port) and one
// local registry for the whole file; the tests below run in order and build
// on each other's store state.
let registry: TestRegistry;
let daemon: StartedDaemon;
let home: string;
let gguf: string;
let env: Record<string, string>;
const tiny = "cli/tiny:v1";

before(async () => {
  registry = await startTestRegistry();
  home = await tempDir("mr-cli-home-");
  daemon = await startDaemon(home);
  gguf = await tinyModel({ seed: 7 });
  env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
});

after(async () => {
  await daemon?.stop();
  await registry?.close();
  // The daemon stops its engines on SIGTERM; nothing it started may outlive it.
  await eventually(async () => (await pidsMatching(home)).length === 0, 10_000, "no process of the test home left");
});

const mr = (args: string[], input?: string) => runMr(args, { env, ...(input !== undefined ? { input } : {}) });

/** `pid` has an established TCP connection to 127.0.0.1:`port` (its socket fds matched against /proc/net/tcp). */
async function isConnectedTo(pid: number, port: number): Promise<boolean> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const table = await readFile("/proc/net/tcp", "utf8").catch(() => "");
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return table.split("\n").some((line) => {
    const f = line.trim().split(/\s+/);
    return f[2] === remote && f[3] === "01" && inodes.has(f[9]!);
  });
}

function oneLineError(r: { stderr: string }, pattern: RegExp) {
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

test("package loads a GGUF into the daemon; list, show and inspect see it", async () => {
  const r = await mr(["package", "--gguf", gguf, "--context-size", "96", tiny]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Loaded docker.io\/cli\/tiny:v1|Loaded cli\/tiny:v1/);

  const ls = await mr(["ls"]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout.split("\n")[0]!, /^MODEL NAME\s+PARAMETERS\s+QUANTIZATION\s+ARCHITECTURE\s+MODEL ID\s+CREATED\s+CONTEXT\s+SIZE$/);
  assert.match(ls.stdout, /cli\/tiny:v1\s+\S+\s+F32\s+llama\s+[0-9a-f]{12}\s/);

  const json = await mr(["list", "--json"]);
  const rows = JSON.parse(json.stdout) as Array<{ model: string; id: string; architecture: string; context_size: number | null }>;
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.model, "cli/tiny:v1");
  assert.match(rows[0]!.id, /^sha256:[0-9a-f]{64}$/);
  assert.equal(rows[0]!.context_size, 96);

  const quiet = await mr(["ls", "-q"]);
  assert.equal(quiet.stdout, `${rows[0]!.id.slice(7, 19)}\n`);

  const show = await mr(["show", "tiny:v1"]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /architecture\s+llama/);
  assert.match(show.stdout, /general\.name\s+tiny-llama/);
  assert.match(show.stdout, /\nCapabilities\n {2}completion\n/, "as ollama show");

  const inspect = await mr(["inspect", tiny]);
  const model = JSON.parse(inspect.stdout) as { id: string; tags: string[]; config: { format: string } };
  assert.deepEqual(model.tags, ["cli/tiny:v1"]);
  assert.equal(model.config.format, "gguf");
});

test("tag, push with plain progress, rm, then pull back with plain progress lines", async () => {
  const remote = `${registry.host}/cli/tiny:v1`;
  const tag = await mr(["tag", tiny, remote]);
  assert.equal(tag.code, 0, tag.stderr);
  assert.match(tag.stdout, /tagged successfully/);

  const push = await mr(["push", remote]);
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stderr, /^Uploading done: \d{3} KiB \/ \d{3} KiB \(100%\)/m, "a non-terminal gets plain lines, no escape codes");
  assert.doesNotMatch(push.stderr, /\x1b\[/);

  const rm = await mr(["rm", remote, tiny]);
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, /Untagged: .*cli\/tiny:v1\nUntagged: cli\/tiny:v1\nDeleted: sha256:/);

  const pull = await mr(["pull", remote]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stderr, /^Downloading done: .*\(100%\)/m);
  assert.doesNotMatch(pull.stderr, /\x1b\[/);

  const again = await mr(["pull", "-q", remote]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr, "");
  assert.equal(again.stdout, "");
  assert.equal((await mr(["tag", remote, tiny])).code, 0);
});

test("Ctrl-C stops a pull with exit 130; the next pull resumes where it stopped", async (t) => {
  const source = `${registry.host}/cli/resume:v1`;
  assert.equal((await mr(["package", "-q", "--gguf", await tinyModel({ seed: 9 }), "--push", source])).code, 0);
  const proxy = await startRegistryProxy(registry.url);
  t.after(() => proxy.close());
  proxy.faults.stallAfterBytes = { bytes: 200_000, times: 1 };
  const ref = `${proxy.host}/cli/resume:v1`;
  const child = spawnMr(["pull", ref], { env });
  child.stdin!.end();
  const done = collect(child, 60_000);
  await eventually(() => proxy.blobGets.length > 0, 20_000, "the blob download to start");
  await new Promise((r) => setTimeout(r, 500)); // let the first 200 kB reach the disk
  child.kill("SIGINT");
  const stopped = await done;
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.equal((await mr(["ls", "-q", ref])).stdout, "", "nothing committed");

  const resumed = await mr(["pull", ref]);
  assert.equal(resumed.code, 0, resumed.stderr);
  // The second pull asks only for the rest of the blob that stalled.
  assert.ok(
    proxy.blobGets.some((g) => /^bytes=[1-9]\d*-/.test(g.range ?? "")),
    JSON.stringify(proxy.blobGets),
  );
  assert.equal((await mr(["rm", ref])).code, 0);
});

test("configure sets the context size; run answers a prompt from args, stdin and as --json; ps shows the runner", async () => {
  const conf = await mr(["configure", "--context-size", "96", "--keep-alive", "10m", tiny]);
  assert.equal(conf.code, 0, conf.stderr);
  const show = await mr(["configure", "show", "--json"]);
  const rows = JSON.parse(show.stdout) as Array<{ model: string; context_size: number; keep_alive: string }>;
  assert.ok(rows.some((r) => r.context_size === 96), show.stdout);

  const answer = await mr(["run", tiny, "Say", "hello"]);
  assert.equal(answer.code, 0, answer.stderr);
  assert.ok(answer.stdout.trim().length > 0, "streams some text");

  const piped = await mr(["run", tiny], "hello from a pipe\n");
  assert.equal(piped.code, 0, piped.stderr);
  assert.ok(piped.stdout.trim().length > 0);

  const json = await mr(["run", "--json", tiny, "hi"]);
  assert.equal(json.code, 0, json.stderr);
  const body = JSON.parse(json.stdout) as { object: string; choices: Array<{ message: { content: string } }> };
  assert.equal(body.object, "chat.completion");
  assert.equal(typeof body.choices[0]!.message.content, "string");

  const ps = await mr(["ps", "--json"]);
  const runners = JSON.parse(ps.stdout) as Array<{ model_name: string; state: string; context_size: number; pid: number }>;
  assert.equal(runners.length, 1, ps.stdout);
  assert.equal(runners[0]!.state, "ready");
  assert.equal(runners[0]!.context_size, 96);
  const table = await mr(["ps"]);
  assert.match(table.stdout, /^MODEL NAME\s+ID\s+BACKEND\s+MODE\s+STATE/);
  assert.match(table.stdout, /llama\.cpp\s+completion\s+ready/);

  const unload = await mr(["unload", "--all"]);
  assert.equal(unload.code, 0, unload.stderr);
  assert.match(unload.stdout, /Unloaded 1 model/);
  assert.deepEqual(JSON.parse((await mr(["ps", "--json"])).stdout), []);

  const detach = await mr(["run", "-d", tiny]);
  assert.equal(detach.code, 0, detach.stderr);
  assert.match(detach.stderr, /Loaded/);
  assert.equal((JSON.parse((await mr(["ps", "--json"])).stdout) as unknown[]).length, 1, "--detach loads the model");
  assert.equal((await mr(["unload", tiny])).code, 0);
});

test("run on an embedding model prints the prompt's vector (as ollama run); --dimensions and --truncate reach it; chat-only flags are refused by name", async () => {
  const embed = "cli/embed:v1";
  assert.equal((await mr(["package", "-q", "--context-size", "64", "--gguf", await tinyModel({ seed: 11, pooling: "mean" }, "embed.gguf"), embed])).code, 0);
  const norm = (v: number[]) => Math.hypot(...v);
  assert.match((await mr(["show", embed])).stdout, /\nCapabilities\n {2}embedding\n/);

  const plain = await mr(["run", embed, "hello", "world"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout.split("\n").length, 2, "one line of JSON");
  const vector = JSON.parse(plain.stdout) as number[];
  assert.equal(vector.length, 64);
  assert.ok(Math.abs(norm(vector) - 1) < 1e-4);

  const short = JSON.parse((await mr(["run", "--dimensions", "8", embed, "hello", "world"])).stdout) as number[];
  assert.equal(short.length, 8);
  assert.ok(Math.abs(norm(short) - 1) < 1e-4);
  const ratio = vector[0]! / short[0]!;
  short.forEach((x, i) => assert.ok(Math.abs(x * ratio - vector[i]!) < 1e-4, "the first 8 values, rescaled"));

  const piped = await mr(["run", embed], "hello world\n");
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal((JSON.parse(piped.stdout) as number[]).length, 64, "piped stdin is the input");

  const whole = JSON.parse((await mr(["run", "--json", "--truncate=true", embed, "hi"])).stdout) as { model: string; embeddings: number[][]; prompt_eval_count: number };
  assert.equal(whole.embeddings[0]!.length, 64);
  assert.ok(whole.prompt_eval_count > 0);
  // A file named with @ is read into the prompt (docker model run's file inclusion): the same vector as its text inline.
  const file = `${await tempDir()}/words.txt`;
  await writeFile(file, "several words read from a file");
  const included = JSON.parse((await mr(["run", embed, `@${file}`])).stdout) as number[];
  const inline = JSON.parse((await mr(["run", embed, "several words read from a file"])).stdout) as number[];
  assert.deepEqual(included, inline);
  assert.notDeepEqual(JSON.parse((await mr(["run", embed, "@/no/such/file"])).stdout), inline, "no such file: the text as written");
  // Ollama's truncate: false makes a too-long input an error rather than a cut.
  const long = await mr(["run", "--truncate=false", embed, "word ".repeat(400)]);
  assert.equal(long.code, 2, "a 400 from the daemon");
  oneLineError(long, /context/i);
  assert.equal((await mr(["run", "--truncate", "true", embed, "word ".repeat(400)])).code, 0);

  for (const [args, pattern] of [
    [["--think", "true"], /embedding model: --think work with chat models only/],
    [["--verbose", "--nowordwrap"], /--nowordwrap, --verbose work with chat models only/],
    [["--truncate", "yes"], /--truncate must be true or false/],
    [["--dimensions=-1"], /--dimensions must be a whole number/],
    [["--dimensions", "-1"], /flag --dimensions needs a value; one that starts with a dash goes as --dimensions=-VALUE/],
  ] as const) {
    const r = await mr(["run", ...args, embed, "x"]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    oneLineError(r, pattern);
  }
  const onChat = await mr(["run", "--dimensions", "8", tiny, "x"]);
  assert.equal(onChat.code, 2);
  oneLineError(onChat, /--dimensions work with embedding models only; cli\/tiny:v1 is a chat model/);

  const detach = await mr(["run", "-d", embed]);
  assert.equal(detach.code, 0, detach.stderr);
  const runners = JSON.parse((await mr(["ps", "--json"])).stdout) as Array<{ model_name: string; mode: string }>;
  assert.deepEqual(
    runners.filter((r) => r.model_name.includes("embed")).map((r) => r.mode),
    ["embedding"],
    "--detach loads it in embedding mode",
  );
  assert.equal((await mr(["run", "-d", "--keepalive", "3m", embed])).code, 0);
  assert.equal((await mr(["run", "-d", "--dimensions", "8", embed])).code, 2, "--dimensions shapes an answer, not a load");
  assert.equal((await mr(["unload", "--all"])).code, 0);
  assert.equal((await mr(["rm", embed])).code, 0);
});

test("run pulls a missing model first, saying so; Ctrl-C during an answer exits 130", async () => {
  const remote = `${registry.host}/cli/tiny:v1`;
  assert.equal((await mr(["rm", "-f", remote])).code, 0);
  const r = await mr(["run", remote, "hi"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Unable to find model '.*cli\/tiny:v1' locally\. Pulling from the server\./);

  // A model without a configured context answers until 4096 tokens: long enough to interrupt.
  const long = await tinyModel({ seed: 8 });
  assert.equal((await mr(["package", "--gguf", long, "cli/long"])).code, 0);
  const child = spawnMr(["run", "cli/long", "tell me everything"], { env });
  child.stdin!.end();
  const done = collect(child, 60_000);
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  child.kill("SIGINT");
  const result = await done;
  assert.equal(result.code, 130, result.stderr);
  await mr(["unload", "--all"]);
});

test("df, status, version and logs", async () => {
  const df = JSON.parse((await mr(["df", "--json"])).stdout) as { models_disk_usage: number; default_backend_disk_usage: number };
  assert.ok(df.models_disk_usage > 700_000);
  assert.match((await mr(["df"])).stdout, /^TYPE\s+SIZE\nModels\s+\d/);

  const status = await mr(["status", "--json"]);
  assert.equal(status.code, 0);
  const s = JSON.parse(status.stdout) as { running: boolean; endpoint: string; version: string; engines: Record<string, string> };
  assert.equal(s.running, true);
  assert.equal(s.endpoint, `http://${daemon.host}`);
  assert.match(s.engines["llama.cpp"]!, /^Running/);

  const version = JSON.parse((await mr(["version", "--json"])).stdout) as { client: string; server: string };
  assert.equal(version.client, version.server);

  const logs = await mr(["logs"]);
  assert.equal(logs.code, 0, logs.stderr);
  const follow = spawnMr(["logs", "-f"], { env });
  follow.stdin!.end();
  const followed = collect(follow, 30_000);
  // Ctrl-C once it follows (a slow start would otherwise die of the signal before its handler is in place).
  const port = Number(new URL(daemon.url).port);
  await eventually(() => isConnectedTo(follow.pid!, port), 20_000, "mr logs -f to connect");
  follow.kill("SIGINT");
  assert.equal((await followed).code, 130, "logs -f runs until Ctrl-C");

  const openai = JSON.parse((await mr(["ls", "--openai"])).stdout) as { object: string; data: Array<{ id: string }> };
  assert.equal(openai.object, "list");
  assert.ok(openai.data.some((m) => m.id.endsWith("cli/tiny:v1")), JSON.stringify(openai.data));

  const help = await mr(["help", "run"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: mr run/);
  assert.match(help.stdout, /Examples:/);
});

test("failures: one line from the daemon, exit 1; usage errors exit 2 with a suggestion", async () => {
  const missing = await mr(["rm", "no/such-model"]);
  assert.equal(missing.code, 1);
  oneLineError(missing, /^Error: .*no\/such-model/);

  const inspect = await mr(["inspect", "nothing-like-this"]);
  assert.equal(inspect.code, 1);
  oneLineError(inspect, /not/);

  const badPull = await mr(["pull", "-q", `${registry.host}/nobody/nothing:v9`]);
  assert.equal(badPull.code, 1);
  assert.match(badPull.stderr.trim().split("\n").at(-1)!, /^Error: /);

  const typo = await mr(["lsit"]);
  assert.equal(typo.code, 2);
  oneLineError(typo, /unknown command "lsit"; did you mean "list"\?/);

  const flag = await mr(["ps", "--jsno"]);
  assert.equal(flag.code, 2);
  oneLineError(flag, /unknown flag --jsno; did you mean --json\?/);

  assert.equal((await mr(["tag", tiny])).code, 2);
  assert.equal((await mr(["unload"])).code, 2);
  assert.equal((await mr(["completion", "powershell"])).code, 2);

  const unreachable = await runMr(["ls"], { env: { MODEL_RUNNER_HOST: "127.0.0.1:1", MODEL_RUNNER_HOME: home } });
  assert.equal(unreachable.code, 1);
  oneLineError(unreachable, /cannot reach the model runner at http:\/\/127\.0\.0\.1:1/);

  const down = await runMr(["status", "--json"], { env: { MODEL_RUNNER_HOST: "127.0.0.1:1", MODEL_RUNNER_HOME: home } });
  assert.equal(down.code, 1);
  assert.equal((JSON.parse(down.stdout) as { running: boolean }).running, false);

  const debug = await runMr(["--debug", "ls"], { env: { MODEL_RUNNER_HOST: "127.0.0.1:1", MODEL_RUNNER_HOME: home } });
  assert.match(debug.stderr, /Caused by:/);
});

test("one name resolver: cp/tag, rm, push, configure and unload take partial names; configure stores under the model", async () => {
  // The earlier tests leave this model as REGISTRY/cli/tiny:v1 (and maybe cli/tiny:v1 too).
  const cp = await mr(["cp", "tiny:v1", "cli/copy:v1"]);
  assert.equal(cp.code, 0, cp.stderr);
  assert.match(cp.stdout, /^Model "(\S+\/)?cli\/tiny:v1" tagged successfully with "cli\/copy:v1"\n$/, "the partial source resolves to a full name");

  const id = (JSON.parse((await mr(["inspect", tiny])).stdout) as { id: string }).id;
  const byId = await mr(["rm", id.slice(7, 19)]);
  assert.equal(byId.code, 1);
  oneLineError(byId, /^Error: .*several tags \(.*\); remove them one by one or pass -f to remove them all \(mr rm -f [0-9a-f]{12}\)$/);
  const rm = await mr(["rm", "copy:v1"]);
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal(rm.stdout, "Untagged: cli/copy:v1\n", "a partial name removes the one tag it names");

  const remote = `${registry.host}/cli/partial:v1`;
  assert.equal((await mr(["tag", "tiny:v1", remote])).code, 0);
  const push = await mr(["push", "-q", "partial:v1"]);
  assert.equal(push.code, 0, push.stderr);
  const pushed = await fetch(`${registry.url}/v2/cli/partial/manifests/v1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
  assert.equal(pushed.status, 200, "push resolved partial:v1 to the registry name");
  assert.equal((await mr(["rm", remote])).code, 0);

  // Settings set under a short name are the model's: every name of it finds them.
  assert.equal((await mr(["run", "-d", "tiny:v1"])).code, 0, "loaded, so that configure restarts it");
  const first = await mr(["configure", "--context-size", "80", "tiny:v1"]);
  assert.equal(first.code, 0, first.stderr);
  const resolved = /^Configured ((\S+\/)?cli\/tiny:v1)\.\n$/.exec(first.stdout)?.[1];
  assert.ok(resolved, `configured under the full name: ${first.stdout}`);
  const second = await mr(["configure", "--context-size", "96", "tiny"]);
  assert.equal(second.code, 0, `a second configure right after the first is not "busy": ${second.stderr}`);
  for (const name of [tiny, "tiny", id]) {
    const rows = JSON.parse((await mr(["configure", "show", "--json", name])).stdout) as Array<{ model: string; context_size: number }>;
    assert.equal(rows.length, 1, `configure show ${name}`);
    assert.equal(rows[0]!.model, resolved);
    assert.equal(rows[0]!.context_size, 96);
  }
  const ps = JSON.parse((await mr(["ps", "--json"])).stdout) as Array<{ state: string; context_size: number }>;
  assert.deepEqual(ps.map((r) => [r.state, r.context_size]), [["ready", 96]], "configure waited for the reload");

  const unload = await mr(["unload", "tiny"]);
  assert.equal(unload.code, 0, unload.stderr);
  assert.match(unload.stdout, /Unloaded 1 model/);
});

test("errors: one format, exit 2 for usage and bad values, 1 for failures; unload nosuch, ps extra", async () => {
  const nosuch = await mr(["unload", "nosuch"]);
  assert.equal(nosuch.code, 1);
  oneLineError(nosuch, /^Error: no model "nosuch" in the store/);

  const extra = await mr(["ps", "extra"]);
  assert.equal(extra.code, 2);
  oneLineError(extra, /^Error: ps takes no arguments, got "extra" \(see 'mr ps --help'\)$/);
  assert.equal((await mr(["df", "x"])).code, 2);

  const badValue = await mr(["configure", "--keep-alive", "soon", tiny]);
  assert.equal(badValue.code, 2, "a value the daemon rejects as invalid is a usage error");
  oneLineError(badValue, /^Error: .*keep_alive/);

  const serveTypo = await mr(["serve", "--prot", "1"]);
  assert.equal(serveTypo.code, 2);
  oneLineError(serveTypo, /^Error: unknown flag --prot; did you mean --port\? \(see 'mr serve --help'\)$/);
  const serveLevel = await mr(["serve", "--port", "0", "--log-level", "loud"]);
  assert.equal(serveLevel.code, 2);
  oneLineError(serveLevel, /^Error: log level must be/);

  const explicit = await runMr(["ls"], { env: { MODEL_RUNNER_HOST: "127.0.0.1:1", MODEL_RUNNER_HOME: home } });
  oneLineError(explicit, /\(MODEL_RUNNER_HOST\)/);
});

test("package --push sends the artifact straight to the registry", async () => {
  const target = `${registry.host}/cli/packaged:v2`;
  const r = await mr(["package", "--gguf", gguf, "--push", target]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Pushed/);
  const res = await fetch(`${registry.url}/v2/cli/packaged/manifests/v2`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
  assert.equal(res.status, 200);
});

test("package --from makes a variant of a stored model with another context size; bad sources and sizes are usage errors", async () => {
  const before = JSON.parse((await mr(["inspect", tiny])).stdout) as { id: string; config: { context_size?: number } };
  // A partial name resolves as in `mr run`.
  const r = await mr(["package", "--from", "tiny:v1", "--context-size", "4096", "cli/tiny-4k:v1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Packaged cli\/tiny-4k:v1 from (\S+\/)?cli\/tiny:v1\n$/);
  const variant = JSON.parse((await mr(["inspect", "cli/tiny-4k:v1"])).stdout) as { id: string; config: { context_size?: number; architecture?: string } };
  assert.equal(variant.config.context_size, 4096);
  assert.equal(variant.config.architecture, "llama");
  assert.notEqual(variant.id, before.id, "a new config is a new model ID");
  const source = JSON.parse((await mr(["inspect", tiny])).stdout) as { id: string; config: { context_size?: number } };
  assert.deepEqual(source, before, "the source is untouched");

  const unknown = await mr(["package", "--from", "nosuch", "--context-size", "512", "cli/x:v1"]);
  assert.equal(unknown.code, 1);
  oneLineError(unknown, /^Error: no model "nosuch" in the store/);
  const both = await mr(["package", "--from", tiny, "--gguf", gguf, "cli/x:v1"]);
  assert.equal(both.code, 2);
  oneLineError(both, /^Error: --from and --gguf are two sources: give one of them/);
  const withPush = await mr(["package", "--from", tiny, "--push", `${registry.host}/cli/x:v1`]);
  assert.equal(withPush.code, 2);
  oneLineError(withPush, /^Error: --push cannot be combined with --from .*mr push TARGET/);
  const withLicense = await mr(["package", "--from", tiny, "--license", gguf, "cli/x:v1"]);
  assert.equal(withLicense.code, 2);
  oneLineError(withLicense, /^Error: --license cannot be combined with --from/);
  for (const bad of ["-5", "big", "1.5", "2147483648"]) {
    const r2 = await mr(["package", "--from", tiny, `--context-size=${bad}`, "cli/x:v1"]);
    assert.equal(r2.code, 2, `--context-size ${bad}: ${r2.stderr}`);
    oneLineError(r2, /^Error: --context-size must be/);
  }
  assert.equal((await mr(["ls", "-q", "cli/x:v1"])).stdout, "", "no failed attempt stored anything");
  assert.equal((await mr(["rm", "cli/tiny-4k:v1"])).code, 0);
});

test("an artifact whose config has no gguf map (made by another tool): /api/show and mr show read the GGUF header", async () => {
  const data = await readFile(await tinyModel({ seed: 12 }));
  const config = {
    config: { format: "gguf", size: `${data.length} B` },
    descriptor: { created: "2026-01-01T00:00:00Z" },
    rootfs: { type: "rootfs", diff_ids: [] },
  };
  await pushRawArtifact(registry.url, "other/tool", "v1", { config, configMediaType: MediaTypes.modelConfigV01, layers: [{ mediaType: MediaTypes.gguf, data }] });
  const ref = `${registry.host}/other/tool:v1`;
  const pull = await mr(["pull", "-q", ref]);
  assert.equal(pull.code, 0, pull.stderr);
  const inspected = JSON.parse((await mr(["inspect", ref])).stdout) as { config: { gguf?: unknown } };
  assert.equal(inspected.config.gguf, undefined, "the artifact's config is returned as stored");

  for (let i = 0; i < 2; i++) {
    // Twice: the second answer comes from the header cache and must be the same.
    const res = await fetch(`http://${daemon.host}/api/show`, { method: "POST", body: JSON.stringify({ model: ref }) });
    assert.equal(res.status, 200);
    const show = (await res.json()) as { model_info: Record<string, unknown>; template: string; details: { family: string } };
    assert.equal(show.model_info["general.architecture"], "llama");
    assert.equal(show.model_info["general.name"], "tiny-llama");
    assert.equal(typeof show.model_info["llama.context_length"], "number");
    assert.match(show.template, /im_start/);
    assert.equal(show.details.family, "llama");
  }

  const tags = (await (await fetch(`http://${daemon.host}/api/tags`)).json()) as { models: Array<{ name: string; details: { family: string } }> };
  assert.equal(tags.models.find((m) => m.name === ref)?.details.family, "llama", "/api/tags has the family from the header too");

  const shown = await mr(["show", ref]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /Metadata\n/);
  assert.match(shown.stdout, /general\.architecture\s+llama/);
  assert.match(shown.stdout, /general\.name\s+tiny-llama/);
  assert.equal((await mr(["rm", ref])).code, 0);
});

test("purge asks first: without a terminal it needs -f", async () => {
  const refused = await mr(["purge"]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /-f/);
  const purge = await mr(["purge", "-f"]);
  assert.equal(purge.code, 0, purge.stderr);
  assert.deepEqual(JSON.parse((await mr(["ls", "--json"])).stdout), []);
});
