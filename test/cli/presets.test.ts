import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { collect, cleanEnv, runMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { MR_BIN } from "../helpers/engine.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { eventually, pidsMatching } from "../helpers/processes.ts";

// Presets through the real `mr` against a real `mr serve`: mr create -f, mr show --PART, mr configure's
// preset flags, and the chat's /set parameter, /save and /load.
let daemon: StartedDaemon;
let home: string;
let dir: string;
const env = () => ({ MODEL_RUNNER_HOST: daemon.host, MODEL_RUNNER_HOME: home });
const mr = (args: string[], input?: string) => runMr(args, { env: env(), ...(input !== undefined ? { input } : {}), timeoutMs: 120_000 });

before(async () => {
  home = await tempDir("mr-presets-home-");
  dir = await tempDir("mr-modelfiles-");
  daemon = await startDaemon(home);
  const r = await mr(["package", "--gguf", await tinyModel({ seed: 3 }), "ai/tiny"]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await daemon?.stop();
  await eventually(async () => (await pidsMatching(home)).length === 0, 10_000, "no process of the test home left");
});

const modelfile = async (name: string, text: string) => {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
};

const JINJA = "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}<|assistant|>";

describe("mr create -f Modelfile and mr show", () => {
  test("FROM a model, SYSTEM, PARAMETER, MESSAGE, LICENSE, TEMPLATE: each shows back with mr show --PART", async () => {
    const path = await modelfile(
      "Modelfile",
      [
        "# a comment",
        "FROM ai/tiny",
        'SYSTEM """You are a terse assistant.',
        'Answer in one line."""',
        "PARAMETER temperature 0.2",
        "PARAMETER num_predict 3",
        'PARAMETER stop "<|end|>"',
        "PARAMETER stop <|user|>",
        "PARAMETER num_ctx 1024",
        "MESSAGE user Hi",
        'MESSAGE assistant "Hello."',
        'LICENSE """Test licence text."""',
        `TEMPLATE """${JINJA}"""`,
        "",
      ].join("\n"),
    );
    const r = await mr(["create", "-f", path, "my/terse"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /success/);
    const system = await mr(["show", "--system", "my/terse"]);
    assert.equal(system.stdout, "You are a terse assistant.\nAnswer in one line.\n");
    const params = await mr(["show", "--parameters", "my/terse"]);
    assert.deepEqual(
      params.stdout.trimEnd().split("\n").map((l) => l.replace(/\s+/, " ")),
      ["num_ctx 1024", "temperature 0.2", "num_predict 3", 'stop "<|end|>"', 'stop "<|user|>"'],
    );
    assert.equal((await mr(["show", "--license", "my/terse"])).stdout, "Test licence text.\n");
    assert.equal((await mr(["show", "--template", "my/terse"])).stdout, `${JINJA}\n`);
    const mf = (await mr(["show", "--modelfile", "my/terse"])).stdout;
    assert.match(mf, /^FROM ai\/my\/terse:latest$|^FROM my\/terse:latest$/m);
    assert.match(mf, /^MESSAGE assistant """Hello\."""$/m);
    // The default view lists the preset too.
    const plain = await mr(["show", "my/terse"]);
    assert.match(plain.stdout, /Parameters\n\s+num_ctx\s+1024/);
    assert.match(plain.stdout, /System\n\s+You are a terse assistant\./);
    // And the model answers with it: num_predict 3.
    const run = await mr(["run", "--verbose", "my/terse", "hello"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /eval count:\s+3 token\(s\)/);

    // A Modelfile printed by mr show makes the same model again.
    const again = await modelfile("Modelfile.again", mf);
    const r2 = await mr(["create", "-f", again, "my/terse2"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal((await mr(["show", "--parameters", "my/terse2"])).stdout, params.stdout);
    assert.equal((await mr(["show", "--system", "my/terse2"])).stdout, system.stdout);
  });

  test("FROM a GGUF file next to the Modelfile uploads it", async () => {
    await copyFile(await tinyModel({ seed: 6 }), join(dir, "local.gguf"));
    const path = await modelfile("Modelfile.file", "FROM ./local.gguf\nSYSTEM Be brief.\n");
    const r = await mr(["create", "-q", "-f", path, "my/local"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await mr(["show", "--system", "my/local"])).stdout, "Be brief.\n");
  });

  test("Modelfile errors: one line naming the file and line, exit 2; nothing is created", async () => {
    const cases: Array<[string, RegExp]> = [
      ["FROM ai/tiny\nSYSTEM hi\nPARAMTER temperature 1\n", /Modelfile\.bad:3: unknown instruction "PARAMTER"/],
      ["FROM ai/tiny\nADAPTER ./lora.gguf\n", /Modelfile\.bad:2: ADAPTER \(a LoRA adapter\) is not supported/],
      ["SYSTEM hi\n", /no FROM instruction/],
      ['FROM ai/tiny\nSYSTEM """never closed\n', /Modelfile\.bad:2: a """ value is never closed/],
      ["FROM ai/tiny\nMESSAGE robot hi\n", /Modelfile\.bad:2: MESSAGE role must be system, user or assistant/],
      ["FROM ./missing.gguf\n", /Modelfile\.bad:1: FROM \.\/missing\.gguf: no such file/],
    ];
    for (const [text, message] of cases) {
      const path = await modelfile("Modelfile.bad", text);
      const r = await mr(["create", "-f", path, "my/bad"]);
      assert.equal(r.code, 2, `${text}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    // What the daemon refuses as a bad value (an unknown parameter, a Go template, a 400) is one line, exit 2 too.
    for (const [text, message] of [
      ["FROM ai/tiny\nPARAMETER temprature 1\n", /Unknown parameter 'temprature'/],
      ["FROM ai/tiny\nTEMPLATE {{ .Prompt }}\n", /Ollama \(Go\) template/],
    ] as const) {
      const r = await mr(["create", "-f", await modelfile("Modelfile.bad", text), "my/bad"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.notEqual((await mr(["show", "my/bad"])).code, 0);
    const missing = await mr(["create", "-f", join(dir, "nope"), "my/bad"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /cannot read the Modelfile .*nope: no such file/);
  });

  test("mr show takes one --PART at a time, locally", async () => {
    const r = await mr(["show", "--system", "--license", "ai/tiny"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /give only one of/);
    const none = await mr(["show", "--system", "ai/tiny"]);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, "");
    assert.match(none.stderr, /has no system/);
  });
});

describe("mr configure's preset flags", () => {
  const stored = async (model: string) => {
    const r = await mr(["configure", "show", "--json", model]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Array<{ mode: string; preset: unknown }>).find((c) => c.mode === "completion")?.preset ?? null;
  };

  test("set, patch, unset and reset; bad values are the daemon's 400 as one line", async () => {
    let r = await mr(["configure", "--system", "Be kind.", "--temperature", "0.4", "--top-k", "20", "--stop", "A", "--stop", "B", "ai/tiny"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await stored("ai/tiny"), { system: "Be kind.", parameters: { temperature: 0.4, top_k: 20, stop: ["A", "B"] } });
    r = await mr(["configure", "--seed", "7", "--unset", "top_k", "ai/tiny"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await stored("ai/tiny"), { system: "Be kind.", parameters: { temperature: 0.4, stop: ["A", "B"], seed: 7 } });
    const table = await mr(["configure", "show", "ai/tiny"]);
    assert.match(table.stdout, /system="Be kind\." temperature=0\.4 stop="A","B" seed=7/);
    r = await mr(["configure", "--temperature", "hot", "ai/tiny"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /'preset\.parameters\.temperature' must be a number/);
    r = await mr(["configure", "--unset", "colour", "ai/tiny"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--unset takes system, messages, stop or a parameter name/);
    r = await mr(["configure", "--reset-preset", "ai/tiny"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await stored("ai/tiny"), null);
    const help = await mr(["configure", "--help"]);
    assert.match(help.stdout, /--repeat-penalty N/);
  });
});

describe("chat: /set parameter, /save, /load", () => {
  test("over a pipe: a session parameter applies to the next answer; /save makes a model with it; /load switches", async () => {
    const input = [
      "/set verbose",
      "/set parameter num_predict 2",
      "/set parameter temperature warm",
      "/set parameter colour 3",
      "/set system You are a sailor.",
      "hello",
      "/show parameters",
      "/save my/sailor",
      "/load my/nosuch",
      "/load my/sailor",
      "/show system",
      "again",
      "/bye",
    ].join("\n");
    const r = await mr(["run", "-i", "ai/tiny"], `${input}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Set parameter 'num_predict' to '2'/);
    assert.match(r.stdout, /Couldn't set parameter: 'temperature' takes a number, got 'warm'/);
    assert.match(r.stdout, /Unknown parameter 'colour'/);
    // The first answer had 2 tokens (the session parameter); after /load, the saved model's preset gives 2 as well.
    const counts = [...r.stderr.matchAll(/^eval count:\s+(\d+) token/gm)].map((m) => Number(m[1]));
    assert.deepEqual(counts, [2, 2]);
    assert.match(r.stdout, /User defined parameters:\nnum_predict\s+2/);
    assert.match(r.stdout, /Created new model 'my\/sailor'/);
    assert.match(r.stdout, /Couldn't load model 'my\/nosuch'/);
    assert.match(r.stdout, /Loading model 'my\/sailor'/);
    assert.match(r.stdout, /You are a sailor\./);
    const show = await mr(["show", "--parameters", "my/sailor"]);
    assert.match(show.stdout, /^num_predict\s+2$/m);
    assert.equal((await mr(["show", "--system", "my/sailor"])).stdout, "You are a sailor.\n");
    // As Ollama's /save: the conversation is kept as the model's messages.
    const mf = (await mr(["show", "--modelfile", "my/sailor"])).stdout;
    assert.match(mf, /^MESSAGE user """hello"""$/m);
  });

  test("on a terminal (pty): /set parameter and /show parameters", async () => {
    const child = spawn(
      "python3",
      ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", process.execPath, MR_BIN, "run", "ai/tiny"],
      { env: cleanEnv({ ...env(), TERM: "xterm" }), stdio: ["pipe", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const done = collect(child, 60_000);
    await eventually(() => out.includes(">>> "), 30_000, "the prompt");
    child.stdin!.write("/set parameter top_k 5\r");
    await eventually(() => out.includes("Set parameter 'top_k' to '5'"), 30_000, "the /set answer");
    child.stdin!.write("/show parameters\r");
    await eventually(() => /User defined parameters:\r?\ntop_k\s+5/.test(out), 30_000, "the /show answer");
    child.stdin!.write("/bye\r");
    const r = await done;
    assert.equal(r.code, 0, out);
  });
});
