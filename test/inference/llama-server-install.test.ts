import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, chmod, constants, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { checkBuildTools, MissingBuildToolError } from "../../src/inference/backends/llamacpp/build-tools.ts";
import {
  buildSteps,
  ReleaseDigestMismatchError,
  fileSha256,
  installLlamaServer,
  llamaServerRoot,
  platformKey,
  type ReleasePin,
} from "../../src/inference/backends/llamacpp/llama-server-install.ts";
import { LlamaCppBackend } from "../../src/inference/index.ts";
import { tempDir } from "../helpers/models.ts";
import { buildToolsPathWithout } from "../helpers/processes.ts";

const execFileAsync = promisify(execFile);

/**
 * Test double for the llama.cpp release host (github.com), which this
 * machine cannot reach: serves one archive the test builds, counting requests.
 */
async function startFakeReleaseHost(archive: Buffer): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server: Server = createServer((req, res) => {
    count++;
    if (req.url !== "/llama-test-bin.tar.gz") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/gzip", "content-length": archive.length }).end(archive);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/llama-test-bin.tar.gz`,
    requests: () => count,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("llama-server install", () => {
  let archive: Buffer;
  let digest: string;
  let host: Awaited<ReturnType<typeof startFakeReleaseHost>>;
  let bundle: string;

  before(async () => {
    // An archive shaped like a release: a directory with llama-server (a
    // script answering --version as llama-server does) and a library beside it.
    const dir = await tempDir("mr-release-");
    await mkdir(join(dir, "llama-test"));
    await writeFile(join(dir, "llama-test", "llama-server"), "#!/bin/sh\necho 'version: 4242 (test)' >&2\n");
    await chmod(join(dir, "llama-test", "llama-server"), 0o755);
    await writeFile(join(dir, "llama-test", "libllama.so"), "not really a library");
    await execFileAsync("tar", ["-czf", join(dir, "a.tar.gz"), "-C", dir, "llama-test"]);
    archive = await readFile(join(dir, "a.tar.gz"));
    digest = createHash("sha256").update(archive).digest("hex");
    host = await startFakeReleaseHost(archive);
    bundle = join(dir, "fake.bundle");
    await writeFile(bundle, "a stand-in for gitRelease.bundle: only its digest is used here");
  });
  after(() => host?.close());

  const pin = (sha256: string): ReleasePin => ({ platform: platformKey(), url: host.url, sha256, binary: "llama-test/llama-server" });

  test("downloads the pinned archive, checks its digest, unpacks it into place; a second install reuses it", async () => {
    const home = await tempDir("mr-home-");
    const progress: string[] = [];
    const before = host.requests();
    const path = await installLlamaServer(
      { home, logDir: join(home, "logs"), bundlePath: bundle, pins: [pin(digest)], fetch, onProgress: (l) => progress.push(l) },
      AbortSignal.timeout(30_000),
    );
    assert.equal(path, join(llamaServerRoot(home), `release-${digest}`, "llama-test", "llama-server"));
    await access(path, constants.X_OK);
    await access(join(path, "..", "libllama.so"));
    assert.ok(progress.includes("downloading llama-server: 100%"), progress.join("; "));
    assert.deepEqual(await readdir(llamaServerRoot(home)), [`release-${digest}`], "no temporary left");
    const again = await installLlamaServer({ home, logDir: join(home, "logs"), bundlePath: bundle, pins: [pin(digest)], fetch }, AbortSignal.timeout(30_000));
    assert.equal(again, path);
    assert.equal(host.requests(), before + 1, "the second install downloaded nothing");
  });

  test("a digest mismatch is a clear error and leaves nothing installed", async () => {
    const home = await tempDir("mr-home-");
    const wrong = "0".repeat(64);
    await assert.rejects(
      installLlamaServer({ home, logDir: join(home, "logs"), bundlePath: bundle, pins: [pin(wrong)], fetch }, AbortSignal.timeout(30_000)),
      (e: unknown) => {
        assert.ok(e instanceof ReleaseDigestMismatchError);
        assert.match(e.message, new RegExp(`has sha256 ${digest}, not the pinned ${wrong}: refusing to install it`));
        return true;
      },
    );
    assert.deepEqual(await readdir(llamaServerRoot(home)), [], "nothing half-installed");
  });

  test("the build path: its commands, and one clear line when cmake is missing", async () => {
    const steps = buildSteps("/b/gitRelease.bundle", "/w", 2);
    assert.deepEqual(steps[0], { what: "cloning the bundled llama.cpp source", command: "git", args: ["clone", "--quiet", "/b/gitRelease.bundle", "/w/src"] });
    assert.equal(steps[1]!.command, "cmake");
    for (const flag of ["-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF"]) {
      assert.ok(steps[1]!.args.includes(flag), flag);
    }
    assert.deepEqual(steps[2]!.args, ["--build", "/w/build", "--target", "llama-server", "-j", "2"]);

    const env = { PATH: await buildToolsPathWithout("cmake") };
    await assert.rejects(checkBuildTools(env), (e: unknown) => e instanceof MissingBuildToolError && e.missing.includes("cmake"));
    const home = await tempDir("mr-home-");
    await assert.rejects(
      installLlamaServer({ home, logDir: join(home, "logs"), bundlePath: bundle, pins: [], env }, AbortSignal.timeout(10_000)),
      (e: unknown) => {
        assert.ok(e instanceof MissingBuildToolError);
        assert.doesNotMatch(e.message, /\n/, "one line");
        assert.match(e.message, /^Cannot build llama-server: .*cmake.* not found on PATH\. Install .*apt-get install cmake g\+\+ make git/);
        return true;
      },
    );
  });

  test("the backend: an explicit install puts llama-server under the home; status says so; uninstall removes it", async () => {
    const home = await tempDir("mr-home-");
    const backend = new LlamaCppBackend({ home, logDir: join(home, "logs"), bundlePath: bundle, releasePins: [pin(digest)] });
    assert.equal(backend.defaultEngine, "built-in");
    // The daemon's start-up check never installs.
    await assert.rejects(backend.install(AbortSignal.timeout(10_000), { engine: "llama-server" }), (e: Error & { status?: number }) => {
      assert.equal(e.status, 412);
      assert.match(e.message, /run: mr install-runner --engine llama-server/);
      return true;
    });
    const lines: string[] = [];
    await backend.install(AbortSignal.timeout(30_000), { engine: "llama-server", acquire: true, fetch, onProgress: (l) => lines.push(l) });
    assert.ok(lines.some((l) => l.startsWith("downloading llama-server")));
    assert.match(backend.status(), /; Running: llama\.cpp llama-server \(.*release-[0-9a-f]{64}\/llama-test\/llama-server\) \(4242 \(test\)\)$/);
    // A new backend on the same home finds the install without downloading.
    const before = host.requests();
    const later = new LlamaCppBackend({ home, logDir: join(home, "logs"), bundlePath: bundle, releasePins: [pin(digest)] });
    await later.install(AbortSignal.timeout(10_000), { engine: "llama-server" });
    assert.equal(host.requests(), before);
    assert.equal(await later.uninstall("llama-server"), true);
    assert.deepEqual(await readdir(join(home, "engines")), []);
    assert.equal(await later.uninstall("llama-server"), false);
    assert.equal(await fileSha256(bundle), createHash("sha256").update(await readFile(bundle)).digest("hex"));
  });
});
