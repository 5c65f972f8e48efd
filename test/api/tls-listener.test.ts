import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent, fetch as undiciFetch } from "undici";
import { ConfigError, loadDaemonConfig } from "../../src/config.ts";
import { runMr } from "../helpers/cli.ts";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";

// DMR's TLS listener (MODEL_RUNNER_TLS_*) beside the plain one, with a certificate openssl makes for 127.0.0.1.
describe("the daemon's TLS listener", () => {
  let d: TestDaemon;
  let dir: string;
  let agent: Agent;
  let env: Record<string, string>;

  before(async () => {
    dir = await tempDir("mr-tls-");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
    ], { stdio: "ignore" });
    env = { MODEL_RUNNER_TLS_ENABLED: "true", MODEL_RUNNER_TLS_PORT: "0", MODEL_RUNNER_TLS_CERT: join(dir, "cert.pem"), MODEL_RUNNER_TLS_KEY: join(dir, "key.pem") };
    d = await startBareDaemon(env);
    await d.addModel(await tinyModel({ seed: 71 }), "ai/tls:latest");
    agent = new Agent({ connect: { ca: await readFile(join(dir, "cert.pem"), "utf8") } });
  });
  after(async () => {
    await agent?.close();
    await d?.close();
  });

  test("every route answers over TLS as over plain HTTP: the fast lane, Node's server, and mr through a TLS context", async () => {
    const tlsUrl = d.daemon.tlsUrl!;
    assert.match(tlsUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const chat = await undiciFetch(`${tlsUrl}/engines/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "ai/tls", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      dispatcher: agent,
    });
    assert.equal(chat.status, 200, await chat.clone().text());
    assert.equal(((await chat.json()) as { object: string }).object, "chat.completion");
    const tags = await undiciFetch(`${tlsUrl}/api/tags`, { dispatcher: agent });
    assert.equal(tags.status, 200);
    assert.equal(((await tags.json()) as { models: unknown[] }).models.length, 1);
    assert.equal((await fetch(`${d.url}/models`)).status, 200, "the plain listener stays");

    const home = await tempDir("mr-tls-cli-");
    assert.equal((await runMr(["context", "create", "secure", "--host", tlsUrl, "--tls-ca-cert", join(dir, "cert.pem")], { env: { MODEL_RUNNER_HOME: home } })).code, 0);
    assert.equal((await runMr(["context", "use", "secure"], { env: { MODEL_RUNNER_HOME: home } })).code, 0);
    const ls = await runMr(["ls", "--json"], { env: { MODEL_RUNNER_HOME: home } });
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual((JSON.parse(ls.stdout) as Array<{ model: string }>).map((m) => m.model), ["ai/tls:latest"]);
    // Without the CA, the self-signed certificate is refused.
    await assert.rejects(fetch(`${tlsUrl}/models`));
  });

  test("a TLS setting that cannot take effect stops the start, naming the variable", async () => {
    const load = (extra: Record<string, string>) => loadDaemonConfig(["--port", "0"], { MODEL_RUNNER_HOME: dir, ...extra });
    assert.throws(() => load({ MODEL_RUNNER_TLS_ENABLED: "true" }), (e: unknown) => e instanceof ConfigError && /needs MODEL_RUNNER_TLS_CERT and MODEL_RUNNER_TLS_KEY/.test(e.message));
    assert.throws(() => load({ MODEL_RUNNER_TLS_PORT: "12444" }), /MODEL_RUNNER_TLS_PORT is set but MODEL_RUNNER_TLS_ENABLED is not/);
    assert.throws(() => load({ ...env, MODEL_RUNNER_TLS_PORT: "99999" }), /MODEL_RUNNER_TLS_PORT must be 0-65535/);
    await assert.rejects(startBareDaemon({ ...env, MODEL_RUNNER_TLS_CERT: join(dir, "nope.pem") }), /MODEL_RUNNER_TLS_CERT: cannot read .*nope\.pem/);
    await assert.rejects(startBareDaemon({ ...env, MODEL_RUNNER_TLS_CERT: join(dir, "key.pem"), MODEL_RUNNER_TLS_KEY: join(dir, "cert.pem") }), /must be a PEM certificate and its key/);
  });
});
