import assert from "node:assert/strict";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually } from "../helpers/processes.ts";

// `mr launch` against a real daemon. The apps themselves (Claude Code, Codex,
// Docker) are not on this machine: test doubles stand in for them, small Node
// programs on PATH under the apps' names that record what they were given and
// call the daemon with the settings they got, as the real apps would.
let daemon: StartedDaemon;
let home: string;
let bin: string;
let record: string;

before(async () => {
  home = await tempDir("mr-launch-home-");
  daemon = await startDaemon(home);
  bin = await tempDir("mr-launch-bin-");
  record = join(bin, "record.json");
  // A stand-in app: records its argv and environment, asks the daemon what its settings point at, exits 3.
  // CommonJS (an extensionless file), so an async function around the awaits.
  const app = (probe: string) => `#!${process.execPath}
(async () => {
  const env = process.env;
  const res = await fetch(${probe}, { method: "POST", headers: { "content-type": "application/json", "x-api-key": env.ANTHROPIC_API_KEY ?? env.OPENAI_API_KEY }, body: JSON.stringify({ model: "no-such-model", max_tokens: 1, messages: [{ role: "user", content: "hi" }] }) });
  require("node:fs").writeFileSync(${JSON.stringify(record)}, JSON.stringify({ argv: process.argv.slice(2), env, status: res.status, body: await res.json() }));
  process.exit(3);
})();
`;
  const write = async (name: string, text: string) => {
    await writeFile(join(bin, name), text);
    await chmod(join(bin, name), 0o755);
  };
  await write("claude", app("env.ANTHROPIC_BASE_URL + '/v1/messages'"));
  await write("codex", app("env.OPENAI_BASE_URL + '/chat/completions'"));
  await write("docker", app("new URL(process.argv.find((a) => a.startsWith('OPENAI_BASE_URL=')).slice(16) + '/chat/completions')"));
});

after(async () => {
  await daemon?.stop();
});

const mr = (args: string[], env: Record<string, string> = {}) => runMr(args, { env: { MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home, PATH: bin, ...env } });
const recorded = async () => JSON.parse(await readFile(record, "utf8")) as { argv: string[]; env: Record<string, string>; status: number; body: Record<string, any> };

test("launch lists the apps; --config and --dry-run print the settings without starting anything", async () => {
  const list = await mr(["launch"]);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(list.stdout.split("\n").filter(Boolean).map((l) => l.split(/\s+/)[0]), ["anythingllm", "claude", "codex", "openclaw", "opencode", "openwebui"]);

  const config = await mr(["launch", "claude", "--config"]);
  assert.equal(config.code, 0, config.stderr);
  assert.match(config.stdout, new RegExp(`ANTHROPIC_BASE_URL=http://${daemon.host}/anthropic\\n`));
  assert.match(config.stdout, /ANTHROPIC_API_KEY=sk-model-runner\n/, "a placeholder: the apps refuse an empty key");
  const keyed = await mr(["launch", "codex", "--config"], { MODEL_RUNNER_API_KEY: "s3cret" });
  assert.match(keyed.stdout, new RegExp(`OPENAI_BASE_URL=http://${daemon.host}/v1\\n`));
  assert.match(keyed.stdout, /OPENAI_API_KEY=s3cret\n/);

  const dry = await mr(["launch", "openwebui", "--dry-run", "--port", "8081", "--detach"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^Would run: docker run --rm -d --network host -e PORT=8081 /, "Linux: the host's network, so a daemon on 127.0.0.1 is reachable");
  assert.match(dry.stdout, new RegExp(`-e OPENAI_API_BASE_URL=http://${daemon.host}/engines/v1 -e OPENAI_API_KEY=sk-model-runner -e OPEN_AI_KEY=sk-model-runner ghcr\\.io/open-webui/open-webui:latest\\n$`));
  const image = await mr(["launch", "anythingllm", "--dry-run", "--image", "my/anything:1", "-m", "ai/x", "--", "--flag"]);
  assert.equal(image.code, 2, "AnythingLLM takes its model in its own settings");
  const anything = await mr(["launch", "anythingllm", "--dry-run", "--image", "my/anything:1", "--", "--flag"]);
  assert.match(anything.stdout, new RegExp(`-e SERVER_PORT=3001 -v anythingllm_storage:/app/server/storage -e STORAGE_DIR=/app/server/storage -e LLM_PROVIDER=docker-model-runner -e DOCKER_MODEL_RUNNER_BASE_PATH=http://${daemon.host} my/anything:1 --flag\\n$`), "APP_ARGS after the image");
  const withModel = await mr(["launch", "openwebui", "--dry-run", "--model", "ai/smollm2"]);
  assert.match(withModel.stdout, / -e DEFAULT_MODELS=ai\/smollm2 ghcr/);
  const openclaw = await mr(["launch", "openclaw", "--config"]);
  assert.match(openclaw.stdout, new RegExp(`openclaw config set models\\.providers\\.model-runner\\.baseUrl "http://${daemon.host}/engines/v1"\\n`));
});

test("launch runs a host app with the runner's address and APP_ARGS; the app reaches the daemon; its exit status is mr's", async () => {
  const r = await mr(["launch", "claude", "--", "--print", "hello there"]);
  assert.equal(r.code, 3, r.stderr);
  const seen = await recorded();
  assert.deepEqual(seen.argv, ["--print", "hello there"]);
  assert.equal(seen.env.ANTHROPIC_BASE_URL, `http://${daemon.host}/anthropic`);
  assert.equal(seen.env.PATH, bin, "the rest of the environment is inherited");
  // The app's request reached the daemon's Anthropic route: an unknown model, in Anthropic's error shape.
  assert.equal(seen.status, 404);
  assert.equal(seen.body.type, "error");

  assert.equal((await mr(["launch", "codex"])).code, 3);
  const codex = await recorded();
  assert.equal(codex.status, 404);
  assert.match(codex.body.error.message, /no-such-model/, "OpenAI's error shape from the daemon's /v1 route");
});

test("launch --model: the model's exact name reaches the app, and the runner loads it as the app starts", async () => {
  assert.equal((await mr(["package", "-q", "--gguf", await tinyModel({ seed: 61 }), "launch/tiny:v1"])).code, 0);
  assert.equal((await mr(["launch", "claude", "--model", "tiny:v1"])).code, 3);
  assert.equal((await recorded()).env.ANTHROPIC_MODEL, "launch/tiny:v1");
  assert.equal((await mr(["launch", "codex", "-m", "tiny:v1", "--", "exec", "hi"])).code, 3);
  assert.deepEqual((await recorded()).argv, ["--model", "launch/tiny:v1", "exec", "hi"]);
  await eventually(
    async () => ((await (await fetch(`${daemon.url}/engines/ps`)).json()) as Array<{ model_name: string }>).some((r) => r.model_name.includes("launch/tiny")),
    30_000,
    "the model to be loaded",
  );
  assert.equal((await mr(["unload", "--all"])).code, 0);
});

test("launch runs a web UI with docker; bad uses are one-line errors naming what is wrong", async () => {
  const r = await mr(["launch", "openwebui", "--port", "3999"]);
  assert.equal(r.code, 3, r.stderr);
  const seen = await recorded();
  assert.deepEqual(seen.argv.slice(0, 6), ["run", "--rm", "--network", "host", "-e", "PORT=3999"]);
  assert.equal(seen.argv.at(-1), "ghcr.io/open-webui/open-webui:latest");
  assert.equal(seen.status, 404, "the container's settings reach the daemon");

  const cases: Array<[string[], number, RegExp, Record<string, string>?]> = [
    [["launch", "nope"], 2, /unsupported app "nope" \(supported: anythingllm, claude, codex, openclaw, opencode, openwebui\)/],
    [["launch", "claude", "--port", "3000"], 2, /--port apply to the web UIs run in a container, not claude/],
    [["launch", "opencode", "--model", "ai/x"], 2, /--model: opencode takes its model in its own settings, not from mr launch/],
    [["launch", "openwebui", "--port", "70000"], 2, /--port must be 1-65535/],
    [["launch", "opencode"], 1, /opencode is not on PATH: install it and run mr launch opencode again/],
    [["launch", "openwebui"], 1, /docker is not on PATH/, { PATH: home }],
  ];
  for (const [args, code, pattern, env] of cases) {
    const bad = await mr(args, env);
    assert.equal(bad.code, code, `${args.join(" ")}: ${bad.stderr}`);
    const lines = bad.stderr.trim().split("\n");
    assert.equal(lines.length, 1, bad.stderr);
    assert.match(lines[0]!, pattern);
  }
  const missing = await mr(["launch", "opencode"]);
  assert.match(missing.stdout, /Configure opencode to use the model runner:\n {2}OPENAI_API_BASE=/, "what to set by hand");
});
