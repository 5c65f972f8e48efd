import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runMr, startDaemon, type StartedDaemon } from "../helpers/cli.ts";
import { tempDir } from "../helpers/models.ts";

// `mr context` against a real daemon; for TLS, an HTTPS front (a certificate
// made with openssl for 127.0.0.1) that passes each request on to the daemon,
// standing in for a runner served over TLS.
let daemon: StartedDaemon;
let home: string;
let certDir: string;
let front: Server;
let frontUrl: string;

before(async () => {
  daemon = await startDaemon(await tempDir("mr-ctx-daemon-"));
  home = await tempDir("mr-ctx-home-");
  certDir = await tempDir("mr-ctx-cert-");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem"),
  ], { stdio: "ignore" });
  const target = new URL(daemon.url);
  front = createServer({ key: await readFile(join(certDir, "key.pem")), cert: await readFile(join(certDir, "cert.pem")) }, (req, res) => {
    const upstream = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  front.listen(0, "127.0.0.1");
  await once(front, "listening");
  frontUrl = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
});

after(async () => {
  front?.closeAllConnections();
  await new Promise((r) => front?.close(r));
  await daemon?.stop();
});

// No MODEL_RUNNER_HOST: the address comes from the context in use (or the default one).
const mr = (args: string[], env: Record<string, string> = {}) => runMr(args, { env: { MODEL_RUNNER_HOME: home, ...env } });

function oneLine(r: { stderr: string }, pattern: RegExp) {
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

test("context create, use, ls, inspect and rm; commands talk to the context in use; MODEL_RUNNER_HOST wins", async () => {
  const empty = await mr(["context", "ls"]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /^NAME\s+HOST\s+DESCRIPTION\s+CURRENT\ndefault\s+\(local runner\)\s+The runner on this machine\s+\*\n$/);

  const created = await mr(["context", "create", "lab", "--host", daemon.host, "--description", "the test daemon"]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(created.stdout, 'Context "lab" created.\n');
  assert.equal((await mr(["context", "use", "lab"])).stdout, 'Current context is now "lab".\n');

  const models = await mr(["ls", "--json"]);
  assert.equal(models.code, 0, models.stderr);
  assert.deepEqual(JSON.parse(models.stdout), []);
  const status = JSON.parse((await mr(["status", "--json"])).stdout) as { running: boolean; endpoint: string };
  assert.deepEqual([status.running, status.endpoint], [true, daemon.url]);

  const listed = await mr(["context", "ls"]);
  assert.match(listed.stdout, new RegExp(`\\nlab\\s+${daemon.url.replace(/[.]/g, "\\.")}\\s+the test daemon\\s+\\*\\n$`));
  const shown = JSON.parse((await mr(["context", "inspect", "lab", "default"])).stdout) as Array<Record<string, any>>;
  assert.equal(shown[0]!.host, daemon.url);
  assert.deepEqual(shown[0]!.tls, { enabled: false, skip_verify: false, ca_cert: null });
  assert.equal(shown[1]!.name, "default");

  // MODEL_RUNNER_HOST wins over the context, and ls says so.
  const overridden = await mr(["ls"], { MODEL_RUNNER_HOST: "127.0.0.1:1" });
  assert.equal(overridden.code, 1);
  oneLine(overridden, /cannot reach the model runner at http:\/\/127\.0\.0\.1:1 \(MODEL_RUNNER_HOST\)/);
  assert.match((await mr(["context", "ls"], { MODEL_RUNNER_HOST: "127.0.0.1:1" })).stderr, /MODEL_RUNNER_HOST=http:\/\/127\.0\.0\.1:1 overrides the current context/);

  // A context whose runner is down is named in the error; no local daemon is started in its place.
  assert.equal((await mr(["context", "create", "dead", "--host", "http://127.0.0.1:1"])).code, 0);
  assert.equal((await mr(["context", "use", "dead"])).code, 0);
  const down = await mr(["ls"]);
  assert.equal(down.code, 1);
  oneLine(down, /cannot reach the model runner at http:\/\/127\.0\.0\.1:1 \(context "dead"\): is 'mr serve' running there\?/);

  for (const [args, code, pattern] of [
    [["context", "create", "lab", "--host", daemon.host], 1, /context "lab" already exists/],
    [["context", "create", "default", "--host", daemon.host], 1, /"default" is the built-in context/],
    [["context", "create", "-x", "--host", daemon.host], 2, /unknown flag -x/],
    [["context", "create", "a/b", "--host", daemon.host], 1, /context names are letters, digits/],
    [["context", "create", "x", "--host", "ftp://h:1"], 2, /--host must be http:\/\/ or https:\/\//],
    [["context", "create", "x", "--host", "http://h:1/v1"], 2, /--host is the runner's address only \(no path\)/],
    [["context", "create", "x", "--host", "http://h:1", "--tls"], 2, /--tls needs an https:\/\/ host/],
    [["context", "create", "x", "--host", "h:1", "--tls-skip-verify"], 2, /--tls-skip-verify need --tls/],
    [["context", "create", "x"], 2, /context create needs --host URL/],
    [["context", "use", "nope"], 1, /no context "nope"/],
    [["context", "rm", "dead"], 1, /context "dead" is in use: run 'mr context use default' first/],
    [["context", "ls", "--host", "x"], 2, /--host go with context create/],
    [["context", "frob"], 2, /context takes one of create, use, ls, rm, inspect, got "frob"/],
  ] as const) {
    const r = await mr([...args]);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    oneLine(r, pattern);
  }

  assert.equal((await mr(["context", "use", "default"])).code, 0);
  const removed = await mr(["context", "rm", "dead", "lab"]);
  assert.equal(removed.stdout, 'Context "dead" removed.\nContext "lab" removed.\n');
  assert.equal((await mr(["context", "ls"])).stdout.trim().split("\n").length, 2, "only default is left");

  // A contexts file mr cannot read is an error naming it, not silently replaced.
  await writeFile(join(home, "contexts.json"), "{not json");
  const broken = await mr(["context", "ls"]);
  assert.equal(broken.code, 1);
  oneLine(broken, /contexts\.json is not a contexts file mr can read: fix it or remove it/);
  assert.equal(await readFile(join(home, "contexts.json"), "utf8"), "{not json");
  await writeFile(join(home, "contexts.json"), JSON.stringify({ current: null, contexts: {} }));
});

test("TLS contexts: the runner's certificate is checked against --tls-ca-cert, the system's CAs, or not at all", async () => {
  const cert = join(certDir, "cert.pem");
  assert.equal((await mr(["context", "create", "secure", "--host", frontUrl, "--tls-ca-cert", cert])).code, 0);
  assert.equal((await mr(["context", "create", "system", "--host", frontUrl.replace("https://", ""), "--tls"])).code, 0);
  assert.equal((await mr(["context", "create", "trusting", "--host", frontUrl, "--tls-skip-verify"])).code, 0);
  const missing = await mr(["context", "create", "x", "--host", frontUrl, "--tls-ca-cert", join(certDir, "nope.pem")]);
  assert.equal(missing.code, 1);
  oneLine(missing, /--tls-ca-cert: cannot read .*nope\.pem/);

  for (const [name, ok] of [["secure", true], ["system", false], ["trusting", true]] as const) {
    assert.equal((await mr(["context", "use", name])).code, 0);
    const r = await mr(["ls", "--json"]);
    if (ok) {
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.deepEqual(JSON.parse(r.stdout), []);
    } else {
      assert.equal(r.code, 1, `${name}: a self-signed certificate is not trusted by the system's CAs`);
      oneLine(r, new RegExp(`cannot reach the model runner at ${frontUrl.replace(/[.]/g, "\\.")} \\(context "system"\\)`));
    }
  }
  const inspect = JSON.parse((await mr(["context", "inspect", "secure"])).stdout) as Array<{ tls: unknown; host: string }>;
  assert.deepEqual(inspect[0]!.tls, { enabled: true, skip_verify: false, ca_cert: cert });
  assert.equal(inspect[0]!.host, frontUrl);
  assert.equal((await mr(["context", "use", "default"])).code, 0);
});
