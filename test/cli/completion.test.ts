import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanEnv, collect, runMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";

// Completion as a user meets it: an interactive bash on a pseudo-terminal
// (python3's pty module), the script loaded with `source <(mr completion bash)`,
// TAB pressed as a key. Model names come from a real daemon.
let daemon: StartedDaemon;
let home: string;
let bin: string;
let files: string;
const BASH_COMPLETION = "/usr/share/bash-completion/bash_completion";

before(async () => {
  home = await tempDir("mr-completion-home-");
  daemon = await startDaemon(home);
  const env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
  const gguf = await tinyModel({ seed: 5 });
  for (const name of ["127.0.0.1:5123/ai/tiny:v1", "cli/other"]) {
    const r = await runMr(["package", "-q", "--gguf", gguf, name], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  bin = await tempDir("mr-completion-bin-");
  await writeFile(join(bin, "mr"), `#!/bin/sh\nexec "${process.execPath}" "${MR_BIN}" "$@"\n`);
  await chmod(join(bin, "mr"), 0o755);
  files = await tempDir("mr-completion-files-");
  await writeFile(join(files, "weights.gguf"), "");
});

after(async () => {
  await daemon?.stop();
  await eventually(async () => (await pidsMatching(home)).length === 0, 10_000, "no process of the test home left");
});

/**
 * Types `keys` into `bash -i` after loading the completion script, then moves
 * to the start of the line (Ctrl-A) and turns it into `echo GOT ...`, so the
 * line as completion left it is printed. Keys typed while a completion runs
 * wait in the terminal, so no sleeps are needed.
 */
async function completeLine(keys: string, opts: { env: Record<string, string>; withBashCompletion: boolean; shell?: "bash" | "zsh" }): Promise<string> {
  const shell = opts.shell ?? "bash";
  const argv = shell === "bash" ? ["bash", "--norc", "--noprofile", "-i"] : ["zsh", "-f", "-i"];
  const child = spawn("python3", ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", ...argv], {
    env: cleanEnv({ ...opts.env, PATH: `${bin}:${process.env.PATH}`, TERM: "dumb", PS1: "$ ", INPUTRC: "/dev/null", ZDOTDIR: files }),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const done = collect(child, 60_000);
  if (opts.withBashCompletion) child.stdin!.write(`source ${BASH_COMPLETION}\n`);
  if (shell === "zsh") child.stdin!.write("bindkey -e; autoload -Uz compinit && compinit -u -D\n");
  child.stdin!.write(`source <(mr completion ${shell})\n`);
  child.stdin!.write(`${keys}\x01echo GOT \r`);
  try {
    await eventually(() => /\nGOT [^\r\n]*\r?\n/.test(out), 30_000, `the line to be echoed:\n${out}`);
  } finally {
    child.stdin!.write("exit\n");
    child.stdin!.end();
    await done;
  }
  const m = /\nGOT ([^\r\n]*)/.exec(out);
  assert.ok(m, out);
  return m[1]!.trimEnd();
}

const variants = [false, ...(existsSync(BASH_COMPLETION) ? [true] : [])];

for (const withBashCompletion of variants) {
  const label = withBashCompletion ? "with bash-completion" : "without bash-completion";
  test(`bash (${label}): a model name with ':' completes whole, before and after the ':'`, async () => {
    const env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
    assert.equal(await completeLine("mr run 127.0.0.1:5123/ai/ti\t", { env, withBashCompletion }), "mr run 127.0.0.1:5123/ai/tiny:v1");
    assert.equal(await completeLine("mr rm 127.0.0.1:5123/ai/tiny:\t", { env, withBashCompletion }), "mr rm 127.0.0.1:5123/ai/tiny:v1");
    assert.equal(await completeLine("mr show cli/ot\t", { env, withBashCompletion }), "mr show cli/other:latest");
    assert.equal(await completeLine("mr run --verb\t", { env, withBashCompletion }), "mr run --verbose");
    // package --from takes a stored model: its value completes as one.
    assert.equal(await completeLine("mr package --from 127.0.0.1:5123/ai/tiny:\t", { env, withBashCompletion }), "mr package --from 127.0.0.1:5123/ai/tiny:v1");
  });

  test(`bash (${label}): --gguf and --license complete file names`, async () => {
    const env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
    assert.equal(await completeLine(`mr package --gguf ${files}/wei\t`, { env, withBashCompletion }), `mr package --gguf ${files}/weights.gguf`);
    assert.equal(await completeLine(`mr package --license ${files}/wei\t`, { env, withBashCompletion }), `mr package --license ${files}/weights.gguf`);
  });
}

test("TAB never starts a daemon: completion lists models with --no-autostart", async () => {
  const idle = await tempDir("mr-completion-idle-");
  // No MODEL_RUNNER_HOST: a plain `mr list` would start a daemon at the default address.
  const env = { MODEL_RUNNER_HOME: idle };
  const line = await completeLine("mr run cli/ot\t", { env, withBashCompletion: false });
  assert.match(line, /^mr run cli\/ot/);
  assert.equal(existsSync(join(idle, "logs")), false, "no daemon was started (it would log under MODEL_RUNNER_HOME/logs)");
  const direct = await runMr(["--no-autostart", "list", "--names"], { env });
  assert.equal(existsSync(join(idle, "logs")), false);
  if (direct.code !== 0) assert.match(direct.stderr, /^Error: cannot reach the model runner/);
});

test("zsh and fish scripts: file flags complete files, model names come without starting a daemon", async () => {
  const zsh = (await runMr(["completion", "zsh"])).stdout;
  assert.match(zsh, /--gguf\|[^)]*--license[^)]*\) _files/);
  assert.match(zsh, /mr --no-autostart list --names/);
  const fish = (await runMr(["completion", "fish"])).stdout;
  assert.match(fish, /-l gguf -r -F/);
  assert.match(fish, /-a '\(mr --no-autostart list --names 2>\/dev\/null\)'/);
});

const hasShell = (name: string) => spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;

test("fish: `complete -C` offers names with ':' whole and files after --gguf", { skip: hasShell("fish") ? false : "fish is not installed" }, async () => {
  const env = cleanEnv({ MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home, PATH: `${bin}:${process.env.PATH}` });
  const complete = (line: string) => {
    const r = spawnSync("fish", ["--no-config", "-c", `mr completion fish | source; complete -C ${JSON.stringify(line)}`], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").map((l) => l.split("\t")[0]!).filter(Boolean);
  };
  assert.deepEqual(complete("mr run 127.0.0.1:5123/ai/ti"), ["127.0.0.1:5123/ai/tiny:v1"]);
  assert.deepEqual(complete("mr rm 127.0.0.1:5123/ai/tiny:"), ["127.0.0.1:5123/ai/tiny:v1"]);
  assert.deepEqual(complete(`mr package --gguf ${files}/wei`), [`${files}/weights.gguf`]);
  assert.deepEqual(complete("mr package --from 127.0.0.1:5123/ai/ti"), ["127.0.0.1:5123/ai/tiny:v1"]);
});

test("zsh: TAB completes a model name with ':' whole, and files after --gguf", { skip: hasShell("zsh") ? false : "zsh is not installed" }, async () => {
  const env = { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home };
  assert.equal(await completeLine("mr run 127.0.0.1:5123/ai/ti\t", { env, withBashCompletion: false, shell: "zsh" }), "mr run 127.0.0.1:5123/ai/tiny:v1");
  assert.equal(await completeLine(`mr package --gguf ${files}/wei\t`, { env, withBashCompletion: false, shell: "zsh" }), `mr package --gguf ${files}/weights.gguf`);
  assert.equal(await completeLine("mr package --from 127.0.0.1:5123/ai/ti\t", { env, withBashCompletion: false, shell: "zsh" }), "mr package --from 127.0.0.1:5123/ai/tiny:v1");
});

test("zsh: the script loads under compinit and defines _mr", { skip: hasShell("zsh") ? false : "zsh is not installed" }, () => {
  const env = cleanEnv({ MODEL_RUNNER_HOME: home, PATH: `${bin}:${process.env.PATH}`, ZDOTDIR: files });
  const r = spawnSync("zsh", ["-f", "-c", "autoload -Uz compinit && compinit -u -D && source <(mr completion zsh) && whence -w _mr"], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "_mr: function");
  assert.equal(r.stderr, "");
});
