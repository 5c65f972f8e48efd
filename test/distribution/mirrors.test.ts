import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, startTestRegistry } from "../doubles/test-registry.ts";
import { startRegistryProxy } from "../doubles/registry-proxy.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";
import { RemoteNotFoundError, RegistryAuthError } from "../../src/distribution/index.ts";
import { ConfigError, loadDaemonConfig } from "../../src/config.ts";

// docker.io references go to the mirrors first. "Docker Hub" here is a proxy on
// loopback (dockerHubHost) that logs every request, so the test can tell
// whether it was asked; the real registry-1.docker.io is never contacted.
test("docker.io references are pulled from a mirror, falling back past 404s and dead mirrors to Docker Hub", async (t) => {
  const mirror = await startTestRegistry();
  t.after(() => mirror.close());
  const hubBackend = await startTestRegistry();
  t.after(() => hubBackend.close());
  const hub = await startRegistryProxy(hubBackend.url);
  t.after(() => hub.close());
  const dir = await tempDir();
  const a = await makeModelFiles(dir, { seed: 1 });
  const b = await makeModelFiles(dir, { seed: 2 });
  const src = await freshDistribution(t);
  const onMirror = await src.packageModel({ gguf: a.gguf, tags: [`${mirror.host}/team/tiny:v1`] });
  await src.push(`${mirror.host}/team/tiny:v1`);
  const onHub = await src.packageModel({ gguf: b.gguf, tags: [`${hub.host}/team/hub-only:v1`] });
  await src.push(`${hub.host}/team/hub-only:v1`);
  hub.requests.length = 0;

  const dead = `127.0.0.1:${await freePort()}`; // nothing listens: a connection error
  const dist = await freshDistribution(t, { registryMirrors: [dead, `http://${mirror.host}`], dockerHubHost: hub.host });

  const pulled = await dist.pull("team/tiny:v1");
  assert.equal(pulled.id, onMirror.id);
  assert.deepEqual(pulled.tags, ["team/tiny:v1"], "stored under the docker.io name, not the mirror's");
  const remote = await dist.inspectRemote("team/tiny:v1");
  assert.equal(remote.id, onMirror.id);
  assert.equal(hub.requests.length, 0, `Docker Hub is not asked when a mirror has the model: ${hub.requests.join(", ")}`);

  // The mirror answers 404 for this one: Docker Hub serves manifest and blobs.
  const fallback = await dist.pull("team/hub-only:v1");
  assert.equal(fallback.id, onHub.id);
  assert.ok(hub.requests.some((r) => r.startsWith("GET /v2/team/hub-only/manifests/")), JSON.stringify(hub.requests));
  assert.ok(hub.requests.some((r) => r.startsWith("GET /v2/team/hub-only/blobs/")), JSON.stringify(hub.requests));
  assert.deepEqual(await dist.store.check(), []);

  // Absent everywhere: Docker Hub's 404 is the answer.
  await assert.rejects(dist.pull("team/absent:v1"), RemoteNotFoundError);
  // Mirrors are only for docker.io: a registry named in the reference is asked directly.
  assert.equal((await dist.inspectRemote(`${hub.host}/team/hub-only:v1`)).id, onHub.id);
});

test("a mirror that refuses us (401) is an error, not a silent fallback", async (t) => {
  const user = { user: "alice", password: "s3cret" };
  const locked = await startTestRegistry({ basicAuth: user });
  t.after(() => locked.close());
  const hub = await startRegistryProxy(`http://127.0.0.1:${await freePort()}`);
  t.after(() => hub.close());
  const dist = await freshDistribution(t, { registryMirrors: [locked.host], dockerHubHost: hub.host });
  await assert.rejects(dist.inspectRemote("team/tiny:v1"), RegistryAuthError);
  assert.equal(hub.requests.length, 0, hub.requests.join(", "));
});

test("MODEL_RUNNER_REGISTRY_MIRRORS is read as a comma list and checked", () => {
  const config = loadDaemonConfig([], { MODEL_RUNNER_HOME: "/tmp/x", MODEL_RUNNER_REGISTRY_MIRRORS: "mirror.example.com:5000, http://127.0.0.1:5001/" });
  assert.deepEqual(config.registryMirrors, ["mirror.example.com:5000", "http://127.0.0.1:5001"]);
  assert.deepEqual(loadDaemonConfig([], { MODEL_RUNNER_HOME: "/tmp/x" }).registryMirrors, []);
  assert.throws(
    () => loadDaemonConfig([], { MODEL_RUNNER_HOME: "/tmp/x", MODEL_RUNNER_REGISTRY_MIRRORS: "https://mirror.example.com/v2/x" }),
    (e) => e instanceof ConfigError && /MODEL_RUNNER_REGISTRY_MIRRORS/.test(e.message),
  );
});
