import assert from "node:assert/strict";
import { test } from "node:test";
import { hostnameOf, isHostAllowed } from "../../src/api/host-check.ts";
import { isLoopbackAddress, loadDaemonConfig } from "../../src/config.ts";

test("Host names: loopback ones always, listed ones by name at any port, nothing else", () => {
  for (const h of ["localhost", "LOCALHOST:1", "127.0.0.1", "127.1.2.3:8080", "[::1]", "[::1]:12434"]) assert.ok(isHostAllowed(h, []), h);
  for (const h of ["evil.example", "evil.example:12434", "localhost.evil.example", "127.0.0.1.evil.example", "[::2]", "0.0.0.0", "128.0.0.1", ""]) {
    assert.equal(isHostAllowed(h, []), false, h);
  }
  assert.ok(isHostAllowed("box.example:9", ["box.example"]));
  assert.ok(isHostAllowed("BOX.example", ["box.example:8080"]));
  assert.equal(isHostAllowed("other.example", ["box.example"]), false);
  assert.ok(isHostAllowed("anything", ["*"]));
  assert.equal(hostnameOf("[::1]:80"), "[::1]");
  assert.equal(hostnameOf("Example.COM.:80"), "example.com");
});

test("the Host check applies while listening on loopback; MODEL_RUNNER_ALLOWED_HOSTS is read in config.ts", () => {
  for (const h of ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]) assert.ok(isLoopbackAddress(h), h);
  for (const h of ["0.0.0.0", "::", "192.168.1.2", "example.com"]) assert.equal(isLoopbackAddress(h), false, h);
  const config = loadDaemonConfig([], { MODEL_RUNNER_HOME: "/tmp/x", MODEL_RUNNER_ALLOWED_HOSTS: " Box.Example , models.internal ,," });
  assert.deepEqual(config.allowedHosts, ["box.example", "models.internal"]);
  assert.deepEqual(loadDaemonConfig([], { MODEL_RUNNER_HOME: "/tmp/x" }).allowedHosts, []);
});
